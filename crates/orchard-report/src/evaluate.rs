//! A set of predictions scored against the labels, as the page shows them: per-class AUC and ROC curves,
//! the decisions' confusion matrix (argmax for multi-class; each label at 0.5 for multi-label), precision,
//! recall and F1 per class, the most confused class pairs, and the images ranked from the most confident
//! mistake down. The arithmetic is orchard-metrics'; this module lines the rows up and picks.

use std::collections::HashMap;

use orchard_files::{Predictions, Task, Truth};
use orchard_metrics::{
    confusion_matrix, mean_column_auc, roc_curve, thresholded_counts, BinaryCounts, ColumnAuc, Confusion, RocPoint,
};

/// The threshold of a multi-label decision.
pub const THRESHOLD: f64 = 0.5;

/// Predictions and the labels of the same rows.
#[derive(Clone, Debug)]
pub struct Scored {
    pub classes: Vec<String>,
    pub task: Task,
    pub ids: Vec<String>,
    /// `ids × classes` targets, row-major.
    pub truth: Vec<f64>,
    /// `ids × classes` probabilities, row-major.
    pub probs: Vec<f64>,
}

/// Lines `predictions` up with `truth` on the predictions' rows and classes. Rows the truth lacks are left
/// out (and counted); `None` when a predicted class is not a truth class or no row is left.
pub fn score(predictions: &Predictions, truth: &Truth) -> Option<(Scored, usize)> {
    let cols: Vec<usize> =
        predictions.classes.iter().map(|c| truth.classes.iter().position(|x| x == c)).collect::<Option<_>>()?;
    let row_of: HashMap<&str, usize> = truth.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let (k, tk) = (predictions.classes.len(), truth.classes.len());
    let (mut ids, mut t, mut p, mut missing) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for (r, id) in predictions.ids.iter().enumerate() {
        let Some(&row) = row_of.get(id.as_str()) else {
            missing += 1;
            continue;
        };
        ids.push(id.clone());
        t.extend(cols.iter().map(|&c| truth.values[row * tk + c]));
        p.extend_from_slice(&predictions.values[r * k..(r + 1) * k]);
    }
    if ids.is_empty() {
        return None;
    }
    let scored = Scored { classes: predictions.classes.clone(), task: truth.task, ids, truth: t, probs: p };
    Some((scored, missing))
}

/// What the page shows of one set of predictions.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub auc: ColumnAuc,
    /// Per class; `None` where the class has no positives or no negatives.
    pub curves: Vec<Option<Vec<RocPoint>>>,
    /// Multi-class only.
    pub confusion: Option<Confusion>,
    /// Each class's decision counts (one-vs-rest of the confusion matrix, or at [`THRESHOLD`]).
    pub counts: Vec<BinaryCounts>,
}

impl Scored {
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    fn column(&self, values: &[f64], c: usize) -> Vec<f64> {
        let k = self.classes.len();
        (0..self.rows()).map(|r| values[r * k + c]).collect()
    }

    /// The AUCs, curves, confusion and counts.
    pub fn evaluate(&self) -> Evaluation {
        let k = self.classes.len();
        let auc =
            mean_column_auc(&self.truth, &self.probs, k).unwrap_or(ColumnAuc { per_class: vec![None; k], mean: None });
        let curves = (0..k)
            .map(|c| {
                let labels: Vec<bool> = self.column(&self.truth, c).iter().map(|&t| t >= 0.5).collect();
                roc_curve(&labels, &self.column(&self.probs, c)).ok().map(thin)
            })
            .collect();
        let (confusion, counts) = match self.task {
            Task::MultiClass => {
                let m = confusion_matrix(&self.truth, &self.probs, k).ok();
                let counts = m.as_ref().map(Confusion::one_vs_rest).unwrap_or_default();
                (m, counts)
            }
            Task::MultiLabel => (None, thresholded_counts(&self.truth, &self.probs, k, THRESHOLD).unwrap_or_default()),
        };
        Evaluation { auc, curves, confusion, counts }
    }

    /// The row's true classes and predicted classes (argmax, or every label at [`THRESHOLD`]).
    pub fn decision(&self, r: usize) -> (Vec<usize>, Vec<usize>) {
        let k = self.classes.len();
        let (t, p) = (&self.truth[r * k..(r + 1) * k], &self.probs[r * k..(r + 1) * k]);
        match self.task {
            Task::MultiClass => (vec![argmax(t)], vec![argmax(p)]),
            Task::MultiLabel => {
                let set = |v: &[f64], at: f64| (0..k).filter(|&c| v[c] >= at).collect();
                (set(t, 0.5), set(p, THRESHOLD))
            }
        }
    }

    /// Rows ordered for the gallery: mistakes first, the most confident first, then the right answers,
    /// the least confident first; at most `n`. Confidence is the probability of the answer given (the
    /// argmax's; for multi-label, of each label's yes or no, the surest wrong one or the least sure one).
    pub fn gallery_order(&self, n: usize) -> Vec<usize> {
        let k = self.classes.len();
        let mut keyed: Vec<(bool, f64, usize)> = (0..self.rows())
            .map(|r| {
                let (truth, predicted) = self.decision(r);
                let row = &self.probs[r * k..(r + 1) * k];
                let wrong = truth != predicted;
                let confidence = match self.task {
                    Task::MultiClass => row[predicted[0]],
                    Task::MultiLabel => {
                        let sure = |c: usize| if row[c] >= THRESHOLD { row[c] } else { 1.0 - row[c] };
                        let wrong_label = |c: &usize| truth.contains(c) != predicted.contains(c);
                        if wrong {
                            (0..k).filter(wrong_label).map(sure).fold(0.0, f64::max)
                        } else {
                            (0..k).map(sure).fold(1.0, f64::min)
                        }
                    }
                };
                (wrong, if wrong { -confidence } else { confidence }, r)
            })
            .collect();
        keyed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        keyed.into_iter().take(n).map(|(_, _, r)| r).collect()
    }
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// Most points a drawn curve keeps: enough for a smooth line, few enough for a small page.
const MAX_POINTS: usize = 400;

/// The curve without the points on straight runs between their neighbours (scikit-learn's
/// `drop_intermediate`), then evenly thinned to [`MAX_POINTS`], keeping both ends.
pub fn thin(points: Vec<RocPoint>) -> Vec<RocPoint> {
    let n = points.len();
    if n <= 2 {
        return points;
    }
    let mut kept: Vec<RocPoint> = vec![points[0]];
    for i in 1..n - 1 {
        let (a, b, c) = (points[i - 1], points[i], points[i + 1]);
        let collinear = ((b.fpr - a.fpr) * (c.tpr - b.tpr) - (b.tpr - a.tpr) * (c.fpr - b.fpr)).abs() < 1e-15;
        if !collinear {
            kept.push(b);
        }
    }
    kept.push(points[n - 1]);
    if kept.len() <= MAX_POINTS {
        return kept;
    }
    let step = (kept.len() - 1) as f64 / (MAX_POINTS - 1) as f64;
    (0..MAX_POINTS).map(|i| kept[((i as f64 * step).round() as usize).min(kept.len() - 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn truth() -> Truth {
        Truth {
            file: PathBuf::from("t.csv"),
            classes: vec!["a".into(), "b".into()],
            ids: vec!["x".into(), "y".into(), "z".into(), "w".into()],
            values: vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
            task: Task::MultiClass,
            from_labels: false,
            left_out: Vec::new(),
        }
    }

    #[test]
    fn rows_line_up_by_id_and_class_name_and_unknown_ids_are_counted() {
        let p = Predictions::new(
            "image_id",
            vec!["b".into(), "a".into()],
            vec!["w".into(), "x".into(), "q".into()],
            vec![0.9, 0.1, 0.2, 0.8, 0.5, 0.5],
        );
        let (s, missing) = score(&p, &truth()).unwrap();
        assert_eq!((s.ids.clone(), missing), (vec!["w".to_string(), "x".to_string()], 1));
        assert_eq!(s.truth, [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(s.probs, [0.9, 0.1, 0.2, 0.8]);
        let other = Predictions::new("image_id", vec!["c".into()], vec!["x".into()], vec![1.0]);
        assert!(score(&other, &truth()).is_none());
    }

    #[test]
    fn evaluation_counts_and_the_gallery_puts_confident_mistakes_first() {
        let p = Predictions::new(
            "image_id",
            vec!["a".into(), "b".into()],
            vec!["x".into(), "y".into(), "z".into(), "w".into()],
            // x right (0.9), y wrong (0.6 for a), z wrong and sure (0.95 for b), w right but unsure (0.55).
            vec![0.9, 0.1, 0.6, 0.4, 0.05, 0.95, 0.45, 0.55],
        );
        let (s, _) = score(&p, &truth()).unwrap();
        let e = s.evaluate();
        assert_eq!(e.confusion.as_ref().unwrap().counts, [vec![1, 1], vec![1, 1]]);
        assert_eq!(e.counts[0], BinaryCounts { tp: 1, fp: 1, fn_: 1, tn: 1 });
        // Class a: positives x (0.9), z (0.05); negatives y (0.6), w (0.45): 2 of 4 pairs right.
        assert_eq!(e.auc.per_class[0], Some(0.5));
        // (0, 0), (0, ½) after x, then y and w along tpr = ½ (the middle point dropped), then (1, 1).
        let curve: Vec<(f64, f64)> = e.curves[0].as_ref().unwrap().iter().map(|p| (p.fpr, p.tpr)).collect();
        assert_eq!(curve, [(0.0, 0.0), (0.0, 0.5), (1.0, 0.5), (1.0, 1.0)]);
        assert_eq!(s.gallery_order(10), [2, 1, 3, 0]);
        assert_eq!(s.gallery_order(1), [2]);
    }

    #[test]
    fn multi_label_decisions_are_each_label_at_the_threshold() {
        let truth = Truth { task: Task::MultiLabel, values: vec![1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0], ..truth() };
        let p = Predictions::new(
            "image_id",
            vec!["a".into(), "b".into()],
            vec!["x".into(), "y".into(), "z".into(), "w".into()],
            // x right (least sure label 0.6); y misses b (0.6 sure of its no); z right (0.8); w right (0.7).
            vec![0.6, 0.7, 0.2, 0.4, 0.1, 0.2, 0.9, 0.3],
        );
        let (s, _) = score(&p, &truth).unwrap();
        assert_eq!(s.decision(0), (vec![0, 1], vec![0, 1]));
        assert_eq!(s.decision(1), (vec![1], vec![]));
        assert_eq!(s.decision(3), (vec![0], vec![0]));
        let e = s.evaluate();
        assert!(e.confusion.is_none());
        assert_eq!(e.counts[1], BinaryCounts { tp: 1, fp: 0, fn_: 1, tn: 2 });
        assert_eq!(s.gallery_order(4), [1, 0, 3, 2]);
    }

    #[test]
    fn thinning_keeps_corners_and_ends() {
        let p = |fpr: f64, tpr: f64| RocPoint { fpr, tpr, threshold: 0.0 };
        let curve = vec![p(0.0, 0.0), p(0.0, 0.5), p(0.0, 1.0), p(0.5, 1.0), p(1.0, 1.0)];
        let thinned = thin(curve);
        assert_eq!(thinned.iter().map(|q| (q.fpr, q.tpr)).collect::<Vec<_>>(), [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]);
        let long: Vec<RocPoint> = (0..=2000).map(|i| p(i as f64 / 2000.0, (i as f64 / 2000.0).sqrt())).collect();
        let thinned = thin(long);
        assert_eq!(thinned.len(), MAX_POINTS);
        assert_eq!((thinned[0].fpr, thinned[MAX_POINTS - 1].fpr), (0.0, 1.0));
    }
}
