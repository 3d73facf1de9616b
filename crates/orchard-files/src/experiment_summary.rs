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
    /// Other blends of the same members the experiment asked to compare (`[[ensemble.compare]]`), scored
    /// on the same out-of-fold rows; empty in summaries written before they existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<ComparedBlend>,
}

/// A blend reported beside the ensemble: what it would have scored, not what was submitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComparedBlend {
    pub name: String,
    /// The combiner, as the ensemble's is named (`weighted`, `rank`, `search (greedy, probabilities)`, ...).
    pub method: String,
    /// Each member's weight, summing to 1, for the weighted combiners.
    pub weights: Option<Vec<f64>>,
    /// Mean column-wise AUC of the blend on the out-of-fold rows (in-sample for a fitted blend).
    pub oof_auc: Option<f64>,
    /// For a fitted blend (search, stack), its held-out AUC cross-validated over the folds, as the
    /// ensemble's is.
    pub cv_auc: Option<f64>,
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

    /// The two lines a run ends with: every member's out-of-fold AUC, then the ensemble's and its margin over
    /// the best member (what a person wants to know first, after the detail above them).
    pub fn recap(&self) -> String {
        let members: Vec<String> = self.members.iter().map(|m| format!("{} {}", m.name, auc_text(m.oof_auc))).collect();
        let mut text = format!("members' out-of-fold AUC (TTA {}): {}\n", self.tta, members.join(", "));
        text += &format!("ensemble's cross-validated AUC: {}", auc_text(self.ensemble_auc));
        if let (Some(ensemble), Some((name, best))) = (self.ensemble_auc, &self.best_member) {
            let margin = ensemble - best;
            let word = if margin >= 0.0 { "above" } else { "below" };
            text += &format!(", {:.4} {word} the best member ({name})", margin.abs());
        }
        text + "\n"
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
        if !self.compared.is_empty() {
            writeln!(f, "compared blends (out-of-fold AUC; cross-validated for fitted ones), not submitted:")?;
            let width = self.compared.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in &self.compared {
                let weights = c.weights.as_ref().map_or_else(String::new, |w| {
                    let parts: Vec<String> =
                        self.members.iter().zip(w).map(|(m, w)| format!("{} {w:.3}", m.name)).collect();
                    format!("; weights {}", parts.join(", "))
                });
                let cv = c.cv_auc.map_or_else(String::new, |v| format!(", cross-validated {v:.4}"));
                writeln!(f, "  {:<width$}  {}: {}{cv}{weights}", c.name, c.method, auc_text(c.oof_auc))?;
            }
        }
        if let Some((file, rows)) = &self.submission {
            writeln!(f, "submission: {file} ({rows} rows, checked)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(compared: Vec<ComparedBlend>) -> ExperimentSummary {
        let member = |name: &str| MemberReport {
            name: name.into(),
            arch: "efficientnet_b0".into(),
            size: Some((32, 32)),
            epochs: 1,
            monitor: "val_auc".into(),
            fold_best: vec![Some(0.9)],
            oof_auc_without_tta: Some(0.9),
            oof_auc: Some(0.91),
        };
        ExperimentSummary {
            folds: 2,
            tta: Tta::Flips,
            members: vec![member("b7"), member("b6")],
            best_member: Some(("b7".into(), 0.91)),
            ensemble_auc: Some(0.93),
            ensemble: Summary {
                method: "search (greedy, probabilities)".into(),
                classes: vec!["a".into(), "b".into()],
                files: vec!["b7".into(), "b6".into()],
                members: vec![],
                weights: Some(vec![0.5, 0.5]),
                ensemble_oof: None,
                cv: None,
                correlation: vec![],
                correlation_of: "oof".into(),
                thresholds: None,
            },
            submission: None,
            compared,
        }
    }

    #[test]
    fn compared_blends_are_reported_and_older_summaries_still_read() {
        let reference = ComparedBlend {
            name: "reference".into(),
            method: "weighted".into(),
            weights: Some(vec![2.0 / 3.0, 1.0 / 3.0]),
            oof_auc: Some(0.9215),
            cv_auc: None,
        };
        let with = summary(vec![reference]);
        let text = with.text();
        assert!(text.contains("  reference  weighted: 0.9215; weights b7 0.667, b6 0.333\n"), "{text}");
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(serde_json::from_value::<ExperimentSummary>(json).unwrap(), with);

        let mut old = serde_json::to_value(summary(vec![])).unwrap();
        assert!(old.get("compared").is_none(), "nothing written when nothing was compared");
        old.as_object_mut().unwrap().remove("compared");
        let read: ExperimentSummary = serde_json::from_value(old).unwrap();
        assert!(read.compared.is_empty() && !read.text().contains("compared"));
    }

    #[test]
    fn the_recap_names_every_member_and_the_margin_over_the_best() {
        let mut s = summary(vec![]);
        s.members[1].oof_auc = Some(0.8765);
        assert_eq!(
            s.recap(),
            "members' out-of-fold AUC (TTA flips): b7 0.9100, b6 0.8765\n\
             ensemble's cross-validated AUC: 0.9300, 0.0200 above the best member (b7)\n"
        );
        s.ensemble_auc = Some(0.9);
        assert!(s.recap().ends_with("0.9000, 0.0100 below the best member (b7)\n"), "{}", s.recap());
    }
}
