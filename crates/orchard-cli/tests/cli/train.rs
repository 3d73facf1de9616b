//! `orchard train` as a process: configuration file and flags, the run directory's files, exit codes, and a
//! run killed again and again that never leaves a truncated `last.ckpt` and resumes to the end.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orchard_files::RunState;
use orchard_models::weights::checkpoint;

use crate::common::{cmd, orchard, synth, text};

#[test]
fn flags_override_the_config_file_and_the_run_directory_has_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 18, 0, "64x48", 9).display().to_string();
    let config = tmp.path().join("run.toml");
    std::fs::write(
        &config,
        format!("epochs = 5\nbatch = 4\nema = 0.5\n[data]\ndir = {data:?}\nfolds = 3\nsize = [32, 32]\n[schedule.function]\nkind = \"constant\"\nlr = 0.001\n"),
    )
    .unwrap();
    let run = tmp.path().join("run");
    let out = cmd(&format!("train --config {} --epochs 2 --fold 1 --out {} --quiet", config.display(), run.display()));
    assert!(out.status.success(), "{}", text(&out));
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    for line in ["epochs = 2", "batch = 4", "ema = 0.5", "fold = 1", "folds = 3"] {
        assert!(resolved.lines().any(|l| l.trim() == line), "{line} missing from\n{resolved}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    let oof = std::fs::read_to_string(run.join("oof.csv")).unwrap();
    assert_eq!(oof.lines().next(), Some("image_id,healthy,multiple_diseases,rust,scab"));
    assert_eq!(oof.lines().count(), 1 + 6, "a third of 18 images validate");
    for row in oof.lines().skip(1) {
        let p: Vec<f64> = row.split(',').skip(1).map(|v| v.parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row}");
    }
    assert!(run.join("best.ckpt").exists() && run.join("metrics.jsonl").exists());

    // The same directory again without --resume: refused with exit code 2, nothing touched.
    let before = std::fs::read(run.join("last.ckpt")).unwrap();
    let out = orchard(&["train", "--config", config.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--resume"), "{}", text(&out));
    assert_eq!(std::fs::read(run.join("last.ckpt")).unwrap(), before);

    // Bad input: a missing data folder, an unknown architecture and an input below the architecture's
    // minimum, each exit code 2 with the culprit named.
    let out = cmd(&format!("train --data /nonexistent/data --epochs 1 --out {}", tmp.path().join("x").display()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent/data"), "{}", text(&out));
    let out =
        orchard(&["train", "--data", &data, "--arch", "resnet9000", "--out", tmp.path().join("y").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("resnet9000"), "{}", text(&out));
    let out = cmd(&format!(
        "train --data {} --arch inception_resnet_v2 --size 64 --out {}",
        data,
        tmp.path().join("z").display()
    ));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("inception_resnet_v2 needs inputs of at least 75x75 pixels, got 64x64"),
        "{}",
        text(&out)
    );
    assert!(!tmp.path().join("z").exists(), "a refused run makes no run directory");
}

#[test]
fn a_run_killed_at_random_moments_always_leaves_a_loadable_last_checkpoint_and_resumes_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 0, "64x48", 9).display().to_string();
    let run = tmp.path().join("run");
    let epochs = 12;
    let args = format!(
        "train --data {data} --size 32 --batch 8 --epochs {epochs} --ema 0.9 --schedule constant --lr 0.001 --workers 1 \
         --quiet --out {}",
        run.display()
    );
    let args: Vec<&str> = args.split_whitespace().collect();
    let last = run.join("last.ckpt");
    let mut kills = 0;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < 6 && Instant::now() < deadline {
        let mut resume_args = args.to_vec();
        if last.exists() {
            resume_args.push("--resume");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchard"))
            .args(&resume_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill once the run has written at least one checkpoint, at a pseudo-random moment afterwards.
        while !last.exists() && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % 1500));
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        kills += 1;
        let loaded = checkpoint::load::<RunState>(&last).unwrap_or_else(|e| panic!("after kill {kills}: {e}"));
        assert!(loaded.state.epochs_done >= 1 && loaded.state.epochs_done <= epochs);
        assert_eq!(loaded.state.history.len() as u32, loaded.state.epochs_done);
    }
    assert!(kills >= 1, "the run was never killed");
    let mut final_args = args.to_vec();
    final_args.push("--resume");
    let out = orchard(&final_args);
    assert!(out.status.success(), "{}", text(&out));
    let loaded = checkpoint::load::<RunState>(&last).unwrap();
    assert_eq!(loaded.state.epochs_done, epochs);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count() as u32, 1 + epochs, "{metrics}");
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bench_model_prints_images_per_second_and_peak_memory_for_inference_and_training() {
    for extra in [&[][..], &["--train", "--precision", "bf16"][..], &["--train", "--layout", "contiguous"][..]] {
        let mut args = vec![
            "bench",
            "model",
            "--arch",
            "efficientnet_b0",
            "--size",
            "32",
            "--batch",
            "2",
            "--steps",
            "1",
            "--classes",
            "4",
        ];
        args.extend_from_slice(extra);
        let out = orchard(&args);
        assert!(out.status.success(), "{extra:?}: {}", text(&out));
        let line = text(&out);
        let rate: f64 = line.split(" images/s").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
        assert!(rate > 0.0 && line.contains("peak memory") && line.contains("MiB"), "{line}");
        assert!(line.contains(if extra.contains(&"--train") { "train" } else { "inference" }), "{line}");
    }
    let out = orchard(&["bench", "model", "--arch", "nope", "--batch", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = orchard(&["bench", "model", "--arch", "inception_resnet_v2", "--size", "74x299", "--batch", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("at least 75x75 pixels, got 74x299"), "{}", text(&out));
}
