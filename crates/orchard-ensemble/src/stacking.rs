//! Stacking: a logistic-regression meta-model that learns how to combine the members from their
//! out-of-fold predictions.
//!
//! Features are the logarithms of every member's class probabilities (clipped at [`LOG_FLOOR`]), so a
//! linear model over them can express weighted geometric blends and per-class calibration. The model is
//! the multinomial logistic regression with an L2 penalty on the coefficients (not the intercepts),
//! minimising `Σᵢ −ln p(yᵢ | xᵢ) + ‖W‖² / (2C)` — scikit-learn's `LogisticRegression(C=C)` objective — fitted
//! to convergence with L-BFGS by `linfa-logistic`. Multi-label tasks fit one binary model per label.
//! [`cross_validate`] scores it on held-out folds, which is the only fair comparison with the members: a
//! meta-model scored on the rows it was fitted on looks better than it is.

use linfa::prelude::*;
use linfa_logistic::{LogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2};
use orchard_files::manifest::{BinaryModel, StackModel};
use orchard_files::Task;

use crate::cv::{self, CvScores};
use crate::{EnsembleError, Result};

/// The solver settings shared by the binary and multinomial models (linfa names their common builder type
/// only through two aliases, hence a macro): linfa's `alpha` is scikit-learn's `1 / C`, and its objective is
/// a sum over rows, so the gradient tolerance grows with them.
macro_rules! solver {
    ($params:expr, $config:expr, $rows:expr) => {
        $params
            .alpha(1.0 / $config.c)
            .max_iterations($config.max_iterations)
            .gradient_tolerance($config.tolerance * $rows as f64)
    };
}

/// Probabilities below this are clipped before the logarithm, so a member's hard 0 is a large but finite
/// feature.
pub const LOG_FLOOR: f64 = 1e-7;

/// Settings of the meta-model.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stacking {
    /// Inverse strength of the L2 penalty (scikit-learn's `C`): smaller is smoother.
    pub c: f64,
    /// L-BFGS iterations at most.
    pub max_iterations: u64,
    /// L-BFGS stops when the gradient's norm, divided by the number of rows, falls below this.
    pub tolerance: f64,
}

impl Default for Stacking {
    fn default() -> Self {
        Stacking { c: 1.0, max_iterations: 1000, tolerance: 1e-9 }
    }
}

/// A fitted multinomial logistic regression over `n_classes` classes: `softmax(x · coefficients[c] +
/// intercepts[c])` over the classes present when it was fitted; absent classes get probability 0 (and with a
/// single class present, that class gets 1). The coefficients are read out of linfa's fit, so that a model
/// written to a manifest predicts exactly what this one does.
#[derive(Debug, Clone, PartialEq)]
pub struct Multinomial {
    present: Vec<usize>,
    coefficients: Vec<Vec<f64>>,
    intercepts: Vec<f64>,
    n_classes: usize,
}

impl Multinomial {
    /// Probabilities, `rows × n_classes` row-major, for features `x` (`rows × n_features`).
    pub fn predict(&self, x: &[f64], n_features: usize) -> Vec<f64> {
        softmax_predict(&self.present, &self.coefficients, &self.intercepts, self.n_classes, x, n_features)
    }
}

/// Fits the multinomial model to features `x` (`labels.len() × n_features`) and class indices `labels`.
pub fn fit_multinomial(
    x: &[f64],
    n_features: usize,
    labels: &[usize],
    n_classes: usize,
    config: &Stacking,
) -> Result<Multinomial> {
    check_config(config)?;
    let mut present: Vec<usize> = labels.to_vec();
    present.sort_unstable();
    present.dedup();
    if present.len() < 2 {
        return Ok(Multinomial {
            present,
            coefficients: vec![vec![0.0; n_features]],
            intercepts: vec![0.0],
            n_classes,
        });
    }
    let data = dataset(x, n_features, labels)?;
    let model = solver!(MultiLogisticRegression::default(), config, labels.len()).fit(&data).map_err(stacking_error)?;
    let params = model.params(); // n_features × classes, in the order of `model.classes()`
    let coefficients = (0..model.classes().len()).map(|c| params.column(c).to_vec()).collect();
    Ok(Multinomial {
        present: model.classes().to_vec(),
        coefficients,
        intercepts: model.intercept().to_vec(),
        n_classes,
    })
}

/// A fitted binary logistic regression (or a constant when one outcome never occurs).
#[derive(Debug, Clone, PartialEq)]
pub struct Binary(BinaryModel);

impl Binary {
    /// Probability of the positive outcome for each row of `x`.
    pub fn predict(&self, x: &[f64], n_features: usize) -> Vec<f64> {
        binary_predict(&self.0, x, n_features)
    }
}

/// Fits a binary model to features `x` and outcomes `labels`.
pub fn fit_binary(x: &[f64], n_features: usize, labels: &[bool], config: &Stacking) -> Result<Binary> {
    check_config(config)?;
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 || positives == labels.len() {
        return Ok(Binary(BinaryModel::Constant { p: if positives == 0 { 0.0 } else { 1.0 } }));
    }
    let data = dataset(x, n_features, labels)?;
    let model = solver!(LogisticRegression::default(), config, labels.len()).fit(&data).map_err(stacking_error)?;
    // linfa's "positive" class is the more frequent one, not `true`: P(true) = 1 − σ(z) = σ(−z) otherwise.
    let sign = if model.labels().pos.class { 1.0 } else { -1.0 };
    let coefficients = model.params().iter().map(|w| sign * w).collect();
    Ok(Binary(BinaryModel::Logistic { coefficients, intercept: sign * model.intercept() }))
}

/// `x · w` for one row.
fn dot(row: &[f64], w: &[f64]) -> f64 {
    row.iter().zip(w).map(|(a, b)| a * b).sum()
}

/// Softmax over the present classes' scores, scattered into `n_classes` columns.
fn softmax_predict(
    present: &[usize],
    coefficients: &[Vec<f64>],
    intercepts: &[f64],
    n_classes: usize,
    x: &[f64],
    n_features: usize,
) -> Vec<f64> {
    let rows = x.len() / n_features.max(1);
    let mut out = vec![0.0; rows * n_classes];
    for (r, row) in x.chunks_exact(n_features.max(1)).enumerate().take(rows) {
        let scores: Vec<f64> = coefficients.iter().zip(intercepts).map(|(w, b)| dot(row, w) + b).collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        for (&class, e) in present.iter().zip(exps) {
            out[r * n_classes + class] = e / sum;
        }
    }
    out
}

/// One label's probability for every row.
fn binary_predict(model: &BinaryModel, x: &[f64], n_features: usize) -> Vec<f64> {
    let rows = x.len() / n_features.max(1);
    match model {
        BinaryModel::Constant { p } => vec![*p; rows],
        BinaryModel::Logistic { coefficients, intercept } => x
            .chunks_exact(n_features.max(1))
            .take(rows)
            .map(|row| 1.0 / (1.0 + (-(dot(row, coefficients) + intercept)).exp()))
            .collect(),
    }
}

/// Features and targets as linfa wants them.
fn dataset<T: Clone>(x: &[f64], n_features: usize, labels: &[T]) -> Result<Dataset<f64, T, ndarray::Ix1>> {
    let records = Array2::from_shape_vec((labels.len(), n_features), x.to_vec()).map_err(stacking_error)?;
    Ok(Dataset::new(records, Array1::from_vec(labels.to_vec())))
}

fn stacking_error(e: impl std::fmt::Display) -> EnsembleError {
    EnsembleError::Stacking(e.to_string())
}

fn check_config(config: &Stacking) -> Result<()> {
    if !(config.c.is_finite() && config.c > 0.0) {
        return Err(EnsembleError::Config(format!("stacking C must be a positive number, got {}", config.c)));
    }
    Ok(())
}

/// The meta-model's features for `rows`: `ln(max(p, LOG_FLOOR))` of every member's every class,
/// `rows × (members · n_classes)`.
pub fn features(members: &[&[f64]], n_classes: usize, rows: &[usize]) -> Vec<f64> {
    let mut x = Vec::with_capacity(rows.len() * members.len() * n_classes);
    for &r in rows {
        for m in members {
            x.extend(m[r * n_classes..(r + 1) * n_classes].iter().map(|p| p.max(LOG_FLOOR).ln()));
        }
    }
    x
}

impl Stacking {
    /// Fits the meta-model on `rows` of the members' out-of-fold predictions and the truth.
    pub fn fit(
        &self,
        members: &[&[f64]],
        truth: &[f64],
        n_classes: usize,
        task: Task,
        rows: &[usize],
    ) -> Result<StackModel> {
        let x = features(members, n_classes, rows);
        let n_features = members.len() * n_classes;
        match task {
            Task::MultiClass => {
                let labels: Vec<usize> =
                    rows.iter().map(|&r| argmax(&truth[r * n_classes..(r + 1) * n_classes])).collect();
                let m = fit_multinomial(&x, n_features, &labels, n_classes, self)?;
                Ok(StackModel::Softmax { present: m.present, coefficients: m.coefficients, intercepts: m.intercepts })
            }
            Task::MultiLabel => {
                let models = (0..n_classes)
                    .map(|c| {
                        let labels: Vec<bool> = rows.iter().map(|&r| truth[r * n_classes + c] >= 0.5).collect();
                        fit_binary(&x, n_features, &labels, self).map(|b| b.0)
                    })
                    .collect::<Result<_>>()?;
                Ok(StackModel::Sigmoid { classes: models })
            }
        }
    }
}

/// A fitted meta-model's predictions (`rows × n_classes`) for `rows` of the members' predictions (out-of-fold
/// or test).
pub fn predict(model: &StackModel, members: &[&[f64]], n_classes: usize, rows: &[usize]) -> Vec<f64> {
    let x = features(members, n_classes, rows);
    let n_features = members.len() * n_classes;
    match model {
        StackModel::Softmax { present, coefficients, intercepts } => {
            softmax_predict(present, coefficients, intercepts, n_classes, &x, n_features)
        }
        StackModel::Sigmoid { classes } => {
            let columns: Vec<Vec<f64>> = classes.iter().map(|m| binary_predict(m, &x, n_features)).collect();
            (0..rows.len()).flat_map(|r| columns.iter().map(move |c| c[r])).collect()
        }
    }
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// The meta-model fitted on all out-of-fold rows, its in-sample AUC and its cross-validated scores.
#[derive(Debug, Clone)]
pub struct StackReport {
    /// Fitted on every row: the one to apply to test predictions.
    pub model: StackModel,
    /// Mean AUC on the rows it was fitted on (optimistic).
    pub in_sample_auc: Option<f64>,
    /// Held-out scores: the honest estimate.
    pub cv: CvScores,
    /// Every row predicted by the model fitted without its fold (`rows × n_classes`): what `cv` scores.
    pub held_out: Vec<f64>,
}

/// Fits on all rows and cross-validates over `folds`.
pub fn cross_validate(
    members: &[&[f64]],
    truth: &[f64],
    n_classes: usize,
    task: Task,
    folds: &[usize],
    config: &Stacking,
) -> Result<StackReport> {
    let all: Vec<usize> = (0..folds.len()).collect();
    let model = config.fit(members, truth, n_classes, task, &all)?;
    let in_sample = orchard_metrics::mean_column_auc(truth, &predict(&model, members, n_classes, &all), n_classes)?;
    let fit = |rows: &[usize]| config.fit(members, truth, n_classes, task, rows);
    let predict = |m: &StackModel, rows: &[usize]| Ok(predict(m, members, n_classes, rows));
    let (cv, held_out, _) = cv::cross_validate(truth, n_classes, folds, fit, predict)?;
    Ok(StackReport { model, in_sample_auc: in_sample.mean, cv, held_out })
}
