//! `orchard`: train, evaluate, combine and serve ensembles of CNN image classifiers.
//!
//! The binary is thin: `cli` names the commands; each command's module defines its flags, turns them into
//! the libraries' configurations and calls them.
//!
//! | command | module | library |
//! |---|---|---|
//! | `data synth`, `data import-elpv`, `data check`, `data folds` | `data_cmd` | orchard-demo, orchard-data, orchard-files |
//! | `bench input`, `bench model`, `bench serve` | `bench` | orchard-data, orchard-train (`serve`: `orchard serve` processes) |
//! | `models list` | `models_cmd` | orchard-models |
//! | `schedule` | `schedule_cmd` | orchard-metrics |
//! | `train` | `train_cmd` | orchard-train |
//! | `launch` | `launch_cmd` | (processes; `train` joins them) |
//! | `predict` | `predict_cmd` | orchard-infer |
//! | `ensemble`, `score`, `submission check` | `ensemble_cmd` | orchard-ensemble |
//! | `distill` | `distill_cmd` | orchard-ensemble |
//! | `weights import`, `weights inspect` | `weights_cmd` | orchard-models |
//! | `classify` | `classify_cmd` | orchard-infer |
//! | `init` | `init_cmd` | orchard-experiment |
//! | `run` (`--dry-run` too) | `run_cmd`, `parallel_units`, `run_progress` | orchard-experiment |
//! | `plan` | `plan_cmd` | orchard-experiment |
//! | `report` | `report_cmd` | orchard-report |
//! | `serve` | `serve_cmd` | orchard-serve |
//!
//! Flags several commands share, and the value types flags parse into, are in `args`; `usage` holds the error
//! of arguments that make no sense together. Exit codes: 0 success, 1 failure, 2 bad input data or usage.

#[macro_use]
mod out;

mod args;
mod bench;
mod children;
mod classify_cmd;
mod cli;
mod data_cmd;
mod distill_cmd;
mod ensemble_cmd;
mod init_cmd;
mod launch_cmd;
mod models_cmd;
mod parallel_units;
mod plan_cmd;
mod predict_cmd;
mod report_cmd;
mod run_cmd;
mod run_progress;
mod schedule_cmd;
mod serve_cmd;
mod train_cmd;
mod usage;
mod weights_cmd;

use std::process::ExitCode;

/// jemalloc, unprefixed: it replaces `malloc`/`free` for the whole process, libtorch's tensors included.
/// glibc returns every block over its mmap threshold (at most 32 MiB) to the kernel on `free`, so each step
/// of a network whose activations are larger page-faults them in afresh: about 230 MB of zeroed pages per
/// EfficientNet-B0 inference step at batch 16, a quarter of the step's CPU time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options (`MALLOC_CONF` in the environment still overrides them). Freed pages are
/// kept for reuse instead of being returned on a timer, as Intel's tuning guide for PyTorch on CPUs sets it:
/// a training or serving process reaches its working set in the first step and stays there, and any decay
/// returns pages the next step faults back in.
#[unsafe(no_mangle)]
#[used]
static malloc_conf: &u8 = &b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0"[0];

/// Returns every arena's freed pages to the kernel (jemalloc's `arena.<all>.purge`): the pages the decay
/// settings above keep, once a model's construction has freed what its inference form no longer holds
/// (InceptionResNetV2 at batch 16: 975 MiB at the peak of a steady step without it, 793 with it).
fn purge_freed_pages() {
    /// `MALLCTL_ARENAS_ALL` in jemalloc's headers: the index that names every arena.
    const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: a control name jemalloc defines, which reads and writes nothing.
    let _ = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
}

use clap::Parser;

fn main() -> ExitCode {
    passive_openmp();
    orchard_torch::memory::set_release_freed(purge_freed_pages);
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Data(cmd) => data_cmd::run(cmd),
        cli::Command::Bench(cmd) => bench::run(cmd),
        cli::Command::Models(cmd) => models_cmd::run(cmd),
        cli::Command::Schedule(args) => schedule_cmd::run(args),
        cli::Command::Train(args) => train_cmd::run(*args),
        cli::Command::Launch(args) => launch_cmd::run(args),
        cli::Command::Ensemble(args) => ensemble_cmd::run_ensemble(args),
        cli::Command::Score(args) => ensemble_cmd::run_score(args),
        cli::Command::Submission(cmd) => ensemble_cmd::run_submission(cmd),
        cli::Command::Weights(cmd) => weights_cmd::run(cmd),
        cli::Command::Classify(args) => classify_cmd::run(args),
        cli::Command::Predict(args) => predict_cmd::run(args),
        cli::Command::Distill(args) => distill_cmd::run(args),
        cli::Command::Init(args) => init_cmd::run(args),
        cli::Command::Run(args) => run_cmd::run(args),
        cli::Command::Plan(args) => plan_cmd::run(args),
        cli::Command::Report(args) => report_cmd::run(args),
        cli::Command::Serve(args) => serve_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of standard output has all it wanted (`orchard weights inspect F | head -1`).
        Err(err) if out::closed(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", message(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// libgomp's busy-wait iterations before an idle OpenMP thread sleeps (`GOMP_SPINCOUNT`; about 100 000 a
/// millisecond by libgomp's own estimate): see [`passive_openmp`].
const OPENMP_SPIN_COUNT: &str = "30000";

/// Re-executes the binary with `OMP_WAIT_POLICY=PASSIVE` and `GOMP_SPINCOUNT=30000` unless the caller set
/// either.
///
/// libgomp's default keeps an idle thread spinning for about 3 ms (300 000 iterations) after each parallel
/// region, taking the cores from the decode workers and from anything else on the machine: training
/// EfficientNet-B0 on two shared cores ran 5 to 7 times slower for it. Passive alone sleeps at once, and a
/// step's hundreds of short regions then each wait for a futex wake-up: a short spin catches the next region
/// (medians of three alternated rounds on two cores: InceptionResNetV2 inference 7.56 → 8.60 images/s,
/// EfficientNet-B0 training 17.3 → 22.3, ResNet50V2 inference 29.2 → 31.7; an EfficientNet-B0 epoch from
/// JPEGs, with its decoders on the same cores, no slower: medians 18.4 → 19.0). With the passive policy
/// libgomp never spins in a process that has more OpenMP threads than CPUs. libgomp reads the variables when
/// it is loaded, before `main`, hence the re-execution.
fn passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() || std::env::var_os("GOMP_SPINCOUNT").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)
        .exec();
    eprintln!("warning: could not re-execute with OMP_WAIT_POLICY=PASSIVE ({err}); continuing");
}

/// The error and its causes, as anyhow's `{:#}` joins them, but without a cause whose text the message
/// already holds: Orchard's errors put their cause in their own message (so that one reads whole in a list
/// of problems) and name it as their source too, which printed it twice ("No such file or directory (os
/// error 2): No such file or directory (os error 2)").
pub fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
    }
    text
}

/// 2 when the user's data (or arguments) are at fault, 1 otherwise.
fn exit_code(err: &anyhow::Error) -> u8 {
    use orchard_data::{dataset::DatasetError, decode::DecodeError};
    use orchard_demo::elpv::ElpvError;
    use orchard_demo::synth::SynthError;
    use orchard_files::lock::LockError;
    use orchard_files::{folds::FoldError, FileError};
    use orchard_models::weights::WeightsError;
    let bad_data = err.chain().any(|e| {
        e.is::<DatasetError>()
            || e.is::<DecodeError>()
            || e.is::<FoldError>()
            || e.downcast_ref::<ElpvError>().is_some_and(|e| !matches!(e, ElpvError::Locked(LockError::Io { .. })))
            || e.downcast_ref::<SynthError>().is_some_and(SynthError::is_bad_input)
            || e.is::<usage::UsageError>()
            || e.downcast_ref::<orchard_train::TrainError>().is_some_and(orchard_train::TrainError::is_bad_input)
            || e.is::<WeightsError>()
            || e.downcast_ref::<FileError>().is_some_and(FileError::is_bad_input)
    });
    let bad_ensemble_input =
        err.chain().any(|e| e.downcast_ref::<orchard_ensemble::EnsembleError>().is_some_and(|e| e.is_bad_input()));
    let bad_run_input = err.chain().any(|e| {
        e.downcast_ref::<orchard_infer::InferError>().is_some_and(orchard_infer::InferError::is_bad_input)
            || e.downcast_ref::<orchard_experiment::ExperimentError>()
                .is_some_and(orchard_experiment::ExperimentError::is_bad_input)
    });
    let bad_report =
        err.chain().any(|e| e.downcast_ref::<orchard_report::ReportError>().is_some_and(|e| e.is_bad_input()));
    let bad_serve =
        err.chain().any(|e| e.downcast_ref::<orchard_serve::ServeError>().is_some_and(|e| e.is_bad_input()));
    let bad_units = err.chain().any(|e| e.downcast_ref::<parallel_units::UnitsFailed>().is_some_and(|f| f.bad_input));
    let bad_rank_input =
        err.chain().any(|e| e.downcast_ref::<launch_cmd::RankFailed>().is_some_and(|f| f.code == Some(2)));
    if bad_data || bad_ensemble_input || bad_run_input || bad_rank_input || bad_units || bad_report || bad_serve {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let source = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = anyhow::Error::new(orchard_files::FileError::Read { path: "a.csv".into(), source });
        assert_eq!(message(&err), "a.csv: entity not found");
        let err = err.context("reading the truth");
        assert_eq!(message(&err), "reading the truth: a.csv: entity not found");
    }
}
