//! What a classifier's decisions get right and wrong per class: the multi-class confusion matrix (argmax
//! of the targets against argmax of the probabilities), per-class counts of a multi-label decision at a
//! threshold, and precision, recall and F1 from those counts, as scikit-learn's `confusion_matrix` and
//! `precision_recall_fscore_support(..., zero_division=np.nan)` compute them.

use crate::multiclass::argmax;
use crate::{check_matrix, MetricError};

/// A `n_classes × n_classes` matrix of counts: `counts[true class][predicted class]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confusion {
    pub counts: Vec<Vec<u64>>,
}

/// The multi-class confusion matrix of `rows × n_classes` row-major targets (one-hot or soft: the true
/// class is the argmax) and probabilities (the predicted class is the argmax; the first on ties).
pub fn confusion_matrix(truth: &[f64], probs: &[f64], n_classes: usize) -> Result<Confusion, MetricError> {
    check_matrix(truth, probs, n_classes)?;
    let mut counts = vec![vec![0u64; n_classes]; n_classes];
    for (t, p) in truth.chunks_exact(n_classes).zip(probs.chunks_exact(n_classes)) {
        counts[argmax(t)][argmax(p)] += 1;
    }
    Ok(Confusion { counts })
}

/// One off-diagonal cell of a confusion matrix: images of class `truth` predicted as `predicted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfusedPair {
    pub truth: usize,
    pub predicted: usize,
    pub count: u64,
}

impl Confusion {
    /// Row `c` normalised to sum to 1 (the share of class `c`'s images given each prediction); `None` for a
    /// class without images.
    pub fn row_normalised(&self) -> Vec<Option<Vec<f64>>> {
        self.counts
            .iter()
            .map(|row| {
                let total: u64 = row.iter().sum();
                (total > 0).then(|| row.iter().map(|&n| n as f64 / total as f64).collect())
            })
            .collect()
    }

    /// Each class against the rest: its true positives are the diagonal cell, its false positives the rest
    /// of its column, its false negatives the rest of its row.
    pub fn one_vs_rest(&self) -> Vec<BinaryCounts> {
        let total: u64 = self.counts.iter().flatten().sum();
        (0..self.counts.len())
            .map(|c| {
                let tp = self.counts[c][c];
                let row: u64 = self.counts[c].iter().sum();
                let column: u64 = self.counts.iter().map(|r| r[c]).sum();
                BinaryCounts { tp, fp: column - tp, fn_: row - tp, tn: total - row - column + tp }
            })
            .collect()
    }

    /// The off-diagonal cells that are not empty, most images first (ties in row, then column order).
    pub fn confused_pairs(&self) -> Vec<ConfusedPair> {
        let mut pairs: Vec<ConfusedPair> = self
            .counts
            .iter()
            .enumerate()
            .flat_map(|(t, row)| {
                row.iter().enumerate().map(move |(p, &count)| ConfusedPair { truth: t, predicted: p, count })
            })
            .filter(|c| c.truth != c.predicted && c.count > 0)
            .collect();
        pairs.sort_by(|a, b| b.count.cmp(&a.count).then(a.truth.cmp(&b.truth)).then(a.predicted.cmp(&b.predicted)));
        pairs
    }
}

/// The four outcomes of one class's yes/no decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BinaryCounts {
    pub tp: u64,
    pub fp: u64,
    /// False negatives.
    pub fn_: u64,
    pub tn: u64,
}

/// Precision, recall and F1 of one class, and how many images carry it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    /// `tp / (tp + fp)`; `None` when the class is never predicted.
    pub precision: Option<f64>,
    /// `tp / (tp + fn)`; `None` when no image carries the class.
    pub recall: Option<f64>,
    /// `2 tp / (2 tp + fp + fn)`; `None` when the class is neither carried nor predicted.
    pub f1: Option<f64>,
    /// Images that carry the class (`tp + fn`).
    pub support: u64,
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

impl BinaryCounts {
    /// Precision, recall and F1 of these counts.
    pub fn scores(&self) -> ClassScores {
        ClassScores {
            precision: ratio(self.tp, self.tp + self.fp),
            recall: ratio(self.tp, self.tp + self.fn_),
            f1: ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_),
            support: self.tp + self.fn_,
        }
    }
}

/// Per-class counts of the multi-label decision "probability ≥ `threshold`" against targets ≥ 0.5, over
/// `rows × n_classes` row-major matrices.
pub fn thresholded_counts(
    truth: &[f64],
    probs: &[f64],
    n_classes: usize,
    threshold: f64,
) -> Result<Vec<BinaryCounts>, MetricError> {
    check_matrix(truth, probs, n_classes)?;
    let mut counts = vec![BinaryCounts::default(); n_classes];
    for (t, p) in truth.chunks_exact(n_classes).zip(probs.chunks_exact(n_classes)) {
        for (c, counts) in counts.iter_mut().enumerate() {
            match (t[c] >= 0.5, p[c] >= threshold) {
                (true, true) => counts.tp += 1,
                (false, true) => counts.fp += 1,
                (true, false) => counts.fn_ += 1,
                (false, false) => counts.tn += 1,
            }
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_matrix_scores_and_pairs() {
        // Rows: true 0 -> 0, true 0 -> 1, true 1 -> 1, true 2 -> 1, true 2 -> 1, true 2 -> 2.
        let truth = [1., 0., 0., 1., 0., 0., 0., 1., 0., 0., 0., 1., 0., 0., 1., 0., 0., 1.];
        let probs = [0.6, 0.3, 0.1, 0.2, 0.7, 0.1, 0.1, 0.8, 0.1, 0.3, 0.4, 0.3, 0.1, 0.5, 0.4, 0.1, 0.2, 0.7];
        let m = confusion_matrix(&truth, &probs, 3).unwrap();
        assert_eq!(m.counts, [vec![1, 1, 0], vec![0, 1, 0], vec![0, 2, 1]]);
        assert_eq!(m.row_normalised()[2], Some(vec![0.0, 2.0 / 3.0, 1.0 / 3.0]));
        let ovr = m.one_vs_rest();
        assert_eq!(ovr[1], BinaryCounts { tp: 1, fp: 3, fn_: 0, tn: 2 });
        let s = ovr[1].scores();
        assert_eq!((s.precision, s.recall, s.f1, s.support), (Some(0.25), Some(1.0), Some(0.4), 1));
        let pairs: Vec<(usize, usize, u64)> =
            m.confused_pairs().iter().map(|p| (p.truth, p.predicted, p.count)).collect();
        assert_eq!(pairs, [(2, 1, 2), (0, 1, 1)]);
    }

    #[test]
    fn undefined_scores_are_none_and_absent_rows_are_not_normalised() {
        let m = Confusion { counts: vec![vec![2, 0], vec![0, 0]] };
        assert_eq!(m.row_normalised(), [Some(vec![1.0, 0.0]), None]);
        let s = m.one_vs_rest()[1].scores();
        assert_eq!((s.precision, s.recall, s.f1, s.support), (None, None, None, 0));
        let never_predicted = BinaryCounts { tp: 0, fp: 0, fn_: 3, tn: 1 }.scores();
        assert_eq!(
            (never_predicted.precision, never_predicted.recall, never_predicted.f1),
            (None, Some(0.0), Some(0.0))
        );
    }

    #[test]
    fn multi_label_counts_at_a_threshold() {
        let truth = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        let probs = [0.9, 0.4, 0.5, 0.6, 0.2, 0.1];
        let counts = thresholded_counts(&truth, &probs, 2, 0.5).unwrap();
        assert_eq!(counts[0], BinaryCounts { tp: 1, fp: 1, fn_: 0, tn: 1 });
        assert_eq!(counts[1], BinaryCounts { tp: 1, fp: 0, fn_: 1, tn: 1 });
        assert!(matches!(thresholded_counts(&truth, &probs[..5], 2, 0.5), Err(MetricError::Shape(_))));
    }
}
