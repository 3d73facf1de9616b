//! Kaggle submissions: written in `sample_submission.csv`'s column order and the test table's id order,
//! and checked before upload.
//!
//! Two formats, told apart by the sample submission's header:
//! - probabilities (PP2020): `image_id` + one column per class, values in [0, 1], rows summing to 1 for
//!   multi-class tasks;
//! - label lists (PP2021): `image,labels`, space-separated class names, chosen per label with a threshold
//!   picked on out-of-fold predictions to maximise that label's F1 ([`choose_thresholds`]).
//!
//! [`check`] refuses missing, duplicated or extra ids, missing, unknown or misordered columns, and values
//! that are not finite probabilities (or rows not summing to 1), naming file, row and column for each.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use orchard_files::ensemble_summary::Threshold;
use orchard_files::predictions::{compare_ids, read_ids};
use orchard_files::table::{self, Table};
use orchard_files::{atomic, FileError, Predictions, Problem, Task};

use crate::run::{Oof, Outcome};
use crate::{EnsembleError, Result};

/// How far a multi-class row's sum may be from 1 (rounding in the CSV text).
pub const ROW_SUM_TOLERANCE: f64 = 1e-6;

/// What the sample submission asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// One probability column per class, in this order.
    Probabilities {
        /// The id column's name.
        id_column: String,
        /// Class columns, in the required order.
        classes: Vec<String>,
    },
    /// An `image,labels` table with space-separated class names.
    Labels {
        /// The id column's name.
        id_column: String,
    },
}

/// A sample submission: the columns it asks for, and its ids (the id order when no test table is given).
#[derive(Debug, Clone)]
pub struct Sample {
    pub format: Format,
    /// Its file and its ids in file order.
    pub ids: TestIds,
}

impl Sample {
    /// The sample submission's file, for messages.
    pub fn file(&self) -> &Path {
        &self.ids.file
    }

    /// Reads a sample submission.
    pub fn read(path: &Path) -> Result<Sample> {
        let table = Table::read(path)?;
        let mut problems = table.problems();
        let id_column = table.headers.first().cloned().unwrap_or_default();
        if id_column != "image_id" && id_column != "image" {
            problems.push(
                table.problem(format!("the first column must be image_id (or image), found '{id_column}'")).at_row(1),
            );
        }
        let format = if table.headers.len() == 2 && table.headers[1] == "labels" {
            Format::Labels { id_column }
        } else {
            if table.headers.len() < 2 {
                problems.push(table.problem("no class columns after the id column").at_row(1));
            }
            Format::Probabilities { id_column, classes: table.headers.get(1..).unwrap_or_default().to_vec() }
        };
        let ids = read_ids(&table, 0, &mut problems);
        fail_on(problems)?;
        Ok(Sample { format, ids: TestIds { file: path.to_path_buf(), ids } })
    }
}

/// The ids a submission must have, in the order it must have them, and the file they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct TestIds {
    /// The test table (or the sample submission), for messages.
    pub file: PathBuf,
    /// Ids in file order.
    pub ids: Vec<String>,
}

impl TestIds {
    /// The ids of a test table (`image_id`, else `image`), in file order, each non-empty and unique.
    pub fn read(path: &Path) -> Result<TestIds> {
        let table = Table::read(path)?;
        let mut problems = table.problems();
        let Some(col) = table.id_column() else {
            problems.push(table.problem("the header has no image_id (or image) column").at_row(1));
            return Err(FileError::Invalid(problems).into());
        };
        let ids = read_ids(&table, col, &mut problems);
        fail_on(problems)?;
        Ok(TestIds { file: path.to_path_buf(), ids })
    }

    /// The sample submission's own ids, for when no test table is given.
    pub fn of_sample(sample: &Sample) -> TestIds {
        sample.ids.clone()
    }
}

fn fail_on(problems: Vec<Problem>) -> Result<()> {
    Ok(FileError::fail_on(problems)?)
}

/// For each class, the threshold maximising F1 of `score ≥ threshold` on the out-of-fold predictions
/// `oof` against `truth` (both `rows × n_classes`). Among the cut points between distinct scores, the best
/// F1 wins (the highest threshold on ties), and the threshold is placed halfway between the lowest score
/// predicted positive and the next lower score, so small shifts of the test scores do not flip decisions.
pub fn choose_thresholds(oof: &[f64], truth: &[f64], n_classes: usize) -> Vec<Threshold> {
    let rows = oof.len() / n_classes;
    (0..n_classes)
        .map(|c| {
            let mut pairs: Vec<(f64, bool)> =
                (0..rows).map(|r| (oof[r * n_classes + c], truth[r * n_classes + c] >= 0.5)).collect();
            pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
            let positives = pairs.iter().filter(|p| p.1).count();
            if positives == 0 {
                return Threshold { value: 1.0, f1: 0.0 };
            }
            let (mut tp, mut fp) = (0usize, 0usize);
            let mut best = Threshold { value: 1.0, f1: -1.0 };
            let mut i = 0;
            while i < pairs.len() {
                let score = pairs[i].0;
                while i < pairs.len() && pairs[i].0 == score {
                    if pairs[i].1 {
                        tp += 1
                    } else {
                        fp += 1
                    }
                    i += 1;
                }
                let f1 = 2.0 * tp as f64 / (2 * tp + fp + (positives - tp)) as f64;
                if f1 > best.f1 {
                    let value = if i < pairs.len() { (score + pairs[i].0) / 2.0 } else { score };
                    best = Threshold { value, f1 };
                }
            }
            best
        })
        .collect()
}

/// The labels of one row: every class at or above its threshold, or, when none is, the class closest to
/// its threshold (PP2021 rows always carry at least one label).
fn row_labels<'a>(probs: &[f64], thresholds: &[Threshold], classes: &'a [String]) -> Vec<&'a str> {
    let mut labels: Vec<&str> = classes
        .iter()
        .zip(probs.iter().zip(thresholds))
        .filter(|(_, (p, t))| **p >= t.value)
        .map(|(c, _)| c.as_str())
        .collect();
    if labels.is_empty() {
        let best = (0..classes.len()).fold(0, |b, i| {
            if probs[i] - thresholds[i].value > probs[b] - thresholds[b].value {
                i
            } else {
                b
            }
        });
        labels.push(&classes[best]);
    }
    labels
}

/// Writes `predictions` (read from `pred_file`) as a submission shaped like `sample`, rows in `test`'s order. Multi-class rows
/// are renormalised to sum to 1; label-list submissions need `thresholds` (one per class).
pub fn write(
    path: &Path,
    sample: &Sample,
    test: &TestIds,
    predictions: &Predictions,
    pred_file: &Path,
    task: Task,
    thresholds: Option<&[Threshold]>,
) -> Result<()> {
    let test_ids = &test.ids;
    fail_on(compare_ids(&test.file, test_ids, pred_file, &predictions.ids))?;
    let mut out = String::new();
    match &sample.format {
        Format::Probabilities { id_column, classes } => {
            let ours: HashSet<&String> = predictions.classes.iter().collect();
            if ours != classes.iter().collect::<HashSet<_>>() {
                let message = format!(
                    "classes [{}] differ from {}'s columns [{}]",
                    predictions.classes.join(", "),
                    sample.file().display(),
                    classes.join(", ")
                );
                return fail_on(vec![Problem::new(pred_file, message)]);
            }
            let mut values = predictions.reordered(test_ids, classes);
            values.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
            if task == Task::MultiClass {
                crate::combine::normalise_rows(&mut values, classes.len());
            }
            out.push_str(&table::line(std::iter::once(id_column.as_str()).chain(classes.iter().map(String::as_str))));
            for (id, row) in test_ids.iter().zip(values.chunks_exact(classes.len())) {
                let fields: Vec<String> =
                    std::iter::once(id.clone()).chain(row.iter().map(|&v| table::number(v))).collect();
                out.push_str(&table::line(fields.iter().map(String::as_str)));
            }
        }
        Format::Labels { id_column } => {
            let thresholds = thresholds.filter(|t| t.len() == predictions.classes.len()).ok_or_else(|| {
                EnsembleError::Config(format!(
                    "{} asks for label lists: thresholds (from out-of-fold predictions and the truth) are needed",
                    sample.file().display()
                ))
            })?;
            let values = predictions.reordered(test_ids, &predictions.classes);
            out.push_str(&table::line([id_column.as_str(), "labels"]));
            for (id, row) in test_ids.iter().zip(values.chunks_exact(predictions.classes.len())) {
                let labels = row_labels(row, thresholds, &predictions.classes).join(" ");
                out.push_str(&table::line([id.as_str(), labels.as_str()]));
            }
        }
    }
    atomic::write(path, out.as_bytes()).map_err(|source| FileError::Write { path: path.to_path_buf(), source })?;
    Ok(())
}

/// Writes `outcome`'s predictions (combined from the members whose first test file is `pred_file`) as a
/// submission shaped like `sample`, rows in `test`'s order. A label-list sample needs per-label thresholds,
/// chosen on the blend's out-of-fold rows against the truth (so `oof` is required then) and recorded in the
/// outcome's summary.
pub fn write_outcome(
    path: &Path,
    sample: &Sample,
    test: &TestIds,
    outcome: &mut Outcome,
    oof: Option<&Oof>,
    pred_file: &Path,
    task: Task,
) -> Result<()> {
    let k = outcome.predictions.classes.len();
    let thresholds = match (&sample.format, oof, &outcome.oof_predictions) {
        (Format::Labels { .. }, Some(oof), Some(values)) => Some(choose_thresholds(values, &oof.truth, k)),
        (Format::Labels { .. }, ..) => {
            return Err(EnsembleError::Config(format!(
                "{} asks for label lists: the thresholds are chosen on out-of-fold predictions, so give the members' \
                 out-of-fold files and the truth (--oof, --truth)",
                sample.file().display()
            )))
        }
        _ => None,
    };
    write(path, sample, test, &outcome.predictions, pred_file, task, thresholds.as_deref())?;
    outcome.summary.thresholds = thresholds;
    Ok(())
}

/// What a passing check saw.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// Rows checked.
    pub rows: usize,
    /// Columns after the id.
    pub columns: Vec<String>,
}

/// Checks the submission `pred` against the sample submission and the test ids. `task` decides whether probability rows must sum to 1; `classes`, when known, are the
/// allowed names in a label-list submission. Every problem is reported together.
pub fn check(
    sample: &Sample,
    test: &TestIds,
    pred: &Path,
    task: Task,
    classes: Option<&[String]>,
) -> Result<CheckReport> {
    match &sample.format {
        Format::Probabilities { id_column, classes: want } => {
            let (p, mut problems, lines) = Predictions::parse(pred)?;
            let mut header = vec![p.id_column.clone()];
            header.extend(p.classes.iter().cloned());
            let mut expected = vec![id_column.clone()];
            expected.extend(want.iter().cloned());
            if header != expected {
                let missing: Vec<&String> = expected.iter().filter(|c| !header.contains(c)).collect();
                let extra: Vec<&String> = header.iter().filter(|c| !expected.contains(c)).collect();
                let what = match (missing.is_empty(), extra.is_empty()) {
                    (true, true) => "columns are out of order".to_string(),
                    _ => format!("missing columns {missing:?}, unexpected columns {extra:?}"),
                };
                problems.push(
                    Problem::new(
                        pred,
                        format!("{what}: the header must be {} as in {}", expected.join(","), sample.file().display()),
                    )
                    .at_row(1),
                );
            }
            problems.extend(compare_ids(&test.file, &test.ids, pred, &p.ids));
            if task == Task::MultiClass && !p.classes.is_empty() {
                for (row, line) in p.values.chunks_exact(p.classes.len()).zip(lines) {
                    let sum: f64 = row.iter().sum();
                    if sum.is_finite() && (sum - 1.0).abs() > ROW_SUM_TOLERANCE {
                        problems.push(
                            Problem::new(pred, format!("row sums to {sum}, not 1 (multi-class probabilities)"))
                                .at_row(line),
                        );
                    }
                }
            }
            fail_on(problems)?;
            Ok(CheckReport { rows: p.rows(), columns: p.classes })
        }
        Format::Labels { id_column } => {
            let table = Table::read(pred)?;
            let mut problems = table.problems();
            if table.headers != [id_column.as_str(), "labels"] {
                problems.push(
                    table
                        .problem(format!("the header must be {id_column},labels as in {}", sample.file().display()))
                        .at_row(1),
                );
                return Err(FileError::Invalid(problems).into());
            }
            let ids = read_ids(&table, 0, &mut problems);
            for row in &table.rows {
                let labels: Vec<&str> = row.fields[1].split_whitespace().collect();
                if labels.is_empty() {
                    problems.push(table.problem("no label").at_row(row.line).in_column("labels"));
                }
                let mut seen = HashSet::new();
                for label in labels {
                    if !seen.insert(label) {
                        problems.push(
                            table
                                .problem(format!("label '{label}' appears twice"))
                                .at_row(row.line)
                                .in_column("labels"),
                        );
                    } else if classes.is_some_and(|c| !c.iter().any(|c| c == label)) {
                        problems.push(
                            table.problem(format!("unknown label '{label}'")).at_row(row.line).in_column("labels"),
                        );
                    }
                }
            }
            problems.extend(compare_ids(&test.file, &test.ids, pred, &ids));
            fail_on(problems)?;
            Ok(CheckReport { rows: ids.len(), columns: vec!["labels".into()] })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_sample_submission_is_refused_not_a_panic() {
        // Found by fuzzing (fuzz/ target csv_tables): an empty file has no header at all, and taking the
        // class columns after the id column indexed past it.
        let dir = tempfile::tempdir().unwrap();
        for text in ["", "\n\n"] {
            let path = crate::test_files::file(&dir, "sample_submission.csv", text);
            let err = Sample::read(&path).unwrap_err().to_string();
            assert!(err.contains("sample_submission.csv") && err.contains("no class columns"), "{err}");
        }
    }

    #[test]
    fn thresholds_maximise_f1_by_hand() {
        // Scores 0.9+, 0.8+, 0.7-, 0.6+, 0.1-: cut below 0.6 gives tp 3 fp 1 fn 0 -> F1 6/7, the best.
        let oof = [0.9, 0.8, 0.7, 0.6, 0.1];
        let truth = [1.0, 1.0, 0.0, 1.0, 0.0];
        let t = choose_thresholds(&oof, &truth, 1);
        assert_eq!(t[0].f1, 6.0 / 7.0);
        assert_eq!(t[0].value, (0.6 + 0.1) / 2.0);
        let none = choose_thresholds(&[0.3, 0.2], &[0.0, 0.0], 1);
        assert_eq!(none[0], Threshold { value: 1.0, f1: 0.0 });
    }

    #[test]
    fn rows_without_a_passing_label_get_the_closest() {
        let classes = ["a".to_string(), "b".to_string()];
        let t = [Threshold { value: 0.5, f1: 1.0 }, Threshold { value: 0.9, f1: 1.0 }];
        assert_eq!(row_labels(&[0.6, 0.95], &t, &classes), ["a", "b"]);
        assert_eq!(row_labels(&[0.3, 0.85], &t, &classes), ["b"]);
    }
}
