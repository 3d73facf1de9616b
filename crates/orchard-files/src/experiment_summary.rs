//! What an experiment leaves to read: `OUT/summary.json` and `OUT/summary.txt`. Each member's out-of-fold
//! AUC with and without test-time augmentation and its folds' best validation scores, then the ensemble's
//! summary (members' AUC, weights, in-sample and cross-validated AUC, correlation between members).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ensemble_summary::{auc_text, Summary};
use crate::tta::Tta;
use crate::FileError;

/// The summary's file name in the experiment directory (the text form is beside it, `summary.txt`).
pub const SUMMARY: &str = "summary.json";
/// The ensemble's out-of-fold predictions in the experiment directory: each row combined by what was fitted
/// without its fold, the rows the cross-validated AUC scores.
pub const ENSEMBLE_OOF: &str = "oof.csv";

/// One member's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    pub name: String,
    pub arch: String,
    /// Input (height, width).
    pub size: Option<(usize, usize)>,
    pub epochs: u32,
    /// The metric each fold's best epoch was chosen by (`val_auc`, ...).
    pub monitor: String,
    /// Each fold's best value of `monitor`, as its training recorded it.
    pub fold_best: Vec<Option<f64>>,
    /// Mean column-wise AUC of the merged out-of-fold predictions, as the runs validated (no TTA).
    pub oof_auc_without_tta: Option<f64>,
    /// The same with the experiment's TTA (what the ensemble uses).
    pub oof_auc: Option<f64>,
}

/// The experiment's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSummary {
    pub folds: usize,
    pub tta: Tta,
    pub members: Vec<MemberReport>,
    /// The best single member by out-of-fold AUC (with TTA), and that AUC.
    pub best_member: Option<(String, f64)>,
    /// The ensemble's cross-validated (held-out) AUC, pooled over the folds, when it fitted anything;
    /// otherwise its out-of-fold AUC.
    pub ensemble_auc: Option<f64>,
    pub ensemble: Summary,
    /// The submission written (relative to the experiment directory) and its rows.
    pub submission: Option<(String, usize)>,
}

impl ExperimentSummary {
    /// Writes `dir/summary.json` and `dir/summary.txt`, atomically.
    pub fn write(&self, dir: &Path) -> Result<(), FileError> {
        crate::write_json_and_text(&dir.join(SUMMARY), self, &self.text())
    }

    /// Reads `dir/summary.json` back.
    pub fn read(dir: &Path) -> Result<ExperimentSummary, FileError> {
        crate::read_json(&dir.join(SUMMARY))
    }

    /// The text report.
    pub fn text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ExperimentSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.members.iter().map(|m| m.name.len()).max().unwrap_or(0).max(6);
        writeln!(f, "{} folds, TTA {}", self.folds, self.tta)?;
        writeln!(f, "{:<width$}  {:<18}  {:>9}  {:>6}  {:>6}  folds' best", "member", "arch", "size", "no TTA", "TTA")?;
        for m in &self.members {
            let size = m.size.map_or_else(|| "default".to_string(), |(h, w)| format!("{w}x{h}"));
            let folds: Vec<String> = m.fold_best.iter().map(|v| auc_text(*v)).collect();
            writeln!(
                f,
                "{:<width$}  {:<18}  {size:>9}  {:>6}  {:>6}  {} {}",
                m.name,
                m.arch,
                auc_text(m.oof_auc_without_tta),
                auc_text(m.oof_auc),
                m.monitor,
                folds.join(" ")
            )?;
        }
        write!(f, "{}", self.ensemble)?;
        if let Some((name, v)) = &self.best_member {
            writeln!(
                f,
                "best single member: {name}, out-of-fold AUC {v:.4}; ensemble: {}",
                auc_text(self.ensemble_auc)
            )?;
        }
        if let Some((file, rows)) = &self.submission {
            writeln!(f, "submission: {file} ({rows} rows, checked)")?;
        }
        Ok(())
    }
}
