//! `orchard predict`: per-image class probabilities of trained runs, for the test split or for the runs'
//! own validation folds, with optional test-time augmentation. The work is in `orchard-infer`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use orchard_files::Tta;
use orchard_infer::predict::{self, Options, Target};

use crate::args::{number, DeviceArg, PrecisionArg, TtaArg};

/// Predict with trained runs.
#[derive(Args)]
pub struct PredictArgs {
    /// A run directory (`orchard train --out`); repeat for the fold models of one member.
    #[arg(long = "run", required = true)]
    pub runs: Vec<PathBuf>,
    /// Dataset folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Which images to predict.
    #[arg(long, value_enum, default_value_t = TargetArg::Test)]
    pub split: TargetArg,
    /// Test-time augmentation.
    #[arg(long, value_enum, default_value_t = TtaArg::None)]
    pub tta: TtaArg,
    /// Images per batch (default: each run's validation batch).
    #[arg(long, value_parser = number::at_least::<1, usize>)]
    pub batch: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Decode threads (default: one per core).
    #[arg(long, value_parser = number::at_least::<1, usize>)]
    pub workers: Option<usize>,
    /// The models' arithmetic: bf16 casts each model's inference form once (about 1.5x faster on CPUs with
    /// AVX-512 BF16 or AMX; probabilities within bf16 rounding, see the guide); f16 needs CUDA.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Output CSV: image_id and one probability column per class.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let target = match args.split {
        TargetArg::Test => Target::Test,
        TargetArg::Oof => Target::Oof,
    };
    let tta = Tta::from(args.tta);
    let options = Options {
        target,
        tta,
        batch: args.batch,
        device: args.device.torch(),
        workers: args.workers,
        precision: args.precision.into(),
    };
    let predictions = predict::predict(&args.runs, &args.data, &options)?;
    predictions.write(&args.out)?;
    outln!(
        "wrote {} ({} rows, {} classes, TTA {tta})",
        args.out.display(),
        predictions.rows(),
        predictions.classes.len()
    )?;
    Ok(())
}

/// `--split` of `predict`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum TargetArg {
    /// The test split; several runs (a member's fold models) are averaged.
    Test,
    /// Each run's own validation fold; several runs' folds are merged into one out-of-fold file.
    Oof,
}
