//! ROC AUC exactly as scikit-learn's `roc_auc_score` computes it for binary labels, and the competition metric
//! built on it (the unweighted mean of the per-class one-vs-rest AUCs).
//!
//! scikit-learn integrates the ROC curve with the trapezoidal rule over the *distinct* score thresholds, so a
//! group of tied scores contributes a diagonal segment: a positive tied with a negative counts one half. That is
//! the Mann–Whitney U statistic with average ranks. We count it exactly in integers (twice the number of
//! correctly ordered pairs plus the tied pairs) and divide once, so the only rounding is the final division;
//! scikit-learn's sum of trapezoids agrees to within a few ulps.

use crate::{check_finite, check_matrix, MetricError};

/// Area under the ROC curve of `scores` for binary `labels` (`true` = positive), as
/// `sklearn.metrics.roc_auc_score(labels, scores)`.
///
/// Errors: lengths differ, no samples, a non-finite score, or only one class present
/// ([`MetricError::Undefined`], where scikit-learn raises and older versions returned NaN).
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Result<f64, MetricError> {
    let groups = tied_groups(labels, scores)?;
    // Walk the groups in increasing score; each positive beats every negative below its group and ties
    // with each negative in it.
    let mut twice_u: u128 = 0;
    let mut negatives_below: u128 = 0;
    for g in &groups.groups {
        let (p, n) = (g.positives as u128, g.negatives as u128);
        twice_u += 2 * p * negatives_below + p * n;
        negatives_below += n;
    }
    Ok(twice_u as f64 / (2 * groups.positives as u128 * groups.negatives as u128) as f64)
}

/// The samples of one distinct score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Group {
    pub score: f64,
    pub positives: usize,
    pub negatives: usize,
}

/// Samples grouped by distinct score, in increasing score, with the totals.
pub(crate) struct Groups {
    pub groups: Vec<Group>,
    pub positives: usize,
    pub negatives: usize,
}

/// Checks binary labels and their scores (same length, some samples, finite scores, both classes present)
/// and groups them by distinct score, lowest first: what both the AUC and the ROC curve walk.
pub(crate) fn tied_groups(labels: &[bool], scores: &[f64]) -> Result<Groups, MetricError> {
    if labels.len() != scores.len() {
        return Err(MetricError::Shape(format!("{} labels but {} scores", labels.len(), scores.len())));
    }
    if labels.is_empty() {
        return Err(MetricError::Empty);
    }
    check_finite(scores)?;
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(MetricError::Undefined { positives, negatives });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // All finite, so total_cmp orders them numerically (it also puts -0.0 before 0.0, which would split a
    // tie; grouping compares with `==`, which joins them).
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut groups: Vec<Group> = Vec::new();
    for i in order {
        let score = scores[i];
        match groups.last_mut() {
            Some(g) if g.score == score => {}
            _ => groups.push(Group { score, positives: 0, negatives: 0 }),
        }
        let g = groups.last_mut().expect("pushed above");
        if labels[i] {
            g.positives += 1;
        } else {
            g.negatives += 1;
        }
    }
    Ok(Groups { groups, positives, negatives })
}

/// Per-class one-vs-rest ROC AUCs and their unweighted mean: the competition's "mean column-wise ROC AUC".
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnAuc {
    /// AUC of each class (column), `None` where the class has no positives or no negatives in the data.
    pub per_class: Vec<Option<f64>>,
    /// Mean of the defined per-class AUCs; `None` when no class has a defined AUC.
    pub mean: Option<f64>,
}

/// The competition metric over `rows × n_classes` row-major matrices: `truth` (one-hot or soft targets; a
/// value ≥ 0.5 counts as positive) and `probs` (any scores; only their order within a column matters).
///
/// A class whose AUC is undefined in this data (no positives or no negatives, e.g. a rare class absent from a
/// validation fold) is reported as `None` and **left out of the mean**, so the mean is over the defined classes
/// only: check [`ColumnAuc::per_class`] before comparing means computed on different folds.
pub fn mean_column_auc(truth: &[f64], probs: &[f64], n_classes: usize) -> Result<ColumnAuc, MetricError> {
    let rows = check_matrix(truth, probs, n_classes)?;
    let mut per_class = Vec::with_capacity(n_classes);
    for class in 0..n_classes {
        let labels: Vec<bool> = (0..rows).map(|r| truth[r * n_classes + class] >= 0.5).collect();
        let scores: Vec<f64> = (0..rows).map(|r| probs[r * n_classes + class]).collect();
        per_class.push(match roc_auc(&labels, &scores) {
            Ok(auc) => Some(auc),
            Err(MetricError::Undefined { .. }) => None,
            Err(other) => return Err(other),
        });
    }
    let defined: Vec<f64> = per_class.iter().flatten().copied().collect();
    let mean = (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
    Ok(ColumnAuc { per_class, mean })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_reversed_and_hand_computed() {
        assert_eq!(roc_auc(&[false, false, true, true], &[0.1, 0.2, 0.8, 0.9]).unwrap(), 1.0);
        assert_eq!(roc_auc(&[true, true, false, false], &[0.1, 0.2, 0.8, 0.9]).unwrap(), 0.0);
        // sklearn's doc example: [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8] -> 0.75
        assert_eq!(roc_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]).unwrap(), 0.75);
    }

    #[test]
    fn ties_count_one_half() {
        // All scores equal: every pair tied -> 0.5.
        assert_eq!(roc_auc(&[true, false, true, false, false], &[3.0; 5]).unwrap(), 0.5);
        // pos {1, 2}, neg {1, 0}: pairs (1,1) tie .5, (1,0) 1, (2,1) 1, (2,0) 1 -> 3.5 / 4.
        assert_eq!(roc_auc(&[true, true, false, false], &[1.0, 2.0, 1.0, 0.0]).unwrap(), 0.875);
        // -0.0 and 0.0 are the same threshold.
        assert_eq!(roc_auc(&[true, false], &[0.0, -0.0]).unwrap(), 0.5);
    }

    #[test]
    fn degenerate_and_bad_inputs_are_errors() {
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), Err(MetricError::Undefined { positives: 2, negatives: 0 }));
        assert_eq!(roc_auc(&[false], &[0.1]), Err(MetricError::Undefined { positives: 0, negatives: 1 }));
        assert_eq!(roc_auc(&[], &[]), Err(MetricError::Empty));
        assert!(matches!(roc_auc(&[true], &[0.1, 0.2]), Err(MetricError::Shape(_))));
        assert!(matches!(roc_auc(&[true, false], &[f64::NAN, 0.2]), Err(MetricError::NonFinite { index: 0, .. })));
        assert!(matches!(roc_auc(&[true, false], &[0.1, f64::INFINITY]), Err(MetricError::NonFinite { index: 1, .. })));
    }

    #[test]
    fn column_auc_skips_undefined_classes() {
        // 3 classes; class 2 never positive.
        let truth = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let probs = [0.7, 0.2, 0.1, 0.3, 0.6, 0.1, 0.5, 0.4, 0.1, 0.6, 0.3, 0.1];
        let auc = mean_column_auc(&truth, &probs, 3).unwrap();
        // class 0: pos {0.7, 0.5}, neg {0.3, 0.6}: pairs 0.7>0.3, 0.7>0.6, 0.5>0.3, 0.5<0.6 -> 3/4.
        // class 1: pos {0.6, 0.3}, neg {0.2, 0.4}: 1 + 1 + 1 + 0 -> 3/4.
        assert_eq!(auc.per_class, vec![Some(0.75), Some(0.75), None]);
        assert_eq!(auc.mean, Some(0.75));
        let none = mean_column_auc(&[1.0, 1.0], &[0.2, 0.3], 1).unwrap();
        assert_eq!(none, ColumnAuc { per_class: vec![None], mean: None });
        assert!(matches!(mean_column_auc(&truth, &probs[..11], 3), Err(MetricError::Shape(_))));
    }
}
