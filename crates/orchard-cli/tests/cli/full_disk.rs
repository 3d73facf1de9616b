//! A full disk (issue 15) while writing a checkpoint, a prediction file and a submission: each writer fails
//! naming its file and "No space left on device", and the file it was replacing is left as it was.

use std::path::Path;
use std::process::Command;

use crate::common::{ok, s, synth, user_namespaces};

/// The output and exit code a command left in `file` (its last line), inside the namespace.
fn said(file: &Path) -> (String, String) {
    let text = std::fs::read_to_string(file).unwrap();
    let (said, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim_end()));
    (said.to_string(), code.to_string())
}

#[test]
fn a_full_disk_while_replacing_a_checkpoint_a_prediction_or_a_submission_keeps_the_old_file() {
    if !user_namespaces() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = synth(&t.join("data"), 8, 4, "32", 1);
    let run = t.join("run");
    ok(&["train", "--data", s(&data), "--arch", "mobilenet_v2", "--size", "32", "--batch", "8", "--epochs", "1"]
        .into_iter()
        .chain(["--workers", "1", "--quiet", "--out", s(&run)])
        .collect::<Vec<_>>());
    ok(&["predict", "--run", s(&run), "--data", s(&data), "--out", s(&t.join("pred.csv"))]);
    let pred = s(&t.join("pred.csv")).to_string();
    ok(&["ensemble", "--pred", &pred, "--pred", &pred, "--out", s(&t.join("submission.csv"))]);
    let (small, back) = (t.join("small"), t.join("back"));
    std::fs::create_dir(&small).unwrap();
    std::fs::create_dir(&back).unwrap();

    // In a file system of our own (a user and mount namespace): the files copied in, the rest of it filled,
    // each writer run, and what is left copied back out for comparison.
    let script = r#"
        S=$0 T=$1 O=$2 D=$3
        mount -t tmpfs -o size=48m tmpfs "$S" || exit 90
        cp -r "$T/run" "$T/pred.csv" "$T/submission.csv" "$S/" || exit 91
        dd if=/dev/zero of="$S/fill" bs=64k 2>/dev/null
        "$O" predict --run "$S/run" --data "$D" --out "$S/pred.csv" > "$T/back/predict.txt" 2>&1
        echo $? >> "$T/back/predict.txt"
        "$O" ensemble --pred "$S/pred.csv" --pred "$S/pred.csv" --out "$S/submission.csv" > "$T/back/ensemble.txt" 2>&1
        echo $? >> "$T/back/ensemble.txt"
        # Room for the configuration and the metrics, none for a checkpoint.
        truncate -s -64K "$S/fill"
        "$O" train --resume --out "$S/run" --epochs 2 --quiet > "$T/back/train.txt" 2>&1
        echo $? >> "$T/back/train.txt"
        cp -r "$S/run" "$S/pred.csv" "$S/submission.csv" "$T/back/" || exit 92
    "#;
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", script, s(&small), s(t), env!("CARGO_BIN_EXE_orchard"), s(&data)])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::common::text(&out));

    let no_space = |file: &str| format!("{}: No space left on device (os error 28)", s(&small.join(file)));
    for (command, file) in [("predict", "pred.csv"), ("ensemble", "submission.csv")] {
        let (said, code) = said(&back.join(format!("{command}.txt")));
        assert_eq!(code, "1", "{command}: {said}");
        assert!(said.contains(&no_space(file)), "{command}: {said}");
        let (before, after) = (std::fs::read(t.join(file)).unwrap(), std::fs::read(back.join(file)).unwrap());
        assert!(before == after, "{file} was changed by the failed write");
    }
    let (said, code) = said(&back.join("train.txt"));
    assert_eq!(code, "1", "{said}");
    assert!(said.contains(&no_space("run/last.ckpt")) || said.contains(&no_space("run/best.ckpt")), "{said}");
    assert!(!said.contains(".orchard-") && !said.contains("IoError"), "{said}");
    for file in ["last.ckpt", "best.ckpt"] {
        let (before, after) =
            (std::fs::read(run.join(file)).unwrap(), std::fs::read(back.join("run").join(file)).unwrap());
        assert!(before == after, "{file} was changed by the failed write");
    }
    let left: Vec<String> = std::fs::read_dir(back.join("run"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
}

/// `orchard run --gather` over a finished experiment whose own directory is on a full file system (the
/// members' directories bind-mounted from one with room), left with 1, 2, 3, … free 4 KiB pages (one goes
/// to the experiment's lock): the first files it writes there are the submission, the ensemble's
/// out-of-fold predictions, the summary and the manifest. Each failed gather exits 1 naming its file, and
/// leaves every file as it was and no temporary (a deterministic gather rewrites the same bytes, so a file
/// replaced before the disk filled up reads as unchanged too); with room enough it completes.
#[test]
fn a_full_disk_while_an_experiment_gathers_keeps_its_submission_and_ensemble_files() {
    if !user_namespaces() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    crate::common::tiny_experiment(t);
    let (mnt, back) = (t.join("mnt"), t.join("back"));
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&back).unwrap();
    let script = r#"
        S=$0 T=$1 O=$2
        size=$(( $(du -sk "$T/exp" | cut -f1) * 2 + 16384 ))k
        mount -t tmpfs -o size=$size tmpfs "$S" || exit 90
        cp -r "$T/exp" "$S/roomy" || exit 91
        mkdir "$S/full"
        for pages in 1 2 3 4 6 8 12 16 32; do
            mount -t tmpfs -o size=4m tmpfs "$S/full" || exit 92
            mkdir "$S/full/exp" "$S/full/exp/members"
            (cd "$T/exp" && find . -maxdepth 1 -type f -exec cp {} "$S/full/exp/" \;) || exit 93
            mount --bind "$S/roomy/members" "$S/full/exp/members" || exit 94
            dd if=/dev/zero of="$S/full/fill" bs=4k 2>/dev/null
            truncate -s -$((pages * 4))K "$S/full/fill"
            said="$T/back/gather$pages.txt"
            "$O" run "$T/experiment.toml" --out "$S/full/exp" --gather --quiet > "$said" 2>&1
            code=$?
            echo $code >> "$said"
            if [ $code != 0 ]; then
                for f in $(cd "$T/exp" && find . -type f ! -name .orchard.lock); do
                    cmp -s "$T/exp/$f" "$S/full/exp/$f" || echo "changed $f" >> "$said.changed"
                done
                find "$S/full/exp/" -name '.orchard-*' >> "$said.changed"
            fi
            umount "$S/full/exp/members" && umount "$S/full" || exit 95
            [ $code = 0 ] && break
        done
    "#;
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", script, s(&mnt), s(t), env!("CARGO_BIN_EXE_orchard")])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::common::text(&out));

    let exp = mnt.join("full").join("exp");
    let mut failed_on = Vec::new();
    let mut succeeded = false;
    for pages in [1, 2, 3, 4, 6, 8, 12, 16, 32] {
        let file = back.join(format!("gather{pages}.txt"));
        if !file.exists() {
            break;
        }
        let (said, code) = said(&file);
        if code == "0" {
            succeeded = true;
            break;
        }
        assert_eq!(code, "1", "{pages} pages: {said}");
        let no_space = said.find(": No space left on device (os error 28)").unwrap_or_else(|| panic!("{said}"));
        let named = said[..no_space].rsplit(' ').next().unwrap().to_string();
        assert!(named.starts_with(s(&exp)), "{pages} pages: names {named}: {said}");
        assert!(!said.contains("IoError") && !said.contains(".orchard-"), "{said}");
        let changed = std::fs::read_to_string(back.join(format!("gather{pages}.txt.changed"))).unwrap_or_default();
        assert!(changed.is_empty(), "{pages} pages, failed on {named}: {changed}");
        failed_on.push(named[s(&exp).len() + 1..].to_string());
    }
    assert!(succeeded, "with room, the gather completes: {failed_on:?}");
    assert_eq!(failed_on.first().map(String::as_str), Some("submission.csv"), "{failed_on:?}");
    eprintln!("the gathers that filled the disk failed on {failed_on:?}");
}
