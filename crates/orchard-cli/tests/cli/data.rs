//! The `orchard` binary end to end: real processes, real files, exit codes and messages.

use crate::common::{cmd, orchard, synth, text};

#[test]
fn synth_then_check_then_folds() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 40, 5, "96x64", 3);
    for file in ["train.csv", "test.csv", "sample_submission.csv", "images/Train_0.jpg", "images/Test_4.jpg"] {
        assert!(data.join(file).exists(), "{file}");
    }
    let out = orchard(&["data", "check", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    for class in ["healthy", "multiple_diseases", "rust", "scab"] {
        assert!(report.contains(class), "{report}");
    }
    assert!(report.contains("96"), "image sizes are described: {report}");
    let out = orchard(&["data", "check", data.to_str().unwrap(), "--split", "test"]);
    assert!(out.status.success(), "{}", text(&out));

    let folds = tmp.path().join("folds.csv");
    let out = cmd(&format!("data folds {} --k 4 --seed 1 --out {}", data.display(), folds.display()));
    assert!(out.status.success(), "{}", text(&out));
    let csv = std::fs::read_to_string(&folds).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("image_id,fold"));
    let mut per_fold = [0usize; 4];
    for line in lines {
        per_fold[line.rsplit(',').next().unwrap().parse::<usize>().unwrap()] += 1;
    }
    assert_eq!(per_fold, [10, 10, 10, 10]);
}

#[test]
fn bad_data_exits_with_code_2_naming_file_row_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 12, 5, "96x64", 3);
    let csv_path = data.join("train.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    lines[2] = format!("{},1,1,0,0", lines[2].split(',').next().unwrap()); // line 3: two classes set
    std::fs::remove_file(data.join("images/Train_5.jpg")).unwrap(); // line 7: image missing
    std::fs::write(&csv_path, lines.join("\n") + "\n").unwrap();

    let out = orchard(&["data", "check", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = text(&out);
    assert!(err.contains("train.csv:3"), "{err}");
    assert!(err.contains("Train_5.jpg"), "{err}");

    let out = orchard(&["data", "check", data.to_str().unwrap(), "--skip-bad"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("skipped 2"), "{}", text(&out));
}

#[test]
fn nonsense_arguments_exit_with_code_2() {
    let out = orchard(&["data", "synth", "--out", "/nonexistent/x", "--size", "0x5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("0x5"), "{}", text(&out));
    let out = orchard(&["bench", "input", "/nonexistent/dataset", "--batch", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--batch"), "{}", text(&out));
    let out = orchard(&["data", "check", "/nonexistent/dataset"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).contains("/nonexistent/dataset"), "{}", text(&out));
}

#[test]
fn input_bench_reports_rates_and_peak_memory_for_files_and_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 20, 5, "96x64", 3);
    let out = cmd(&format!("bench input {} --size 32 --batch 4 --epochs 1 --cache", data.display()));
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.lines().any(|l| l.starts_with("files") && l.contains("20 images") && l.contains("images/s")),
        "{report}"
    );
    assert!(report.lines().any(|l| l.starts_with("cache (copy") && l.contains("20 images")), "{report}");
    assert!(report.contains("peak memory") && report.contains("MiB"), "{report}");
    assert!(data.join(".orchard-cache/bench-32x32.cache").exists());
}

/// `orchard schedule` against the reference formula, computed here independently of the library.
#[test]
fn schedule_prints_the_reference_formula() {
    fn lrfn(epoch: f64, start: f64, max: f64, min: f64, rampup: f64, sustain: f64, decay: f64) -> f64 {
        if epoch < rampup {
            (max - start) / rampup * epoch + start
        } else if epoch < rampup + sustain {
            max
        } else {
            (max - min) * decay.powf(epoch - rampup - sustain) + min
        }
    }
    const FLAGS: [&str; 14] = [
        "--replicas",
        "8",
        "--lr-start",
        "2e-6",
        "--lr-max",
        "3e-4",
        "--lr-min",
        "1e-6",
        "--rampup",
        "4",
        "--sustain",
        "0",
        "--decay",
        "0.5",
    ];
    let cases: [(&[&str], [f64; 6]); 3] = [
        (&[], [1e-5, 1e-4, 1e-5, 15.0, 3.0, 0.8]),
        (&["--replicas", "8"], [1e-5, 8e-4, 1e-5, 15.0, 3.0, 0.8]),
        (&FLAGS, [2e-6, 3e-4, 1e-6, 4.0, 0.0, 0.5]),
    ];
    for (extra, [start, max, min, rampup, sustain, decay]) in cases {
        let mut args = vec!["schedule", "--epochs", "25"];
        args.extend_from_slice(extra);
        let out = orchard(&args);
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 25, "{stdout}");
        for (i, line) in lines.iter().enumerate() {
            let (epoch, lr) = line.split_once(' ').unwrap_or_else(|| panic!("line {line:?}"));
            assert_eq!(epoch.parse::<usize>().unwrap(), i);
            let want = lrfn(i as f64, start, max, min, rampup, sustain, decay);
            let got: f64 = lr.parse().unwrap();
            assert!((got - want).abs() <= 1e-15 * want, "{extra:?} epoch {i}: printed {got:e}, formula {want:e}");
        }
    }
    let out = orchard(&["schedule", "--epochs", "3", "--replicas", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn models_list_reports_every_architecture_with_keras_parameter_counts() {
    let out = orchard(&["models", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for b in 0..8 {
        assert!(names.contains(&format!("efficientnet_b{b}").as_str()), "{names:?}");
    }
    // REFERENCE.md: Keras EfficientNetB0 and B7, with a 1000-class top and with include_top=False.
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    assert_eq!(row("efficientnet_b0")["params_with_top"], 5_330_571);
    assert_eq!(row("efficientnet_b0")["params_without_top"], 4_049_571);
    assert_eq!(row("efficientnet_b7")["params_with_top"], 66_658_687);
    assert_eq!(row("efficientnet_b7")["input_size"], serde_json::json!([600, 600]));
    // The reference ensemble's other two backbones.
    assert_eq!(row("resnet152_v2")["params_with_top"], 60_380_648);
    assert_eq!(row("resnet152_v2")["input_size"], serde_json::json!([224, 224]));
    assert_eq!(row("inception_resnet_v2")["params_without_top"], 54_336_736);
    assert_eq!(row("inception_resnet_v2")["input_size"], serde_json::json!([299, 299]));
    // The torch-layout families: torchvision's ResNet-152 and MobileNetV2, the Lite0 weight file's tensors.
    assert_eq!(row("resnet152")["params_with_top"], 60_344_232);
    assert_eq!(row("mobilenet_v2")["params_without_top"], 2_257_984);
    assert_eq!(row("efficientnet_lite0")["params_with_top"], 4_694_024);
    assert_eq!(row("efficientnet_lite4")["input_size"], serde_json::json!([300, 300]));
    let table = orchard(&["models", "list"]);
    assert!(
        text(&table).lines().any(|l| l.starts_with("efficientnet_b6") && l.contains("43265143")),
        "{}",
        text(&table)
    );
}
