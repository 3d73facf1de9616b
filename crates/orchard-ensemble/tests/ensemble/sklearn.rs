//! The stacking meta-model and per-label thresholds against scikit-learn, the summary's correlation against
//! numpy.

use orchard_ensemble::correlation::correlation;
use orchard_ensemble::stacking::{fit_binary, fit_multinomial, Stacking};
use orchard_ensemble::submission::choose_thresholds;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::{as_rows, from_rows, run_python};

struct LogisticCase {
    x: Vec<f64>,
    y: Vec<usize>,
    x_test: Vec<f64>,
    features: usize,
    classes: usize,
    c: f64,
}

#[test]
fn logistic_regression_equals_scikit_learn() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut cases = Vec::new();
    for i in 0..9 {
        let (features, classes, c) = (rng.random_range(2..=8), [2, 3, 4][i % 3], [0.1, 1.0, 10.0][i / 3]);
        let rows = rng.random_range(60..200);
        let coef: Vec<f64> = (0..features * classes).map(|_| rng.random_range(-2.0..2.0)).collect();
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..rows {
            let row: Vec<f64> = (0..features).map(|_| rng.random_range(-3.0..0.0)).collect();
            let logits: Vec<f64> = (0..classes)
                .map(|k| {
                    (0..features).map(|f| row[f] * coef[f * classes + k]).sum::<f64>() + rng.random_range(-1.5..1.5)
                })
                .collect();
            y.push((0..classes).fold(0, |b, k| if logits[k] > logits[b] { k } else { b }));
            x.extend(row);
        }
        let x_test: Vec<f64> = (0..30 * features).map(|_| rng.random_range(-3.0..0.0)).collect();
        cases.push(LogisticCase { x, y, x_test, features, classes, c });
    }
    let mut f1_cases = Vec::new();
    for i in 0..40 {
        let n = rng.random_range(5..150);
        let levels = [0, 4, 10][i % 3];
        let y: Vec<f64> = (0..n).map(|_| if rng.random_bool(0.3) { 1.0 } else { 0.0 }).collect();
        let s: Vec<f64> = y
            .iter()
            .map(|t| {
                let v = 0.3 * t + rng.random_range(0.0..0.7);
                if levels == 0 {
                    v
                } else {
                    (v * levels as f64).round() / levels as f64
                }
            })
            .collect();
        if y.contains(&1.0) {
            f1_cases.push((y, s));
        }
    }
    let pearson_cases: Vec<Vec<Vec<f64>>> = (0..5)
        .map(|_| {
            (0..rng.random_range(2..=5)).map(|_| (0..40 * 3).map(|_| rng.random_range(0.0..1.0)).collect()).collect()
        })
        .collect();
    let thresholds: Vec<f64> = f1_cases.iter().map(|(y, s)| choose_thresholds(s, y, 1)[0].value).collect();
    let input = json!({
        "logistic": cases.iter().map(|c| json!({"x": as_rows(&c.x, c.features), "y": c.y, "x_test": as_rows(&c.x_test, c.features), "c": c.c})).collect::<Vec<_>>(),
        "pearson": pearson_cases.iter().map(|m| json!({"members": m.iter().map(|x| as_rows(x, 3)).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "f1": f1_cases.iter().zip(&thresholds).map(|((y, s), t)| json!({"y": y, "scores": s, "threshold": t})).collect::<Vec<_>>(),
    });
    let expected = run_python("sklearn_models.py", &input);

    let mut worst = 0.0f64;
    for (i, (case, want)) in cases.iter().zip(expected["logistic"].as_array().unwrap()).enumerate() {
        let config = Stacking { c: case.c, ..Stacking::default() };
        // scikit-learn has columns only for the classes present in y; absent ones are 0 in ours.
        let present: Vec<usize> =
            want["classes"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as usize).collect();
        let theirs: Vec<f64> = from_rows(&want["proba"])
            .chunks(present.len())
            .flat_map(|row| {
                (0..case.classes)
                    .map(|k| present.iter().position(|&p| p == k).map_or(0.0, |i| row[i]))
                    .collect::<Vec<_>>()
            })
            .collect();
        let ours = if case.classes == 2 {
            let labels: Vec<bool> = case.y.iter().map(|&c| c == 1).collect();
            let p1 = fit_binary(&case.x, case.features, &labels, &config).unwrap().predict(&case.x_test, case.features);
            p1.iter().flat_map(|p| [1.0 - p, *p]).collect::<Vec<_>>()
        } else {
            fit_multinomial(&case.x, case.features, &case.y, case.classes, &config)
                .unwrap()
                .predict(&case.x_test, case.features)
        };
        assert_eq!(ours.len(), theirs.len(), "case {i}");
        for (o, t) in ours.iter().zip(&theirs) {
            worst = worst.max((o - t).abs());
            assert!((o - t).abs() < 1e-5, "case {i} ({} classes, C {}): ours {o} sklearn {t}", case.classes, case.c);
        }
    }
    for (i, (t, want)) in thresholds.iter().zip(expected["f1"].as_array().unwrap()).enumerate() {
        let (y, s) = &f1_cases[i];
        let ours = choose_thresholds(s, y, 1)[0].f1;
        let best = want["best"].as_f64().unwrap();
        assert!((ours - best).abs() < 1e-12, "case {i}: our F1 {ours}, sklearn's best {best} (threshold {t})");
        assert!(
            (want["at_threshold"].as_f64().unwrap() - best).abs() < 1e-12,
            "case {i}: sklearn's F1 at our threshold {t}"
        );
    }
    for (i, (members, want)) in pearson_cases.iter().zip(expected["pearson"].as_array().unwrap()).enumerate() {
        let slices: Vec<&[f64]> = members.iter().map(Vec::as_slice).collect();
        let ours = correlation(&slices, 3);
        let theirs = from_rows(want);
        for (o, t) in ours.iter().flatten().zip(&theirs) {
            assert!((o.unwrap() - t).abs() < 1e-12, "case {i}: ours {o:?} numpy {t}");
        }
    }
    eprintln!("worst |ours - sklearn| probability: {worst:e}");
}
