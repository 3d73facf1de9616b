//! `orchard predict`: per-image class probabilities of trained runs, for the test split or for the runs'
//! own validation folds, with optional test-time augmentation. The work is in `orchard-infer`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use orchard_infer::predict::{self, Options, Target};

use crate::cli::UsageError;

/// Predict with trained runs.
#[derive(Args)]
pub struct PredictArgs {
    /// A run directory (`orchard train --out`); repeat for the fold models of one member.
    #[arg(long = "run", required = true)]
    pub runs: Vec<PathBuf>,
    /// Dataset folder.
    #[arg(long)]
    pub data: PathBuf,
    /// test (the test split; several runs averaged) or oof (each run's validation fold; several runs merged).
    #[arg(long, default_value = "test", value_parser = ["test", "oof"])]
    pub split: String,
    /// Test-time augmentation: none, flips (4) or dihedral (8; the flips on non-square inputs).
    #[arg(long, default_value = "none")]
    pub tta: String,
    /// Images per batch (default: each run's validation batch).
    #[arg(long)]
    pub batch: Option<usize>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Decode threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Output CSV: image_id and one probability column per class.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let target = if args.split == "oof" { Target::Oof } else { Target::Test };
    let tta = args.tta.parse().map_err(UsageError)?;
    let device = orchard_torch::parse_device(&args.device).map_err(UsageError)?;
    let options = Options { target, tta, batch: args.batch, device, workers: args.workers };
    let predictions = predict::predict(&args.runs, &args.data, &options)?;
    predictions.write(&args.out)?;
    println!("wrote {} ({} rows, {} classes, TTA {tta})", args.out.display(), predictions.rows(), predictions.classes.len());
    Ok(())
}
