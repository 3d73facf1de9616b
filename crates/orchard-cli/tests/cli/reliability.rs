//! Inputs a hostile user would try (issue 15): each refused up front with a clear error and the right exit
//! code, nothing created, or handled cleanly where it is no error at all.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{orchard, s, synth, text, user_namespaces};

/// Asserts that `args` failed with exit code 2, its message containing every one of `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let out = orchard(args);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "orchard {}: {said}", args.join(" "));
    assert!(!said.contains("panicked"), "orchard {}: {said}", args.join(" "));
    for needle in needles {
        assert!(said.contains(needle), "orchard {}: {needle:?} missing from {said}", args.join(" "));
    }
}

/// A one-member experiment on `data` into `out`, with `extra` lines in its member.
fn experiment(dir: &Path, data: &Path, extra: &str) -> std::path::PathBuf {
    let file = dir.join("experiment.toml");
    let toml = format!(
        "data = {:?}\nout = {:?}\nfolds = 2\n[defaults]\nepochs = 1\nbatch = 4\n\
         [[member]]\nname = \"m\"\narch = \"mobilenet_v2\"\nsize = 32\n{extra}\n",
        s(data),
        s(&dir.join("experiment")),
    );
    std::fs::write(&file, toml).unwrap();
    file
}

#[test]
fn a_cuda_device_this_machine_lacks_is_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 2, "32", 1);
    let out = tmp.path().join("out");
    let (d, o) = (s(&data), s(&out));
    let missing = "cuda:99";
    let image = data.join("images").join("Train_0.jpg");
    let commands: Vec<Vec<&str>> = vec![
        vec!["train", "--data", d, "--size", "32", "--epochs", "1", "--out", o, "--device", missing],
        vec!["predict", "--run", o, "--data", d, "--out", o, "--device", missing],
        vec!["classify", "--arch", "mobilenet_v2", "--weights", o, s(&image), "--device", missing],
        vec!["serve", o, "--device", missing],
        vec!["bench", "model", "--arch", "mobilenet_v2", "--size", "32", "--device", missing],
    ];
    for args in &commands {
        refused(args, &[missing, "CUDA"]);
        assert!(!out.exists(), "orchard {} created {o}", args.join(" "));
    }
    // A device named in a training configuration or an experiment file, or by `run`'s flags.
    let config = tmp.path().join("train.toml");
    std::fs::write(&config, format!("device = {missing:?}\n")).unwrap();
    refused(&["train", "--config", s(&config), "--data", d, "--out", o], &[missing, "CUDA"]);
    let file = experiment(tmp.path(), &data, &format!("device = {missing:?}"));
    refused(&["run", s(&file)], &[missing, "CUDA", "member \"m\""]);
    let file = experiment(tmp.path(), &data, "");
    refused(&["run", s(&file), "--device", missing], &[missing, "CUDA"]);
    refused(&["run", s(&file), "--devices", &format!("cpu,{missing}")], &[missing, "CUDA"]);
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap() + &format!("[predict]\ndevice = {missing:?}\n"))
        .unwrap();
    refused(&["run", s(&file)], &[missing, "CUDA", "[predict]"]);
    assert!(!out.exists() && !tmp.path().join("experiment").exists());
    // Plain `cuda` where libtorch sees none.
    if !orchard_torch::cuda_libs::available() {
        refused(&["train", "--data", d, "--out", o, "--device", "cuda"], &["cuda:0", "no CUDA device"]);
        assert!(!out.exists());
    }
}

/// `orchard` with `args` in an address space of `gib` GiB (libtorch and its libraries take about 3.5): an
/// allocation beyond it fails as on a machine out of memory, without taking the machine's memory.
fn orchard_in(gib: u64, args: &[&str]) -> Output {
    let limit = (gib << 20).to_string();
    Command::new("sh")
        .args(["-c", "ulimit -v \"$0\" && exec \"$@\"", &limit, env!("CARGO_BIN_EXE_orchard")])
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("sh runs")
}

#[test]
fn running_out_of_memory_in_a_training_step_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 0, "32", 1);
    let run = tmp.path().join("run");
    // 8 images of 1024x1024 need about 12 GB of activations.
    let args = ["train", "--data", s(&data), "--arch", "mobilenet_v2", "--size", "1024", "--batch", "8"];
    let out =
        orchard_in(6, &[&args[..], &["--epochs", "1", "--workers", "1", "--device", "cpu", "--out", s(&run)]].concat());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(!said.contains("panicked") && !said.contains("frame #"), "{said}");
    assert!(
        said.contains("training epoch 0 (batches of 8 at 1024x1024 on cpu) failed: out of memory (DefaultCPUAllocator"),
        "{said}"
    );
    assert_eq!(said.matches("out of memory").count(), 1, "{said}");
    assert!(said.contains("lower the batch"), "{said}");
}

/// `orchard` with `args`, its standard output read for `lines` lines and then closed: the exit status and
/// standard error, and the lines read.
fn read_then_close(args: &[&str], lines: usize) -> (Output, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchard"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orchard starts");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let read: Vec<String> = stdout.lines().take(lines).map(Result::unwrap).collect();
    (child.wait_with_output().unwrap(), read)
}

#[test]
fn a_reader_that_closes_standard_output_early_stops_a_command_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    // 3000 tensors: far more output than a pipe holds, so the writer meets the closed pipe.
    let file = tmp.path().join("many.safetensors");
    let tensors: Vec<(String, tch::Tensor)> =
        (0..3000).map(|i| (format!("t{i}"), tch::Tensor::zeros([2], tch::kind::FLOAT_CPU))).collect();
    tch::Tensor::write_safetensors(&tensors, &file).unwrap();
    let data = synth(&tmp.path().join("data"), 8, 2, "32", 1);
    let cases: [(&[&str], usize, &str); 5] = [
        (&["weights", "inspect", s(&file)], 1, "many.safetensors: safetensors, 3000 tensors"),
        (&["schedule", "--epochs", "100000"], 1, "0 1e-5"),
        (&["schedule", "--epochs", "100000"], 0, ""),
        (&["models", "list"], 0, ""),
        (&["data", "check", s(&data)], 0, ""),
    ];
    for (args, lines, first) in cases {
        let (out, read) = read_then_close(args, lines);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(0), "orchard {}: {said}", args.join(" "));
        assert!(said.is_empty(), "orchard {} said {said}", args.join(" "));
        let got = read.first().map_or("", String::as_str);
        assert!(got.ends_with(first) && read.len() == lines, "orchard {}: read {read:?}", args.join(" "));
    }
}

#[test]
fn every_numeric_setting_is_checked_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 2, "32", 1);
    let out = tmp.path().join("out");
    let (d, o) = (s(&data), s(&out));
    let flags = [
        "--lr=-1",
        "--lr=nan",
        "--lr=inf",
        "--weight-decay=-0.1",
        "--warmup=nan",
        "--label-smoothing=1",
        "--ema=1.5",
        "--dropout=-0.1",
        "--drop-path=inf",
        "--bn-momentum=nan",
        "--clip-norm=0",
        "--batch=0",
        "--epochs=0",
        "--accumulate=0",
        "--workers=0",
        "--folds=1",
        "--replicas=0",
        "--replica-timeout=0",
    ];
    for flag in flags {
        let (name, _) = flag.split_once('=').unwrap();
        refused(&["train", "--data", d, "--size", "32", "--out", o, flag], &[&format!("for '{name} ")]);
        assert!(!out.exists(), "{flag} created {o}");
    }
    refused(&["predict", "--run", o, "--data", d, "--out", o, "--batch", "0"], &["'--batch "]);
    // In a configuration file: the file and the key named.
    let config = tmp.path().join("train.toml");
    for (toml, key) in [
        ("[optimizer]\nmomentum = 2.0\n", "optimizer.momentum"),
        ("[schedule.function]\nkind = \"constant\"\nlr = nan\n", "schedule.function: lr = NaN"),
        ("[optimizer]\nweight_decay = inf\n", "optimizer.weight_decay"),
        ("workers = 0\n", "workers"),
    ] {
        std::fs::write(&config, toml).unwrap();
        refused(&["train", "--config", s(&config), "--data", d, "--out", o], &[s(&config), key]);
        assert!(!out.exists());
    }
    // In an experiment's defaults or member: the file, the member and the key.
    let file = experiment(tmp.path(), &data, "[member.schedule.function]\nkind = \"constant\"\nlr = -0.5");
    refused(&["run", s(&file)], &[s(&file), "member \"m\"", "schedule.function: lr = -0.5"]);
    assert!(!tmp.path().join("experiment").exists());
}

#[test]
fn a_folds_file_without_a_fold_count_gives_the_count_and_the_run_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 12, 0, "32", 1);
    let folds = tmp.path().join("folds.csv");
    crate::common::ok(&["data", "folds", s(&data), "--k", "3", "--out", s(&folds)]);
    let run = tmp.path().join("run");
    let common = ["train", "--data", s(&data), "--arch", "mobilenet_v2", "--size", "32", "--batch", "4"];
    let common = [&common[..], &["--epochs", "1", "--workers", "1", "--folds-csv", s(&folds), "--quiet"]].concat();
    crate::common::ok(&[&common[..], &["--fold", "1", "--out", s(&run)]].concat());
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.lines().any(|l| l.trim() == "folds = 3"), "{config}");
    let oof = std::fs::read_to_string(run.join("oof.csv")).unwrap();
    assert_eq!(oof.lines().count(), 1 + 4, "a third of 12 images validate: {oof}");
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let row: Vec<&str> = metrics.lines().nth(1).unwrap().split(',').collect();
    assert!(row[3..6].iter().all(|v| v.parse::<f64>().is_ok()), "val_loss, val_accuracy, val_auc: {metrics}");

    // A fold the file does not have, or a file with a gap in its folds: refused, nothing created.
    let other = tmp.path().join("other");
    refused(&[&common[..], &["--fold", "3", "--out", s(&other)]].concat(), &["data.fold", "3 folds of", s(&folds)]);
    let text = std::fs::read_to_string(&folds).unwrap().replace(",2\n", ",3\n");
    std::fs::write(&folds, text).unwrap();
    refused(&[&common[..], &["--fold", "0", "--out", s(&other)]].concat(), &[s(&folds), "folds 2 have no samples"]);
    assert!(!other.exists());
}

/// The lines of `path` with line `n` (1-based) replaced by `line` and a blank line inserted before it.
fn with_line(path: &Path, n: usize, line: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[n - 1] = line(&lines[n - 1]);
    lines.insert(n - 1, String::new());
    lines.join("\n") + "\n"
}

#[test]
fn messages_say_each_cause_once_and_every_command_counts_file_lines_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 4, "32", 1);
    let image = data.join("images").join("Train_0.jpg");
    let missing = tmp.path().join("missing.pth");
    let out = orchard(&["classify", "--arch", "mobilenet_v2", "--weights", s(&missing), s(&image)]);
    assert_eq!(text(&out).matches("(os error 2)").count(), 1, "{}", text(&out));
    let out = orchard(&["data", "check", s(&image)]);
    assert_eq!(text(&out).matches("not a folder").count(), 1, "{}", text(&out));

    // The same bad cell on file line 5 (after a blank line) of a labels file, then of a prediction file.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::os::unix::fs::symlink(data.join("images"), bad.join("images")).unwrap();
    let labels = with_line(&data.join("train.csv"), 4, |l| format!("{},abc,0,0,0", l.split(',').next().unwrap()));
    std::fs::write(bad.join("train.csv"), labels).unwrap();
    let ids: Vec<String> = (0..8).map(|i| format!("Train_{i}")).collect();
    let even = tmp.path().join("even.csv");
    let rows: String = ids.iter().map(|id| format!("{id},0.25,0.25,0.25,0.25\n")).collect();
    std::fs::write(&even, format!("image_id,healthy,multiple_diseases,rust,scab\n{rows}")).unwrap();
    let folds = tmp.path().join("folds.csv");
    crate::common::ok(&["data", "folds", s(&data), "--k", "2", "--out", s(&folds)]);
    let truth = bad.join("train.csv");
    let at = format!("{}:5:healthy", s(&truth));
    refused(&["data", "check", s(&bad)], &[&at]);
    refused(&["score", "--truth", s(&truth), "--pred", s(&even)], &[&at]);
    let (e, f) = (s(&even), s(&folds));
    let search = ["ensemble", "--method", "search", "--oof", e, "--oof", e, "--pred", e, "--pred", e, "--folds", f];
    let out = tmp.path().join("out.csv");
    refused(&[&search[..], &["--truth", s(&truth), "--out", s(&out)]].concat(), &[&at]);
    let pred = tmp.path().join("pred.csv");
    std::fs::write(&pred, with_line(&even, 4, |l| l.replacen("0.25", "1.5", 1))).unwrap();
    let at = format!("{}:5:healthy", s(&pred));
    refused(&["score", "--truth", s(&data), "--pred", s(&pred)], &[&at]);
    refused(&["ensemble", "--pred", s(&pred), "--pred", e, "--out", s(&out)], &[&at]);
    let rows: String = (0..4).map(|i| format!("Test_{i},0.25,0.25,0.25,0.25\n")).collect();
    std::fs::write(&pred, format!("image_id,healthy,multiple_diseases,rust,scab\n{rows}")).unwrap();
    std::fs::write(&pred, with_line(&pred, 4, |l| l.replacen("0.25", "0.5", 1))).unwrap();
    let sample = data.join("sample_submission.csv");
    refused(
        &["submission", "check", "--sample", s(&sample), "--pred", s(&pred)],
        &[&format!("{}:5: row sums", s(&pred))],
    );
    assert!(!out.exists());
}

#[test]
fn a_full_disk_names_the_file_and_says_so() {
    // A 1 MiB file system of our own, in a user and mount namespace, where the machine allows one.
    if !user_namespaces() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 0, "32", 1);
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let run = small.join("run");
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs \"$0\" && exec \"$@\"", s(&small)])
        .args([env!("CARGO_BIN_EXE_orchard"), "train", "--data", s(&data), "--arch", "mobilenet_v2", "--size", "32"])
        .args(["--batch", "8", "--epochs", "1", "--workers", "1", "--quiet", "--out", s(&run)])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("{}: No space left on device (os error 28)", s(&run.join("best.ckpt")))), "{said}");
    assert!(!said.contains(".orchard-") && !said.contains("IoError") && !said.contains("readable"), "{said}");
}

#[test]
fn run_checks_every_member_before_it_trains_any() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 2, "32", 1);
    let missing = tmp.path().join("missing.safetensors");
    let members = format!(
        "[[member]]\nname = \"unknown\"\narch = \"resnet9000\"\n\
         [[member]]\nname = \"small\"\narch = \"inception_resnet_v2\"\nsize = 32\n\
         [[member]]\nname = \"weights\"\narch = \"mobilenet_v2\"\nsize = 32\nweights = {:?}",
        s(&missing)
    );
    let file = experiment(tmp.path(), &data, &members);
    let said = [
        "3 problem(s), nothing was run or written",
        "member \"unknown\": model.arch",
        "resnet9000",
        "member \"small\": data.size 32x32",
        "member \"weights\": model.weights",
        "missing.safetensors: no such file",
    ];
    refused(&["run", s(&file)], &said);
    assert!(!tmp.path().join("experiment").exists(), "the first member was not trained");
    // `--only` checks its own member.
    refused(&["run", s(&file), "--only", "small/0"], &["1 problem(s)", "member \"small\""]);
}

#[test]
fn classify_and_import_take_a_runs_own_checkpoint_and_another_architecture_is_a_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 0, "32", 1);
    let run = tmp.path().join("run");
    let train = ["train", "--data", s(&data), "--arch", "mobilenet_v2", "--size", "32", "--batch", "8"];
    crate::common::ok(&[&train[..], &["--epochs", "1", "--workers", "1", "--quiet", "--out", s(&run)]].concat());
    let best = run.join("best.ckpt");
    let image = data.join("images").join("Train_0.jpg");
    let printed =
        crate::common::ok(&["classify", "--arch", "mobilenet_v2", "--weights", s(&best), "--size", "32", s(&image)]);
    assert_eq!(printed.lines().filter(|l| l.contains("class ")).count(), 4, "the run's 4 classes: {printed}");
    let imported = tmp.path().join("imported.safetensors");
    let said =
        crate::common::ok(&["weights", "import", "--arch", "mobilenet_v2", "--from", s(&best), "--out", s(&imported)]);
    assert!(said.contains("with a head of 4 classes"), "{said}");
    // The same file for another architecture: a mismatch, with or without Orchard's header.
    refused(
        &["classify", "--arch", "efficientnet_b0", "--weights", s(&best), s(&image)],
        &["is for mobilenet_v2, not efficientnet_b0"],
    );
    let loaded = orchard_models::weights::checkpoint::load::<orchard_files::RunState>(&best).unwrap();
    let plain = tmp.path().join("plain.safetensors");
    let tensors: Vec<(String, tch::Tensor)> =
        loaded.group("model").into_iter().filter(|(n, _)| !n.starts_with("classifier")).collect();
    std::fs::write(&plain, orchard_models::weights::native::to_bytes(&tensors, None).unwrap()).unwrap();
    refused(
        &["classify", "--arch", "efficientnet_b0", "--weights", s(&plain), s(&image)],
        &["do not fit efficientnet_b0"],
    );
}
