//! `--skip-bad` the same everywhere (issue 15): `data check`, `data folds`, `train` and `run` find the same
//! bad images the same way; without the flag each refuses them before creating anything, with it each drops
//! the same rows and records which and why (`skipped.csv`), and no fold holds a dropped id.

use std::path::Path;

use crate::common::{ok, orchard, s, synth, text};

/// Two ids of the most common class (so dropping them leaves every class examples).
fn two_victims(data: &Path) -> [String; 2] {
    let text = std::fs::read_to_string(data.join("train.csv")).unwrap();
    let rows: Vec<(&str, &str)> = text.lines().skip(1).map(|l| l.split_once(',').unwrap()).collect();
    let count = |labels: &str| rows.iter().filter(|(_, l)| *l == labels).count();
    let (_, common) = rows.iter().max_by_key(|(_, l)| count(l)).unwrap();
    assert!(count(common) >= 4, "the synthetic data has a class of four");
    let mut ids = rows.iter().filter(|(_, l)| l == common).map(|(id, _)| id.to_string());
    [ids.next().unwrap(), ids.next().unwrap()]
}

/// Asserts `out` failed with code 2 naming both victims.
fn refused(what: &str, out: &std::process::Output, victims: &[String; 2]) {
    let said = text(out);
    assert_eq!(out.status.code(), Some(2), "{what}: {said}");
    assert!(victims.iter().all(|v| said.contains(&format!("{v}.jpg"))), "{what}: {said}");
}

/// Asserts the `skipped.csv` at `path` lists exactly the victims, with their images and reasons.
fn lists_victims(path: &Path, victims: &[String; 2]) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("image_id,image,source,reason"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows.iter().any(|r| r.starts_with(&format!("{},", victims[0])) && r.contains("corrupt")), "{text}");
    assert!(rows.iter().any(|r| r.starts_with(&format!("{},", victims[1])) && r.contains("named pipe")), "{text}");
}

/// The ids of a folds (or any `image_id,…`) file.
fn ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect()
}

/// Synthetic data in `root/data` (20 training images) whose two victims are damaged: the first cut, the
/// second a named pipe.
fn damaged(root: &Path) -> (std::path::PathBuf, [String; 2]) {
    let data = synth(&root.join("data"), 20, 2, "48", 3);
    let victims = two_victims(&data);
    let image = |id: &str| data.join("images").join(format!("{id}.jpg"));
    let bytes = std::fs::read(image(&victims[0])).unwrap();
    std::fs::write(image(&victims[0]), &bytes[..bytes.len() * 2 / 3]).unwrap();
    std::fs::remove_file(image(&victims[1])).unwrap();
    let fifo = std::ffi::CString::new(s(&image(&victims[1]))).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    (data, victims)
}

#[test]
fn skip_bad_drops_the_same_rows_everywhere_and_records_them_and_without_it_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, victims) = damaged(tmp.path());

    let (folds, run) = (tmp.path().join("folds.csv"), tmp.path().join("run"));
    let train =
        ["train", "--data", s(&data), "--arch", "mobilenet_v2", "--size", "32", "--epochs", "1", "--batch", "4"];
    let train = [&train[..], &["--workers", "1", "--device", "cpu", "--out", s(&run)]].concat();
    let exp_dir = tmp.path().join("exp");
    let experiment = |skip: &str| {
        let file = tmp.path().join(format!("experiment{}.toml", skip.len()));
        let text = format!(
            "data = {:?}\nout = {:?}\nfolds = 2\n{skip}\n\
             [defaults]\nepochs = 1\nbatch = 3\nworkers = 1\ndevice = \"cpu\"\n\
             [[member]]\nname = \"m\"\narch = \"mobilenet_v2\"\nsize = 32\n",
            s(&data),
            s(&exp_dir)
        );
        std::fs::write(&file, text).unwrap();
        file
    };
    // Batches of 3: each fold trains on 9 images, and a last batch of one image would give batch norm
    // statistics of one value (NaN running variances at 1×1 feature maps).
    let (plain, skipping) = (experiment(""), experiment("skip_bad = true"));

    // Without it: refused, and nothing created.
    refused("data check", &orchard(&["data", "check", s(&data)]), &victims);
    refused("data folds", &orchard(&["data", "folds", s(&data), "--k", "2", "--out", s(&folds)]), &victims);
    refused("train", &orchard(&train), &victims);
    refused("run", &orchard(&["run", s(&plain), "--quiet"]), &victims);
    assert!(!folds.exists() && !run.exists() && !exp_dir.exists());

    // With it: the same two rows dropped by every command, and recorded.
    let said = ok(&["data", "check", s(&data), "--skip-bad"]);
    assert!(said.contains("skipped 2 bad rows") && victims.iter().all(|v| said.contains(v.as_str())), "{said}");
    ok(&["data", "folds", s(&data), "--k", "2", "--out", s(&folds), "--skip-bad"]);
    assert_eq!(ids(&folds).len(), 18);
    assert!(victims.iter().all(|v| !ids(&folds).contains(v)));
    lists_victims(&tmp.path().join("folds.skipped.csv"), &victims);

    ok(&[&train[..], &["--skip-bad"]].concat());
    lists_victims(&run.join("skipped.csv"), &victims);
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("skip_bad = true"), "{config}");

    ok(&["run", s(&plain), "--skip-bad", "--dry-run"]);
    assert!(!exp_dir.exists(), "a dry run creates nothing");
    let said = ok(&["run", s(&skipping), "--quiet"]);
    assert!(said.contains("submission:") && said.contains("report:") && !said.contains("warning"), "{said}");
    lists_victims(&exp_dir.join("skipped.csv"), &victims);
    assert_eq!(ids(&exp_dir.join("folds.csv")).len(), 18);
    assert!(victims.iter().all(|v| !ids(&exp_dir.join("folds.csv")).contains(v)));
}

#[test]
fn train_skip_bad_passes_over_the_dropped_ids_in_a_folds_file_and_score_and_ensemble_leave_them_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, victims) = damaged(tmp.path());
    // A folds file of every row, the victims included (written before they went bad, say).
    let all = ids(&data.join("train.csv"));
    let folds = tmp.path().join("folds.csv");
    let rows: String = all.iter().enumerate().map(|(i, id)| format!("{id},{}\n", i % 2)).collect();
    std::fs::write(&folds, format!("image_id,fold\n{rows}")).unwrap();
    let run = |fold: &str| tmp.path().join(format!("run{fold}"));
    let train = |fold: &'static str| {
        let (run, folds) = (s(&run(fold)).to_string(), s(&folds).to_string());
        let head = ["train", "--data", s(&data), "--arch", "mobilenet_v2", "--size", "32", "--epochs", "1"];
        let tail = ["--batch", "3", "--workers", "1", "--device", "cpu", "--folds-csv", &folds, "--fold", fold];
        [&head[..], &tail[..], &["--out", &run]].concat().into_iter().map(String::from).collect::<Vec<_>>()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    refused("train without --skip-bad", &orchard(&args(&train("0"))), &victims);
    for fold in ["0", "1"] {
        ok(&[&args(&train(fold))[..], &["--skip-bad"]].concat());
        lists_victims(&run(fold).join("skipped.csv"), &victims);
    }
    let oof0 = ids(&run("0").join("oof.csv"));
    let fold0: Vec<&String> = all.iter().enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, id)| id).collect();
    assert!(victims.iter().all(|v| !oof0.contains(v)), "{oof0:?}");
    assert_eq!(oof0.len(), fold0.iter().filter(|id| !victims.contains(id)).count(), "{oof0:?}");

    // Score and ensemble against train.csv, which still lists the victims: refused naming them and the
    // flag, then with the run's skipped.csv they are left out (and said so).
    let truth = data.join("train.csv");
    let (skipped, one) = (run("0").join("skipped.csv"), run("0").join("oof.csv"));
    // The member's out-of-fold predictions: both folds' rows.
    let member = tmp.path().join("member-oof.csv");
    let second = std::fs::read_to_string(run("1").join("oof.csv")).unwrap();
    let rows: String = second.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&member, std::fs::read_to_string(&one).unwrap() + &rows).unwrap();
    let out = orchard(&["score", "--truth", s(&truth), "--pred", s(&member)]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("--skipped") && victims.iter().all(|v| said.contains(&format!("'{v}'"))), "{said}");
    let said = ok(&["score", "--truth", s(&truth), "--pred", s(&member), "--skipped", s(&skipped)]);
    assert!(said.contains("mean_auc:") && said.contains("left out of the truth: 2 row(s)"), "{said}");
    let ensemble = ["ensemble", "--pred", s(&member), "--oof", s(&member), "--truth", s(&truth), "--folds", s(&folds)];
    let blend = tmp.path().join("e.csv");
    let ensemble = [&ensemble[..], &["--method", "search", "--out", s(&blend)]].concat();
    let out = orchard(&ensemble);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("--skipped") && victims.iter().all(|v| said.contains(&format!("'{v}'"))), "{said}");
    let said = ok(&[&ensemble[..], &["--skipped", s(&skipped)]].concat());
    assert!(said.contains("left out of the truth: 2 row(s)") && said.contains("wrote "), "{said}");
}
