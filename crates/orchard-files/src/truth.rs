//! The labels predictions are scored against, and the folds their out-of-fold rows came from.
//!
//! A truth file is a Kaggle one-hot CSV (`image_id` + one 0/1 column per class; soft targets in [0, 1] are
//! accepted), an `image,label` CSV or a PP2021-style `image,labels` CSV with space-separated labels. (A
//! dataset folder is a truth too: `orchard-data` reads it into the same [`Truth`].) The task comes from the
//! labels: label lists say it, a one-hot file whose rows all sum to 1 is multi-class.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::folds::{self, FoldError};
use crate::predictions::{compare_ids, read_ids};
use crate::table::Table;
use crate::{FileError, Problem, Task};

/// Labels of the training images.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// Where they came from, for messages.
    pub file: PathBuf,
    /// Class names, in column order.
    pub classes: Vec<String>,
    /// Image ids, in row order.
    pub ids: Vec<String>,
    /// `ids × classes` targets, row-major (one-hot, multi-hot or soft).
    pub values: Vec<f64>,
    /// Multi-class (one class per image) or multi-label.
    pub task: Task,
    /// True when the classes were gathered from label lists, so a class nobody carries is simply absent.
    pub from_labels: bool,
    /// Ids taken out with [`Truth::without`] (rows `--skip-bad` dropped): a folds file's rows of them are
    /// passed over.
    pub left_out: Vec<String>,
}

impl Truth {
    /// Reads a truth CSV file.
    pub fn read_csv(path: &Path) -> Result<Truth, FileError> {
        let table = Table::read(path)?;
        let mut problems = table.problems();
        let truth = if let Some(col) = table.column("labels") {
            from_label_lists(&table, col, Task::MultiLabel, &mut problems)
        } else if let Some(col) = table.column("label") {
            from_label_lists(&table, col, Task::MultiClass, &mut problems)
        } else {
            from_one_hot(&table, &mut problems)
        };
        FileError::fail_on(problems)?;
        Ok(truth)
    }

    /// The targets on `ids` (rows) and `classes` (columns) of a prediction file `pred_file`. The id sets
    /// must be equal; every truth class must be predicted, and every predicted class must be a truth class
    /// (a class absent from label lists is allowed and counts as never present).
    pub fn aligned(&self, pred_file: &Path, ids: &[String], classes: &[String]) -> Result<Vec<f64>, FileError> {
        let mut problems = compare_ids(&self.file, &self.ids, pred_file, ids);
        if let Some(missing) = problems.iter_mut().find(|p| p.message.contains(" are missing: ")) {
            missing.message.push_str(
                " (rows a --skip-bad run dropped have no prediction: pass its skipped.csv with --skipped to leave \
                 them out)",
            );
        }
        for c in self.classes.iter().filter(|c| !classes.contains(c)) {
            let message = format!("no column for class '{c}' of {}", self.file.display());
            problems.push(Problem::new(pred_file, message).at_row(1));
        }
        if !self.from_labels {
            for c in classes.iter().filter(|c| !self.classes.contains(c)) {
                let message = format!("class '{c}' is not in {}", self.file.display());
                problems.push(Problem::new(pred_file, message).at_row(1).in_column(c));
            }
        }
        FileError::fail_on(problems)?;
        let k = self.classes.len();
        let row_of: HashMap<&str, usize> = self.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let cols: Vec<Option<usize>> = classes.iter().map(|c| self.classes.iter().position(|x| x == c)).collect();
        let mut out = Vec::with_capacity(ids.len() * classes.len());
        for id in ids {
            let r = row_of[id.as_str()];
            out.extend(cols.iter().map(|c| c.map_or(0.0, |c| self.values[r * k + c])));
        }
        Ok(out)
    }

    /// Reads a folds file (`image_id,fold`, as `orchard data folds` writes) for these labels and returns the
    /// fold of each of `ids` (a permutation of the truth's ids, as [`Truth::aligned`] checks).
    pub fn folds(&self, path: &Path, ids: &[String]) -> Result<Vec<usize>, FoldError> {
        let assignment = folds::read_csv_without(path, &self.ids, &self.left_out)?;
        let fold_of: HashMap<&str, usize> = self.ids.iter().map(String::as_str).zip(assignment).collect();
        Ok(ids.iter().map(|id| fold_of[id.as_str()]).collect())
    }
}

impl Truth {
    /// The truth without the rows of `ids` (those in it; the others are ignored), which are remembered in
    /// [`Truth::left_out`]; returns how many rows went.
    pub fn without(&mut self, ids: &[String]) -> usize {
        let gone: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let k = self.classes.len();
        let keep: Vec<bool> = self.ids.iter().map(|id| !gone.contains(id.as_str())).collect();
        let mut values = Vec::with_capacity(self.values.len());
        for (row, _) in self.values.chunks_exact(k.max(1)).zip(&keep).filter(|(_, &k)| k) {
            values.extend_from_slice(row);
        }
        let before = self.ids.len();
        let mut i = 0;
        self.ids.retain(|_| (keep[i], i += 1).0);
        self.values = values;
        self.left_out.extend(ids.iter().cloned());
        before - self.ids.len()
    }
}

/// `image_id` (or `image`) first, then one target column per class.
fn from_one_hot(table: &Table, problems: &mut Vec<Problem>) -> Truth {
    let id = table.headers.first().map(String::as_str).unwrap_or_default();
    if id != "image_id" && id != "image" {
        problems.push(table.problem(format!("the first column must be image_id (or image), found '{id}'")).at_row(1));
    }
    let classes: Vec<String> = table.headers.iter().skip(1).cloned().collect();
    if classes.is_empty() {
        problems.push(table.problem("no class columns after the id column").at_row(1));
    }
    let ids = read_ids(table, 0, problems);
    let mut values = Vec::with_capacity(ids.len() * classes.len());
    let mut all_sum_to_one = true;
    for row in &table.rows {
        let mut sum = 0.0;
        for (class, field) in classes.iter().zip(&row.fields[1..]) {
            let v = match field.parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => v,
                _ => {
                    let message = format!("target '{field}' is not a number in [0, 1]");
                    problems.push(table.problem(message).at_row(row.line).in_column(class));
                    0.0
                }
            };
            sum += v;
            values.push(v);
        }
        all_sum_to_one &= (sum - 1.0).abs() <= 1e-6;
    }
    let task = if all_sum_to_one { Task::MultiClass } else { Task::MultiLabel };
    Truth { file: table.file.clone(), classes, ids, values, task, from_labels: false, left_out: Vec::new() }
}

/// `image,label` (one class per row) or `image,labels` (space-separated classes); classes sorted by name.
fn from_label_lists(table: &Table, col: usize, task: Task, problems: &mut Vec<Problem>) -> Truth {
    let empty = || Truth {
        file: table.file.clone(),
        classes: vec![],
        ids: vec![],
        values: vec![],
        task,
        from_labels: true,
        left_out: vec![],
    };
    let Some(id_col) = table.id_column() else {
        problems.push(table.problem("the header has no image (or image_id) column").at_row(1));
        return empty();
    };
    let ids = read_ids(table, id_col, problems);
    let labels: Vec<Vec<&str>> = table.rows.iter().map(|r| r.fields[col].split_whitespace().collect()).collect();
    let classes: Vec<String> =
        labels.iter().flatten().copied().collect::<BTreeSet<_>>().into_iter().map(String::from).collect();
    let mut values = vec![0.0; ids.len() * classes.len()];
    for (r, (row, labels)) in table.rows.iter().zip(&labels).enumerate() {
        if labels.is_empty() || (task == Task::MultiClass && labels.len() != 1) {
            let want = if task == Task::MultiClass { "exactly one label" } else { "at least one label" };
            let message = format!("{want} expected, found '{}'", row.fields[col]);
            problems.push(table.problem(message).at_row(row.line).in_column(&table.headers[col]));
        }
        for label in labels {
            let c = classes.binary_search_by(|x| x.as_str().cmp(label)).expect("gathered above");
            values[r * classes.len() + c] = 1.0;
        }
    }
    Truth { file: table.file.clone(), classes, ids, values, task, from_labels: true, left_out: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::file;

    #[test]
    fn rows_left_out_go_from_the_targets_and_from_a_folds_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut truth = Truth::read_csv(&file(&dir, "t.csv", "image_id,a,b\nx,1,0\nbad,0,1\ny,0,1\nz,1,0\n")).unwrap();
        let folds = file(&dir, "f.csv", "image_id,fold\nx,0\nbad,1\ny,1\nz,0\n");
        let ids = ["z", "y", "x"].map(String::from);
        let err = truth.aligned(Path::new("oof.csv"), &ids, &truth.classes.clone()).unwrap_err().to_string();
        assert!(err.contains("'bad'") && err.contains("--skipped"), "{err}");
        assert_eq!(truth.without(&["bad".to_string(), "elsewhere".to_string()]), 1);
        assert_eq!(truth.ids, ["x", "y", "z"]);
        let aligned = truth.aligned(Path::new("oof.csv"), &ids, &["b".to_string(), "a".to_string()]).unwrap();
        assert_eq!(aligned, [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(truth.folds(&folds, &ids).unwrap(), [0, 1, 0]);
    }

    #[test]
    fn one_hot_and_label_files_and_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let onehot = file(&dir, "train.csv", "image_id,a,b\nX,1,0\nY,0,1\n");
        let t = Truth::read_csv(&onehot).unwrap();
        assert_eq!((t.task, t.classes.clone()), (Task::MultiClass, vec!["a".to_string(), "b".to_string()]));
        let ids = ["Y".to_string(), "X".to_string()];
        assert_eq!(t.aligned(Path::new("p.csv"), &ids, &["b".into(), "a".into()]).unwrap(), [1.0, 0.0, 0.0, 1.0]);
        let err = t.aligned(Path::new("p.csv"), &ids[..1], &["a".into(), "c".into()]).unwrap_err().to_string();
        assert!(
            err.contains("are missing: 'X'")
                && err.contains("no column for class 'b'")
                && err.contains("'c' is not in"),
            "{err}"
        );

        let folds = file(&dir, "folds.csv", "image_id,fold\nX,1\nY,0\n");
        assert_eq!(t.folds(&folds, &ids).unwrap(), [0, 1]);

        let labels = file(&dir, "labels.csv", "image,labels\nX,scab rust\nY,healthy\nZ,\n");
        let err = Truth::read_csv(&labels).unwrap_err().to_string();
        assert!(err.contains("labels.csv:4:labels: at least one label expected"), "{err}");
        std::fs::write(&labels, "image,labels\nX,scab rust\nY,healthy\n").unwrap();
        let t = Truth::read_csv(&labels).unwrap();
        assert_eq!(t.task, Task::MultiLabel);
        assert_eq!(t.classes, ["healthy", "rust", "scab"]);
        assert_eq!(t.values, [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }
}
