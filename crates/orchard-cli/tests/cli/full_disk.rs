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
