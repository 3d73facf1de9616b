//! `orchard bench …`: images/second and peak memory, or the time of the gradient all-reduce, printed, never
//! asserted (speed is measured in benchmarks, not in tests).

mod allreduce;
mod input;
mod model;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The input pipeline: decode + resize + flips, handed to libtorch as normalised f32 batches.
    Input(input::BenchInputArgs),
    /// A registered architecture on random inputs: forward (inference), or with --train forward + backward +
    /// Adam step.
    Model(model::BenchModelArgs),
    /// The gradient all-reduce of a data-parallel step alone (run under `orchard launch`).
    Allreduce(allreduce::BenchAllreduceArgs),
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Input(args) => input::run(args),
        BenchCommand::Model(args) => model::run(args),
        BenchCommand::Allreduce(args) => allreduce::run(args),
    }
}

/// Resets the kernel's peak-RSS counter (Linux ≥ 4.0), so each phase reports its own peak.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory (VmHWM), human-readable.
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or_else(|| "unknown".to_string(), |kib| format!("{:.0} MiB", kib / 1024.0))
}
