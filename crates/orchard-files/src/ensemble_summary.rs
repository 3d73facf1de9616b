//! What an ensemble leaves behind to read: each member's out-of-fold AUC, the ensemble's AUC (the
//! cross-validated one when anything was fitted), the weights, how alike the members' predictions are and
//! the thresholds of a label-list submission; as JSON and as text.

use std::fmt;
use std::path::Path;

use orchard_metrics::ColumnAuc;

use crate::FileError;

/// One member's score on its out-of-fold rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemberScore {
    /// The member's prediction file.
    pub file: String,
    /// Its out-of-fold AUC, mean and per class.
    pub oof: ColumnAuc,
}

/// Everything worth knowing about one ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    pub fn write(&self, path: &Path) -> Result<(), FileError> {
        crate::write_json_and_text(path, self, &self.to_string())
    }
}

/// One fold's held-out score.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FoldScore {
    /// The fold held out.
    pub fold: usize,
    /// How many rows it holds.
    pub rows: usize,
    /// Mean column-wise AUC (and per class) of its rows predicted by the thing fitted on the other folds.
    pub held_out: ColumnAuc,
}

/// Held-out scores of every fold, and of all rows together.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CvScores {
    /// Per fold, in fold order.
    pub folds: Vec<FoldScore>,
    /// Mean over folds of their held-out mean AUC (folds where no class has a defined AUC left out).
    pub mean_of_folds: Option<f64>,
    /// AUC over all rows at once, each row predicted by the model fitted without its fold.
    pub pooled: ColumnAuc,
}

/// Per-label decision threshold chosen on out-of-fold predictions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Threshold {
    /// Predict the label when its probability is at least this.
    pub value: f64,
    /// F1 of that rule on the out-of-fold rows (0 when the label never occurs).
    pub f1: f64,
}

pub(crate) fn auc_text(v: Option<f64>) -> String {
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
                let per: Vec<String> =
                    m.oof.per_class.iter().zip(&widths).map(|(v, w)| format!("{:>w$}", auc_text(*v))).collect();
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
            writeln!(
                f,
                "correlation of members' {} predictions (Pearson per class, averaged over classes):",
                self.correlation_of
            )?;
            for (i, row) in self.correlation.iter().enumerate() {
                let cells: Vec<String> =
                    row.iter().map(|v| v.map_or_else(|| "   -  ".into(), |v| format!("{v:6.3}"))).collect();
                writeln!(f, "  {i:>3}  {}  {}", cells.join(" "), self.files.get(i).map_or("", String::as_str))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_summaries_read_back_and_say_which_auc_is_honest() {
        let auc = |v: f64| ColumnAuc { per_class: vec![Some(v), None], mean: Some(v) };
        let summary = Summary {
            method: "search (greedy, probabilities)".into(),
            classes: vec!["a".into(), "b".into()],
            files: vec!["m1".into(), "m2".into()],
            members: vec![
                MemberScore { file: "m1".into(), oof: auc(0.8) },
                MemberScore { file: "m2".into(), oof: auc(0.7) },
            ],
            weights: Some(vec![0.75, 0.25]),
            ensemble_oof: Some(auc(0.85)),
            cv: Some(CvScores {
                folds: vec![FoldScore { fold: 0, rows: 5, held_out: auc(0.82) }],
                mean_of_folds: Some(0.82),
                pooled: auc(0.83),
            }),
            correlation: vec![vec![Some(1.0), Some(0.5)], vec![Some(0.5), Some(1.0)]],
            correlation_of: "oof".into(),
            thresholds: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        summary.write(&path).unwrap();
        let back: Summary = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, summary);
        let text = std::fs::read_to_string(dir.path().join("summary.txt")).unwrap();
        assert!(text.contains("out-of-fold AUC (in-sample: fitted on these rows, optimistic): 0.8500"), "{text}");
        assert!(text.contains("mean of 1 folds 0.8200, pooled 0.8300"), "{text}");
        assert!(text.contains("weight 0.7500  m1"), "{text}");
    }
}
