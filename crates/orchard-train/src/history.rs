//! The per-epoch record of a run and the files it is written to: `metrics.csv`
//! (`epoch,lr,train_loss,val_loss,val_accuracy,val_auc,val_auc_<class>…`) and `metrics.jsonl` (the same plus
//! timings), both rewritten whole and atomically after every epoch so a resumed run continues them exactly.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

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
        out.push_str(&format!("{},{},{},{},{},{}", r.epoch, r.lr, r.train_loss, cell(r.val_loss), cell(r.val_accuracy), cell(r.val_auc)));
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

/// Writes `contents` to `path` through a synced temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".orchard-").suffix(".tmp").tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_the_documented_columns_and_blank_missing_values() {
        let r = EpochRecord {
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
        };
        let csv = to_csv(&[r.clone()], &["healthy".into(), "rust".into()]);
        assert_eq!(csv, "epoch,lr,train_loss,val_loss,val_accuracy,val_auc,val_auc_healthy,val_auc_rust\n0,0.00001,1.25,0.5,0.75,0.875,0.75,\n");
        let back: EpochRecord = serde_json::from_str(to_jsonl(&[r.clone()]).trim()).unwrap();
        assert_eq!(back, r);
    }
}
