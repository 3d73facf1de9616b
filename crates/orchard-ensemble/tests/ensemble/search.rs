//! Weight searches on constructed cases whose best answer is known, and the honest (cross-validated)
//! estimate against the optimistic in-sample one.

use orchard_ensemble::search::{cross_validate, Greedy, Scorer, Search, Simplex};
use orchard_ensemble::Task;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Two-class one-hot truth and a member's `[1 - s, s]` rows from scores `s` of class 1.
fn two_class(scores: &[f64]) -> Vec<f64> {
    scores.iter().flat_map(|&s| [1.0 - s, s]).collect()
}

fn searches(seed: u64) -> [Search; 3] {
    [
        Search::Greedy(Greedy { seed, ..Greedy::default() }),
        Search::Greedy(Greedy { bags: 8, seed, ..Greedy::default() }),
        Search::Simplex(Simplex { seed, ..Simplex::default() }),
    ]
}

/// A generator seeded with `seed`, and `rows` labels drawn positive with probability `p`.
fn labels(seed: u64, rows: usize, p: f64) -> (ChaCha8Rng, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let y = (0..rows).map(|_| if rng.random_bool(p) { 1.0 } else { 0.0 }).collect();
    (rng, y)
}

fn folds(rows: usize, k: usize) -> Vec<usize> {
    (0..rows).map(|r| r % k).collect()
}

#[test]
fn a_perfect_member_among_noise_gets_all_the_weight() {
    let rows = 300;
    let (mut rng, y) = labels(11, rows, 0.3);
    let truth = two_class(&y);
    let noise = |rng: &mut ChaCha8Rng| two_class(&(0..rows).map(|_| rng.random_range(0.0..1.0)).collect::<Vec<_>>());
    // Perfect: every positive above every negative, with jitter so it is not trivially a copy of y.
    let perfect = two_class(&y.iter().map(|&t| 0.1 + 0.5 * t + rng.random_range(0.0..0.3)).collect::<Vec<_>>());
    let (n0, n1, n2) = (noise(&mut rng), noise(&mut rng), noise(&mut rng));
    let members: Vec<&[f64]> = vec![&n0, &n1, &perfect, &n2];
    for search in searches(3) {
        let report = cross_validate(&members, &truth, 2, &folds(rows, 5), &search, Task::MultiClass).unwrap();
        if matches!(&search, Search::Greedy(g) if g.bags > 0) {
            // Bags drawn without the perfect member can only pick noise, so it keeps most, not all, weight.
            assert!(report.weights[2] >= 0.5, "{search:?}: {:?}", report.weights);
            continue;
        }
        assert_eq!(report.weights, [0.0, 0.0, 1.0, 0.0], "{search:?}");
        assert_eq!(report.in_sample_auc, Some(1.0));
        assert_eq!(report.cv.pooled.mean, Some(1.0), "{search:?}");
        for w in &report.fold_weights {
            assert_eq!(w, &[0.0, 0.0, 1.0, 0.0], "{search:?}");
        }
    }
}

#[test]
fn two_complementary_members_mix_to_beat_both() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let rows = 400;
    // The label depends on z1 + z2; each member sees only one of them. Their equal blend is (z1 + z2 + 2) / 4,
    // a perfect score; either alone scores about 0.83.
    let z: Vec<(f64, f64)> = (0..rows).map(|_| (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0))).collect();
    let y: Vec<f64> = z.iter().map(|(a, b)| if a + b > 0.0 { 1.0 } else { 0.0 }).collect();
    let truth = two_class(&y);
    let a = two_class(&z.iter().map(|(a, _)| (a + 1.0) / 2.0).collect::<Vec<_>>());
    let b = two_class(&z.iter().map(|(_, b)| (b + 1.0) / 2.0).collect::<Vec<_>>());
    let n = two_class(&(0..rows).map(|_| rng.random_range(0.0..1.0)).collect::<Vec<_>>());
    let members: Vec<&[f64]> = vec![&a, &n, &b];
    let all: Vec<usize> = (0..rows).collect();
    let scorer = Scorer::new(&members, &truth, 2, &all).unwrap();
    let best_single = (0..3).map(|m| scorer.single(m)).fold(0.0, f64::max);
    assert!(best_single < 0.9, "{best_single}");
    for search in searches(1) {
        let report = cross_validate(&members, &truth, 2, &folds(rows, 4), &search, Task::MultiClass).unwrap();
        let w = &report.weights;
        assert!(report.in_sample_auc.unwrap() > 0.99, "{search:?}: {:?}", report.in_sample_auc);
        assert!(report.cv.mean_of_folds.unwrap() > best_single + 0.1, "{search:?}: {:?}", report.cv.mean_of_folds);
        assert!(w[0] > 0.3 && w[2] > 0.3 && w[1] < 0.1, "{search:?}: {w:?}");
    }
}

#[test]
fn the_cross_validated_estimate_is_below_the_in_sample_one_on_noise() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let (rows, k) = (240, 3);
    let truth: Vec<f64> = (0..rows)
        .flat_map(|_| {
            let c = rng.random_range(0..k);
            (0..k).map(move |j| if j == c { 1.0 } else { 0.0 })
        })
        .collect();
    let members: Vec<Vec<f64>> = (0..6)
        .map(|_| {
            let mut m: Vec<f64> = (0..rows * k).map(|_| rng.random_range(0.0..1.0)).collect();
            orchard_ensemble::combine::normalise_rows(&mut m, k);
            m
        })
        .collect();
    let slices: Vec<&[f64]> = members.iter().map(Vec::as_slice).collect();
    for search in searches(2) {
        let report = cross_validate(&slices, &truth, k, &folds(rows, 5), &search, Task::MultiClass).unwrap();
        let (cv, in_sample) = (report.cv.mean_of_folds.unwrap(), report.in_sample_auc.unwrap());
        assert!(in_sample > 0.53, "{search:?}: the search overfits noise in-sample: {in_sample}");
        assert!(cv < in_sample, "{search:?}: cv {cv} vs in-sample {in_sample}");
        assert!(report.cv.pooled.mean.unwrap() < in_sample, "{search:?}");
        // The held-out rows are what the pooled estimate scores: a report draws its curves from them.
        let held_out = orchard_metrics::mean_column_auc(&truth, &report.held_out, k).unwrap();
        assert_eq!(held_out, report.cv.pooled, "{search:?}");
        assert!((cv - 0.5).abs() < 0.06, "{search:?}: noise members are worth about 0.5 held out: {cv}");
    }
}

#[test]
fn searches_are_deterministic_for_a_seed() {
    let rows = 120;
    let (mut rng, y) = labels(4, rows, 0.5);
    let truth = two_class(&y);
    let members: Vec<Vec<f64>> = (0..4)
        .map(|i| {
            two_class(&y.iter().map(|t| (t * 0.2 * i as f64 + rng.random_range(0.0..0.8)).min(1.0)).collect::<Vec<_>>())
        })
        .collect();
    let slices: Vec<&[f64]> = members.iter().map(Vec::as_slice).collect();
    let all: Vec<usize> = (0..rows).collect();
    let scorer = Scorer::new(&slices, &truth, 2, &all).unwrap();
    for (a, b) in searches(8).iter().zip(searches(8).iter()) {
        let (wa, wb) = (a.run(&scorer), b.run(&scorer));
        assert_eq!(wa, wb);
        assert!((wa.iter().sum::<f64>() - 1.0).abs() < 1e-12 && wa.iter().all(|&w| w >= 0.0), "{wa:?}");
        assert!(
            scorer.score(&wa) >= (0..4).map(|m| scorer.single(m)).fold(0.0, f64::max),
            "never below the best member"
        );
    }
}
