//! One writer per directory (issue 15): two `orchard train --out SAME` at once, a lock left by a killed
//! writer, and the units of one experiment trained by separate processes, each unit locked on its own.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{orchard, s, synth, text};

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_orchard"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `dir`'s lock file names `child` (it has started writing there) and returns its text.
fn wait_locked(dir: &Path, child: &mut Child) -> String {
    let file = dir.join(".orchard.lock");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if text.starts_with(&format!("pid {}\n", child.id())) {
                return text;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the writer ended before it locked {}", dir.display());
        assert!(Instant::now() < deadline, "{} was never locked", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Exit code 2 and a message naming the holder `pid` and the directory.
fn refused_by(out: &Output, pid: u32, dir: &Path) {
    let said = text(out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    let holder = format!("is being written by another process: pid {pid} on host ");
    assert!(said.contains(&holder) && said.contains(" since 20"), "{said}");
    assert!(said.contains(s(dir)), "{said}");
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn two_trainings_into_one_directory_one_wins_the_other_is_refused_and_a_killed_ones_lock_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 0, "32", 1);
    let run = tmp.path().join("run");
    let train = |seed: u64| {
        format!(
            "train --data {} --arch mobilenet_v2 --size 32 --batch 8 --epochs 4 --workers 1 --quiet --seed {seed} \
             --out {}",
            s(&data),
            s(&run)
        )
    };

    // Started together: exactly one trains, the other is refused naming it and writes nothing.
    let (a, b) = (train(1), train(2));
    let a = spawn(&a.split_whitespace().collect::<Vec<_>>());
    let b = spawn(&b.split_whitespace().collect::<Vec<_>>());
    let (a_pid, b_pid) = (a.id(), b.id());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (winner_seed, loser, winner_pid) = match (a.status.code(), b.status.code()) {
        (Some(0), Some(2)) => (1, &b, a_pid),
        (Some(2), Some(0)) => (2, &a, b_pid),
        _ => panic!("one must win, one be refused:\n{}\n{}", text(&a), text(&b)),
    };
    refused_by(loser, winner_pid, &run);
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains(&format!("\nseed = {winner_seed}\n")), "{config}");
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 4, "one run's epochs only: {metrics}");
    let one_run = [".orchard.lock", "best.ckpt", "config.toml", "last.ckpt", "metrics.csv", "metrics.jsonl"];
    assert_eq!(names(&run), one_run.map(String::from).into());
    assert_eq!(std::fs::read_to_string(run.join(".orchard.lock")).unwrap(), "", "released when done");

    // A running writer (resumed for more epochs) refuses another at once.
    let resume = ["train", "--resume", "--out", s(&run), "--epochs", "400", "--quiet"];
    let mut holder = spawn(&resume);
    let lock = wait_locked(&run, &mut holder);
    assert!(lock.contains("\nsince 20") && lock.contains("\ncommand "), "{lock}");
    let started = Instant::now();
    refused_by(&orchard(&["train", "--resume", "--out", s(&run), "--epochs", "5"]), holder.id(), &run);
    assert!(started.elapsed() < Duration::from_secs(30), "refused at once, not after waiting");

    // Killed, it leaves its name in the lock file but no kernel lock: the next writer takes the lock over.
    let dead = holder.id();
    kill(holder);
    let stale = std::fs::read_to_string(run.join(".orchard.lock")).unwrap();
    assert!(stale.starts_with(&format!("pid {dead}\n")), "{stale}");
    let out = orchard(&["train", "--resume", "--out", s(&run), "--epochs", "5", "--quiet"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(run.join(".orchard.lock")).unwrap(), "");
}

#[test]
fn units_of_one_experiment_train_in_separate_processes_and_one_unit_takes_one_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 16, 2, "32", 2);
    let exp = tmp.path().join("exp");
    let toml = tmp.path().join("experiment.toml");
    std::fs::write(
        &toml,
        format!(
            "data = \"{}\"\nout = \"{}\"\nfolds = 2\nseed = 3\n[defaults]\nbatch = 8\nworkers = 1\n\
             [[member]]\nname = \"m\"\narch = \"mobilenet_v2\"\nsize = 32\nepochs = 2\n\
             [[member]]\nname = \"n\"\narch = \"mobilenet_v2\"\nsize = 32\nepochs = 400\n",
            s(&data),
            s(&exp)
        ),
    )
    .unwrap();
    let unit = |m: &str, f: usize| exp.join("members").join(m).join(format!("fold{f}"));

    // Two units of one experiment at once, in one directory: both train.
    let a = spawn(&["run", s(&toml), "--only", "m/0", "--quiet"]);
    let b = spawn(&["run", s(&toml), "--only", "m/1", "--quiet"]);
    for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        assert!(out.status.success(), "{}", text(&out));
    }
    for f in 0..2 {
        let metrics = std::fs::read_to_string(unit("m", f).join("metrics.csv")).unwrap();
        assert_eq!(metrics.lines().count(), 3, "{metrics}");
    }

    // One unit, two processes: the second is refused naming the first, and so is a whole run reaching it.
    let mut holder = spawn(&["run", s(&toml), "--only", "n/0", "--quiet"]);
    wait_locked(&unit("n", 0), &mut holder);
    refused_by(&orchard(&["run", s(&toml), "--only", "n/0", "--quiet"]), holder.id(), &unit("n", 0));
    let whole = orchard(&["run", s(&toml), "--quiet"]);
    refused_by(&whole, holder.id(), &unit("n", 0));
    assert!(text(&whole).contains("unit n/0: "), "{}", text(&whole));
    kill(holder);

    // The whole experiment's writer locks the experiment directory: a gather meanwhile is refused.
    let mut whole = spawn(&["run", s(&toml), "--quiet"]);
    wait_locked(&unit("n", 0), &mut whole);
    refused_by(&orchard(&["run", s(&toml), "--gather"]), whole.id(), &exp);
    kill(whole);
    assert!(!exp.join("submission.csv").exists());
}

#[test]
fn a_dataset_folder_being_written_by_data_synth_refuses_a_second_synth_and_an_import() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // An ELPV package folder in miniature: labels.csv (path, defect probability, module type) and images.
    let elpv = tmp.path().join("elpv");
    std::fs::create_dir_all(elpv.join("images")).unwrap();
    let mut labels = String::new();
    for i in 0..8 {
        std::fs::write(elpv.join(format!("images/cell{i:04}.png")), b"not decoded by the import").unwrap();
        labels += &format!("images/cell{i:04}.png {} mono\n", ["0.0", "1.0"][i % 2]);
    }
    std::fs::write(elpv.join("labels.csv"), labels).unwrap();
    let import = ["data", "import-elpv", "--from", s(&elpv), "--out", s(&data)];

    // A long synth holds the folder: another synth, and an import, are refused at once naming it.
    let mut holder = spawn(&["data", "synth", "--out", s(&data), "--train", "20000", "--test", "0", "--size", "256"]);
    wait_locked(&data, &mut holder);
    let started = Instant::now();
    refused_by(&orchard(&["data", "synth", "--out", s(&data), "--train", "4", "--test", "0"]), holder.id(), &data);
    refused_by(&orchard(&import), holder.id(), &data);
    assert!(started.elapsed() < Duration::from_secs(30), "refused at once, not after waiting");
    assert!(!data.join("train.csv").exists() && !data.join("test_labels.csv").exists(), "nobody wrote a table");

    // Killed, its lock is taken over: the import then writes the folder, and releases it.
    kill(holder);
    let out = orchard(&import);
    assert!(out.status.success(), "{}", text(&out));
    assert!(data.join("train.csv").is_file() && data.join("test_labels.csv").is_file());
    assert_eq!(std::fs::read_to_string(data.join(".orchard.lock")).unwrap(), "", "released when done");
}
