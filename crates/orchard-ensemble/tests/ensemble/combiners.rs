//! Combiners against numpy/scipy, and rank averaging on cases with a known answer.

use orchard_ensemble::combine::{combine, rank_columns, Method};
use orchard_ensemble::Task;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::{as_rows, from_rows, run_python};

fn method_name(m: Method) -> (&'static str, f64) {
    match m {
        Method::Mean => ("mean", 1.0),
        Method::Rank => ("rank", 1.0),
        Method::Geometric => ("geometric", 0.0),
        Method::Power(p) => ("power", p),
    }
}

#[test]
fn every_combiner_equals_numpy_and_scipy_on_random_cases_with_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(2020);
    let methods =
        [Method::Mean, Method::Rank, Method::Geometric, Method::Power(2.0), Method::Power(0.5), Method::Power(-1.5)];
    let mut cases = Vec::new();
    for i in 0..240 {
        let method = methods[i % methods.len()];
        let k = rng.random_range(2..=5);
        let rows = rng.random_range(1..=40);
        let m = rng.random_range(1..=5);
        let levels = [0usize, 3, 6][i % 3]; // 0: continuous; otherwise few distinct values, so ties
        let members: Vec<Vec<f64>> = (0..m)
            .map(|_| {
                let mut v: Vec<f64> = (0..rows * k)
                    .map(|_| {
                        if levels == 0 {
                            rng.random_range(0.0..1.0)
                        } else {
                            rng.random_range(0..levels) as f64 / levels as f64
                        }
                    })
                    .collect();
                if i % 2 == 0 {
                    orchard_ensemble::combine::normalise_rows(&mut v, k); // probabilities, some rows with zeros
                }
                v
            })
            .collect();
        let weights: Option<Vec<f64>> =
            (i % 4 != 0).then(|| (0..m).map(|j| if j == 0 { 1.0 } else { rng.random_range(0..4) as f64 }).collect());
        let task = if i % 5 == 0 { Task::MultiLabel } else { Task::MultiClass };
        cases.push((method, k, members, weights, task));
    }
    let input: Vec<_> = cases
        .iter()
        .map(|(method, k, members, weights, task)| {
            let (name, p) = method_name(*method);
            json!({"method": name, "p": p, "weights": weights, "task": task.to_string(),
                   "members": members.iter().map(|m| as_rows(m, *k)).collect::<Vec<_>>()})
        })
        .collect();
    let expected = run_python("combiners.py", &json!(input));
    let mut worst = 0.0f64;
    for (i, ((method, k, members, weights, task), want)) in cases.iter().zip(expected.as_array().unwrap()).enumerate() {
        let slices: Vec<&[f64]> = members.iter().map(Vec::as_slice).collect();
        let ours = combine(&slices, *k, *method, weights.as_deref(), *task).unwrap();
        let theirs = from_rows(want);
        assert_eq!(ours.len(), theirs.len(), "case {i}");
        for (j, (o, t)) in ours.iter().zip(&theirs).enumerate() {
            let err = (o - t).abs();
            worst = worst.max(err);
            assert!(err <= 1e-12, "case {i} ({method:?}, {task}) element {j}: ours {o} numpy/scipy {t}");
        }
        if *task == Task::MultiClass {
            for row in ours.chunks(*k) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "case {i}: multi-class rows sum to 1");
            }
        }
    }
    eprintln!("{} cases, worst |ours - numpy/scipy| = {worst:e}", cases.len());
}

/// Rank averaging only sees the order within each column: monotone transforms of members change nothing,
/// a member averaged with itself is its own scaled ranks, and a member counted twice equals weight 2.
#[test]
fn rank_average_has_known_answers() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let k = 3;
    let a: Vec<f64> = (0..50 * k).map(|_| rng.random_range(0..10) as f64 / 10.0).collect();
    let b: Vec<f64> = (0..50 * k).map(|_| rng.random_range(0.0..1.0)).collect();
    let rank = |members: &[&[f64]], w: Option<&[f64]>| combine(members, k, Method::Rank, w, Task::MultiLabel).unwrap();

    assert_eq!(rank(&[&a, &a], None), rank_columns(&a, k));
    let a_squared: Vec<f64> = a.iter().map(|v| v * v).collect();
    let b_root: Vec<f64> = b.iter().map(|v| v.sqrt()).collect();
    assert_eq!(rank(&[&a, &b], None), rank(&[&a_squared, &b_root], None));
    let twice = rank(&[&a, &a, &b], None);
    let weighted = rank(&[&a, &b], Some(&[2.0, 1.0]));
    for (x, y) in twice.iter().zip(&weighted) {
        assert!((x - y).abs() < 1e-15);
    }
    // The arithmetic mean is not invariant: the transform changes it.
    let mean = |m: &[&[f64]]| combine(m, k, Method::Mean, None, Task::MultiLabel).unwrap();
    assert_ne!(mean(&[&a, &b]), mean(&[&a_squared, &b_root]));

    // A perfectly ordered member squashed into a narrow range is drowned out by a noisy one in the mean,
    // but counts fully in the rank average.
    let rows = 200;
    let y: Vec<f64> = (0..rows).map(|r| (r % 2) as f64).collect();
    let perfect: Vec<f64> = y.iter().map(|&t| 0.5 + 0.001 * (t - 0.5)).collect();
    let noise: Vec<f64> = (0..rows).map(|_| rng.random_range(0.0..1.0)).collect();
    let auc = |s: &[f64]| orchard_metrics::mean_column_auc(&y, s, 1).unwrap().mean.unwrap();
    let by_rank = combine(&[&perfect, &noise], 1, Method::Rank, Some(&[3.0, 1.0]), Task::MultiLabel).unwrap();
    let by_mean = combine(&[&perfect, &noise], 1, Method::Mean, Some(&[3.0, 1.0]), Task::MultiLabel).unwrap();
    assert_eq!(auc(&by_rank), 1.0, "weight 3 on perfect ranks (gap 0.5 in scaled rank) outweighs any noise rank");
    assert!(auc(&by_mean) < 0.8, "mean AUC {}", auc(&by_mean));
}
