//! `orchard report`: a finished experiment, or one training run, as one self-contained HTML page that a
//! person would rather look at than read logs. Everything is in the file: plots are inline SVG drawn with
//! plotters, thumbnails are JPEG data URIs, the style sheet is in the page, so it opens offline and can be
//! mailed or archived as it is.
//!
//! - [`load`]: what the run directory holds, read with orchard-files' types, and the dataset it trained on;
//! - [`evaluate`]: ROC curves, confusion matrix and per-class scores of a set of predictions;
//! - [`plot`]: the SVG charts (lines, heat maps, bars);
//! - [`sections`]: one module per section of the page;
//! - [`html`]: escaping, tables and the page around the sections.
//!
//! This crate does not link libtorch: a report can be made on any machine that has the run's files. The
//! caller names the libtorch version, if it knows it.

pub mod evaluate;
pub mod html;
pub mod load;
pub mod plot;
pub mod sections;

use std::path::{Path, PathBuf};

use orchard_files::{atomic, FileError};

pub use load::{Kind, Loaded};

/// The report's default file name in the run directory.
pub const REPORT: &str = "report.html";

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The directory is neither an experiment nor a training run.
    #[error("{path}: not an experiment directory (summary.json or members/) nor a training run (config.toml)")]
    NotARun { path: PathBuf },
    /// A file of the run could not be read or the report could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A chart could not be drawn.
    #[error("drawing {chart}: {message}")]
    Plot { chart: String, message: String },
}

impl ReportError {
    /// True when the user's input is at fault (not a run, unreadable files), false when writing failed.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ReportError::NotARun { .. } => true,
            ReportError::File(e) => e.is_bad_input(),
            ReportError::Plot { .. } => false,
        }
    }
}

/// What the page says about where it was made.
#[derive(Clone, Debug)]
pub struct Options {
    /// The dataset folder, instead of the one the run's configuration names.
    pub data: Option<PathBuf>,
    /// The libtorch version of the program making the report, when it links one.
    pub libtorch: Option<String>,
    /// Most images in the gallery.
    pub gallery: usize,
}

/// The gallery's default size.
pub const GALLERY: usize = 24;

impl Options {
    /// Defaults: the run's own dataset, no libtorch version, [`GALLERY`] images.
    pub fn new() -> Self {
        Options { data: None, libtorch: None, gallery: GALLERY }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

/// Reads the run directory `dir` and returns the page.
pub fn render(dir: &Path, options: &Options) -> Result<String, ReportError> {
    let loaded = load::load(dir, options.data.as_deref())?;
    html::page(&loaded, options)
}

/// Writes the report of `dir` to `out` atomically and returns what it found worth saying: the parts left
/// out, and why.
pub fn write(dir: &Path, out: &Path, options: &Options) -> Result<Vec<String>, ReportError> {
    let loaded = load::load(dir, options.data.as_deref())?;
    let page = html::page(&loaded, options)?;
    atomic::write(out, page.as_bytes()).map_err(|source| FileError::Write { path: out.to_path_buf(), source })?;
    Ok(loaded.notes)
}
