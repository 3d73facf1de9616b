//! ROC curves, confusion matrices and per-class precision, recall and F1 against scikit-learn itself
//! (`roc_curve(drop_intermediate=False)`, `confusion_matrix`, `precision_recall_fscore_support` with
//! `zero_division=np.nan`), on random multi-class and multi-label cases with ties and absent classes. Needs
//! `ORCHARD_PYTHON` (a Python with scikit-learn).

mod common;

use orchard_metrics::{confusion_matrix, roc_curve, thresholded_counts, ClassScores};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const SCRIPT: &str = r#"
import json, sys, warnings
import numpy as np
from sklearn.metrics import roc_curve, confusion_matrix, precision_recall_fscore_support
warnings.simplefilter("ignore")
cases = json.load(open(sys.argv[1]))
def nan_none(v):
    return [None if np.isnan(x) else float(x) for x in v]
def scores(y, p, **kw):
    pr, rc, f1, sup = precision_recall_fscore_support(y, p, zero_division=np.nan, **kw)
    return {"precision": nan_none(pr), "recall": nan_none(rc), "f1": nan_none(f1), "support": [int(s) for s in sup]}
out = {"multi": [], "label": []}
for c in cases["multi"]:
    t, p, k = np.array(c["truth"]), np.array(c["probs"]), c["k"]
    yt, yp = t.argmax(axis=1), p.argmax(axis=1)
    curves = []
    for j in range(k):
        labels = t[:, j] >= 0.5
        if labels.all() or not labels.any():
            curves.append(None)
        else:
            fpr, tpr, thr = roc_curve(labels, p[:, j], drop_intermediate=False)
            curves.append({"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thr": thr[1:].tolist()})
    out["multi"].append({
        "confusion": confusion_matrix(yt, yp, labels=list(range(k))).tolist(),
        "scores": scores(yt, yp, labels=list(range(k))),
        "curves": curves,
    })
for c in cases["label"]:
    t, p = np.array(c["truth"]) >= 0.5, np.array(c["probs"]) >= 0.5
    out["label"].append(scores(t.astype(int), p.astype(int)))
print(json.dumps(out))
"#;

fn rows(flat: &[f64], k: usize) -> Vec<Vec<f64>> {
    flat.chunks(k).map(<[f64]>::to_vec).collect()
}

fn close(ours: Option<f64>, theirs: &Value, what: &str) {
    match (ours, theirs.as_f64()) {
        (Some(o), Some(t)) => assert!((o - t).abs() <= 1e-12, "{what}: ours {o} sklearn {t}"),
        (None, None) => {}
        (o, _) => panic!("{what}: ours {o:?} sklearn {theirs}"),
    }
}

fn same_scores(ours: &[ClassScores], theirs: &Value, what: &str) {
    for (c, s) in ours.iter().enumerate() {
        close(s.precision, &theirs["precision"][c], &format!("{what} class {c} precision"));
        close(s.recall, &theirs["recall"][c], &format!("{what} class {c} recall"));
        close(s.f1, &theirs["f1"][c], &format!("{what} class {c} f1"));
        assert_eq!(Some(s.support), theirs["support"][c].as_u64(), "{what} class {c} support");
    }
}

/// A random `n × k` matrix of probabilities on a few levels (ties), and one-hot or multi-hot targets where
/// the last class is often absent.
fn case(rng: &mut ChaCha8Rng, multi_label: bool) -> (usize, Vec<f64>, Vec<f64>) {
    let k = rng.random_range(2..=5);
    let n = rng.random_range(1..=120);
    let rare = rng.random_bool(0.3);
    let mut truth = vec![0.0; n * k];
    let probs: Vec<f64> = (0..n * k).map(|_| f64::from(rng.random_range(0..6)) / 5.0).collect();
    for r in 0..n {
        let classes = if rare { k - 1 } else { k };
        if multi_label {
            for c in 0..classes {
                truth[r * k + c] = f64::from(u8::from(rng.random_bool(0.4)));
            }
        } else {
            truth[r * k + rng.random_range(0..classes)] = 1.0;
        }
    }
    (k, truth, probs)
}

#[test]
fn curves_matrices_and_class_scores_equal_scikit_learn() {
    let mut rng = ChaCha8Rng::seed_from_u64(2021);
    let multi: Vec<_> = (0..60).map(|_| case(&mut rng, false)).collect();
    let label: Vec<_> = (0..40).map(|_| case(&mut rng, true)).collect();
    let as_json = |cases: &[(usize, Vec<f64>, Vec<f64>)]| {
        cases.iter().map(|(k, t, p)| json!({"k": k, "truth": rows(t, *k), "probs": rows(p, *k)})).collect::<Vec<_>>()
    };
    let expected = common::run_python(SCRIPT, &json!({"multi": as_json(&multi), "label": as_json(&label)}));

    let (mut curves, mut off_diagonal) = (0, 0);
    for (i, (k, truth, probs)) in multi.iter().enumerate() {
        let want = &expected["multi"][i];
        let m = confusion_matrix(truth, probs, *k).unwrap();
        let theirs: Vec<Vec<u64>> = serde_json::from_value(want["confusion"].clone()).unwrap();
        assert_eq!(m.counts, theirs, "multi {i}");
        off_diagonal += m.confused_pairs().len();
        let scores: Vec<ClassScores> = m.one_vs_rest().iter().map(|c| c.scores()).collect();
        same_scores(&scores, &want["scores"], &format!("multi {i}"));
        for c in 0..*k {
            let labels: Vec<bool> = (0..truth.len() / k).map(|r| truth[r * k + c] >= 0.5).collect();
            let column: Vec<f64> = (0..truth.len() / k).map(|r| probs[r * k + c]).collect();
            match (roc_curve(&labels, &column), want["curves"][c].as_object()) {
                (Ok(points), Some(theirs)) => {
                    let get = |name: &str| -> Vec<f64> { serde_json::from_value(theirs[name].clone()).unwrap() };
                    assert_eq!(points.iter().map(|p| p.fpr).collect::<Vec<_>>(), get("fpr"), "multi {i} class {c}");
                    assert_eq!(points.iter().map(|p| p.tpr).collect::<Vec<_>>(), get("tpr"), "multi {i} class {c}");
                    assert_eq!(points[1..].iter().map(|p| p.threshold).collect::<Vec<_>>(), get("thr"));
                    curves += 1;
                }
                (Err(_), None) => {}
                (ours, theirs) => panic!("multi {i} class {c}: ours {ours:?} sklearn {theirs:?}"),
            }
        }
    }
    for (i, (k, truth, probs)) in label.iter().enumerate() {
        let counts = thresholded_counts(truth, probs, *k, 0.5).unwrap();
        let scores: Vec<ClassScores> = counts.iter().map(|c| c.scores()).collect();
        same_scores(&scores, &expected["label"][i], &format!("multi-label {i}"));
    }
    assert!(curves > 100 && off_diagonal > 100, "{curves} curves, {off_diagonal} confused pairs compared");
}
