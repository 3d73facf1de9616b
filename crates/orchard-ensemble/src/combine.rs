//! Combiners: how several members' probabilities for the same images become one prediction.
//!
//! Every combiner is a weighted mean of some transform of the members (equal weights unless given),
//! computed element-wise over `rows × classes` row-major matrices:
//!
//! | method | value per element |
//! |---|---|
//! | [`Method::Mean`] | `Σ wₘ pₘ / Σ wₘ` (weighted when weights are given) |
//! | [`Method::Rank`] | `Σ wₘ rₘ / Σ wₘ`, `rₘ` = the element's rank in its class column among all rows, ties averaged as `scipy.stats.rankdata(method="average")`, scaled to [0, 1] by `(rank − 1) / (rows − 1)` |
//! | [`Method::Geometric`] | `exp(Σ wₘ ln pₘ / Σ wₘ)` (0 when any weighted member says 0) |
//! | [`Method::Power`]`(q)` | `(Σ wₘ pₘ^q / Σ wₘ)^(1/q)`; `q = 1` is the mean, `q → 0` the geometric mean |
//!
//! **Renormalisation.** For multi-class tasks the result is divided by its row sum so each row sums to 1,
//! which the mean already does (when the members' rows do) and the others do not. A row whose sum is 0 (every
//! class zeroed by some member, or ranked lowest everywhere) becomes uniform. Dividing by the row sum changes
//! the order within a class column slightly, so a rank average's column AUC after renormalisation can differ
//! a little from before; [`combine`] with [`Task::MultiLabel`] leaves columns as they are.
//! Rank averaging is the AUC-friendly choice: AUC only sees the order within a column, and ranks put members
//! with differently calibrated probabilities on one scale.
//!
//! ```
//! use orchard_ensemble::combine::{combine, Method};
//! use orchard_ensemble::Task;
//! // Two members' predictions for two images and two classes, row-major.
//! let a = [0.9, 0.1, 0.2, 0.8];
//! let b = [0.7, 0.3, 0.4, 0.6];
//! let blend = combine(&[&a, &b], 2, Method::Mean, Some(&[3.0, 1.0]), Task::MultiClass).unwrap();
//! assert!((blend[0] - 0.85).abs() < 1e-12);
//! let ranks = combine(&[&a, &b], 2, Method::Rank, None, Task::MultiLabel).unwrap();
//! assert_eq!(ranks, [1.0, 0.0, 0.0, 1.0]);
//! ```

use orchard_files::Task;

use crate::{EnsembleError, Result};

/// How members are combined (see the module documentation for the formulas).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "p", rename_all = "snake_case")]
pub enum Method {
    /// Arithmetic mean (weighted when weights are given).
    Mean,
    /// Mean of per-class ranks scaled to [0, 1].
    Rank,
    /// Geometric mean.
    Geometric,
    /// Power mean with this exponent (non-zero, finite).
    Power(f64),
}

impl Method {
    /// Whether the result must be renormalised for multi-class rows to sum to 1.
    fn needs_renormalising(self) -> bool {
        !matches!(self, Method::Mean)
    }
}

/// Checks `weights` (one per member, finite, non-negative, some positive) and returns them divided by
/// their sum; `None` gives equal weights.
pub fn normalised_weights(weights: Option<&[f64]>, members: usize) -> Result<Vec<f64>> {
    if members == 0 {
        return Err(EnsembleError::Config("no members to combine".into()));
    }
    let Some(weights) = weights else {
        return Ok(vec![1.0 / members as f64; members]);
    };
    if weights.len() != members {
        return Err(EnsembleError::Config(format!("{} weights for {members} members", weights.len())));
    }
    if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(EnsembleError::Config(format!("weight {w} is not a finite, non-negative number")));
    }
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return Err(EnsembleError::Config("the weights sum to 0: at least one must be positive".into()));
    }
    Ok(weights.iter().map(|w| w / sum).collect())
}

/// Combines `members` (each `rows × n_classes`, row-major, aligned) with `method` and optional `weights`;
/// multi-class results are renormalised to rows summing to 1.
pub fn combine(
    members: &[&[f64]],
    n_classes: usize,
    method: Method,
    weights: Option<&[f64]>,
    task: Task,
) -> Result<Vec<f64>> {
    let weights = normalised_weights(weights, members.len())?;
    let len = members[0].len();
    if n_classes == 0 || !len.is_multiple_of(n_classes) || members.iter().any(|m| m.len() != len) {
        return Err(EnsembleError::Config(format!("members must all be rows × {n_classes} matrices of the same size")));
    }
    let mut out = match method {
        Method::Mean => weighted_sum(members.iter().map(|m| m.to_vec()), &weights, len),
        Method::Rank => weighted_sum(members.iter().map(|m| rank_columns(m, n_classes)), &weights, len),
        Method::Geometric => geometric(members, &weights, len),
        Method::Power(q) => {
            if !q.is_finite() || q == 0.0 {
                return Err(EnsembleError::Config(format!(
                    "power {q}: the exponent must be finite and non-zero (use geometric for 0)"
                )));
            }
            let powered = weighted_sum(members.iter().map(|m| m.iter().map(|p| p.powf(q)).collect()), &weights, len);
            powered.into_iter().map(|s| s.powf(1.0 / q)).collect()
        }
    };
    if task == Task::MultiClass && method.needs_renormalising() {
        normalise_rows(&mut out, n_classes);
    }
    Ok(out)
}

/// `Σ wₘ xₘ` element-wise (the weights are already normalised); members with weight 0 take no part, so
/// their infinities (a zero to a negative power) cannot turn into `0 · ∞ = NaN`.
fn weighted_sum(members: impl Iterator<Item = Vec<f64>>, weights: &[f64], len: usize) -> Vec<f64> {
    let mut out = vec![0.0; len];
    for (m, &w) in members.zip(weights).filter(|(_, &w)| w > 0.0) {
        for (o, x) in out.iter_mut().zip(m) {
            *o += w * x;
        }
    }
    out
}

/// Weighted geometric mean; members with weight 0 are left out (so their zeros do not count), and a zero
/// probability from a weighted member gives 0 rather than `exp(-inf · w)` rounding.
fn geometric(members: &[&[f64]], weights: &[f64], len: usize) -> Vec<f64> {
    let mut log_sum = vec![0.0; len];
    for (m, &w) in members.iter().zip(weights).filter(|(_, &w)| w > 0.0) {
        for (s, &p) in log_sum.iter_mut().zip(m.iter()) {
            *s += if p == 0.0 { f64::NEG_INFINITY } else { w * p.ln() };
        }
    }
    log_sum.into_iter().map(f64::exp).collect()
}

/// Divides every row by its sum; a row summing to 0 becomes uniform.
pub fn normalise_rows(values: &mut [f64], n_classes: usize) {
    for row in values.chunks_exact_mut(n_classes) {
        let sum: f64 = row.iter().sum();
        if sum > 0.0 {
            row.iter_mut().for_each(|v| *v /= sum);
        } else {
            row.iter_mut().for_each(|v| *v = 1.0 / n_classes as f64);
        }
    }
}

/// Average ranks (1-based) of `values`, ties sharing the mean of the ranks they span, as
/// `scipy.stats.rankdata(values, method="average")`.
pub fn rankdata(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their mean is (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Each class column of a `rows × n_classes` matrix replaced by its average ranks scaled to [0, 1]
/// (`(rank − 1) / (rows − 1)`; a single row scores 0.5).
pub fn rank_columns(values: &[f64], n_classes: usize) -> Vec<f64> {
    let rows = values.len() / n_classes;
    let mut out = vec![0.0; values.len()];
    for c in 0..n_classes {
        let column: Vec<f64> = (0..rows).map(|r| values[r * n_classes + c]).collect();
        for (r, rank) in rankdata(&column).into_iter().enumerate() {
            out[r * n_classes + c] = if rows > 1 { (rank - 1.0) / (rows - 1) as f64 } else { 0.5 };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rankdata_averages_ties() {
        assert_eq!(rankdata(&[0.5, 0.1, 0.5, 0.9, 0.1]), [3.5, 1.5, 3.5, 5.0, 1.5]);
        assert_eq!(rankdata(&[]), Vec::<f64>::new());
        assert_eq!(rank_columns(&[0.2, 0.7, 0.1, 0.9, 0.3, 0.9], 2), [0.5, 0.0, 0.0, 0.75, 1.0, 0.75]);
    }

    #[test]
    fn weights_are_checked() {
        assert_eq!(normalised_weights(Some(&[2.0, 1.0, 1.0]), 3).unwrap(), [0.5, 0.25, 0.25]);
        for bad in [&[1.0, 1.0][..], &[1.0, -1.0, 1.0], &[0.0, 0.0, 0.0], &[f64::NAN, 1.0, 1.0]] {
            assert!(normalised_weights(Some(bad), 3).is_err(), "{bad:?}");
        }
        assert!(combine(&[&[0.5, 0.5]], 2, Method::Power(0.0), None, Task::MultiClass).is_err());
    }

    #[test]
    fn power_one_is_the_mean_and_geometric_renormalises() {
        let a = [0.2, 0.8, 0.6, 0.4];
        let b = [0.4, 0.6, 0.0, 1.0];
        let mean = combine(&[&a, &b], 2, Method::Mean, None, Task::MultiClass).unwrap();
        let power = combine(&[&a, &b], 2, Method::Power(1.0), None, Task::MultiClass).unwrap();
        for (m, p) in mean.iter().zip(&power) {
            assert!((m - p).abs() < 1e-15);
        }
        let geo = combine(&[&a, &b], 2, Method::Geometric, None, Task::MultiClass).unwrap();
        // Row 1: class 0 has a zero -> all mass on class 1.
        assert_eq!(&geo[2..], &[0.0, 1.0]);
        let g0 = (0.2f64 * 0.4).sqrt();
        let g1 = (0.8f64 * 0.6).sqrt();
        assert!((geo[0] - g0 / (g0 + g1)).abs() < 1e-15);
    }
}
