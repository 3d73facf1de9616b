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
use linfa_logistic::{LogisticRegression, MultiFittedLogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2};
use orchard_data::dataset::Task;

use crate::cv::{self, CvScores};
use crate::{EnsembleError, Result};

/// The solver settings shared by the binary and multinomial models (linfa names their common builder type
/// only through two aliases, hence a macro): linfa's `alpha` is scikit-learn's `1 / C`, and its objective is
/// a sum over rows, so the gradient tolerance grows with them.
macro_rules! solver {
    ($params:expr, $config:expr, $rows:expr) => {
        $params.alpha(1.0 / $config.c).max_iterations($config.max_iterations).gradient_tolerance($config.tolerance * $rows as f64)
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

/// A fitted multinomial logistic regression over `n_classes` classes; classes absent from the rows it was
/// fitted on get probability 0 (and with a single class present, that class gets 1).
#[derive(Debug, Clone)]
pub struct Multinomial {
    model: Option<MultiFittedLogisticRegression<f64, usize>>,
    present: Vec<usize>,
    n_classes: usize,
}

impl Multinomial {
    /// Probabilities, `rows × n_classes` row-major, for features `x` (`rows × n_features`).
    pub fn predict(&self, x: &[f64], n_features: usize) -> Vec<f64> {
        let rows = x.len() / n_features.max(1);
        let mut out = vec![0.0; rows * self.n_classes];
        match &self.model {
            None => (0..rows).for_each(|r| out[r * self.n_classes + self.present[0]] = 1.0),
            Some(model) => {
                let x = Array2::from_shape_vec((rows, n_features), x.to_vec()).expect("rows × n_features");
                let p = model.predict_probabilities(&x);
                for (r, row) in p.rows().into_iter().enumerate() {
                    for (&class, &v) in model.classes().iter().zip(row.iter()) {
                        out[r * self.n_classes + class] = v;
                    }
                }
            }
        }
        out
    }
}

/// Fits the multinomial model to features `x` (`labels.len() × n_features`) and class indices `labels`.
pub fn fit_multinomial(x: &[f64], n_features: usize, labels: &[usize], n_classes: usize, config: &Stacking) -> Result<Multinomial> {
    check_config(config)?;
    let mut present: Vec<usize> = labels.to_vec();
    present.sort_unstable();
    present.dedup();
    if present.len() < 2 {
        return Ok(Multinomial { model: None, present, n_classes });
    }
    let data = dataset(x, n_features, labels)?;
    let model = solver!(MultiLogisticRegression::default(), config, labels.len()).fit(&data).map_err(stacking_error)?;
    Ok(Multinomial { model: Some(model), present, n_classes })
}

/// A fitted binary logistic regression (or a constant when one outcome never occurs).
#[derive(Debug, Clone)]
pub struct Binary {
    model: Option<linfa_logistic::FittedLogisticRegression<f64, bool>>,
    constant: f64,
}

impl Binary {
    /// Probability of the positive outcome for each row of `x`.
    pub fn predict(&self, x: &[f64], n_features: usize) -> Vec<f64> {
        let rows = x.len() / n_features.max(1);
        match &self.model {
            None => vec![self.constant; rows],
            Some(model) => {
                let x = Array2::from_shape_vec((rows, n_features), x.to_vec()).expect("rows × n_features");
                let p = model.predict_probabilities(&x);
                // linfa's "positive" class is the more frequent one, not `true`.
                if model.labels().pos.class {
                    p.to_vec()
                } else {
                    p.iter().map(|p| 1.0 - p).collect()
                }
            }
        }
    }
}

/// Fits a binary model to features `x` and outcomes `labels`.
pub fn fit_binary(x: &[f64], n_features: usize, labels: &[bool], config: &Stacking) -> Result<Binary> {
    check_config(config)?;
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 || positives == labels.len() {
        return Ok(Binary { model: None, constant: if positives == 0 { 0.0 } else { 1.0 } });
    }
    let data = dataset(x, n_features, labels)?;
    let model = solver!(LogisticRegression::default(), config, labels.len()).fit(&data).map_err(stacking_error)?;
    Ok(Binary { model: Some(model), constant: 0.0 })
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

/// A meta-model fitted for a task.
#[derive(Debug, Clone)]
pub enum Stacked {
    /// One softmax over the classes.
    MultiClass(Multinomial),
    /// One binary model per label.
    MultiLabel(Vec<Binary>),
}

impl Stacking {
    /// Fits the meta-model on `rows` of the members' out-of-fold predictions and the truth.
    pub fn fit(&self, members: &[&[f64]], truth: &[f64], n_classes: usize, task: Task, rows: &[usize]) -> Result<Stacked> {
        let x = features(members, n_classes, rows);
        let n_features = members.len() * n_classes;
        match task {
            Task::MultiClass => {
                let labels: Vec<usize> = rows.iter().map(|&r| argmax(&truth[r * n_classes..(r + 1) * n_classes])).collect();
                Ok(Stacked::MultiClass(fit_multinomial(&x, n_features, &labels, n_classes, self)?))
            }
            Task::MultiLabel => {
                let models = (0..n_classes)
                    .map(|c| {
                        let labels: Vec<bool> = rows.iter().map(|&r| truth[r * n_classes + c] >= 0.5).collect();
                        fit_binary(&x, n_features, &labels, self)
                    })
                    .collect::<Result<_>>()?;
                Ok(Stacked::MultiLabel(models))
            }
        }
    }
}

impl Stacked {
    /// Predictions (`rows × n_classes`) for `rows` of the members' predictions (out-of-fold or test).
    pub fn predict(&self, members: &[&[f64]], n_classes: usize, rows: &[usize]) -> Vec<f64> {
        let x = features(members, n_classes, rows);
        let n_features = members.len() * n_classes;
        match self {
            Stacked::MultiClass(model) => model.predict(&x, n_features),
            Stacked::MultiLabel(models) => {
                let columns: Vec<Vec<f64>> = models.iter().map(|m| m.predict(&x, n_features)).collect();
                (0..rows.len()).flat_map(|r| columns.iter().map(move |c| c[r])).collect()
            }
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
    pub model: Stacked,
    /// Mean AUC on the rows it was fitted on (optimistic).
    pub in_sample_auc: Option<f64>,
    /// Held-out scores: the honest estimate.
    pub cv: CvScores,
}

/// Fits on all rows and cross-validates over `folds`.
pub fn cross_validate(members: &[&[f64]], truth: &[f64], n_classes: usize, task: Task, folds: &[usize], config: &Stacking) -> Result<StackReport> {
    let all: Vec<usize> = (0..folds.len()).collect();
    let model = config.fit(members, truth, n_classes, task, &all)?;
    let in_sample = orchard_metrics::mean_column_auc(truth, &model.predict(members, n_classes, &all), n_classes)?;
    let fit = |rows: &[usize]| config.fit(members, truth, n_classes, task, rows);
    let predict = |m: &Stacked, rows: &[usize]| Ok(m.predict(members, n_classes, rows));
    let (cv, _, _) = cv::cross_validate(truth, n_classes, folds, fit, predict)?;
    Ok(StackReport { model, in_sample_auc: in_sample.mean, cv })
}
