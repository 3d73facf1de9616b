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

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;
use serde::Deserialize;

use crate::decode::{self, Format, ImageInfo};

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

/// What a target vector means, which decides the loss, the metrics and how folds are stratified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum Task {
    /// Exactly one class per sample (targets are one-hot; softmax and cross-entropy).
    #[serde(rename = "multi-class")]
    MultiClass,
    /// Any set of classes per sample (targets are multi-hot; sigmoid and binary cross-entropy).
    #[serde(rename = "multi-label")]
    MultiLabel,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::MultiClass => "multi-class",
            Task::MultiLabel => "multi-label",
        })
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
    /// The image header, when [`LoadOptions::check_images`] probed it.
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
    /// Read every image's header ([`decode::probe_file`]) so unreadable images are caught now rather than
    /// mid-training, and [`describe`] can report image sizes. Without it, images are only checked to exist.
    pub check_images: bool,
}

/// One thing wrong with a dataset, located as precisely as the input allows.
///
/// Displays as `file:row:column: message` (`train.csv:17:healthy: row is not one-hot (sum 2)`), leaving out
/// what is unknown; without a row but with a column it reads `file: column NAME: message`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The file at fault, relative to what the user gave (the root they named joined with the file name).
    pub file: PathBuf,
    /// The 1-based line number in `file` (the header is line 1).
    pub row: Option<u64>,
    /// The column (or class name) at fault.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem with a whole file.
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Problem { file: file.into(), row: None, column: None, message: message.into() }
    }

    /// The same problem, located at a 1-based line.
    pub fn at_row(mut self, row: u64) -> Self {
        self.row = Some(row);
        self
    }

    /// The same problem, located at a column.
    pub fn in_column(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (self.row, &self.column) {
            (Some(row), Some(column)) => write!(f, ":{row}:{column}")?,
            (Some(row), None) => write!(f, ":{row}")?,
            (None, Some(column)) => write!(f, ": column {column}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// Formats a list of problems as a count line followed by one problem per line.
pub fn format_problems(problems: &[Problem]) -> String {
    let mut out = match problems.len() {
        1 => "1 problem:".to_string(),
        n => format!("{n} problems:"),
    };
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

/// What [`load`] did besides returning the dataset: what it dropped and what it ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The problems of the rows (or images) that [`LoadOptions::skip_bad`] dropped. A row with several
    /// problems appears once per problem.
    pub skipped: Vec<Problem>,
    /// How many rows (or images) were dropped.
    pub skipped_rows: usize,
    /// Things deliberately ignored, such as extra columns or non-image files, so nothing goes unmentioned.
    pub notes: Vec<String>,
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

// ---------------------------------------------------------------------------------------------------------
// Configuration: dataset.toml and detection.

/// The contents of `dataset.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    layout: Option<Layout>,
    task: Option<Task>,
    train: Option<String>,
    test: Option<String>,
    images: Option<String>,
    test_images: Option<String>,
    classes: Option<Vec<String>>,
}

/// Everything decided before reading any rows.
#[derive(Debug)]
struct Config {
    root: PathBuf,
    layout: Layout,
    task: Task,
    /// The training table (or folder), relative to the root.
    train: PathBuf,
    /// The test table (or folder) named in the manifest.
    test: Option<PathBuf>,
    images: Option<String>,
    test_images: Option<String>,
    classes: Option<Vec<String>>,
    /// The manifest's path as shown to the user, when there is one.
    manifest: Option<PathBuf>,
}

impl Config {
    fn resolve(root: &Path) -> Result<Config, DatasetError> {
        if !root.is_dir() {
            return Err(DatasetError::Io {
                path: root.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            });
        }
        let manifest_path = root.join(MANIFEST);
        let (manifest, manifest_shown) = if manifest_path.is_file() {
            let text = std::fs::read_to_string(&manifest_path).map_err(io_error(&manifest_path))?;
            let manifest: Manifest = toml::from_str(&text).map_err(|e| DatasetError::Manifest {
                path: shown(root, Path::new(MANIFEST)),
                message: e.to_string(),
            })?;
            (manifest, Some(shown(root, Path::new(MANIFEST))))
        } else {
            (Manifest::default(), None)
        };
        let manifest_error =
            |message: String| DatasetError::Manifest { path: shown(root, Path::new(MANIFEST)), message };

        if let Some(classes) = &manifest.classes {
            let mut seen = BTreeSet::new();
            for c in classes {
                if c.trim().is_empty() {
                    return Err(manifest_error("classes: empty class name".into()));
                }
                if !seen.insert(c.as_str()) {
                    return Err(manifest_error(format!("classes: '{c}' is listed twice")));
                }
            }
            if classes.is_empty() {
                return Err(manifest_error("classes: the list is empty".into()));
            }
        }

        let layout = match manifest.layout {
            Some(layout) => layout,
            None => detect(root, manifest.train.as_deref())?,
        };
        let default_train = match layout {
            Layout::Folders if root.join("train").is_dir() => "train",
            Layout::Folders => "",
            _ => "train.csv",
        };
        let train = PathBuf::from(manifest.train.clone().unwrap_or_else(|| default_train.to_string()));
        let task = match (layout, manifest.task) {
            (Layout::OneHot, task) => task.unwrap_or(Task::MultiClass),
            (Layout::MultiLabel, None | Some(Task::MultiLabel)) => Task::MultiLabel,
            (Layout::SingleLabel | Layout::Folders, None | Some(Task::MultiClass)) => Task::MultiClass,
            (layout, Some(task)) => {
                return Err(manifest_error(format!("task \"{task}\" does not fit layout \"{layout}\"")));
            }
        };
        Ok(Config {
            root: root.to_path_buf(),
            layout,
            task,
            train,
            test: manifest.test.map(PathBuf::from),
            images: manifest.images,
            test_images: manifest.test_images,
            classes: manifest.classes,
            manifest: manifest_shown,
        })
    }

    /// A path below the root as the user should see it.
    fn shown(&self, rel: &Path) -> PathBuf {
        shown(&self.root, rel)
    }
}

/// `root/rel`, without a leading `./` when the user gave `.`.
fn shown(root: &Path, rel: &Path) -> PathBuf {
    if root.as_os_str().is_empty() || root == Path::new(".") {
        rel.to_path_buf()
    } else if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Decides the layout of a dataset without a manifest (or whose manifest names no layout).
fn detect(root: &Path, train: Option<&str>) -> Result<Layout, DatasetError> {
    let table = root.join(train.unwrap_or("train.csv"));
    if table.is_file() {
        let mut reader = csv_reader(&table)?;
        let headers = reader.byte_headers().map_err(|e| csv_io(&table, e))?;
        let headers: Vec<String> = headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
        return Ok(layout_from_header(&headers));
    }
    let tree = match train {
        Some(dir) => root.join(dir),
        None if root.join("train").is_dir() => root.join("train"),
        None => root.to_path_buf(),
    };
    if tree.is_dir() && has_class_folders(&tree)? {
        return Ok(Layout::Folders);
    }
    Err(DatasetError::Undetected {
        root: root.to_path_buf(),
        reason: format!(
            "found neither {} nor class folders with images; add a {MANIFEST} naming the layout",
            train.unwrap_or("train.csv")
        ),
    })
}

/// The layout a training table's header implies: `labels` → multi-label, `label` → single-label, otherwise
/// one-hot (whose validation then reports a missing `image_id`).
fn layout_from_header(headers: &[String]) -> Layout {
    if headers.iter().any(|h| h == "labels") {
        Layout::MultiLabel
    } else if headers.iter().any(|h| h == "label") {
        Layout::SingleLabel
    } else {
        Layout::OneHot
    }
}

fn has_class_folders(dir: &Path) -> Result<bool, DatasetError> {
    for entry in read_dir_sorted(dir)? {
        if entry.is_dir() && !is_hidden(&entry) && read_dir_sorted(&entry)?.iter().any(|p| is_image_file(p)) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        entries.push(entry.map_err(io_error(dir))?.path());
    }
    entries.sort();
    Ok(entries)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

fn is_image_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

// ---------------------------------------------------------------------------------------------------------
// Collection: every layout produces candidates (one per row or image file), each carrying its own problems.

/// A row (or image file) on its way to becoming a sample.
#[derive(Debug)]
struct Candidate {
    /// Where the row is, for problems: the table (or the image file for folders).
    file: PathBuf,
    row: Option<u64>,
    /// The id column's name, to point image problems at.
    id_column: Option<String>,
    id: Option<String>,
    path: Option<PathBuf>,
    /// The class names set on the row; `None` for unlabelled rows.
    labels: Option<Vec<String>>,
    /// The column the labels came from, to point unknown-label problems at.
    label_column: Option<String>,
    target: Vec<f32>,
    info: Option<ImageInfo>,
    problems: Vec<Problem>,
}

impl Candidate {
    fn new(file: &Path, row: Option<u64>) -> Self {
        Candidate {
            file: file.to_path_buf(),
            row,
            id_column: None,
            id: None,
            path: None,
            labels: None,
            label_column: None,
            target: Vec::new(),
            info: None,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, column: Option<&str>, message: impl Into<String>) {
        let mut p = Problem::new(&self.file, message);
        p.row = self.row;
        p.column = column.map(str::to_string);
        self.problems.push(p);
    }
}

/// The output of a layout's reader.
struct Collected {
    /// The class order when the layout fixes it; `None` when classes come from the labels seen.
    classes: Option<Vec<String>>,
    candidates: Vec<Candidate>,
    /// Problems no row can be blamed for (headers, manifest, class order); never skippable.
    fatal: Vec<Problem>,
    /// The table or folder the samples came from, for dataset-wide problems.
    source: PathBuf,
}

/// A table read into memory, with per-row syntax problems.
struct Table {
    file: PathBuf,
    headers: Vec<String>,
    rows: Vec<TableRow>,
    header_problems: Vec<Problem>,
}

struct TableRow {
    line: u64,
    fields: Vec<String>,
    problem: Option<Problem>,
}

impl Table {
    fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// The id column: `image_id`, else `image`.
    fn id_column(&self) -> Option<usize> {
        self.column("image_id").or_else(|| self.column("image"))
    }
}

fn csv_reader(path: &Path) -> Result<csv::Reader<std::fs::File>, DatasetError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    Ok(csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).has_headers(true).from_reader(file))
}

fn csv_io(path: &Path, e: csv::Error) -> DatasetError {
    let source = match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other:?}")),
    };
    DatasetError::Io { path: path.to_path_buf(), source }
}

/// Reads a CSV file whole; `shown` names it in problems.
fn read_table(path: &Path, shown: &Path) -> Result<Table, DatasetError> {
    let mut reader = csv_reader(path)?;
    let mut header_problems = Vec::new();
    let mut headers = Vec::new();
    for (i, h) in reader.byte_headers().map_err(|e| csv_io(path, e))?.iter().enumerate() {
        match std::str::from_utf8(h) {
            Ok(s) => headers.push(s.to_string()),
            Err(_) => {
                header_problems.push(Problem::new(shown, format!("header field {} is not UTF-8", i + 1)).at_row(1));
                headers.push(String::from_utf8_lossy(h).into_owned());
            }
        }
    }
    if headers.iter().all(|h| h.is_empty()) {
        header_problems.push(Problem::new(shown, "empty file: no header row").at_row(1));
    }
    let mut seen = BTreeSet::new();
    for h in &headers {
        if !h.is_empty() && !seen.insert(h.as_str()) {
            header_problems.push(Problem::new(shown, "column appears twice in the header").at_row(1).in_column(h));
        }
    }
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // The csv reader only fails on I/O here (UTF-8 is checked below, lengths are flexible).
                return Err(csv_io(path, e));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let mut problem = None;
        if record.len() != headers.len() {
            problem = Some(
                Problem::new(shown, format!("row has {} fields; the header has {}", record.len(), headers.len()))
                    .at_row(line),
            );
        }
        let mut fields = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(s) => fields.push(s.to_string()),
                Err(_) => {
                    let column = headers.get(i).cloned().unwrap_or_else(|| format!("#{}", i + 1));
                    problem.get_or_insert_with(|| {
                        Problem::new(shown, "value is not valid UTF-8").at_row(line).in_column(column)
                    });
                    fields.push(String::from_utf8_lossy(field).into_owned());
                }
            }
        }
        rows.push(TableRow { line, fields, problem });
    }
    Ok(Table { file: shown.to_path_buf(), headers, rows, header_problems })
}

/// Reads only the header of a CSV file.
fn read_header(path: &Path) -> Result<Vec<String>, DatasetError> {
    let mut reader = csv_reader(path)?;
    let headers = reader.byte_headers().map_err(|e| csv_io(path, e))?;
    Ok(headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect())
}

/// An image-path template such as `images/{image_id}.jpg`, resolved against a table's columns.
#[derive(Debug)]
struct Template {
    parts: Vec<Part>,
    /// Append `.jpg` when the rendered path has no extension (the default template of the `image` layouts).
    default_jpg: bool,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Column(usize),
}

impl Template {
    /// Parses `text` against `headers`; problems name `origin` (the manifest, or the table for defaults).
    fn parse(text: &str, headers: &[String], origin: &Path, key: &str) -> Result<Template, Problem> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| Problem::new(origin, format!("{key} template \"{text}\" has an unclosed '{{'")))?;
            let name = after[..close].trim();
            let index = headers.iter().position(|h| h == name).ok_or_else(|| {
                Problem::new(origin, format!("{key} template \"{text}\" names a column the table does not have"))
                    .in_column(name)
            })?;
            parts.push(Part::Column(index));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(Problem::new(origin, format!("{key} template \"{text}\" has an unmatched '}}'")));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts, default_jpg: false })
    }

    /// Renders the relative image path of a row; the error says why the row's values make no safe path.
    fn render(&self, fields: &[String], headers: &[String]) -> Result<PathBuf, (Option<String>, String)> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Column(i) => {
                    let value = fields.get(*i).map(String::as_str).unwrap_or("");
                    let column = headers.get(*i).cloned();
                    if value.is_empty() {
                        return Err((column, "empty value".to_string()));
                    }
                    let p = Path::new(value);
                    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
                        return Err((column, format!("'{value}' is not a plain relative file name")));
                    }
                    out.push_str(value);
                }
            }
        }
        let mut path = PathBuf::from(out);
        if self.default_jpg && path.extension().is_none() {
            path.set_extension("jpg");
        }
        Ok(path)
    }
}

/// The folder the `image` layouts keep images in by default: `train_images/` (Plant Pathology 2021) when it
/// exists, else `images/`; for the test split `test_images/` when it exists.
fn default_image_dir(root: &Path, split: Split) -> &'static str {
    match split {
        Split::Test if root.join("test_images").is_dir() => "test_images",
        _ if root.join("train_images").is_dir() && split == Split::Train => "train_images",
        _ => "images",
    }
}

/// Reads the one-hot, single-label and multi-label layouts.
fn collect_table(config: &Config, split: Split, report: &mut Report) -> Result<Collected, DatasetError> {
    let mut fatal = Vec::new();
    let root = &config.root;

    // The class order (one-hot; other layouts learn classes from labels unless the manifest lists them).
    let sample_submission = root.join("sample_submission.csv");
    let classes = match config.layout {
        Layout::OneHot => onehot_classes(config, &sample_submission, &mut fatal)?,
        _ => config.classes.clone(),
    };

    // Which table to read.
    let table_rel = match split {
        Split::Train => config.train.clone(),
        Split::Test => match &config.test {
            Some(t) => t.clone(),
            None if root.join("test.csv").is_file() => PathBuf::from("test.csv"),
            None if sample_submission.is_file() => PathBuf::from("sample_submission.csv"),
            None => {
                return Err(DatasetError::NoTestSplit {
                    root: root.clone(),
                    reason: "neither test.csv nor sample_submission.csv exists".into(),
                })
            }
        },
    };
    let table_path = root.join(&table_rel);
    if !table_path.is_file() {
        return Err(DatasetError::Io {
            path: config.shown(&table_rel),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let table = read_table(&table_path, &config.shown(&table_rel))?;
    fatal.extend(table.header_problems.iter().cloned());

    // The columns this layout needs.
    let id_name = match config.layout {
        Layout::OneHot => "image_id",
        _ => "image",
    };
    let id_index = table.id_column();
    if id_index.is_none() {
        fatal.push(
            Problem::new(
                &table.file,
                format!("the header has no {id_name} column (found: {})", table.headers.join(",")),
            )
            .at_row(1)
            .in_column(id_name),
        );
    }
    let label_name = match config.layout {
        Layout::SingleLabel => "label",
        Layout::MultiLabel => "labels",
        _ => "",
    };
    let labelled = split == Split::Train;
    let mut class_indices: Vec<(String, usize)> = Vec::new();
    let mut label_index = None;
    if labelled {
        match config.layout {
            Layout::OneHot => {
                for class in classes.iter().flatten() {
                    match table.column(class) {
                        Some(i) => class_indices.push((class.clone(), i)),
                        None => fatal.push(
                            Problem::new(&table.file, "the header has no column for this class")
                                .at_row(1)
                                .in_column(class),
                        ),
                    }
                }
            }
            _ => {
                label_index = table.column(label_name);
                if label_index.is_none() {
                    fatal.push(
                        Problem::new(&table.file, format!("the header has no {label_name} column"))
                            .at_row(1)
                            .in_column(label_name),
                    );
                }
            }
        }
    }
    let used: BTreeSet<usize> =
        id_index.into_iter().chain(label_index).chain(class_indices.iter().map(|(_, i)| *i)).collect();
    let ignored: Vec<&str> = table
        .headers
        .iter()
        .enumerate()
        .filter(|(i, h)| !used.contains(i) && !h.is_empty())
        .map(|(_, h)| h.as_str())
        .collect();
    let listing_only = split == Split::Test && table_rel == Path::new("sample_submission.csv");
    if !ignored.is_empty() && !listing_only {
        report.notes.push(format!("{}: ignored columns {}", table.file.display(), ignored.join(", ")));
    }

    // The image-path template.
    let template_text = match split {
        Split::Train => config.images.as_deref(),
        Split::Test => config.test_images.as_deref().or(config.images.as_deref()),
    };
    let template = match (template_text, id_index) {
        (Some(text), _) => {
            let origin = config.manifest.clone().unwrap_or_else(|| config.shown(Path::new(MANIFEST)));
            let key = if split == Split::Test && config.test_images.is_some() { "test_images" } else { "images" };
            match Template::parse(text, &table.headers, &origin, key) {
                Ok(t) => Some(t),
                Err(p) => {
                    fatal.push(p);
                    None
                }
            }
        }
        (None, Some(id)) => {
            let mut parts = Vec::new();
            let default_jpg = match config.layout {
                Layout::OneHot => {
                    parts.push(Part::Text("images/".into()));
                    parts.push(Part::Column(id));
                    parts.push(Part::Text(".jpg".into()));
                    false
                }
                _ => {
                    parts.push(Part::Text(format!("{}/", default_image_dir(root, split))));
                    parts.push(Part::Column(id));
                    true
                }
            };
            Some(Template { parts, default_jpg })
        }
        (None, None) => None,
    };

    let (id_index, template) = match (id_index, template) {
        (Some(id_index), Some(template)) if fatal.is_empty() => (id_index, template),
        // Without the columns that say what a row means, row checks would only repeat the header problems.
        _ => return Ok(Collected { classes, candidates: Vec::new(), fatal, source: table.file }),
    };
    let id_column = table.headers[id_index].clone();

    let mut candidates = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let mut c = Candidate::new(&table.file, Some(row.line));
        c.id_column = Some(id_column.clone());
        if let Some(p) = &row.problem {
            // A ragged or undecodable row cannot be read column by column.
            c.problems.push(p.clone());
            candidates.push(c);
            continue;
        }
        let id = row.fields[id_index].clone();
        if id.is_empty() {
            c.problem(Some(&id_column), "empty id");
        } else {
            c.id = Some(id);
            match template.render(&row.fields, &table.headers) {
                Ok(p) => c.path = Some(root.join(p)),
                Err((column, message)) => c.problem(column.as_deref(), format!("no image path: {message}")),
            }
        }
        if labelled {
            match (config.layout, label_index) {
                (Layout::OneHot, _) => onehot_row(&mut c, &row.fields, &class_indices, config.task),
                (_, None) => {} // a missing label column is a fatal problem reported above
                (_, Some(label_index)) => {
                    let column = label_name;
                    let value = &row.fields[label_index];
                    c.label_column = Some(column.to_string());
                    if config.layout == Layout::SingleLabel {
                        if value.is_empty() {
                            c.problem(Some(column), "empty label");
                        } else {
                            c.labels = Some(vec![value.clone()]);
                        }
                    } else {
                        let tokens: Vec<String> = value.split_whitespace().map(str::to_string).collect();
                        if tokens.is_empty() {
                            c.problem(Some(column), "no labels");
                        } else {
                            c.labels = Some(tokens);
                        }
                    }
                }
            }
        }
        candidates.push(c);
    }
    Ok(Collected { classes, candidates, fatal, source: table.file })
}

/// Checks one one-hot row and sets its labels.
fn onehot_row(c: &mut Candidate, fields: &[String], classes: &[(String, usize)], task: Task) {
    let mut hot = Vec::new();
    let mut valid = true;
    for (class, i) in classes {
        let value = fields[*i].as_str();
        match value.parse::<f64>() {
            Ok(1.0) => hot.push(class.clone()),
            Ok(0.0) => {}
            _ => {
                valid = false;
                c.problem(Some(class), format!("value '{value}' is not 0 or 1"));
            }
        }
    }
    if !valid {
        return;
    }
    if task == Task::MultiClass && hot.len() != 1 {
        let column = (!hot.is_empty()).then(|| hot.join(","));
        c.problem(column.as_deref(), format!("row is not one-hot (sum {})", hot.len()));
        return;
    }
    c.labels = Some(hot);
}

/// The one-hot class order: the manifest's, else `sample_submission.csv`'s, else `train.csv`'s header; checks
/// that `sample_submission.csv`, when present, has the same classes as the training table.
fn onehot_classes(
    config: &Config,
    sample_submission: &Path,
    fatal: &mut Vec<Problem>,
) -> Result<Option<Vec<String>>, DatasetError> {
    let train_path = config.root.join(&config.train);
    let train_shown = config.shown(&config.train);
    let train_header = if train_path.is_file() { Some(read_header(&train_path)?) } else { None };
    let id_of = |h: &[String]| h.iter().position(|c| c == "image_id").or_else(|| h.iter().position(|c| c == "image"));
    let train_classes: Option<Vec<String>> = train_header.as_ref().map(|h| {
        let id = id_of(h);
        h.iter().enumerate().filter(|(i, c)| Some(*i) != id && !c.is_empty()).map(|(_, c)| c.clone()).collect()
    });
    let submission = if sample_submission.is_file() {
        let shown = config.shown(Path::new("sample_submission.csv"));
        let header = read_header(sample_submission)?;
        let id = id_of(&header);
        if id.is_none() {
            fatal.push(Problem::new(&shown, "the header has no image_id column").at_row(1).in_column("image_id"));
        }
        let columns: Vec<String> = header
            .iter()
            .enumerate()
            .filter(|(i, c)| Some(*i) != id && !c.is_empty())
            .map(|(_, c)| c.clone())
            .collect();
        Some((shown, columns))
    } else {
        None
    };

    // What the training table's classes are: the manifest narrows them, otherwise all non-id columns.
    let reference: Option<(PathBuf, Vec<String>)> = match (&config.classes, &train_classes) {
        // Columns beyond the listed classes are reported as ignored by the table reader.
        (Some(listed), Some(_)) => Some((train_shown.clone(), listed.clone())),
        (None, Some(columns)) => {
            if columns.is_empty() {
                fatal.push(Problem::new(&train_shown, "the header has no class columns").at_row(1));
            }
            Some((train_shown.clone(), columns.clone()))
        }
        (Some(listed), None) => Some((config.manifest.clone().unwrap_or_default(), listed.clone())),
        (None, None) => None,
    };

    match (submission, reference) {
        (Some((shown, columns)), Some((origin, classes))) => {
            let missing: Vec<&str> = classes.iter().filter(|c| !columns.contains(c)).map(String::as_str).collect();
            let extra: Vec<&str> = columns.iter().filter(|c| !classes.contains(c)).map(String::as_str).collect();
            if !missing.is_empty() || !extra.is_empty() {
                let mut message = format!(
                    "columns [{}] differ from the classes of {} [{}]",
                    columns.join(","),
                    origin.display(),
                    classes.join(",")
                );
                if !missing.is_empty() {
                    message.push_str(&format!("; missing {}", missing.join(",")));
                }
                if !extra.is_empty() {
                    message.push_str(&format!("; extra {}", extra.join(",")));
                }
                fatal.push(Problem::new(&shown, message).at_row(1));
                // Keep the training table's classes, so its rows are not blamed for the mismatch as well.
                return Ok(Some(classes));
            }
            Ok(Some(if config.classes.is_some() { classes } else { columns }))
        }
        (Some((_, columns)), None) => Ok(Some(columns)),
        (None, Some((_, classes))) => Ok(Some(classes)),
        (None, None) => {
            fatal.push(Problem::new(
                train_shown,
                "cannot determine the classes: no training table, sample_submission.csv or classes in dataset.toml",
            ));
            Ok(None)
        }
    }
}

/// Reads the folder-per-class layout.
fn collect_folders(config: &Config, split: Split, report: &mut Report) -> Result<Collected, DatasetError> {
    let root = &config.root;
    let train_dir = root.join(&config.train);
    let train_shown = config.shown(&config.train);
    let mut fatal = Vec::new();

    // Classes: the manifest's, else the training folder's subfolders, sorted.
    let mut folder_classes = Vec::new();
    if train_dir.is_dir() {
        for entry in read_dir_sorted(&train_dir)? {
            if entry.is_dir() && !is_hidden(&entry) && !(config.train.as_os_str().is_empty() && is_reserved(&entry)) {
                folder_classes.push(file_name(&entry));
            }
        }
    }
    let classes = match &config.classes {
        Some(listed) => {
            for name in &folder_classes {
                if !listed.contains(name) {
                    fatal.push(Problem::new(
                        train_shown.join(name),
                        format!("folder '{name}' is not one of the classes in {MANIFEST}"),
                    ));
                }
            }
            listed.clone()
        }
        None => folder_classes,
    };
    if classes.is_empty() {
        fatal.push(Problem::new(&train_shown, "no class folders"));
    }

    let (dir_rel, dir) = match split {
        Split::Train => (config.train.clone(), train_dir),
        Split::Test => {
            let rel = config.test.clone().unwrap_or_else(|| PathBuf::from("test"));
            let dir = root.join(&rel);
            if !dir.is_dir() {
                return Err(DatasetError::NoTestSplit {
                    root: root.clone(),
                    reason: format!("{} is not a folder", config.shown(&rel).display()),
                });
            }
            (rel, dir)
        }
    };
    let dir_shown = config.shown(&dir_rel);
    let mut candidates = Vec::new();
    let mut other_files = 0usize;
    let add = |file: &Path, id: String, class: Option<&str>, candidates: &mut Vec<Candidate>| {
        let mut c = Candidate::new(&dir_shown.join(&id), None);
        c.id = Some(id);
        c.path = Some(file.to_path_buf());
        c.labels = class.map(|c| vec![c.to_string()]);
        candidates.push(c);
    };
    for entry in read_dir_sorted(&dir)? {
        if is_hidden(&entry) {
            continue;
        }
        if entry.is_dir() {
            let class = file_name(&entry);
            if split == Split::Train && config.train.as_os_str().is_empty() && is_reserved(&entry) {
                continue;
            }
            if split == Split::Test && !classes.contains(&class) {
                fatal.push(Problem::new(dir_shown.join(&class), format!("folder '{class}' is not a known class")));
                continue;
            }
            let mut nested = 0usize;
            for file in read_dir_sorted(&entry)? {
                if is_hidden(&file) {
                    continue;
                }
                if is_image_file(&file) {
                    add(&file, format!("{class}/{}", file_name(&file)), Some(&class), &mut candidates);
                } else {
                    nested += 1;
                }
            }
            other_files += nested;
        } else if is_image_file(&entry) {
            if split == Split::Test {
                add(&entry, file_name(&entry), None, &mut candidates);
            } else {
                other_files += 1;
            }
        } else {
            other_files += 1;
        }
    }
    if other_files > 0 {
        report.notes.push(format!(
            "{}: ignored {other_files} entries that are not images in class folders (or not folders at the top)",
            dir_shown.display()
        ));
    }
    Ok(Collected { classes: Some(classes), candidates, fatal, source: dir_shown })
}

/// Folders that are never classes when class folders sit directly in the root.
fn is_reserved(path: &Path) -> bool {
    matches!(file_name(path).as_str(), "test" | "test_images")
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------
// Validation common to every layout.

fn finish(
    config: &Config,
    split: Split,
    collected: Collected,
    options: &LoadOptions,
    mut report: Report,
) -> Result<(Dataset, Report), DatasetError> {
    let Collected { classes, mut candidates, mut fatal, source } = collected;
    if !fatal.is_empty() {
        fatal.sort();
        return Err(DatasetError::Invalid(fatal));
    }

    // The test split of the label layouts needs the training classes (or the manifest's).
    let classes = match classes {
        Some(classes) => classes,
        None if split == Split::Test => train_label_classes(config)?,
        None => {
            let mut seen = BTreeSet::new();
            for c in &candidates {
                for label in c.labels.iter().flatten() {
                    seen.insert(label.clone());
                }
            }
            seen.into_iter().collect()
        }
    };
    let index: HashMap<&str, usize> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();

    // Targets, and labels outside the class list.
    for c in &mut candidates {
        let Some(labels) = c.labels.clone() else { continue };
        let mut target = vec![0.0f32; classes.len()];
        let mut unknown = Vec::new();
        for label in &labels {
            match index.get(label.as_str()) {
                Some(&i) => target[i] = 1.0,
                None => unknown.push(label.as_str()),
            }
        }
        for label in unknown {
            let column = c.label_column.clone();
            c.problem(column.as_deref(), format!("unknown label '{label}' (classes: {})", classes.join(", ")));
        }
        c.target = target;
    }

    // Duplicate ids: the later row names the earlier one.
    let mut first_seen: HashMap<String, Option<u64>> = HashMap::new();
    for c in &mut candidates {
        let Some(id) = c.id.clone() else { continue };
        match first_seen.get(&id) {
            Some(first) => {
                let column = c.id_column.clone();
                let first = first.map_or_else(|| "earlier".to_string(), |r| format!("on row {r}"));
                c.problem(column.as_deref(), format!("duplicate id '{id}' (first seen {first})"));
            }
            None => {
                first_seen.insert(id, c.row);
            }
        }
    }

    // Images: existence always, headers when asked.
    let root = &config.root;
    candidates.par_iter_mut().for_each(|c| {
        let Some(path) = c.path.clone() else { return };
        let shown_path = path.strip_prefix(root).map(|rel| shown(root, rel)).unwrap_or_else(|_| path.clone());
        let column = c.id_column.clone();
        if options.check_images {
            match decode::probe_file(&path) {
                Ok(info) => c.info = Some(info),
                Err(decode::DecodeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    c.problem(column.as_deref(), format!("image {} does not exist", shown_path.display()));
                }
                Err(e) => c.problem(column.as_deref(), format!("unreadable image: {e}")),
            }
        } else if !path.is_file() {
            c.problem(column.as_deref(), format!("image {} does not exist", shown_path.display()));
        }
    });

    // Drop or fail.
    let mut problems = Vec::new();
    let mut kept = Vec::with_capacity(candidates.len());
    for c in candidates {
        if c.problems.is_empty() {
            kept.push(c);
        } else if options.skip_bad {
            report.skipped_rows += 1;
            report.skipped.extend(c.problems);
        } else {
            problems.extend(c.problems.iter().cloned());
            kept.push(c); // still counted below, so a bad row does not also make its class look empty
        }
    }
    report.skipped.sort();

    // Dataset-wide checks.
    if kept.is_empty() {
        let why = if report.skipped_rows > 0 {
            format!("no samples left after skipping {} bad rows", report.skipped_rows)
        } else {
            "no samples".to_string()
        };
        problems.push(Problem::new(&source, why));
    } else if split == Split::Train {
        let mut counts = vec![0usize; classes.len()];
        for c in &kept {
            for (i, v) in c.target.iter().enumerate() {
                if *v > 0.5 {
                    counts[i] += 1;
                }
            }
        }
        for (class, n) in classes.iter().zip(&counts) {
            if *n == 0 {
                problems.push(Problem::new(&source, "class has no examples").in_column(class));
            }
        }
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(DatasetError::Invalid(problems));
    }

    let samples = kept
        .into_iter()
        .map(|c| Sample {
            id: c.id.unwrap_or_default(),
            path: c.path.unwrap_or_default(),
            target: c.target,
            info: c.info,
        })
        .collect();
    let dataset = Dataset { root: root.clone(), layout: config.layout, task: config.task, split, classes, samples };
    Ok((dataset, report))
}

/// The classes of a label layout's training table (sorted unique labels), for loading its test split.
fn train_label_classes(config: &Config) -> Result<Vec<String>, DatasetError> {
    let path = config.root.join(&config.train);
    let shown = config.shown(&config.train);
    if !path.is_file() {
        return Err(DatasetError::Invalid(vec![Problem::new(
            shown,
            format!("cannot determine the classes of the test split: no training table and no classes in {MANIFEST}"),
        )]));
    }
    let table = read_table(&path, &shown)?;
    let column = match config.layout {
        Layout::MultiLabel => "labels",
        _ => "label",
    };
    let Some(index) = table.column(column) else {
        return Err(DatasetError::Invalid(vec![Problem::new(
            &table.file,
            format!("the header has no {column} column"),
        )
        .at_row(1)
        .in_column(column)]));
    };
    let mut seen = BTreeSet::new();
    for row in &table.rows {
        if let Some(value) = row.fields.get(index) {
            seen.extend(value.split_whitespace().map(str::to_string));
        }
    }
    Ok(seen.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------------------
// Description.

/// Minimum, median and maximum of a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spread {
    pub min: usize,
    pub median: usize,
    pub max: usize,
}

impl Spread {
    fn of(mut values: Vec<usize>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        Some(Spread { min: values[0], median: values[values.len() / 2], max: values[values.len() - 1] })
    }
}

/// Image-size statistics over the probed images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageStats {
    /// How many images were probed.
    pub probed: usize,
    pub width: Spread,
    pub height: Spread,
    /// How many images of each format, most common first.
    pub formats: Vec<(Format, usize)>,
}

/// A summary of a dataset: sizes, class balance and image sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct Description {
    pub root: PathBuf,
    pub layout: Layout,
    pub task: Task,
    pub split: Split,
    /// The number of samples.
    pub samples: usize,
    /// How many samples carry a target.
    pub labelled: usize,
    /// Per class (in class order): the name and how many samples have it set.
    pub class_counts: Vec<(String, usize)>,
    /// For multi-label data, how many samples carry each number of labels (index = number of labels).
    pub labels_per_sample: Vec<usize>,
    /// Image sizes and formats, when the images were probed ([`LoadOptions::check_images`]).
    pub images: Option<ImageStats>,
}

/// Summarises a loaded dataset: per-class counts, and image-size statistics when the images were probed.
pub fn describe(dataset: &Dataset) -> Description {
    let labelled = dataset.samples.iter().filter(|s| s.is_labelled()).count();
    let counts = dataset.class_counts();
    let class_counts = dataset.classes.iter().cloned().zip(counts).collect();
    let mut labels_per_sample = Vec::new();
    if dataset.task == Task::MultiLabel {
        for s in dataset.samples.iter().filter(|s| s.is_labelled()) {
            let n = s.class_indices().count();
            if labels_per_sample.len() <= n {
                labels_per_sample.resize(n + 1, 0);
            }
            labels_per_sample[n] += 1;
        }
    }
    let infos: Vec<ImageInfo> = dataset.samples.iter().filter_map(|s| s.info).collect();
    let images = (!infos.is_empty()).then(|| {
        let mut formats: Vec<(Format, usize)> = Vec::new();
        for info in &infos {
            match formats.iter_mut().find(|(f, _)| *f == info.format) {
                Some((_, n)) => *n += 1,
                None => formats.push((info.format, 1)),
            }
        }
        formats.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let zero = Spread { min: 0, median: 0, max: 0 };
        ImageStats {
            probed: infos.len(),
            width: Spread::of(infos.iter().map(|i| i.width).collect()).unwrap_or(zero),
            height: Spread::of(infos.iter().map(|i| i.height).collect()).unwrap_or(zero),
            formats,
        }
    });
    Description {
        root: dataset.root.clone(),
        layout: dataset.layout,
        task: dataset.task,
        split: dataset.split,
        samples: dataset.samples.len(),
        labelled,
        class_counts,
        labels_per_sample,
        images,
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({} split): layout {}, {} task, {} samples ({} labelled), {} classes",
            self.root.display(),
            self.split,
            self.layout,
            self.task,
            self.samples,
            self.labelled,
            self.class_counts.len()
        )?;
        let width = self.class_counts.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
        if self.labelled > 0 {
            for (class, n) in &self.class_counts {
                let share = 100.0 * *n as f64 / self.labelled as f64;
                writeln!(f, "  {class:<width$}  {n:>7}  {share:5.1}%")?;
            }
        } else {
            writeln!(
                f,
                "  classes: {}",
                self.class_counts.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ")
            )?;
        }
        if !self.labels_per_sample.is_empty() {
            let parts: Vec<String> = self
                .labels_per_sample
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            writeln!(f, "  labels per sample: {}", parts.join(", "))?;
        }
        match &self.images {
            Some(s) => {
                let formats: Vec<String> = s.formats.iter().map(|(fmt, n)| format!("{fmt} {n}")).collect();
                writeln!(
                    f,
                    "  images: {} probed ({}); width min/median/max {}/{}/{}; height {}/{}/{}",
                    s.probed,
                    formats.join(", "),
                    s.width.min,
                    s.width.median,
                    s.width.max,
                    s.height.min,
                    s.height.median,
                    s.height.max
                )?;
            }
            None => writeln!(f, "  images: not probed (load with image checks for sizes)")?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_display_leaves_out_what_is_unknown() {
        let p = Problem::new("train.csv", "row is not one-hot (sum 2)").at_row(17).in_column("healthy");
        assert_eq!(p.to_string(), "train.csv:17:healthy: row is not one-hot (sum 2)");
        assert_eq!(Problem::new("train.csv", "no samples").to_string(), "train.csv: no samples");
        assert_eq!(Problem::new("a.csv", "x").at_row(3).to_string(), "a.csv:3: x");
        assert_eq!(Problem::new("a.csv", "x").in_column("rust").to_string(), "a.csv: column rust: x");
    }

    #[test]
    fn invalid_lists_every_problem_with_a_count() {
        let e = DatasetError::Invalid(vec![Problem::new("a", "one").at_row(2), Problem::new("a", "two").at_row(3)]);
        assert_eq!(e.to_string(), "2 problems:\n  a:2: one\n  a:3: two");
    }

    #[test]
    fn templates_substitute_columns_and_refuse_escapes() {
        let headers = vec!["image_id".to_string(), "site".to_string()];
        let t = Template::parse("images/{site}/{image_id}.png", &headers, Path::new("dataset.toml"), "images").unwrap();
        let fields = vec!["a1".to_string(), "north".to_string()];
        assert_eq!(t.render(&fields, &headers).unwrap(), PathBuf::from("images/north/a1.png"));
        let bad = vec!["../etc/passwd".to_string(), "x".to_string()];
        let (column, _) = t.render(&bad, &headers).unwrap_err();
        assert_eq!(column.as_deref(), Some("image_id"));
        let err = Template::parse("images/{nope}.png", &headers, Path::new("dataset.toml"), "images").unwrap_err();
        assert_eq!(err.column.as_deref(), Some("nope"));
        assert!(Template::parse("images/{image_id.png", &headers, Path::new("d"), "images").is_err());
    }

    #[test]
    fn default_image_template_appends_jpg_only_without_an_extension() {
        let headers = vec!["image".to_string()];
        let t = Template { parts: vec![Part::Text("images/".into()), Part::Column(0)], default_jpg: true };
        assert_eq!(t.render(&["abc.jpg".into()], &headers).unwrap(), PathBuf::from("images/abc.jpg"));
        assert_eq!(t.render(&["abc.png".into()], &headers).unwrap(), PathBuf::from("images/abc.png"));
        assert_eq!(t.render(&["abc".into()], &headers).unwrap(), PathBuf::from("images/abc.jpg"));
    }

    #[test]
    fn layouts_are_detected_from_headers() {
        let h = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(layout_from_header(&h("image_id,healthy,rust")), Layout::OneHot);
        assert_eq!(layout_from_header(&h("image,label")), Layout::SingleLabel);
        assert_eq!(layout_from_header(&h("image,labels")), Layout::MultiLabel);
        assert_eq!(layout_from_header(&h("id,healthy")), Layout::OneHot);
        assert_eq!("single-label".parse::<Layout>().unwrap(), Layout::SingleLabel);
        assert!("csv".parse::<Layout>().is_err());
    }

    #[test]
    fn spread_takes_the_upper_median() {
        assert_eq!(Spread::of(vec![3, 1, 2]), Some(Spread { min: 1, median: 2, max: 3 }));
        assert_eq!(Spread::of(vec![4, 1]), Some(Spread { min: 1, median: 4, max: 4 }));
        assert_eq!(Spread::of(vec![]), None);
    }
}
