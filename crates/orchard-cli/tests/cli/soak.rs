//! Crash safety (issue 15): `orchard run` killed with SIGKILL at pseudo-random moments, again and again,
//! across a whole tiny experiment (training, predicting, ensembling, the submission and the report), resumed
//! each time. After every kill each file present must read whole, every run must finish once it is left to,
//! and the final submission must equal an uninterrupted run's byte for byte (CPU, f32, fixed seeds).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orchard_files::table::Table;
use orchard_files::{Predictions, RunState, TrainConfig};
use orchard_models::weights::checkpoint;

use crate::common::{ok, s, synth};

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Reads every file an experiment holds, each as what it is; panics naming the first that does not read
/// whole. Temporaries (`.orchard-*.tmp`, cleared when their directory is next written) and the lock file are
/// passed over. Returns the number of files read.
fn check_every_file(dir: &Path, when: &str) -> usize {
    if !dir.exists() {
        return 0; // killed before it made its directory (a slow start on a loaded machine)
    }
    let mut read = 0;
    for path in files(dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if (name.starts_with(".orchard-") && name.ends_with(".tmp")) || name == ".orchard.lock" {
            continue;
        }
        let text = || std::fs::read_to_string(&path).unwrap_or_else(|e| fail(when, &path, e));
        match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "ckpt" => {
                checkpoint::load::<RunState>(&path).unwrap_or_else(|e| fail(when, &path, e));
            }
            "csv" if ["folds.csv", "metrics.csv"].contains(&name.as_str()) => {
                let table = Table::read(&path).unwrap_or_else(|e| fail(when, &path, e));
                let problems = table.header_problems.len() + table.row_problems.len();
                if problems > 0 || table.rows.is_empty() || !text().ends_with('\n') {
                    fail(when, &path, format!("is not a whole table: {:?}", table.row_problems));
                }
            }
            "csv" => {
                let predictions = Predictions::read(&path).unwrap_or_else(|e| fail(when, &path, e));
                if predictions.rows() == 0 || !text().ends_with('\n') {
                    fail(when, &path, "is not a whole prediction file");
                }
            }
            "json" => {
                serde_json::from_str::<serde_json::Value>(&text()).unwrap_or_else(|e| fail(when, &path, e));
            }
            "jsonl" => {
                for line in text().lines() {
                    serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| fail(when, &path, e));
                }
            }
            "toml" => {
                TrainConfig::from_toml(&text()).unwrap_or_else(|e| fail(when, &path, e));
            }
            "txt" if !text().ends_with('\n') => fail(when, &path, "is cut short"),
            "html" if !text().trim_end().ends_with("</html>") => fail(when, &path, "is cut short"),
            "txt" | "html" => {}
            _ => fail(when, &path, "is a file the soak does not know how to check"),
        }
        read += 1;
    }
    read
}

fn fail(when: &str, path: &Path, what: impl std::fmt::Display) -> ! {
    panic!("{when}: {}: {what}", path.display())
}

/// The next number of a xorshift generator: the kill moments, the same on every run of the test.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn an_experiment_killed_twenty_times_at_random_moments_finishes_with_the_uninterrupted_submission() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 16, 4, "32", 3);
    let toml = tmp.path().join("experiment.toml");
    std::fs::write(
        &toml,
        format!(
            "data = \"{}\"\nout = \"{}\"\nfolds = 2\nseed = 5\ntta = \"flips\"\n[ensemble]\nmethod = \"search\"\n\
             [defaults]\nepochs = 3\nbatch = 8\nworkers = 1\ndevice = \"cpu\"\n\
             [[member]]\nname = \"a\"\narch = \"mobilenet_v2\"\nsize = 32\n\
             [[member]]\nname = \"b\"\narch = \"efficientnet_lite0\"\nsize = 32\n",
            s(&data),
            s(&tmp.path().join("reference"))
        ),
    )
    .unwrap();
    let started = Instant::now();
    ok(&["run", s(&toml), "--quiet"]);
    let uninterrupted = started.elapsed();
    let reference = std::fs::read(tmp.path().join("reference/submission.csv")).unwrap();

    let exp = tmp.path().join("killed");
    let (mut kills, mut finished, mut rng) = (0, 0, 0x9e37_79b9_7f4a_7c15u64);
    let (mut moments, mut span, mut kills_in_training) = (Vec::new(), uninterrupted, None);
    while kills < 20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchard"))
            .args(["run", s(&toml), "--out", s(&exp), "--quiet"])
            .env_remove("LD_LIBRARY_PATH")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A moment past the first 200 ms of starting up: in the first quarter of the whole experiment's
        // time while it trains (so that most kills fall in training), in the first half of gathering again
        // once it has finished.
        let part = if finished == 0 { 4 } else { 2 };
        let moment = Duration::from_millis(200 + next(&mut rng) % (span.as_millis() as u64 / part).max(1));
        let attempt = Instant::now();
        let deadline = Instant::now() + moment;
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "a resumed run failed after {kills} kills: {err}");
            finished += 1;
            span = attempt.elapsed();
            kills_in_training.get_or_insert(kills);
            assert!(finished <= 10, "the run finished {finished} times before being killed 20 times");
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        moments.push(moment.as_millis());
        check_every_file(&exp, &format!("after kill {kills} at {} ms", moment.as_millis()));
    }
    let out = crate::common::orchard(&["run", s(&toml), "--out", s(&exp), "--quiet"]);
    assert!(out.status.success(), "{}", crate::common::text(&out));
    let read = check_every_file(&exp, "at the end");
    assert_eq!(read, check_every_file(&tmp.path().join("reference"), "the reference"), "the same files");
    let leftovers: Vec<PathBuf> = files(&exp).into_iter().filter(|p| p.to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporaries left behind: {leftovers:?}");
    let submission = std::fs::read(exp.join("submission.csv")).unwrap();
    assert!(
        submission == reference,
        "the submission differs from the uninterrupted run's after kills at {moments:?} ms"
    );
    eprintln!(
        "soak: {kills} kills at {moments:?} ms, {} before the experiment first finished; {finished} runs \
         finished meanwhile; uninterrupted run {:.1} s, all {:.1} s",
        kills_in_training.unwrap_or(kills),
        uninterrupted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
