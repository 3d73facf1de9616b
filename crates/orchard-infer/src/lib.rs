//! Predictions from trained runs: the stage between training and the ensemble.
//!
//! A run directory (`orchard train --out RUN`) keeps its best model in `best.ckpt`. This crate loads it back
//! and turns images into per-image class probabilities, the prediction CSVs `orchard-ensemble` combines:
//!
//! - [`predictor`]: the one inference loop (validation during training uses it too).
//! - [`preprocess`]: torchvision's evaluation crop of single images (resize the shorter side, centre crop).
//! - [`model`]: a run's best model, rebuilt from the checkpoint's architecture, classes and weights, in the
//!   memory layout it was validated in.
//! - [`tta`]: test-time augmentation: probabilities averaged over the flips or the eight symmetries of the
//!   square, in an order-free way that makes the result exactly invariant under those symmetries.
//! - [`predict`]: the test split (several runs, e.g. the fold models of one member, averaged) or the runs'
//!   own validation folds again (out-of-fold predictions, merged), as `Predictions`.
//!
//! ```no_run
//! use orchard_infer::predict::{predict, Options, Target};
//! use orchard_infer::tta::Tta;
//!
//! let runs = ["runs/b0/fold0".into(), "runs/b0/fold1".into()];
//! let options = Options { tta: Tta::Flips, ..Options::new(Target::Test) };
//! let test = predict(&runs, "data".as_ref(), &options).unwrap();
//! test.write("b0-test.csv".as_ref()).unwrap();
//! ```

pub mod model;
pub mod predict;
pub mod predictor;
pub mod preprocess;
pub mod tta;

use std::path::PathBuf;

/// Why predictions could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Checkpoint(#[from] orchard_models::weights::checkpoint::CheckpointError),
    #[error(transparent)]
    Model(#[from] orchard_models::ModelError),
    #[error(transparent)]
    Dataset(#[from] orchard_data::dataset::DatasetError),
    #[error(transparent)]
    Decode(#[from] orchard_data::decode::DecodeError),
    /// The run's fold settings no longer fit the data (a folds file that changed, ...).
    #[error(transparent)]
    Folds(#[from] orchard_files::folds::FoldError),
    #[error(transparent)]
    File(#[from] orchard_files::FileError),
    /// A run that cannot be used as asked, naming the run directory.
    #[error("{run}: {message}")]
    Run { run: PathBuf, message: String },
    /// Options that cannot work (no runs, a zero batch, ...).
    #[error("{0}")]
    Config(String),
    /// libtorch failed in a forward pass (out of memory first), which tch reports as a panic.
    #[error("{stage} failed: {failure}{}", if failure.out_of_memory() { "; lower --batch" } else { "" })]
    Step { stage: String, failure: orchard_torch::failure::Failure },
}

impl InferError {
    /// True when the user's runs, data or options are at fault (the CLI exits with code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            InferError::Checkpoint(_) | InferError::Run { .. } | InferError::Config(_) | InferError::Folds(_) => true,
            InferError::Model(_) | InferError::Dataset(_) | InferError::Decode(_) => true,
            InferError::File(e) => e.is_bad_input(),
            InferError::Step { .. } => false,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, InferError>;
