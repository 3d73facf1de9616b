//! Runs that resume from their directory alone (issue 15): the saved configuration holds absolute paths,
//! `orchard train --resume --out DIR` needs no other flag from any working directory, flags that would make
//! it another run are refused, and a directory with no run in it is refused without creating anything.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{s, synth, text};

/// `orchard` run with `args` in the working directory `cwd`.
fn orchard_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchard"))
        .args(args)
        .current_dir(cwd)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap()
}

fn succeeds(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

fn refused(out: Output, needles: &[&str]) {
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for needle in needles {
        assert!(said.contains(needle), "{needle:?} missing from: {said}");
    }
}

fn epochs_done(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().count() - 1
}

#[test]
fn a_run_started_with_relative_paths_resumes_from_anywhere_with_out_alone() {
    let tmp = tempfile::tempdir().unwrap();
    synth(&tmp.path().join("data"), 8, 0, "32", 4);
    let words = "train --data data --arch mobilenet_v2 --size 32 --batch 4 --epochs 1 --seed 7 --workers 1 \
                 --schedule constant --lr 0.002 --head-init glorot --adam-eps 1e-8 --quiet --out run";
    succeeds(orchard_in(tmp.path(), &words.split_whitespace().collect::<Vec<_>>()));
    let run = tmp.path().join("run");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    for line in ["head_init = \"glorot\"", "eps = 0.00000001"] {
        assert!(config.lines().any(|l| l.trim() == line), "{line} missing from\n{config}");
    }
    assert!(config.contains(&format!("out = \"{}\"", s(&run))), "{config}");
    assert!(config.contains(&format!("dir = \"{}\"", s(&tmp.path().join("data")))), "{config}");

    // From another directory, nothing but the run directory and a new epoch budget.
    let elsewhere = tempfile::tempdir().unwrap();
    succeeds(orchard_in(elsewhere.path(), &["train", "--resume", "--out", s(&run), "--epochs", "2", "--quiet"]));
    assert_eq!(epochs_done(&run), 2);
    let resumed = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert_eq!(resumed.replace("epochs = 2", "epochs = 1"), config, "the saved settings, the budget changed");
    // A relative --out is the run's directory too.
    succeeds(orchard_in(tmp.path(), &["train", "--resume", "--out", "run", "--epochs", "3", "--quiet"]));
    assert_eq!(epochs_done(&run), 3);
}

#[test]
fn flags_that_would_make_another_run_and_directories_without_a_run_are_refused_creating_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 8, 0, "32", 4);
    let other = synth(&tmp.path().join("other"), 8, 0, "32", 5);
    let run = tmp.path().join("run");
    let train = format!(
        "train --data {} --arch mobilenet_v2 --size 32 --batch 4 --epochs 1 --workers 1 --quiet --out {}",
        s(&data),
        s(&run)
    );
    succeeds(orchard_in(tmp.path(), &train.split_whitespace().collect::<Vec<_>>()));
    let before = std::fs::read(run.join("last.ckpt")).unwrap();
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", "--resume", "--out", s(&run)];
        args.extend_from_slice(extra);
        orchard_in(tmp.path(), &args)
    };
    let changeable = "only epochs, patience, device, workers, eval_batch and quiet may change";
    refused(resume(&["--batch", "8"]), &[&format!("cannot resume {}", s(&run)), "differs in batch;", changeable]);
    refused(
        resume(&["--data", s(&other), "--lr", "0.5"]),
        &["differs in data.dir, schedule.function.max, schedule.per_replica;"],
    );
    refused(resume(&["--arch", "efficientnet_b0"]), &["differs in model.arch;"]);
    refused(resume(&["--head-init", "glorot", "--adam-eps", "1e-8"]), &["differs in model.head_init, optimizer.eps;"]);
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, "epochs = 3\n").unwrap();
    refused(resume(&["--config", s(&config)]), &["--config cannot be given too"]);
    assert_eq!(std::fs::read(run.join("last.ckpt")).unwrap(), before, "a refused resume touches nothing");

    let none = tmp.path().join("none");
    refused(
        orchard_in(tmp.path(), &["train", "--resume", "--out", s(&none)]),
        &[&format!("cannot resume {}: no such directory", s(&none))],
    );
    assert!(!none.exists(), "nothing created");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(
        orchard_in(tmp.path(), &["train", "--resume", "--out", s(&empty)]),
        &["config.toml is missing: not a run directory"],
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "nothing written");
    refused(orchard_in(tmp.path(), &["train", "--resume"]), &["--resume needs --out DIR"]);
}

#[test]
fn an_experiments_units_save_absolute_paths_and_resume_as_plain_runs() {
    let tmp = tempfile::tempdir().unwrap();
    synth(&tmp.path().join("data"), 12, 2, "32", 6);
    std::fs::write(
        tmp.path().join("experiment.toml"),
        "data = \"data\"\nout = \"exp\"\nfolds = 2\nseed = 3\n[defaults]\nbatch = 8\nworkers = 1\nepochs = 1\n\
         [[member]]\nname = \"m\"\narch = \"mobilenet_v2\"\nsize = 32\n",
    )
    .unwrap();
    succeeds(orchard_in(tmp.path(), &["run", "experiment.toml", "--only", "m/1", "--quiet"]));
    let unit = tmp.path().join("exp/members/m/fold1");
    let config = std::fs::read_to_string(unit.join("config.toml")).unwrap();
    for line in [
        format!("out = \"{}\"", s(&unit)),
        format!("dir = \"{}\"", s(&tmp.path().join("data"))),
        format!("folds_csv = \"{}\"", s(&tmp.path().join("exp/folds.csv"))),
    ] {
        assert!(config.contains(&line), "{line} missing from:\n{config}");
    }
    let elsewhere = tempfile::tempdir().unwrap();
    succeeds(orchard_in(elsewhere.path(), &["train", "--resume", "--out", s(&unit), "--epochs", "2", "--quiet"]));
    assert_eq!(epochs_done(&unit), 2);
}
