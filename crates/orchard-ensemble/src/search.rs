//! Blend weights chosen on out-of-fold predictions to maximise the mean column-wise ROC AUC.
//!
//! The blend is the weighted arithmetic mean of the members' values: their probabilities, or their per-class
//! scaled ranks when the caller passes those (a searched rank average, see `run::Combiner::Search`). AUC only sees the order of the
//! blended scores within each class column, so it is a piecewise-constant function of the weights: gradients
//! are zero almost everywhere, and both searches here only compare scores.
//!
//! - [`Greedy`]: forward selection with replacement (Caruana, Niculescu-Mizil, Crew & Ksikes 2004,
//!   "Ensemble selection from libraries of models"): start from the best single member (or the `init` best),
//!   then repeatedly add the member — possibly one already in — whose addition scores best; weights are the
//!   counts, taken at the step that scored best. Optional bagging runs the selection on random subsets of the
//!   members and averages the weights, which the paper shows reduces overfitting to the selection rows.
//! - [`Simplex`]: a pattern (compass) search over the simplex in a softmax parametrisation
//!   `w = softmax(θ)`: try `θᵢ ± step` for every member in a seeded random order, move on any strict
//!   improvement, halve the step when none helps; restarted from the uniform blend, the best member and seeded
//!   random points. A final pass sets each small weight to exactly 0 when that does not lower the score.
//!
//! Both are deterministic for a seed. [`cross_validate`] gives the honest estimate of a search: weights found
//! on K − 1 folds, scored on the held-out fold.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use orchard_files::Task;

use crate::combine::{self, Method};
use crate::cv::{self, CvScores};
use crate::{EnsembleError, Result};

/// Mean column-wise AUC of weighted blends of the members on a fixed set of rows, laid out by column so a
/// score costs one pass over the values and one sort per class.
#[derive(Debug, Clone)]
pub struct Scorer {
    /// `[class][member][row]`, only for classes whose AUC is defined on these rows.
    columns: Vec<Vec<Vec<f64>>>,
    /// `[class][row]`: positive or not, same classes as `columns`.
    labels: Vec<Vec<bool>>,
    members: usize,
}

impl Scorer {
    /// The members' values (each `all_rows × n_classes`, row-major) and the truth on `rows`. Classes with
    /// no positive or no negative on these rows are left out of the mean, as `mean_column_auc` does.
    pub fn new(members: &[&[f64]], truth: &[f64], n_classes: usize, rows: &[usize]) -> Result<Scorer> {
        if members.is_empty() {
            return Err(EnsembleError::Config("no members to search weights for".into()));
        }
        let (mut columns, mut labels) = (Vec::new(), Vec::new());
        for c in 0..n_classes {
            let y: Vec<bool> = rows.iter().map(|&r| truth[r * n_classes + c] >= 0.5).collect();
            let positives = y.iter().filter(|&&p| p).count();
            if positives == 0 || positives == y.len() {
                continue;
            }
            columns.push(members.iter().map(|m| rows.iter().map(|&r| m[r * n_classes + c]).collect()).collect());
            labels.push(y);
        }
        if labels.is_empty() {
            return Err(EnsembleError::Config(format!(
                "no class has both positives and negatives among these {} rows: AUC is undefined",
                rows.len()
            )));
        }
        Ok(Scorer { columns, labels, members: members.len() })
    }

    /// Number of members.
    pub fn members(&self) -> usize {
        self.members
    }

    /// Mean AUC of the blend `Σ wₘ pₘ` (the scale of the weights does not matter; some must be positive).
    pub fn score(&self, weights: &[f64]) -> f64 {
        let mut total = 0.0;
        let mut blend = vec![0.0; self.labels[0].len()];
        for (columns, labels) in self.columns.iter().zip(&self.labels) {
            blend.iter_mut().for_each(|b| *b = 0.0);
            for (column, &w) in columns.iter().zip(weights).filter(|(_, &w)| w != 0.0) {
                for (b, &p) in blend.iter_mut().zip(column) {
                    *b += w * p;
                }
            }
            total += orchard_metrics::roc_auc(labels, &blend).expect("both classes present, values finite");
        }
        total / self.labels.len() as f64
    }

    /// Score of member `m` alone.
    pub fn single(&self, m: usize) -> f64 {
        let mut w = vec![0.0; self.members];
        w[m] = 1.0;
        self.score(&w)
    }
}

/// Caruana's greedy forward selection with replacement.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Greedy {
    /// Selection steps after the initial members (each adds one member, possibly again).
    pub iterations: usize,
    /// How many of the best single members start the ensemble ("sorted initialisation"; 1 = best member).
    pub init: usize,
    /// Bags of random member subsets to run the selection on and average (0 = no bagging).
    pub bags: usize,
    /// Share of the members in each bag.
    pub bag_fraction: f64,
    /// Seed of the bags.
    pub seed: u64,
}

impl Default for Greedy {
    fn default() -> Self {
        Greedy { iterations: 50, init: 1, bags: 0, bag_fraction: 0.5, seed: 0 }
    }
}

impl Greedy {
    /// The weights (summing to 1) the selection arrives at.
    pub fn run(&self, scorer: &Scorer) -> Vec<f64> {
        let m = scorer.members();
        if self.bags == 0 {
            return normalised(&select(scorer, &(0..m).collect::<Vec<_>>(), self.iterations, self.init));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let per_bag = ((m as f64 * self.bag_fraction).ceil() as usize).clamp(1, m);
        let mut total = vec![0.0; m];
        for _ in 0..self.bags {
            let mut all: Vec<usize> = (0..m).collect();
            all.shuffle(&mut rng);
            let mut bag = all[..per_bag].to_vec();
            bag.sort_unstable();
            for (t, w) in total.iter_mut().zip(normalised(&select(scorer, &bag, self.iterations, self.init))) {
                *t += w;
            }
        }
        normalised(&total)
    }
}

/// One greedy selection among `candidates`; returns the counts at the best-scoring step (the earliest on
/// ties, so the smaller ensemble).
fn select(scorer: &Scorer, candidates: &[usize], iterations: usize, init: usize) -> Vec<f64> {
    let mut by_score: Vec<(usize, f64)> = candidates.iter().map(|&c| (c, scorer.single(c))).collect();
    by_score.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut counts = vec![0.0; scorer.members()];
    for &(c, _) in by_score.iter().take(init.max(1)) {
        counts[c] += 1.0;
    }
    let mut best = (scorer.score(&counts), counts.clone());
    for _ in 0..iterations {
        let mut step: Option<(usize, f64)> = None;
        for &c in candidates {
            counts[c] += 1.0;
            let s = scorer.score(&counts);
            counts[c] -= 1.0;
            if step.is_none_or(|(_, best_s)| s > best_s) {
                step = Some((c, s));
            }
        }
        let (c, s) = step.expect("at least one candidate");
        counts[c] += 1.0;
        if s > best.0 {
            best = (s, counts.clone());
        }
    }
    best.1
}

/// Pattern search over the simplex, in a softmax parametrisation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Simplex {
    /// Random starting points besides the uniform blend and the best member.
    pub restarts: usize,
    /// Score evaluations allowed per start.
    pub max_evals: usize,
    /// The search of a start ends when the step in θ falls below this.
    pub min_step: f64,
    /// Seed of the starting points and of the order directions are tried in.
    pub seed: u64,
}

impl Default for Simplex {
    fn default() -> Self {
        Simplex { restarts: 3, max_evals: 2000, min_step: 1e-3, seed: 0 }
    }
}

impl Simplex {
    /// The weights (summing to 1) found.
    pub fn run(&self, scorer: &Scorer) -> Vec<f64> {
        let m = scorer.members();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let best_member =
            (0..m).map(|i| (i, scorer.single(i))).fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a }).0;
        let mut starts = vec![vec![0.0; m]];
        let mut emphasised = vec![0.0; m];
        emphasised[best_member] = 3.0;
        starts.push(emphasised);
        for _ in 0..self.restarts {
            starts.push((0..m).map(|_| rng.random_range(-2.0..2.0)).collect());
        }
        let mut best: Option<(f64, Vec<f64>)> = None;
        for start in starts {
            let (s, theta) = self.climb(scorer, start, &mut rng);
            if best.as_ref().is_none_or(|(b, _)| s > *b) {
                best = Some((s, theta));
            }
        }
        let (score, theta) = best.expect("at least one start");
        prune(scorer, softmax(&theta), score)
    }

    /// One compass search from `theta`; returns its best score and point.
    fn climb(&self, scorer: &Scorer, mut theta: Vec<f64>, rng: &mut ChaCha8Rng) -> (f64, Vec<f64>) {
        let mut best = scorer.score(&softmax(&theta));
        let mut directions: Vec<(usize, f64)> = (0..theta.len()).flat_map(|i| [(i, 1.0), (i, -1.0)]).collect();
        let (mut step, mut evals) = (1.0, 0);
        while step >= self.min_step && evals < self.max_evals {
            directions.shuffle(rng);
            let mut improved = false;
            for &(i, sign) in &directions {
                theta[i] += sign * step;
                let s = scorer.score(&softmax(&theta));
                evals += 1;
                if s > best {
                    best = s;
                    improved = true;
                } else {
                    theta[i] -= sign * step;
                }
            }
            if !improved {
                step *= 0.5;
            }
        }
        (best, theta)
    }
}

/// Sets weights to exactly 0, smallest first, while the score does not drop below `score`.
fn prune(scorer: &Scorer, mut weights: Vec<f64>, mut score: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[a].total_cmp(&weights[b]));
    for i in order {
        if weights.iter().filter(|&&w| w > 0.0).count() <= 1 {
            break;
        }
        let mut trial = weights.clone();
        trial[i] = 0.0;
        let s = scorer.score(&trial);
        if s >= score {
            weights = trial;
            score = s;
        }
    }
    normalised(&weights)
}

fn softmax(theta: &[f64]) -> Vec<f64> {
    let max = theta.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = theta.iter().map(|t| (t - max).exp()).collect();
    normalised(&exp)
}

fn normalised(weights: &[f64]) -> Vec<f64> {
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|w| w / sum).collect()
}

/// Which search to run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Search {
    /// Caruana's greedy forward selection.
    Greedy(Greedy),
    /// Pattern search over the simplex.
    Simplex(Simplex),
}

impl Search {
    /// The weights this search finds on `scorer`'s rows.
    pub fn run(&self, scorer: &Scorer) -> Vec<f64> {
        match self {
            Search::Greedy(g) => g.run(scorer),
            Search::Simplex(s) => s.run(scorer),
        }
    }
}

/// Weights found on all rows, their (optimistic) in-sample AUC, and the cross-validated estimate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SearchReport {
    /// Weights found on all out-of-fold rows: the ones to apply to test predictions.
    pub weights: Vec<f64>,
    /// Mean AUC of the final predictions on the rows the weights were chosen on (optimistic).
    pub in_sample_auc: Option<f64>,
    /// Weights found on each fold's complement.
    pub fold_weights: Vec<Vec<f64>>,
    /// Held-out scores of those weights: the honest estimate.
    pub cv: CvScores,
    /// Every row blended by the weights found without its fold (`rows × n_classes`): what `cv` scores.
    pub held_out: Vec<f64>,
}

/// Runs `search` on all rows and cross-validated over `folds` (the fold of every row). Both scores are of
/// the predictions as they will be written: for a multi-class `task` the blended rows are renormalised to
/// sum to 1, which leaves a probability blend as it is but can reorder a rank blend's columns a little.
pub fn cross_validate(
    members: &[&[f64]],
    truth: &[f64],
    n_classes: usize,
    folds: &[usize],
    search: &Search,
    task: Task,
) -> Result<SearchReport> {
    let blend = |w: &[f64], rows: &[usize]| {
        let parts: Vec<Vec<f64>> = members.iter().map(|m| cv::take_rows(m, n_classes, rows)).collect();
        let slices: Vec<&[f64]> = parts.iter().map(Vec::as_slice).collect();
        let mut out = combine::combine(&slices, n_classes, Method::Mean, Some(w), Task::MultiLabel)?;
        if task == Task::MultiClass {
            combine::normalise_rows(&mut out, n_classes);
        }
        Ok(out)
    };
    let all: Vec<usize> = (0..folds.len()).collect();
    let weights = search.run(&Scorer::new(members, truth, n_classes, &all)?);
    let in_sample_auc = orchard_metrics::mean_column_auc(truth, &blend(&weights, &all)?, n_classes)?.mean;
    let fit = |rows: &[usize]| Ok(search.run(&Scorer::new(members, truth, n_classes, rows)?));
    let predict = |w: &Vec<f64>, rows: &[usize]| blend(w, rows);
    let (cv, held_out, fold_weights) = cv::cross_validate(truth, n_classes, folds, fit, predict)?;
    Ok(SearchReport { weights, in_sample_auc, fold_weights, cv, held_out })
}
