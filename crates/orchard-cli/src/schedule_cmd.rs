//! `orchard schedule`: prints the reference learning-rate function epoch by epoch, so a schedule can be
//! checked (or plotted) before spending hours training with it.

use std::io::Write;

use orchard_metrics::Reference;

use crate::cli::{ScheduleArgs, UsageError};

/// Validates the arguments into a [`Reference`] schedule and prints `EPOCH LR` for epochs `0..epochs`.
pub fn run(args: ScheduleArgs) -> anyhow::Result<()> {
    let schedule = schedule(&args)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for epoch in 0..args.epochs {
        // `{:e}` prints the shortest text that reads back as the same f64.
        writeln!(out, "{epoch} {:e}", schedule.lr(f64::from(epoch)))?;
    }
    out.flush()?;
    Ok(())
}

/// The schedule the arguments describe: the notebook's constants, overridden by any flag given.
fn schedule(args: &ScheduleArgs) -> Result<Reference, UsageError> {
    if args.replicas == 0 {
        return Err(UsageError("--replicas must be at least 1".into()));
    }
    let reference = Reference::keras_notebook(args.replicas);
    let schedule = Reference {
        start: args.lr_start,
        max: args.lr_max.unwrap_or(reference.max),
        min: args.lr_min,
        rampup_epochs: f64::from(args.rampup),
        sustain_epochs: f64::from(args.sustain),
        exp_decay: args.decay,
    };
    for (name, value) in [("--lr-start", schedule.start), ("--lr-max", schedule.max), ("--lr-min", schedule.min), ("--decay", schedule.exp_decay)] {
        if !value.is_finite() || value < 0.0 {
            return Err(UsageError(format!("{name} must be a finite, non-negative number, got {value}")));
        }
    }
    Ok(schedule)
}
