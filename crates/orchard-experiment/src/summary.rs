//! What an experiment leaves to read: `OUT/summary.json` and `OUT/summary.txt`. Each member's out-of-fold
//! AUC with and without test-time augmentation and its folds' best validation scores, then the ensemble's
//! summary (members' AUC, weights, in-sample and cross-validated AUC, correlation between members).

use std::fmt;
use std::path::Path;

use orchard_ensemble::summary::Summary;
use orchard_ensemble::{atomic, EnsembleError};
use orchard_infer::tta::Tta;
use serde::Serialize;

/// One member's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    pub fn write(&self, dir: &Path) -> Result<(), EnsembleError> {
        let path = dir.join("summary.json");
        let json = serde_json::to_string_pretty(self).map_err(|e| EnsembleError::Write { path: path.clone(), source: e.into() })?;
        atomic::write(&path, (json + "\n").as_bytes())?;
        atomic::write(&dir.join("summary.txt"), self.text().as_bytes())
    }

    /// The text report.
    pub fn text(&self) -> String {
        self.to_string()
    }
}

fn auc(v: Option<f64>) -> String {
    v.map_or_else(|| "  -   ".to_string(), |v| format!("{v:.4}"))
}

impl fmt::Display for ExperimentSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.members.iter().map(|m| m.name.len()).max().unwrap_or(0).max(6);
        writeln!(f, "{} folds, TTA {}", self.folds, self.tta)?;
        writeln!(f, "{:<width$}  {:<18}  {:>9}  {:>6}  {:>6}  folds' best", "member", "arch", "size", "no TTA", "TTA")?;
        for m in &self.members {
            let size = m.size.map_or_else(|| "default".to_string(), |(h, w)| format!("{w}x{h}"));
            let folds: Vec<String> = m.fold_best.iter().map(|v| auc(*v)).collect();
            writeln!(
                f,
                "{:<width$}  {:<18}  {size:>9}  {:>6}  {:>6}  {} {}",
                m.name,
                m.arch,
                auc(m.oof_auc_without_tta),
                auc(m.oof_auc),
                m.monitor,
                folds.join(" ")
            )?;
        }
        write!(f, "{}", self.ensemble)?;
        if let Some((name, v)) = &self.best_member {
            writeln!(f, "best single member: {name}, out-of-fold AUC {v:.4}; ensemble: {}", auc(self.ensemble_auc))?;
        }
        if let Some((file, rows)) = &self.submission {
            writeln!(f, "submission: {file} ({rows} rows, checked)")?;
        }
        Ok(())
    }
}
