//! Honest estimates: whatever is fitted on out-of-fold predictions (blend weights, a stacking model) is
//! fitted K times, each time on the rows of K − 1 folds, and scored on the rows of the fold it never saw.
//!
//! Fitting and scoring on the same rows reports the optimum found for those rows, which is optimistic: a
//! search over weights of pure-noise members still finds weights whose in-sample AUC beats 0.5. The held-out
//! numbers are what the fitted thing can be expected to do on new images.

pub use orchard_files::ensemble_summary::{CvScores, FoldScore};
use orchard_metrics::mean_column_auc;

use crate::{EnsembleError, Result};

/// The rows of a `rows × n_classes` matrix at `rows`, in that order.
pub fn take_rows(values: &[f64], n_classes: usize, rows: &[usize]) -> Vec<f64> {
    rows.iter().flat_map(|&r| values[r * n_classes..(r + 1) * n_classes].iter().copied()).collect()
}

/// Cross-validates over `folds` (the fold of each row): `fit(train_rows)` fits on the other folds' rows,
/// `predict(&model, held_out_rows)` returns `held_out_rows × n_classes` predictions. Returns the scores, the
/// held-out prediction of every row and the model of each fold.
pub fn cross_validate<M>(
    truth: &[f64],
    n_classes: usize,
    folds: &[usize],
    mut fit: impl FnMut(&[usize]) -> Result<M>,
    mut predict: impl FnMut(&M, &[usize]) -> Result<Vec<f64>>,
) -> Result<(CvScores, Vec<f64>, Vec<M>)> {
    let mut fold_ids: Vec<usize> = folds.to_vec();
    fold_ids.sort_unstable();
    fold_ids.dedup();
    if fold_ids.len() < 2 {
        return Err(EnsembleError::Config(format!(
            "cross-validation needs at least 2 folds, the folds file has {}",
            fold_ids.len()
        )));
    }
    let mut held_out_predictions = vec![0.0; truth.len()];
    let mut scores = Vec::with_capacity(fold_ids.len());
    let mut models = Vec::with_capacity(fold_ids.len());
    for &fold in &fold_ids {
        let train: Vec<usize> = (0..folds.len()).filter(|&r| folds[r] != fold).collect();
        let held: Vec<usize> = (0..folds.len()).filter(|&r| folds[r] == fold).collect();
        let model = fit(&train)?;
        let predicted = predict(&model, &held)?;
        for (i, &r) in held.iter().enumerate() {
            held_out_predictions[r * n_classes..(r + 1) * n_classes]
                .copy_from_slice(&predicted[i * n_classes..(i + 1) * n_classes]);
        }
        let held_out = mean_column_auc(&take_rows(truth, n_classes, &held), &predicted, n_classes)?;
        scores.push(FoldScore { fold, rows: held.len(), held_out });
        models.push(model);
    }
    let defined: Vec<f64> = scores.iter().filter_map(|s| s.held_out.mean).collect();
    let mean_of_folds = (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
    let pooled = mean_column_auc(truth, &held_out_predictions, n_classes)?;
    Ok((CvScores { folds: scores, mean_of_folds, pooled }, held_out_predictions, models))
}
