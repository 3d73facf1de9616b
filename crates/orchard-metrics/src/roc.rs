//! The ROC curve whose area [`crate::roc_auc`] is, for drawing it: one point per distinct score threshold,
//! as `sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)` returns them.

use crate::auc::tied_groups;
use crate::MetricError;

/// One point of a ROC curve: the rates of predicting positive for scores at or above `threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocPoint {
    /// False-positive rate (1 − specificity).
    pub fpr: f64,
    /// True-positive rate (recall).
    pub tpr: f64,
    /// The score threshold; the first point's is +∞ (nothing predicted positive), as scikit-learn's.
    pub threshold: f64,
}

/// The ROC curve of `scores` for binary `labels` (`true` = positive), from (0, 0) to (1, 1), one point per
/// distinct score in decreasing order. Errors as [`crate::roc_auc`]: lengths differ, no samples, a
/// non-finite score, or only one class present.
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> Result<Vec<RocPoint>, MetricError> {
    let groups = tied_groups(labels, scores)?;
    let mut points = vec![RocPoint { fpr: 0.0, tpr: 0.0, threshold: f64::INFINITY }];
    let (mut tp, mut fp) = (0usize, 0usize);
    for g in groups.groups.iter().rev() {
        tp += g.positives;
        fp += g.negatives;
        points.push(RocPoint {
            fpr: fp as f64 / groups.negatives as f64,
            tpr: tp as f64 / groups.positives as f64,
            threshold: g.score,
        });
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roc_auc;

    #[test]
    fn hand_computed_curve_and_its_area_is_the_auc() {
        // sklearn's doc example: y = [1, 1, 2, 2] (2 positive), scores [0.1, 0.4, 0.35, 0.8].
        let labels = [false, false, true, true];
        let scores = [0.1, 0.4, 0.35, 0.8];
        let curve = roc_curve(&labels, &scores).unwrap();
        let rates: Vec<(f64, f64)> = curve.iter().map(|p| (p.fpr, p.tpr)).collect();
        assert_eq!(rates, [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]);
        let thresholds: Vec<f64> = curve.iter().map(|p| p.threshold).collect();
        assert_eq!(thresholds, [f64::INFINITY, 0.8, 0.4, 0.35, 0.1]);
        let area: f64 = curve.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum();
        assert_eq!(area, roc_auc(&labels, &scores).unwrap());
    }

    #[test]
    fn ties_make_one_diagonal_step_and_bad_input_is_refused() {
        let curve = roc_curve(&[true, false, true, false], &[0.5, 0.5, 0.5, -0.0]).unwrap();
        let rates: Vec<(f64, f64)> = curve.iter().map(|p| (p.fpr, p.tpr)).collect();
        assert_eq!(rates, [(0.0, 0.0), (0.5, 1.0), (1.0, 1.0)]);
        assert_eq!(roc_curve(&[true], &[0.5]), Err(MetricError::Undefined { positives: 1, negatives: 0 }));
        assert_eq!(roc_curve(&[], &[]), Err(MetricError::Empty));
        assert!(matches!(roc_curve(&[true, false], &[0.1]), Err(MetricError::Shape(_))));
        assert!(matches!(roc_curve(&[true, false], &[0.1, f64::NAN]), Err(MetricError::NonFinite { index: 1, .. })));
    }
}
