//! The per-epoch record of a run and the files it is written to: `metrics.csv`
//! (`epoch,lr,train_loss,val_loss,val_accuracy,val_auc,val_auc_<class>…`) and `metrics.jsonl` (the same plus
//! timings). Training rewrites both whole and atomically after every epoch, so a resumed run continues them
//! exactly; a report reads `metrics.jsonl` back.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{atomic, FileError, Problem};

/// The name of the CSV file in a run directory.
pub const METRICS_CSV: &str = "metrics.csv";
/// The name of the JSON-lines file in a run directory.
pub const METRICS_JSONL: &str = "metrics.jsonl";

/// What one epoch measured. Validation fields are absent when the run has no validation fold; a class's
/// AUC is absent when the validation fold lacks positives or negatives for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based.
    pub epoch: u32,
    /// Learning rate at the start of the epoch (the schedule's value before any per-group multiplier).
    pub lr: f64,
    /// Mean training loss over the epoch's micro-batches.
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// Mean column-wise ROC AUC over the classes that have one.
    pub val_auc: Option<f64>,
    pub val_auc_per_class: Vec<Option<f64>>,
    /// Wall-clock seconds of the training pass and of validation.
    pub train_seconds: f64,
    pub val_seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| format!("{v}"))
}

/// `metrics.csv` for `history`, with one `val_auc_<class>` column per class.
pub fn to_csv(history: &[EpochRecord], classes: &[String]) -> String {
    let mut out = String::from("epoch,lr,train_loss,val_loss,val_accuracy,val_auc");
    for c in classes {
        out.push_str(&format!(",val_auc_{c}"));
    }
    out.push('\n');
    for r in history {
        let (loss, accuracy, auc) = (cell(r.val_loss), cell(r.val_accuracy), cell(r.val_auc));
        out.push_str(&format!("{},{},{},{loss},{accuracy},{auc}", r.epoch, r.lr, r.train_loss));
        for i in 0..classes.len() {
            out.push(',');
            out.push_str(&cell(r.val_auc_per_class.get(i).copied().flatten()));
        }
        out.push('\n');
    }
    out
}

/// `metrics.jsonl`: one JSON object per epoch.
pub fn to_jsonl(history: &[EpochRecord]) -> String {
    history.iter().map(|r| serde_json::to_string(r).expect("records serialise") + "\n").collect()
}

/// Writes both metrics files of `history` into the run directory `dir`, atomically.
pub fn write(dir: &Path, history: &[EpochRecord], classes: &[String]) -> Result<(), FileError> {
    for (name, text) in [(METRICS_CSV, to_csv(history, classes)), (METRICS_JSONL, to_jsonl(history))] {
        let path = dir.join(name);
        atomic::write(&path, text.as_bytes()).map_err(|source| FileError::Write { path, source })?;
    }
    Ok(())
}

/// Reads a run's `metrics.jsonl` back, naming the line of any record that does not parse.
pub fn read_jsonl(path: &Path) -> Result<Vec<EpochRecord>, FileError> {
    let text = crate::input::read_to_string(path, crate::input::TEXT)
        .map_err(|source| FileError::Read { path: path.to_path_buf(), source })?;
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(e) => problems.push(Problem::new(path, format!("not an epoch record: {e}")).at_row(i as u64 + 1)),
        }
    }
    FileError::fail_on(problems)?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::file;

    fn record() -> EpochRecord {
        EpochRecord {
            epoch: 0,
            lr: 1e-5,
            train_loss: 1.25,
            val_loss: Some(0.5),
            val_accuracy: Some(0.75),
            val_auc: Some(0.875),
            val_auc_per_class: vec![Some(0.75), None],
            train_seconds: 1.0,
            val_seconds: 0.5,
            images_per_second: 10.0,
        }
    }

    #[test]
    fn csv_has_the_documented_columns_and_blank_missing_values() {
        let csv = to_csv(&[record()], &["healthy".into(), "rust".into()]);
        assert_eq!(
            csv,
            "epoch,lr,train_loss,val_loss,val_accuracy,val_auc,val_auc_healthy,val_auc_rust\n0,0.00001,1.25,0.5,0.75,0.875,0.75,\n"
        );
    }

    #[test]
    fn written_records_read_back_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let second = EpochRecord { epoch: 1, val_loss: None, ..record() };
        write(dir.path(), &[record(), second.clone()], &["a".into(), "b".into()]).unwrap();
        assert_eq!(read_jsonl(&dir.path().join(METRICS_JSONL)).unwrap(), [record(), second]);
        assert!(dir.path().join(METRICS_CSV).exists());
        let bad = file(&dir, "bad.jsonl", to_jsonl(&[record()]) + "{\"epoch\": 1}\n");
        let err = read_jsonl(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:2: not an epoch record: missing field"), "{err}");
    }
}
