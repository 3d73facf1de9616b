//! Reading, validating and describing the image datasets Orchard trains on.
//!
//! This module owns the step from "a folder somebody downloaded from Kaggle" to a [`Dataset`]: a list of
//! samples (id, image path, target vector) with a fixed class order. Everything downstream — folds, the
//! loader, training and the submission writer — trusts that list, so this is where bad input is caught, and
//! caught all at once: [`load`] never stops at the first problem, it reports every missing image, malformed
//! row, unknown label and duplicate id with file, row and column, so one run tells the user everything to fix.
//!
//! Four layouts are understood (see [`Layout`]); each has a root folder, a table or folder tree that lists
//! the samples, and an image-path template:
//!
//! * [`Layout::OneHot`] — Kaggle Plant Pathology 2020: `train.csv` = `image_id` + one 0/1 column per class,
//!   images at `images/{image_id}.jpg`, `test.csv` with `image_id` only, and `sample_submission.csv` whose
//!   columns give the class order.
//! * [`Layout::SingleLabel`] — `image,label`; the image value may already carry its extension.
//! * [`Layout::MultiLabel`] — Plant Pathology 2021: `image,labels` with space-separated labels, images in
//!   `train_images/`.
//! * [`Layout::Folders`] — `ROOT/<class>/<file>.{jpg,jpeg,png}`, or `ROOT/train/<class>/...` with an optional
//!   `ROOT/test/` beside it.
//!
//! An optional `dataset.toml` in the root overrides detection:
//!
//! ```toml
//! layout = "onehot"              # or "single-label", "multi-label", "folders"
//! task = "multi-class"           # or "multi-label" (only meaningful for one-hot columns)
//! train = "train.csv"            # the training table (a folder for "folders")
//! test = "test.csv"              # the test table (a folder for "folders")
//! images = "images/{image_id}.png"   # image path template; {column} substitutes that CSV column
//! test_images = "test/{image_id}.png" # template for the test split (default: same as images)
//! classes = ["healthy", "multiple_diseases", "rust", "scab"]   # class order (and the allowed labels)
//! ```
//!
//! Without it the layout is detected from the files and the training table's header.

mod describe;
mod folders;
mod layout;
mod skipped;
mod tables;
mod template;
mod truth;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use orchard_files::folds::Targets;
pub use orchard_files::{format_problems, FileError, Problem, Task};
use serde::Deserialize;

use crate::decode::ImageInfo;
pub use describe::{describe, Description, ImageStats, Spread};
use folders::collect_folders;
use layout::Config;
pub use skipped::{read_skipped, write_skipped, SKIPPED};
use tables::collect_table;
pub use truth::{read_truth, read_truth_with, truth_of};
use validate::finish;

/// The name of the optional file in a dataset's root that overrides layout detection.
pub const MANIFEST: &str = "dataset.toml";

/// The image file extensions the folder layout picks up (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// How a dataset lists its samples and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum Layout {
    /// `image_id` plus one 0/1 column per class (Kaggle Plant Pathology 2020).
    #[serde(rename = "onehot", alias = "one-hot")]
    OneHot,
    /// `image,label`: one class name per row.
    #[serde(rename = "single-label")]
    SingleLabel,
    /// `image,labels`: space-separated class names per row (Plant Pathology 2021).
    #[serde(rename = "multi-label")]
    MultiLabel,
    /// One folder per class.
    #[serde(rename = "folders")]
    Folders,
}

impl Layout {
    /// The name used in `dataset.toml` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Layout::OneHot => "onehot",
            Layout::SingleLabel => "single-label",
            Layout::MultiLabel => "multi-label",
            Layout::Folders => "folders",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "onehot" | "one-hot" => Ok(Layout::OneHot),
            "single-label" => Ok(Layout::SingleLabel),
            "multi-label" => Ok(Layout::MultiLabel),
            "folders" => Ok(Layout::Folders),
            other => Err(format!("unknown layout '{other}' (expected onehot, single-label, multi-label or folders)")),
        }
    }
}
/// Which part of a dataset to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The labelled training table (or class folders).
    Train,
    /// The test table (`test.csv`, else `sample_submission.csv`), or the `test/` folder; usually unlabelled.
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// One image and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The id as the dataset spells it (the `image_id`/`image` value; for folders the path below the split
    /// folder, e.g. `rust/0001.jpg`). Submissions are written with it.
    pub id: String,
    /// Where the image is: the dataset root joined with the rendered template.
    pub path: PathBuf,
    /// One value per class in [`Dataset::classes`] order: one-hot for multi-class, multi-hot for multi-label.
    /// Empty for unlabelled (test) samples.
    pub target: Vec<f32>,
    /// The image header, when [`LoadOptions::images`] read it.
    pub info: Option<ImageInfo>,
}

impl Sample {
    /// A sample whose image has not been probed.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>, target: Vec<f32>) -> Self {
        Sample { id: id.into(), path: path.into(), target, info: None }
    }

    /// Whether the sample carries a target.
    pub fn is_labelled(&self) -> bool {
        !self.target.is_empty()
    }

    /// The indices of the classes set in the target (one for multi-class, any number for multi-label).
    pub fn class_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.target.iter().enumerate().filter(|(_, &v)| v > 0.5).map(|(i, _)| i)
    }
}

/// A loaded, validated split of a dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The root folder as the user gave it.
    pub root: PathBuf,
    /// The layout it was read as.
    pub layout: Layout,
    /// Multi-class or multi-label.
    pub task: Task,
    /// Which split this is.
    pub split: Split,
    /// The class names, in the order of every target vector (and of submission columns).
    pub classes: Vec<String>,
    /// The samples, in the order of the table (folders: sorted by class, then file name).
    pub samples: Vec<Sample>,
}

impl Dataset {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Whether every sample carries a target.
    pub fn is_labelled(&self) -> bool {
        !self.samples.is_empty() && self.samples.iter().all(Sample::is_labelled)
    }

    /// The position of a class in [`Dataset::classes`].
    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }

    /// The samples' ids and targets, as fold assignment takes them.
    pub fn targets(&self) -> Targets<'_> {
        Targets {
            task: self.task,
            classes: self.classes.len(),
            samples: self.samples.iter().map(|s| (s.id.as_str(), s.target.as_slice())).collect(),
        }
    }

    /// The samples' ids, in sample order.
    pub fn ids(&self) -> Vec<String> {
        self.samples.iter().map(|s| s.id.clone()).collect()
    }

    /// How many samples have each class set, in class order (unlabelled samples count nowhere).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for sample in &self.samples {
            for c in sample.class_indices() {
                if let Some(n) = counts.get_mut(c) {
                    *n += 1;
                }
            }
        }
        counts
    }
}

/// How strictly to load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Drop rows (or image files) with problems instead of failing, listing them in [`Report::skipped`].
    /// Header problems, an empty dataset and a class without examples still fail.
    pub skip_bad: bool,
    /// How much of every image to read.
    pub images: ImageCheck,
}

/// How much of every image [`load`] reads (every image is a regular file of a bounded size in all cases).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageCheck {
    /// That the file exists: for readers that meet a bad image as they decode it anyway.
    #[default]
    Exists,
    /// The header ([`crate::decode::probe_file`]): format, size and the pixel limit, so [`describe`] can
    /// report image sizes quickly (`orchard data check --headers-only`).
    Header,
    /// Every image decoded whole ([`crate::decode::verify_file`], in parallel over the cores), so that a cut
    /// or corrupt file is found before training creates anything, not in the middle of it.
    Decode,
}

/// What [`load`] did besides returning the dataset: what it dropped and what it ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The rows (or images) that [`LoadOptions::skip_bad`] dropped, in file order.
    pub skipped: Vec<Skipped>,
    /// Things deliberately ignored, such as extra columns or non-image files, so nothing goes unmentioned.
    pub notes: Vec<String>,
}

/// A row (or image file) dropped by [`LoadOptions::skip_bad`], with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Its id, when the row had one.
    pub id: Option<String>,
    /// Its image, when the row named one.
    pub image: Option<PathBuf>,
    /// Everything wrong with it, each located at file, row and column.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Every problem of the dropped rows, sorted by file, row and column.
    pub fn skipped_problems(&self) -> Vec<Problem> {
        let mut problems: Vec<Problem> = self.skipped.iter().flat_map(|s| s.problems.iter().cloned()).collect();
        problems.sort();
        problems
    }

    /// The ids of the dropped rows (those that had one), whose rows a folds file may still list.
    pub fn skipped_ids(&self) -> Vec<String> {
        self.skipped.iter().filter_map(|s| s.id.clone()).collect()
    }
}

/// Why a dataset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The data is wrong; every problem found is listed.
    #[error("{}", format_problems(.0))]
    Invalid(Vec<Problem>),
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `dataset.toml` is malformed or contradicts itself.
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    /// Neither a table nor class folders were found.
    #[error("{root}: cannot tell the dataset layout: {reason}")]
    Undetected { root: PathBuf, reason: String },
    /// The test split was asked for but the dataset has none.
    #[error("{root}: no test split: {reason}")]
    NoTestSplit { root: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_path_buf(), source }
}

/// Loads one split of the dataset in `root`, validating it.
///
/// Every problem found is returned together in [`DatasetError::Invalid`]; with [`LoadOptions::skip_bad`] the
/// rows with problems are dropped instead and listed in [`Report::skipped`].
pub fn load(root: &Path, split: Split, options: &LoadOptions) -> Result<(Dataset, Report), DatasetError> {
    let config = Config::resolve(root)?;
    let mut report = Report::default();
    let collected = match config.layout {
        Layout::Folders => collect_folders(&config, split, &mut report)?,
        _ => collect_table(&config, split, &mut report)?,
    };
    finish(&config, split, collected, options, report)
}

impl From<FileError> for DatasetError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Invalid(problems) => DatasetError::Invalid(problems),
            FileError::Read { path, source } | FileError::Write { path, source } => DatasetError::Io { path, source },
            FileError::Format { path, message } => DatasetError::Manifest { path, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_problem_with_a_count() {
        let e = DatasetError::Invalid(vec![Problem::new("a", "one").at_row(2), Problem::new("a", "two").at_row(3)]);
        assert_eq!(e.to_string(), "2 problems:\n  a:2: one\n  a:3: two");
    }
}
