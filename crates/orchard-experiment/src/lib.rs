//! Experiments: the whole job, from a dataset to a submission, described in one TOML file.
//!
//! An experiment is a list of members (architecture, input size, schedule, augmentation, starting weights:
//! any `orchard train` setting) times K folds. Each (member, fold) pair is a *unit*: one training run with
//! a fixed directory, `OUT/members/<name>/fold<i>`, and one fold assignment shared by all of them
//! (`OUT/folds.csv`). Units are independent, so they can be trained in any order, in separate processes or
//! on separate machines, and a unit that was interrupted resumes from its last checkpoint. Once every unit
//! is complete, the *gather* step predicts each member's out-of-fold rows and the test split (fold models
//! averaged, with test-time augmentation), ensembles the members with weights chosen on the out-of-fold
//! predictions, and writes the submission and a summary.
//!
//! - [`config`]: the experiment file, its members resolved into training configurations.
//! - [`units`]: the units, their status (missing, partial, complete), the fold assignment, training.
//! - [`gather`]: predictions, the ensemble, the submission, the summary and the manifest (the files are
//!   `orchard-files`').
//! - [`plan`]: the units as a Slurm job array or a Kubernetes Indexed Job.
//! - [`compare`]: other blends of the members, scored beside the ensemble (`[[ensemble.compare]]`).
//! - [`check`] and [`dry_run`]: everything a run needs checked at once, and its units' memory and time
//!   measured, without training or writing anything (`orchard run --dry-run`).
//! - [`init`]: a first experiment file chosen for a dataset, a device and weight files (`orchard init`).
//!
//! ```no_run
//! use orchard_experiment::{config::Experiment, gather, units};
//! use orchard_train::progress::Console;
//!
//! let experiment = Experiment::read("examples/synth-experiment.toml".as_ref()).unwrap();
//! let checked = units::check(&experiment).unwrap();
//! units::prepare(&experiment, &checked).unwrap();
//! for unit in experiment.units() {
//!     units::train(&experiment, &checked, unit, &mut Console::new(), None).unwrap();
//! }
//! let report = gather::gather(&experiment).unwrap();
//! println!("{}", report.text());
//! ```

pub mod check;
pub mod compare;
pub mod config;
pub mod dry_run;
pub mod gather;
mod human;
pub mod init;
pub mod plan;
pub mod units;

pub use human::{bytes_text, duration_text};

use std::path::PathBuf;

/// Why an experiment could not be read, trained or gathered.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The experiment file is wrong (syntax, unknown or conflicting settings), naming the file and member.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// A unit's training failed.
    #[error("unit {unit}: {source}")]
    Unit {
        unit: String,
        #[source]
        source: orchard_train::TrainError,
    },
    /// Units are not all complete (gathering), or an unknown unit was named.
    #[error("{0}")]
    Units(String),
    /// What checking an experiment (or the choices for a new one) found wrong, every problem at once.
    #[error("{path}: {} problem(s), nothing was run or written:\n  {}", problems.len(), problems.join("\n  "))]
    Problems { path: PathBuf, problems: Vec<String> },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file the runs wrote (checkpoint state, predictions, summaries) could not be read or written.
    #[error(transparent)]
    Files(#[from] orchard_files::FileError),
    #[error(transparent)]
    Dataset(#[from] orchard_data::dataset::DatasetError),
    #[error(transparent)]
    Folds(#[from] orchard_files::folds::FoldError),
    #[error(transparent)]
    Infer(#[from] orchard_infer::InferError),
    #[error(transparent)]
    Ensemble(#[from] orchard_ensemble::EnsembleError),
    /// Another process writes the experiment directory.
    #[error(transparent)]
    Locked(#[from] orchard_files::lock::LockError),
}

impl ExperimentError {
    /// True when the user's files or settings are at fault (the CLI exits with code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ExperimentError::File { .. }
            | ExperimentError::Units(_)
            | ExperimentError::Problems { .. }
            | ExperimentError::Dataset(_)
            | ExperimentError::Folds(_) => true,
            ExperimentError::Unit { source, .. } => source.is_bad_input(),
            ExperimentError::Infer(e) => e.is_bad_input(),
            ExperimentError::Ensemble(e) => e.is_bad_input(),
            ExperimentError::Files(e) => e.is_bad_input(),
            ExperimentError::Io { .. } => false,
            ExperimentError::Locked(e) => !matches!(e, orchard_files::lock::LockError::Io { .. }),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ExperimentError>;
