//! Metrics and learning-rate schedules for training, in pure Rust (no libtorch).
//!
//! Why a crate of its own: the numbers reported after every epoch (the competition's mean column-wise ROC AUC,
//! accuracy, log loss) and the learning rate of every epoch must be *exactly* those of the reference tools
//! (scikit-learn's `roc_auc_score`/`log_loss`, the Keras notebook's `lrfn`, torch's `OneCycleLR`). Keeping them
//! free of tensors makes them cheap to test against those tools and usable from the CLI, the trainer and
//! scripts alike.
//!
//! - [`auc`]: binary ROC AUC and the mean column-wise AUC over classes.
//! - [`multiclass`]: argmax accuracy and multi-class log loss.
//! - [`roc`]: the ROC curve, point by point, for drawing it.
//! - [`confusion`]: confusion matrices, per-class decision counts, precision, recall and F1.
//! - [`schedule`]: learning-rate schedules evaluated at a (possibly fractional) epoch.

pub mod auc;
pub mod confusion;
pub mod multiclass;
pub mod roc;
pub mod schedule;

pub use auc::{mean_column_auc, roc_auc, ColumnAuc};
pub use confusion::{confusion_matrix, thresholded_counts, BinaryCounts, ClassScores, ConfusedPair, Confusion};
pub use multiclass::{accuracy, log_loss, LOG_LOSS_EPS};
pub use roc::{roc_curve, RocPoint};
pub use schedule::{OneCycle, Reference, Schedule, WarmupCosine};

/// Why a metric could not be computed. Never a panic and never a NaN: callers decide what to report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// ROC AUC needs both classes; this one has no positives or no negatives.
    #[error("ROC AUC is undefined with {positives} positive(s) and {negatives} negative(s): both classes are needed")]
    Undefined {
        /// Number of positive samples.
        positives: usize,
        /// Number of negative samples.
        negatives: usize,
    },
    /// A score, probability or label is NaN or infinite.
    #[error("value at index {index} is not finite ({value})")]
    NonFinite {
        /// Flat index of the offending value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A probability lies outside [0, 1].
    #[error("probability at index {index} is {value}, outside [0, 1]")]
    NotProbability {
        /// Flat index of the offending value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// Inputs whose lengths do not agree (or are not a whole number of rows).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// No samples at all.
    #[error("no samples")]
    Empty,
}

/// Checks that every value is finite, naming the first that is not.
pub(crate) fn check_finite(values: &[f64]) -> Result<(), MetricError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(MetricError::NonFinite { index, value: values[index] }),
        None => Ok(()),
    }
}

/// Checks that `truth` and `probs` are both `rows × n_classes` row-major matrices; returns the row count.
pub(crate) fn check_matrix(truth: &[f64], probs: &[f64], n_classes: usize) -> Result<usize, MetricError> {
    if n_classes == 0 {
        return Err(MetricError::Shape("n_classes must be positive".into()));
    }
    if truth.len() != probs.len() || !truth.len().is_multiple_of(n_classes) {
        return Err(MetricError::Shape(format!(
            "truth has {} values and probabilities {}; both must be rows × {n_classes}",
            truth.len(),
            probs.len()
        )));
    }
    if truth.is_empty() {
        return Err(MetricError::Empty);
    }
    check_finite(truth)?;
    check_finite(probs)?;
    Ok(truth.len() / n_classes)
}
