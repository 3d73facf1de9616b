//! `orchard distill`: self-distillation's soft targets, `α · out-of-fold prediction + (1 − α) · label`, for
//! `orchard train --soft-targets`. The formula is in `orchard_ensemble::distill`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use orchard_data::dataset::read_truth;
use orchard_ensemble::aligned;
use orchard_ensemble::distill::{self, DEFAULT_ALPHA};

/// Write soft targets from out-of-fold predictions and the labels.
#[derive(Args)]
pub struct DistillArgs {
    /// Out-of-fold predictions covering every training image; several files (members) are averaged.
    #[arg(long = "oof", required = true)]
    pub oofs: Vec<PathBuf>,
    /// The labels: a dataset folder, a Kaggle one-hot train CSV or an image,label(s) CSV.
    #[arg(long)]
    pub truth: PathBuf,
    /// Weight of the out-of-fold prediction (the rest is the label's).
    #[arg(long, default_value_t = DEFAULT_ALPHA)]
    pub alpha: f64,
    /// Output CSV (image_id + one column per class).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: DistillArgs) -> Result<()> {
    let oof = aligned::read_aligned(&args.oofs)?;
    let truth = read_truth(&args.truth)?;
    let soft = distill::soft_targets(&oof, &truth, args.alpha)?;
    soft.write(&args.out)?;
    outln!("wrote {} ({} rows, alpha {})", args.out.display(), soft.rows(), args.alpha)?;
    Ok(())
}
