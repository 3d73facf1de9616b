//! The checks common to every layout, once its reader has turned rows (or image files) into candidates:
//! labels against the class list, duplicate ids, images that exist (and decode whole, or their headers do,
//! when asked), classes without examples; then each candidate is kept, skipped or reported.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use orchard_files::input;
use orchard_files::table::Table;
use rayon::prelude::*;

use super::layout::{present, shown, Config};
use super::{
    Dataset, DatasetError, ImageCheck, Layout, LoadOptions, Problem, Report, Sample, Skipped, Split, MANIFEST,
};
use crate::decode;
use crate::decode::ImageInfo;

/// A row (or image file) on its way to becoming a sample.
#[derive(Debug)]
pub(super) struct Candidate {
    /// Where the row is, for problems: the table (or the image file for folders).
    pub(super) file: PathBuf,
    pub(super) row: Option<u64>,
    /// The id column's name, to point image problems at.
    pub(super) id_column: Option<String>,
    pub(super) id: Option<String>,
    pub(super) path: Option<PathBuf>,
    /// The class names set on the row; `None` for unlabelled rows.
    pub(super) labels: Option<Vec<String>>,
    /// The column the labels came from, to point unknown-label problems at.
    pub(super) label_column: Option<String>,
    pub(super) target: Vec<f32>,
    pub(super) info: Option<ImageInfo>,
    pub(super) problems: Vec<Problem>,
}

impl Candidate {
    pub(super) fn new(file: &Path, row: Option<u64>) -> Self {
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

    pub(super) fn problem(&mut self, column: Option<&str>, message: impl Into<String>) {
        let mut p = Problem::new(&self.file, message);
        p.row = self.row;
        p.column = column.map(str::to_string);
        self.problems.push(p);
    }
}

/// The output of a layout's reader.
pub(super) struct Collected {
    /// The class order when the layout fixes it; `None` when classes come from the labels seen.
    pub(super) classes: Option<Vec<String>>,
    pub(super) candidates: Vec<Candidate>,
    /// Problems no row can be blamed for (headers, manifest, class order); never skippable.
    pub(super) fatal: Vec<Problem>,
    /// The table or folder the samples came from, for dataset-wide problems.
    pub(super) source: PathBuf,
}
pub(super) fn finish(
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

    // Images, as far as asked, on every core (rayon's pool is one thread per core).
    let root = &config.root;
    candidates.par_iter_mut().for_each(|c| {
        let Some(path) = c.path.clone() else { return };
        let shown_path = path.strip_prefix(root).map(|rel| shown(root, rel)).unwrap_or_else(|_| path.clone());
        let column = c.id_column.clone();
        let read = match options.images {
            ImageCheck::Exists => (input::check(&path, input::IMAGE).map(|_| None))
                .map_err(|source| decode::DecodeError::Io { path: shown_path.clone(), source }),
            ImageCheck::Header => decode::probe_file(&path).map(Some),
            ImageCheck::Decode => decode::verify_file(&path).map(Some),
        };
        match read {
            Ok(info) => c.info = info,
            Err(decode::DecodeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                c.problem(column.as_deref(), format!("image {} does not exist", shown_path.display()));
            }
            Err(e) => c.problem(column.as_deref(), format!("unreadable image: {e}")),
        }
    });

    // Drop or fail.
    let mut problems = Vec::new();
    let mut kept = Vec::with_capacity(candidates.len());
    for mut c in candidates {
        if c.problems.is_empty() {
            kept.push(c);
        } else if options.skip_bad {
            c.problems.sort();
            report.skipped.push(Skipped { id: c.id, image: c.path, problems: c.problems });
        } else {
            problems.extend(c.problems.iter().cloned());
            kept.push(c); // still counted below, so a bad row does not also make its class look empty
        }
    }
    report.skipped.sort_by(|a, b| a.problems.first().cmp(&b.problems.first()));

    // Dataset-wide checks.
    if kept.is_empty() {
        let why = if !report.skipped.is_empty() {
            format!("no samples left after skipping {} bad rows", report.skipped.len())
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
    if !present(&path) {
        return Err(DatasetError::Invalid(vec![Problem::new(
            shown,
            format!("cannot determine the classes of the test split: no training table and no classes in {MANIFEST}"),
        )]));
    }
    let table = Table::read_as(&path, &shown)?;
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
