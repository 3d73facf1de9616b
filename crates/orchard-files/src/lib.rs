//! Every file an Orchard run or experiment writes and reads, in one crate without libtorch, so that what
//! training writes can be read back by the ensemble, a report or a server, on any machine.
//!
//! - [`problem`]: a problem located at file, row and column, and the lists of them readers report at once;
//! - [`input`]: every file a user names is opened through it: regular files only, each with a size bound;
//! - [`atomic`]: whole-file writes through a temporary and a rename, so nothing is ever half-written;
//! - [`table`]: CSV tables read whole with line numbers (and CSV text written back);
//! - [`predictions`] and [`truth`]: prediction CSVs (`image_id` + a probability per class) and labels;
//! - [`folds`]: the stratified fold assignment, `folds.csv`, and the rule that splits a run's data;
//! - [`config`]: a training run's configuration (`config.toml`), with the augmentation and device settings;
//! - [`lock`]: one writer per run or experiment directory (a kernel lock on a file naming its holder);
//! - [`history`] and [`state`]: per-epoch metrics files and the run state inside checkpoints;
//! - [`experiment_file`]: the experiment file (`orchard run`), its members resolved into training
//!   configurations;
//! - [`ensemble_summary`], [`experiment_summary`]: what ensembles and experiments report, as JSON and text;
//! - [`manifest`]: a finished experiment, versioned, as a server loads it; [`tta`]: test-time augmentation
//!   by name.

pub mod atomic;
pub mod config;
pub mod ensemble_summary;
pub mod experiment_file;
pub mod experiment_summary;
pub mod folds;
pub mod history;
pub mod input;
pub mod lock;
pub mod manifest;
pub mod predictions;
pub mod problem;
pub mod state;
pub mod table;
mod task;
#[cfg(test)]
mod test_files;
pub mod truth;
pub mod tta;

use std::path::{Path, PathBuf};

pub use config::TrainConfig;
pub use predictions::Predictions;
pub use problem::{format_problems, Problem};
pub use state::RunState;
pub use task::Task;
pub use truth::Truth;
pub use tta::Tta;

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file's contents are wrong; every problem found is listed, each with file, row and column.
    #[error("{}", format_problems(.0))]
    Invalid(Vec<Problem>),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not what it should be as a whole (not a checkpoint, malformed JSON, a manifest whose parts
    /// do not fit).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

impl FileError {
    /// `Ok` when there are no problems, otherwise all of them, sorted by file, row and column.
    pub fn fail_on(mut problems: Vec<Problem>) -> Result<(), FileError> {
        if problems.is_empty() {
            return Ok(());
        }
        problems.sort();
        Err(FileError::Invalid(problems))
    }

    /// True when the user's file is at fault (bad contents, an unreadable input), false when writing failed.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, FileError::Write { .. })
    }
}

/// Writes `value` as pretty JSON to `path` and `text` beside it (`path` with extension `.txt`), atomically.
pub(crate) fn write_json_and_text<T: serde::Serialize>(path: &Path, value: &T, text: &str) -> Result<(), FileError> {
    let json = serde_json::to_string_pretty(value).expect("summaries serialise") + "\n";
    let write = |path: &Path, bytes: &[u8]| {
        atomic::write(path, bytes).map_err(|source| FileError::Write { path: path.to_path_buf(), source })
    };
    write(path, json.as_bytes())?;
    write(&path.with_extension("txt"), text.as_bytes())
}

/// Reads JSON from `path` into a `T`, naming the file when it is not one.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, FileError> {
    let text = input::read_to_string(path, input::TEXT)
        .map_err(|source| FileError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| FileError::Format { path: path.to_path_buf(), message: e.to_string() })
}
