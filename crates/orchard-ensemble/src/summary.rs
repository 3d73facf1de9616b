//! What an ensemble run leaves behind to read: each member's out-of-fold AUC, the ensemble's AUC (the
//! cross-validated one when anything was fitted), the weights, and how alike the members' predictions are.
//!
//! Correlation is Pearson's, computed on the probabilities of each class column separately and averaged
//! over the classes where both columns vary: members that agree closely add little to each other, which is
//! why a searched ensemble often leaves some out.

use std::fmt;
use std::path::Path;

use orchard_metrics::ColumnAuc;

use crate::cv::CvScores;
use crate::submission::Threshold;
use crate::{atomic, EnsembleError, Result};

/// One member's score on its out-of-fold rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemberScore {
    /// The member's prediction file.
    pub file: String,
    /// Its out-of-fold AUC, mean and per class.
    pub oof: ColumnAuc,
}

/// Everything worth knowing about one ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// The combiner (and search) used, as given on the command line.
    pub method: String,
    /// Class names, in column order.
    pub classes: Vec<String>,
    /// The members' test prediction files, in member order.
    pub files: Vec<String>,
    /// Members' out-of-fold scores, when out-of-fold predictions and the truth were given.
    pub members: Vec<MemberScore>,
    /// Weight of each member (summing to 1), for the weighted combiners.
    pub weights: Option<Vec<f64>>,
    /// The combination's AUC on the out-of-fold rows. When weights or a meta-model were fitted on those
    /// same rows this is the optimistic in-sample number; `cv` holds the honest one.
    pub ensemble_oof: Option<ColumnAuc>,
    /// Held-out scores of whatever was fitted, cross-validated over the folds.
    pub cv: Option<CvScores>,
    /// Pearson correlation of the members' predictions (see the module doc); `None` where undefined.
    pub correlation: Vec<Vec<Option<f64>>>,
    /// Which predictions the correlation was computed on: `oof` or `test`.
    pub correlation_of: String,
    /// Per-label thresholds of a label-list submission.
    pub thresholds: Option<Vec<Threshold>>,
}

impl Summary {
    /// Writes the summary as JSON to `path` and as text beside it (`path` with extension `.txt`).
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| EnsembleError::Write { path: path.to_path_buf(), source: e.into() })?;
        atomic::write(path, (json + "\n").as_bytes())?;
        atomic::write(&path.with_extension("txt"), self.to_string().as_bytes())
    }
}

/// Pearson correlation of `a` and `b`; `None` when either is constant.
fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Member × member correlation: Pearson per class column, averaged over the classes where it is defined.
pub fn correlation(members: &[&[f64]], n_classes: usize) -> Vec<Vec<Option<f64>>> {
    let rows = members.first().map_or(0, |m| m.len() / n_classes);
    let column = |m: &[f64], c: usize| -> Vec<f64> { (0..rows).map(|r| m[r * n_classes + c]).collect() };
    let columns: Vec<Vec<Vec<f64>>> = members.iter().map(|m| (0..n_classes).map(|c| column(m, c)).collect()).collect();
    (0..members.len())
        .map(|i| {
            (0..members.len())
                .map(|j| {
                    let defined: Vec<f64> = (0..n_classes).filter_map(|c| pearson(&columns[i][c], &columns[j][c])).collect();
                    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
                })
                .collect()
        })
        .collect()
}

fn auc_text(v: Option<f64>) -> String {
    v.map_or_else(|| "  -   ".to_string(), |v| format!("{v:.4}"))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.members.iter().map(|m| m.file.len()).max().unwrap_or(0).max(26);
        let widths: Vec<usize> = self.classes.iter().map(|c| c.len().max(6)).collect();
        if !self.members.is_empty() {
            let header: Vec<String> = self.classes.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
            writeln!(f, "{:<width$}  {:>6}  {}", "member (out-of-fold AUC)", "mean", header.join("  "))?;
            for m in &self.members {
                let per: Vec<String> = m.oof.per_class.iter().zip(&widths).map(|(v, w)| format!("{:>w$}", auc_text(*v))).collect();
                writeln!(f, "{:<width$}  {:>6}  {}", m.file, auc_text(m.oof.mean), per.join("  "))?;
            }
        }
        writeln!(f, "ensemble: {}", self.method)?;
        if let Some(weights) = &self.weights {
            for (i, w) in weights.iter().enumerate() {
                writeln!(f, "  weight {w:.4}  {}", self.files.get(i).map_or("", String::as_str))?;
            }
        }
        if let Some(oof) = &self.ensemble_oof {
            let note = if self.cv.is_some() { " (in-sample: fitted on these rows, optimistic)" } else { "" };
            writeln!(f, "  out-of-fold AUC{note}: {}", auc_text(oof.mean))?;
        }
        if let Some(cv) = &self.cv {
            writeln!(
                f,
                "  cross-validated AUC (fitted without the held-out fold): mean of {} folds {}, pooled {}",
                cv.folds.len(),
                auc_text(cv.mean_of_folds),
                auc_text(cv.pooled.mean)
            )?;
            for fold in &cv.folds {
                writeln!(f, "    fold {}: {} ({} rows)", fold.fold, auc_text(fold.held_out.mean), fold.rows)?;
            }
        }
        if let Some(thresholds) = &self.thresholds {
            for (t, c) in thresholds.iter().zip(&self.classes) {
                writeln!(f, "  threshold {c}: {:.4} (out-of-fold F1 {:.4})", t.value, t.f1)?;
            }
        }
        if self.correlation.len() > 1 {
            writeln!(f, "correlation of members' {} predictions (Pearson per class, averaged over classes):", self.correlation_of)?;
            for (i, row) in self.correlation.iter().enumerate() {
                let cells: Vec<String> = row.iter().map(|v| v.map_or_else(|| "   -  ".into(), |v| format!("{v:6.3}"))).collect();
                writeln!(f, "  {i:>3}  {}  {}", cells.join(" "), self.files.get(i).map_or("", String::as_str))?;
            }
        }
        Ok(())
    }
}
