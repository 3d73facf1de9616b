//! ROC AUC, mean column-wise AUC and log loss against scikit-learn itself, on random cases with many ties,
//! continuous scores and degenerate classes. Needs `ORCHARD_PYTHON` (a Python with scikit-learn).

mod common;

use orchard_metrics::{log_loss, mean_column_auc, roc_auc, MetricError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const SCRIPT: &str = r#"
import json, sys, warnings
import numpy as np
from sklearn.metrics import roc_auc_score, log_loss
warnings.simplefilter("ignore")
cases = json.load(open(sys.argv[1]))
def auc(y, s):
    try:
        v = roc_auc_score(np.array(y, dtype=int), np.array(s, dtype=np.float64))
        return None if np.isnan(v) else float(v)
    except ValueError:
        return None
out = {
    "auc": [auc(c["labels"], c["scores"]) for c in cases["auc"]],
    "column": [[auc(np.array(c["truth"])[:, k], np.array(c["probs"])[:, k]) for k in range(c["k"])]
               for c in cases["multi"]],
    "log_loss": [float(log_loss(np.argmax(np.array(c["truth"]), axis=1), np.array(c["probs"], dtype=np.float64),
                                labels=list(range(c["k"])))) for c in cases["multi"]],
}
print(json.dumps(out))
"#;

struct Multi {
    k: usize,
    truth: Vec<f64>,
    probs: Vec<f64>,
}

fn rows(flat: &[f64], k: usize) -> Vec<Vec<f64>> {
    flat.chunks(k).map(<[f64]>::to_vec).collect()
}

#[test]
fn equals_scikit_learn_on_random_cases() {
    let mut rng = ChaCha8Rng::seed_from_u64(20200);
    let mut auc_cases: Vec<(Vec<bool>, Vec<f64>)> = Vec::new();
    for case in 0..300 {
        let n = rng.random_range(1..=if case % 10 == 0 { 2000 } else { 120 });
        let levels = [2usize, 3, 5, 10, 0][case % 5]; // 0: continuous
        let p_pos = rng.random_range(0.02..0.98);
        let mut labels: Vec<bool> = (0..n).map(|_| rng.random_bool(p_pos)).collect();
        if case % 7 == 0 {
            labels.iter_mut().for_each(|l| *l = case % 2 == 0); // degenerate: one class only
        }
        let scores = (0..n)
            .map(|_| {
                if levels == 0 {
                    rng.random_range(-3.0..3.0)
                } else {
                    rng.random_range(0..levels) as f64 / levels as f64
                }
            })
            .collect();
        auc_cases.push((labels, scores));
    }
    let mut multi = Vec::new();
    for case in 0..60 {
        let k = rng.random_range(2..=6);
        let n = rng.random_range(2..=150);
        let mut truth = vec![0.0; n * k];
        let mut probs = vec![0.0; n * k];
        for r in 0..n {
            // A rare class (k - 1) that is often absent entirely.
            let class = if case % 3 == 0 { rng.random_range(0..k - 1) } else { rng.random_range(0..k) };
            truth[r * k + class] = 1.0;
            let raw: Vec<f64> = (0..k)
                .map(|_| match case % 4 {
                    0 => rng.random_range(0..4) as f64, // ties, and zero probabilities after normalising
                    1 => {
                        if rng.random_bool(0.3) {
                            0.0
                        } else {
                            rng.random_range(0.0..1.0)
                        }
                    }
                    _ => rng.random_range(0.001..1.0),
                })
                .collect();
            let sum: f64 = raw.iter().sum();
            for c in 0..k {
                probs[r * k + c] = if sum == 0.0 {
                    if c == 0 {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    raw[c] / sum
                };
            }
        }
        multi.push(Multi { k, truth, probs });
    }
    let input = json!({
        "auc": auc_cases.iter().map(|(l, s)| json!({"labels": l.iter().map(|&b| b as u8).collect::<Vec<_>>(), "scores": s})).collect::<Vec<_>>(),
        "multi": multi.iter().map(|m| json!({"k": m.k, "truth": rows(&m.truth, m.k), "probs": rows(&m.probs, m.k)})).collect::<Vec<_>>(),
    });
    let expected = common::run_python(SCRIPT, &input);

    let (mut compared, mut degenerate, mut worst) = (0, 0, 0.0f64);
    for (i, ((labels, scores), want)) in auc_cases.iter().zip(expected["auc"].as_array().unwrap()).enumerate() {
        match (roc_auc(labels, scores), want.as_f64()) {
            (Ok(ours), Some(theirs)) => {
                worst = worst.max((ours - theirs).abs());
                assert!((ours - theirs).abs() <= 1e-12, "case {i}: ours {ours} sklearn {theirs}");
                compared += 1;
            }
            (Err(MetricError::Undefined { .. }), None) => degenerate += 1,
            (ours, theirs) => panic!("case {i}: ours {ours:?} sklearn {theirs:?}"),
        }
    }
    assert!(compared > 200 && degenerate > 20, "{compared} compared, {degenerate} degenerate");

    let mut undefined_columns = 0;
    for (i, m) in multi.iter().enumerate() {
        let ours = mean_column_auc(&m.truth, &m.probs, m.k).unwrap();
        let theirs: Vec<Option<f64>> = expected["column"][i].as_array().unwrap().iter().map(Value::as_f64).collect();
        assert_eq!(ours.per_class.len(), theirs.len());
        for (c, (o, t)) in ours.per_class.iter().zip(&theirs).enumerate() {
            match (o, t) {
                (Some(o), Some(t)) => assert!((o - t).abs() <= 1e-12, "multi {i} class {c}: ours {o} sklearn {t}"),
                (None, None) => undefined_columns += 1,
                _ => panic!("multi {i} class {c}: ours {o:?} sklearn {t:?}"),
            }
        }
        let defined: Vec<f64> = theirs.iter().flatten().copied().collect();
        if defined.is_empty() {
            assert_eq!(ours.mean, None, "multi {i}: no class defined");
        } else {
            let mean = defined.iter().sum::<f64>() / defined.len() as f64;
            assert!((ours.mean.unwrap() - mean).abs() <= 1e-12, "multi {i}");
        }

        let ours = log_loss(&m.truth, &m.probs, m.k).unwrap();
        let theirs = expected["log_loss"][i].as_f64().unwrap();
        worst = worst.max((ours - theirs).abs());
        assert!((ours - theirs).abs() <= 1e-12, "multi {i}: log loss ours {ours} sklearn {theirs}");
    }
    assert!(undefined_columns > 5, "rare classes absent in some cases: {undefined_columns}");
    eprintln!(
        "{compared} AUC cases + {degenerate} degenerate, {} multi-class cases; worst |ours - sklearn| = {worst:e}",
        multi.len()
    );
}
