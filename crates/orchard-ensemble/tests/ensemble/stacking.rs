//! Stacking on a constructed case with a known remedy: members that share a large noise term and differ in
//! how much signal they carry. No convex blend removes the shared noise, but a linear model on their
//! log-probabilities can subtract one member from another and cancel it, so held-out stacking must beat every
//! member by a wide margin, for multi-class and multi-label tasks alike.

use orchard_ensemble::stacking::{cross_validate, Stacking};
use orchard_ensemble::Task;
use orchard_metrics::mean_column_auc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn case(task: Task, seed: u64) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (rows, k) = (600, 3);
    let truth: Vec<f64> = match task {
        Task::MultiClass => (0..rows)
            .flat_map(|_| {
                let c = rng.random_range(0..k);
                (0..k).map(move |j| if j == c { 1.0 } else { 0.0 })
            })
            .collect(),
        Task::MultiLabel => (0..rows * k).map(|_| if rng.random_bool(0.4) { 1.0 } else { 0.0 }).collect(),
    };
    let shared: Vec<f64> = (0..rows * k).map(|_| rng.random_range(-3.0..3.0)).collect();
    let members = [0.5, 1.0, 2.0]
        .iter()
        .map(|&signal| {
            let logits: Vec<f64> =
                (0..rows * k).map(|i| shared[i] + rng.random_range(-0.3..0.3) + signal * truth[i]).collect();
            match task {
                Task::MultiClass => logits
                    .chunks(k)
                    .flat_map(|row| {
                        let z: f64 = row.iter().map(|l| l.exp()).sum();
                        row.iter().map(move |l| l.exp() / z).collect::<Vec<_>>()
                    })
                    .collect(),
                Task::MultiLabel => logits.iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect(),
            }
        })
        .collect();
    (truth, members)
}

#[test]
fn stacking_cancels_shared_noise_held_out() {
    for task in [Task::MultiClass, Task::MultiLabel] {
        let (truth, members) = case(task, 17);
        let slices: Vec<&[f64]> = members.iter().map(Vec::as_slice).collect();
        let best = members.iter().map(|m| mean_column_auc(&truth, m, 3).unwrap().mean.unwrap()).fold(0.0, f64::max);
        let folds: Vec<usize> = (0..600).map(|r| r % 4).collect();
        let report = cross_validate(&slices, &truth, 3, task, &folds, &Stacking::default()).unwrap();
        let cv = report.cv.mean_of_folds.unwrap();
        assert!(cv > best + 0.05, "{task}: stacking held out {cv} vs best member {best}");
        assert!(report.cv.folds.len() == 4 && report.in_sample_auc.unwrap() >= cv - 0.02, "{task}");
        assert_eq!(mean_column_auc(&truth, &report.held_out, 3).unwrap(), report.cv.pooled, "{task}");
        eprintln!(
            "{task}: best member {best:.4}, stacking in-sample {:.4}, held out {cv:.4}",
            report.in_sample_auc.unwrap()
        );
    }
}
