//! Ensembles built from prediction CSVs: the stage after training, before the submission.
//!
//! Training writes one CSV per member (`image_id` + one probability column per class) for its out-of-fold
//! (OOF) rows and for the test set. Everything here works on those files alone, without libtorch, so blends
//! can be explored on a laptop long after the GPUs are gone:
//!
//! - [`predictions`]: read, validate, align by id and write prediction CSVs (atomically).
//! - [`truth`]: the labels to score against (a Kaggle one-hot CSV, an `image,label(s)` CSV, or any dataset
//!   folder `orchard-data` reads) and the folds file.
//! - [`combine`]: arithmetic, weighted, rank, geometric and power means.
//! - [`cv`]: fit on K − 1 folds, score the held-out fold, for every fold.
//! - [`search`]: weights chosen on OOF predictions to maximise mean column-wise ROC AUC (Caruana's greedy
//!   selection, a pattern search over the simplex), with the honest, cross-validated estimate of the result.
//! - [`stacking`]: a multinomial logistic-regression meta-model, also cross-validated.
//! - [`run`]: one ensemble from the members' files to combined predictions and a summary.
//! - [`submission`]: write and check Kaggle submissions (sample-submission column order, test-id order;
//!   per-label thresholds for PP2021-style label lists).
//! - [`summary`]: members' and ensemble's scores, weights and the members' correlation, as JSON and text.
//! - [`spec`]: a combiner by name (command-line flags, an experiment file) validated into a [`run::Combiner`].
//! - [`distill`]: self-distillation's soft targets from out-of-fold predictions and the labels.

pub mod atomic;
pub mod combine;
pub mod cv;
pub mod distill;
pub mod predictions;
pub mod run;
pub mod search;
pub mod spec;
pub mod stacking;
pub mod submission;
pub mod summary;
pub mod table;
pub mod truth;

use std::path::PathBuf;

pub use orchard_data::dataset::{Problem, Task};

/// Why an ensemble could not be read, computed or written.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    /// Input files are wrong; every problem found is listed, each with file, row and column.
    #[error("{}", orchard_data::dataset::format_problems(.0))]
    Invalid(Vec<Problem>),
    /// An input file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An output file could not be written.
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Arguments that cannot work together (wrong number of weights, a negative power, no members, ...).
    #[error("{0}")]
    Config(String),
    /// The folds file does not fit the truth.
    #[error(transparent)]
    Folds(#[from] orchard_data::folds::FoldError),
    /// The truth dataset folder is wrong.
    #[error(transparent)]
    Dataset(#[from] orchard_data::dataset::DatasetError),
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
        !matches!(self, EnsembleError::Write { .. } | EnsembleError::Stacking(_))
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, EnsembleError>;
