//! Every flag, defined once; `--help` is generated from these doc comments. These are raw arguments:
//! the commands validate them into the libraries' configurations.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "orchard", version, about = "Train, evaluate, combine and serve ensembles of CNN image classifiers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Make, import, check and split datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Measure speed (images/second) and peak memory.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// List the registered architectures.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Print the reference learning-rate schedule, one `EPOCH LR` line per epoch (epochs from 0).
    Schedule(ScheduleArgs),
    /// Train one ensemble member on one fold.
    Train(Box<crate::train_cmd::TrainArgs>),
    /// Combine members' prediction CSVs (mean, weighted, rank, geometric, power, searched weights, stacking).
    Ensemble(crate::ensemble_cmd::EnsembleArgs),
    /// Print mean column-wise ROC AUC, per-class AUC, accuracy and log loss of a prediction CSV.
    Score(crate::ensemble_cmd::ScoreArgs),
    /// Check a submission CSV.
    #[command(subcommand)]
    Submission(crate::ensemble_cmd::SubmissionCommand),
    /// Import weight files into Orchard checkpoints, and inspect them.
    #[command(subcommand)]
    Weights(crate::weights_cmd::WeightsCommand),
    /// Classify images with an architecture and a weight file (top classes, or logits as JSON).
    Classify(crate::classify_cmd::ClassifyArgs),
    /// Per-image class probabilities of trained runs (test split or out-of-fold), with optional TTA.
    Predict(crate::predict_cmd::PredictArgs),
    /// Soft targets for self-distillation: alpha · out-of-fold prediction + (1 − alpha) · label.
    Distill(crate::distill_cmd::DistillArgs),
    /// Run an experiment (members × folds, resumable), then predict, ensemble and write the submission.
    Run(crate::run_cmd::RunArgs),
}

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

#[derive(Subcommand)]
pub enum DataCommand {
    /// Write a procedural dataset in the Plant Pathology 2020 layout (leaves with rust and scab lesions).
    Synth(SynthArgs),
    /// Turn the installed `elpv-dataset` package into the one-hot layout (four defect classes).
    ImportElpv(ImportElpvArgs),
    /// Validate a dataset and print per-class counts and image-size statistics.
    Check(CheckArgs),
    /// Assign stratified k folds and write them as `image_id,fold`.
    Folds(FoldsArgs),
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of training images.
    #[arg(long, default_value_t = 400)]
    pub train: usize,
    /// Number of test images.
    #[arg(long, default_value_t = 100)]
    pub test: usize,
    /// Image size, WxH (e.g. 2048x1365) or N for square.
    #[arg(long, default_value = "512x341")]
    pub size: String,
    /// Random seed: the same seed writes identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// JPEG quality (1-100).
    #[arg(long, default_value_t = 90)]
    pub quality: i32,
}

#[derive(Args)]
pub struct ImportElpvArgs {
    /// The package's data folder, holding labels.csv and images/ (e.g. site-packages/elpv_dataset/data).
    #[arg(long)]
    pub from: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Share of each class held out as the test split.
    #[arg(long, default_value_t = 0.25)]
    pub test_fraction: f64,
    /// Random seed of the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Dataset folder.
    pub dir: PathBuf,
    /// Which split to check: train or test.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Drop bad rows and images (and count them) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
}

#[derive(Args)]
pub struct FoldsArgs {
    /// Dataset folder.
    pub dir: PathBuf,
    /// Number of folds.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Random seed of the assignment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output CSV (`image_id,fold`).
    #[arg(long)]
    pub out: PathBuf,
    /// Drop bad rows (and count them) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Name, default input size (WxH) and parameter counts with a 1000-class top and without (Keras' count:
    /// trainable weights plus batch-norm moving statistics).
    List(ModelsListArgs),
}

#[derive(Args)]
pub struct ModelsListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The input pipeline: decode + resize + flips, handed to libtorch as normalised f32 batches.
    Input(BenchInputArgs),
    /// A registered architecture on random inputs: forward (inference), or with --train forward + backward +
    /// Adam step.
    Model(BenchModelArgs),
}

#[derive(Args)]
pub struct BenchModelArgs {
    /// Architecture (`orchard models list`).
    #[arg(long)]
    pub arch: String,
    /// Input size, N or WxH.
    #[arg(long, default_value = "224")]
    pub size: String,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Time training steps (forward + backward + optimizer step) instead of inference.
    #[arg(long)]
    pub train: bool,
    /// Timed iterations, after --warmup untimed ones.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Number of classes of the head.
    #[arg(long, default_value_t = 1000)]
    pub classes: i64,
    /// channels-last (default) or contiguous.
    #[arg(long, default_value = "channels-last", value_parser = ["channels-last", "contiguous"])]
    pub layout: String,
    /// f32, bf16 or f16 (autocast).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16", "f16"])]
    pub precision: String,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Args)]
pub struct BenchInputArgs {
    /// Dataset folder.
    pub dir: PathBuf,
    /// Output size, N or WxH.
    #[arg(long, default_value = "224")]
    pub size: String,
    /// Also build the decode-once cache and time epochs read from it.
    #[arg(long)]
    pub cache: bool,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Decode threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Epochs to time (each pass over the images).
    #[arg(long, default_value_t = 2)]
    pub epochs: u64,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Augmentation: flips (the reference's random flips) or none.
    #[arg(long, default_value = "flips")]
    pub augment: String,
    /// Cache file (default: DIR/.orchard-cache/bench-WxH.cache).
    #[arg(long)]
    pub cache_file: Option<PathBuf>,
}

/// Arguments that parse but make no sense; exits with code 2 like other bad input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses `N` (square) or `WxH`.
pub fn parse_size(text: &str) -> Result<(usize, usize), UsageError> {
    let bad = || UsageError(format!("size {text:?}: expected N or WxH with positive integers, e.g. 224 or 768x512"));
    let (w, h) = match text.split_once(['x', 'X']) {
        Some((w, h)) => (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?),
        None => {
            let n = text.trim().parse().map_err(|_| bad())?;
            (n, n)
        }
    };
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(bad());
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_square_and_rectangular_and_refuse_nonsense() {
        assert_eq!(parse_size("224").unwrap(), (224, 224));
        assert_eq!(parse_size("768x512").unwrap(), (768, 512));
        for bad in ["0", "x", "12x", "-3", "99999", "2x0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
