//! `orchard bench …`: images/second and peak memory, the time of the gradient all-reduce, or a server's
//! requests/second and latencies, printed, never asserted (speed is measured in benchmarks, not in tests).

mod allreduce;
mod input;
mod model;
mod serve;

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
    /// `orchard serve` on loopback: requests/s and latency percentiles at several concurrencies, batched
    /// against batch size 1, and the server's memory with idle connections open.
    Serve(serve::BenchServeArgs),
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Input(args) => input::run(args),
        BenchCommand::Model(args) => model::run(args),
        BenchCommand::Allreduce(args) => allreduce::run(args),
        BenchCommand::Serve(args) => serve::run(args),
    }
}

/// Resets the kernel's peak-RSS counter (Linux ≥ 4.0), so each phase reports its own peak.
fn reset_peak_memory() {
    reset_peak_memory_of(None);
}

/// The same for process `pid` (this one when None).
fn reset_peak_memory_of(pid: Option<u32>) {
    let _ = std::fs::write(format!("{}/clear_refs", proc_dir(pid)), "5");
}

/// The process's peak resident memory (VmHWM), human-readable.
fn peak_memory() -> String {
    mib(status_kib(None, "VmHWM"))
}

/// A field of `/proc/PID/status` given in KiB (`VmRSS`, `VmHWM`), of this process when `pid` is None.
fn status_kib(pid: Option<u32>, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("{}/status", proc_dir(pid))).ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn proc_dir(pid: Option<u32>) -> String {
    pid.map_or_else(|| "/proc/self".to_string(), |pid| format!("/proc/{pid}"))
}

/// KiB as MiB, human-readable ("unknown" when not known).
fn mib(kib: Option<f64>) -> String {
    kib.map_or_else(|| "unknown".to_string(), |kib| format!("{:.0} MiB", kib / 1024.0))
}
