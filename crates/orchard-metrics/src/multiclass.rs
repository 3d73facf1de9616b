//! Multi-class accuracy (argmax) and log loss (cross-entropy of predicted probabilities), as scikit-learn's
//! `accuracy_score` on argmaxes and `log_loss`, for the per-epoch validation report.

use crate::{check_matrix, MetricError};

/// Probabilities are clipped to `[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]` before the logarithm, so a confident
/// wrong prediction costs about 36 nats instead of infinity. This is the machine epsilon of `f64`, which is
/// what scikit-learn ≥ 1.5 uses for float64 input (older versions used a fixed 1e-15).
pub const LOG_LOSS_EPS: f64 = f64::EPSILON;

/// Index of the largest value of a row; the first one on ties, as `numpy.argmax`.
pub(crate) fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Share of rows whose highest probability is at the true class (the argmax of the one-hot or soft target)
/// over `rows × n_classes` row-major matrices.
pub fn accuracy(truth: &[f64], probs: &[f64], n_classes: usize) -> Result<f64, MetricError> {
    let rows = check_matrix(truth, probs, n_classes)?;
    let correct = truth
        .chunks_exact(n_classes)
        .zip(probs.chunks_exact(n_classes))
        .filter(|(t, p)| argmax(t) == argmax(p))
        .count();
    Ok(correct as f64 / rows as f64)
}

/// Mean cross-entropy `-Σ_c t_c · ln(clip(p_c))` over rows, with targets `truth` (one-hot or soft) and
/// predicted probabilities `probs`, both `rows × n_classes` row-major; equals
/// `sklearn.metrics.log_loss(argmax(truth), probs, labels=range(n_classes))` for one-hot targets.
///
/// Probabilities must lie in [0, 1]; rows are not renormalised (scikit-learn refuses rows that do not sum to
/// one; we leave that to the caller, whose softmax output sums to one within float rounding).
pub fn log_loss(truth: &[f64], probs: &[f64], n_classes: usize) -> Result<f64, MetricError> {
    let rows = check_matrix(truth, probs, n_classes)?;
    if let Some(index) = probs.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(MetricError::NotProbability { index, value: probs[index] });
    }
    let total: f64 = truth
        .chunks_exact(n_classes)
        .zip(probs.chunks_exact(n_classes))
        .map(|(t, p)| {
            -t.iter()
                .zip(p)
                .map(|(&t, &p)| if t == 0.0 { 0.0 } else { t * p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS).ln() })
                .sum::<f64>()
        })
        .sum();
    Ok(total / rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_uses_first_argmax() {
        let truth = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
        let probs = [0.9, 0.1, 0.5, 0.5, 0.2, 0.8];
        // Row 1 ties: argmax is 0, wrong.
        assert_eq!(accuracy(&truth, &probs, 2).unwrap(), 2.0 / 3.0);
        assert_eq!(accuracy(&[], &[], 2), Err(MetricError::Empty));
    }

    #[test]
    fn log_loss_hand_computed_and_clipped() {
        // sklearn's doc example: 0.21616...
        let truth = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let probs = [0.1, 0.9, 0.9, 0.1, 0.8, 0.2, 0.35, 0.65];
        let expected = -(0.9f64.ln() + 0.9f64.ln() + 0.8f64.ln() + 0.65f64.ln()) / 4.0;
        assert_eq!(log_loss(&truth, &probs, 2).unwrap(), expected);
        assert!((expected - 0.21616).abs() < 1e-5);
        // A certain wrong prediction is finite: -ln(eps).
        assert_eq!(log_loss(&[1.0, 0.0], &[0.0, 1.0], 2).unwrap(), -LOG_LOSS_EPS.ln());
        assert!(matches!(log_loss(&[1.0, 0.0], &[1.5, -0.5], 2), Err(MetricError::NotProbability { index: 0, .. })));
        assert!(matches!(log_loss(&[1.0, 0.0], &[f64::NAN, 0.5], 2), Err(MetricError::NonFinite { index: 0, .. })));
    }
}
