//! `orchard schedule`: prints the reference learning-rate function epoch by epoch, so a schedule can be
//! checked (or plotted) before spending hours training with it.

use clap::Args;
use orchard_metrics::Reference;

use crate::usage::UsageError;

/// The reference notebook's learning-rate function; defaults are its constants.
#[derive(Args)]
pub struct ScheduleArgs {
    /// Number of epochs to print.
    #[arg(long)]
    pub epochs: u32,
    /// Data-parallel replicas; the default peak learning rate is 1e-4 × replicas.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Learning rate at epoch 0 (LR_START).
    #[arg(long, default_value_t = 1e-5)]
    pub lr_start: f64,
    /// Peak learning rate (LR_MAX); default 1e-4 × replicas.
    #[arg(long)]
    pub lr_max: Option<f64>,
    /// Floor of the exponential decay (LR_MIN).
    #[arg(long, default_value_t = 1e-5)]
    pub lr_min: f64,
    /// Epochs of linear ramp-up (LR_RAMPUP_EPOCHS).
    #[arg(long, default_value_t = 15)]
    pub rampup: u32,
    /// Epochs held at the peak (LR_SUSTAIN_EPOCHS).
    #[arg(long, default_value_t = 3)]
    pub sustain: u32,
    /// Decay factor per epoch after the peak (LR_EXP_DECAY).
    #[arg(long, default_value_t = 0.8)]
    pub decay: f64,
}

/// Validates the arguments into a [`Reference`] schedule and prints `EPOCH LR` for epochs `0..epochs`.
pub fn run(args: ScheduleArgs) -> anyhow::Result<()> {
    let schedule = schedule(&args)?;
    for epoch in 0..args.epochs {
        // `{:e}` prints the shortest text that reads back as the same f64.
        outln!("{epoch} {:e}", schedule.lr(f64::from(epoch)))?;
    }
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
    for (name, value) in [
        ("--lr-start", schedule.start),
        ("--lr-max", schedule.max),
        ("--lr-min", schedule.min),
        ("--decay", schedule.exp_decay),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err(UsageError(format!("{name} must be a finite, non-negative number, got {value}")));
        }
    }
    Ok(schedule)
}
