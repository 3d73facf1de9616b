//! Ensembles built from prediction CSVs: the stage after training, before the submission.
//!
//! Training writes one CSV per member (`image_id` + one probability column per class) for its out-of-fold
//! (OOF) rows and for the test set. Everything here works on those files alone, without libtorch or images,
//! so blends can be explored on a laptop long after the GPUs are gone. The files themselves (predictions,
//! truth, folds, summaries) are `orchard-files`'.
//!
//! - [`aligned`]: several members' predictions on the same ids and classes.
//! - [`combine`]: arithmetic, weighted, rank, geometric and power means.
//! - [`cv`]: fit on K − 1 folds, score the held-out fold, for every fold.
//! - [`search`]: weights chosen on OOF predictions to maximise mean column-wise ROC AUC (Caruana's greedy
//!   selection, a pattern search over the simplex), with the honest, cross-validated estimate of the result.
//! - [`stacking`]: a multinomial logistic-regression meta-model, also cross-validated.
//! - [`run`]: one ensemble from the members' files to combined predictions, a summary and the fitted blend.
//! - [`submission`]: write and check Kaggle submissions (sample-submission column order, test-id order;
//!   per-label thresholds for PP2021-style label lists).
//! - [`correlation`]: how alike the members' predictions are.
//! - [`spec`]: a combiner by name (command-line flags, an experiment file) validated into a [`run::Combiner`].
//! - [`distill`]: self-distillation's soft targets from out-of-fold predictions and the labels.

pub mod aligned;
pub mod combine;
pub mod correlation;
pub mod cv;
pub mod distill;
pub mod run;
pub mod search;
pub mod spec;
pub mod stacking;
pub mod submission;
#[cfg(test)]
mod test_files;

use orchard_files::folds::FoldError;
use orchard_files::FileError;
pub use orchard_files::{Problem, Task};

/// Why an ensemble could not be read, computed or written.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    /// A prediction, truth or submission file could not be read or written, or its contents are wrong
    /// (every problem listed, each with file, row and column).
    #[error(transparent)]
    File(#[from] FileError),
    /// Arguments that cannot work together (wrong number of weights, a negative power, no members, ...).
    #[error("{0}")]
    Config(String),
    /// The folds file does not fit the truth.
    #[error(transparent)]
    Folds(#[from] FoldError),
    /// A metric could not be computed (e.g. every class lacks positives or negatives).
    #[error("metric: {0}")]
    Metric(#[from] orchard_metrics::MetricError),
    /// The stacking meta-model could not be fitted.
    #[error("stacking: {0}")]
    Stacking(String),
}

impl EnsembleError {
    /// True when the user's files or arguments are at fault (the CLI exits with code 2), false when the
    /// failure is ours or the machine's (writing, fitting).
    pub fn is_bad_input(&self) -> bool {
        match self {
            EnsembleError::File(e) => e.is_bad_input(),
            EnsembleError::Stacking(_) => false,
            EnsembleError::Config(_) | EnsembleError::Folds(_) | EnsembleError::Metric(_) => true,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, EnsembleError>;
