//! `orchard run --jobs N` and `--devices LIST`: an experiment's incomplete units trained several at once,
//! each in its own `orchard run --only MEMBER/FOLD [--device D]` process on a free slot (a listed device,
//! which may be listed twice for two units; or, with `--jobs`, the members' own devices), its output in
//! `UNIT_DIR/unit.log`.
//!
//! A unit is trained exactly as alone (same configuration, same data order), so the runs equal a
//! sequential experiment's at the same thread count. When a unit fails no new unit starts; the running ones
//! finish (their work is kept) and the failures are reported together, each with its log.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use orchard_experiment::config::Experiment;
use orchard_experiment::units::{self, Unit};
use orchard_files::config::Device;

use crate::children::{describe, die_with_parent, openmp_threads};
use crate::run_progress::Overall;

/// Units of a parallel run that failed; exit code 2 when each failed on bad input.
#[derive(Debug, thiserror::Error)]
#[error("{} of the units failed:\n{}", failures.len(), failures.join("\n"))]
pub struct UnitsFailed {
    failures: Vec<String>,
    pub bad_input: bool,
}

/// A unit training in a child process.
struct Running {
    unit: Unit,
    slot: usize,
    child: Child,
    log: PathBuf,
    started: Instant,
}

/// Trains every incomplete unit of `experiment` on `slots` (a device, or `None` for the member's own), at
/// most one unit per slot at a time. `overrides` are the flags the children need to see the same experiment
/// (`--data`, `--out`).
pub fn train(experiment: &Experiment, slots: &[Option<Device>], overrides: &[OsString], quiet: bool) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut todo: VecDeque<Unit> = units::incomplete(experiment)?.into_iter().map(|(unit, _)| unit).collect();
    let total = experiment.units().len();
    let mut overall = (!quiet).then(|| Overall::new(total, total - todo.len(), slots.len()));
    let on_gpus = slots.iter().any(|d| matches!(d, Some(Device::Cuda(_))));
    let threads = if on_gpus { None } else { openmp_threads(slots.len()) };
    let mut free: Vec<usize> = (0..slots.len()).rev().collect();
    let mut running: Vec<Running> = Vec::new();
    let mut failures = Vec::new();
    let mut bad_input = true;
    loop {
        while failures.is_empty() && !free.is_empty() && !todo.is_empty() {
            let (slot, unit) = (free.pop().expect("a free slot"), todo.pop_front().expect("a unit"));
            let name = experiment.unit_name(unit);
            let dir = experiment.unit_dir(unit);
            std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            let log = dir.join("unit.log");
            let out = File::options().create(true).append(true).open(&log)?;
            let mut command = Command::new(&exe);
            command
                .arg("run")
                .arg(&experiment.file)
                .args(["--only", &name])
                .args(slots[slot].iter().flat_map(|d| ["--device".to_string(), d.to_string()]))
                .args(overrides)
                .stdout(out.try_clone()?)
                .stderr(out)
                .stdin(Stdio::null());
            if let Some(threads) = threads {
                command.env("OMP_NUM_THREADS", threads.to_string());
            }
            die_with_parent(&mut command);
            let child = command.spawn()?;
            if let Some(o) = &overall {
                o.note(&format!("unit {name}: started{} (log {})", on(slots[slot]), log.display()));
            }
            running.push(Running { unit, slot, child, log, started: Instant::now() });
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut i = 0;
        while i < running.len() {
            let Some(status) = running[i].child.try_wait()? else {
                i += 1;
                continue;
            };
            let done = running.swap_remove(i);
            free.push(done.slot);
            let name = experiment.unit_name(done.unit);
            let seconds = done.started.elapsed().as_secs_f64();
            if status.success() {
                if let Some(o) = &mut overall {
                    o.unit_done(&name, &on(slots[done.slot]), seconds);
                }
            } else {
                bad_input &= status.code() == Some(2);
                failures.push(format!(
                    "unit {name} {} after {seconds:.0} s; see {}",
                    describe(status),
                    done.log.display()
                ));
            }
        }
    }
    if let Some(o) = &overall {
        o.finish();
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(UnitsFailed { failures, bad_input }.into())
    }
}

/// " on cuda:1", or nothing for a member's own device.
fn on(slot: Option<Device>) -> String {
    slot.map(|d| format!(" on {d}")).unwrap_or_default()
}
