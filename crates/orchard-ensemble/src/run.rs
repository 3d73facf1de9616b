//! One ensemble, start to finish: the members' test predictions (and, when given, their out-of-fold
//! predictions with the truth and folds) in; the combined test predictions and a [`Summary`] out.
//!
//! Whatever is fitted on out-of-fold rows — searched weights, a stacking model — is fitted once on all of
//! them (that is what the test predictions use) and once per fold without it (that is what the summary's
//! cross-validated AUC reports).

use orchard_files::ensemble_summary::{MemberScore, Summary};
use orchard_files::manifest::Blend;
use orchard_files::{Predictions, Task};
use orchard_metrics::mean_column_auc;

use crate::aligned::Aligned;
use crate::combine::{self, Method};
use crate::correlation;
use crate::search::{self, Search};
use crate::stacking::{self, Stacking, LOG_FLOOR};
use crate::{EnsembleError, Result};

/// How the members become one prediction.
#[derive(Debug, Clone, PartialEq)]
pub enum Combiner {
    /// A fixed combiner with optional weights (equal when `None`).
    Fixed { method: Method, weights: Option<Vec<f64>> },
    /// Weights searched on the out-of-fold predictions, then the weighted mean — of the probabilities, or with
    /// `ranks` of each member's per-class scaled ranks (the weighted rank average, searched as such).
    Search { search: Search, ranks: bool },
    /// A logistic-regression meta-model fitted on the out-of-fold predictions.
    Stack(Stacking),
}

/// The members' out-of-fold predictions with what they are scored against.
#[derive(Debug, Clone)]
pub struct Oof {
    /// Members' out-of-fold predictions, in the same member order as the test predictions.
    pub members: Aligned,
    /// Targets on `members.ids` × `members.classes`.
    pub truth: Vec<f64>,
    /// Fold of each row, when a folds file was given (needed by whatever fits on these rows).
    pub folds: Option<Vec<usize>>,
}

/// What [`run`] produces.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The blend as fitted: what [`apply`] turns members' predictions of new images into the ensemble's with.
    pub blend: Blend,
    /// The combined test predictions, on the test files' ids and classes.
    pub predictions: Predictions,
    /// The combination applied to the out-of-fold rows (by what was fitted on all of them), when given.
    pub oof_predictions: Option<Vec<f64>>,
    /// The out-of-fold rows as the cross-validated AUC scores them, when given: each row combined by what
    /// was fitted without its fold (with nothing fitted, the same as `oof_predictions`). Honest, unlike
    /// `oof_predictions` of a fitted combiner, so a report can draw ROC curves and confusion matrices of it.
    pub held_out_predictions: Option<Vec<f64>>,
    /// Scores, weights, correlation.
    pub summary: Summary,
}

/// Combines `test` (one aligned matrix per member) with `combiner`; `oof` scores the members and the
/// ensemble, and is required by the fitted combiners. `label` names the method in the summary.
pub fn run(combiner: &Combiner, label: &str, test: &Aligned, oof: Option<&Oof>, task: Task) -> Result<Outcome> {
    let k = test.n_classes();
    let oof = oof.map(|o| on_test_classes(o, test)).transpose()?;
    let test_members = test.member_slices();
    let oof_members: Option<Vec<&[f64]>> = oof.as_ref().map(|o| o.members.member_slices());
    let needs_folds = |what: &str| -> Result<(&Oof, &Vec<usize>)> {
        let o = oof.as_ref().ok_or_else(|| {
            EnsembleError::Config(format!("{what} needs the members' out-of-fold predictions and the truth"))
        })?;
        let folds = o.folds.as_ref().ok_or_else(|| {
            EnsembleError::Config(format!("{what} needs the folds file, to report a cross-validated AUC"))
        })?;
        Ok((o, folds))
    };

    let (blend, cv, held_out) = match combiner {
        Combiner::Fixed { method, weights } => {
            let weights = combine::normalised_weights(weights.as_deref(), test_members.len())?;
            let blend = match *method {
                Method::Mean => Blend::Mean { weights },
                Method::Rank => Blend::Rank { weights },
                Method::Geometric => Blend::Geometric { weights },
                Method::Power(power) => Blend::Power { power, weights },
            };
            (blend, None, None)
        }
        Combiner::Search { search, ranks } => {
            let (o, folds) = needs_folds("a weight search")?;
            let members = o.members.member_slices();
            let report = if *ranks {
                let ranked: Vec<Vec<f64>> = members.iter().map(|m| combine::rank_columns(m, k)).collect();
                let ranked: Vec<&[f64]> = ranked.iter().map(Vec::as_slice).collect();
                search::cross_validate(&ranked, &o.truth, k, folds, search, task)?
            } else {
                search::cross_validate(&members, &o.truth, k, folds, search, task)?
            };
            let weights = report.weights;
            let blend = if *ranks { Blend::Rank { weights } } else { Blend::Mean { weights } };
            (blend, Some(report.cv), Some(report.held_out))
        }
        Combiner::Stack(config) => {
            let (o, folds) = needs_folds("stacking")?;
            let report = stacking::cross_validate(&o.members.member_slices(), &o.truth, k, task, folds, config)?;
            (Blend::Stack { log_floor: LOG_FLOOR, model: report.model }, Some(report.cv), Some(report.held_out))
        }
    };
    let values = apply(&blend, &test_members, k, task)?;
    let oof_values = oof_members.as_ref().map(|m| apply(&blend, m, k, task)).transpose()?;
    let weights = match &blend {
        Blend::Mean { weights }
        | Blend::Rank { weights }
        | Blend::Geometric { weights }
        | Blend::Power { weights, .. } => Some(weights.clone()),
        Blend::Stack { .. } => None,
    };

    let mut members = Vec::new();
    if let Some(o) = &oof {
        for (file, m) in o.members.files.iter().zip(&o.members.members) {
            members.push(MemberScore { file: file.display().to_string(), oof: mean_column_auc(&o.truth, m, k)? });
        }
    }
    let ensemble_oof = match (&oof, &oof_values) {
        (Some(o), Some(v)) => Some(mean_column_auc(&o.truth, v, k)?),
        _ => None,
    };
    let (correlation, correlation_of) = match &oof_members {
        Some(m) => (correlation::correlation(m, k), "oof"),
        None => (correlation::correlation(&test_members, k), "test"),
    };
    let summary = Summary {
        method: label.to_string(),
        classes: test.classes.clone(),
        files: test.files.iter().map(|f| f.display().to_string()).collect(),
        members,
        weights,
        ensemble_oof,
        cv,
        correlation,
        correlation_of: correlation_of.to_string(),
        thresholds: None,
    };
    let predictions = Predictions::new(&test.id_column, test.classes.clone(), test.ids.clone(), values);
    let held_out_predictions = held_out.or_else(|| oof_values.clone());
    Ok(Outcome { blend, predictions, oof_predictions: oof_values, held_out_predictions, summary })
}

/// The ensemble's predictions (`rows × n_classes`) from the members' (each `rows × n_classes`, in the blend's
/// member order) by a fitted `blend`: the one computation behind `orchard ensemble`, an experiment's
/// submission and a server's answers.
pub fn apply(blend: &Blend, members: &[&[f64]], n_classes: usize, task: Task) -> Result<Vec<f64>> {
    let (method, weights) = match blend {
        Blend::Mean { weights } => (Method::Mean, weights),
        Blend::Rank { weights } => (Method::Rank, weights),
        Blend::Geometric { weights } => (Method::Geometric, weights),
        Blend::Power { power, weights } => (Method::Power(*power), weights),
        Blend::Stack { log_floor, model } => {
            if *log_floor != LOG_FLOOR {
                return Err(EnsembleError::Config(format!(
                    "a stacked blend with log floor {log_floor}: this build computes features with {LOG_FLOOR}"
                )));
            }
            let rows: Vec<usize> = (0..members.first().map_or(0, |m| m.len() / n_classes.max(1))).collect();
            return Ok(stacking::predict(model, members, n_classes, &rows));
        }
    };
    combine::combine(members, n_classes, method, Some(weights), task)
}

/// The out-of-fold set with its columns in the test predictions' class order and as many members.
fn on_test_classes(oof: &Oof, test: &Aligned) -> Result<Oof> {
    if oof.members.members.len() != test.members.len() {
        return Err(EnsembleError::Config(format!(
            "{} out-of-fold files for {} prediction files: give one per member, in the same order",
            oof.members.members.len(),
            test.members.len()
        )));
    }
    let mut ours = oof.members.classes.clone();
    let mut theirs = test.classes.clone();
    ours.sort();
    theirs.sort();
    if ours != theirs {
        return Err(EnsembleError::Config(format!(
            "the out-of-fold files' classes [{}] differ from the prediction files' [{}]",
            oof.members.classes.join(", "),
            test.classes.join(", ")
        )));
    }
    let cols: Vec<usize> =
        test.classes.iter().map(|c| oof.members.classes.iter().position(|x| x == c).expect("same classes")).collect();
    let k = cols.len();
    let reorder =
        |m: &[f64]| -> Vec<f64> { m.chunks_exact(k).flat_map(|row| cols.iter().map(move |&c| row[c])).collect() };
    let mut out = oof.clone();
    out.members.members = oof.members.members.iter().map(|m| reorder(m)).collect();
    out.truth = reorder(&oof.truth);
    out.members.classes = test.classes.clone();
    Ok(out)
}
