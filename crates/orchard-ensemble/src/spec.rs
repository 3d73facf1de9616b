//! A combiner as a user names it — `orchard ensemble`'s flags or an experiment's `[ensemble]` table — and
//! its validation into a [`Combiner`], in one place so both read the same names and refuse the same
//! mistakes.

use serde::{Deserialize, Serialize};

use crate::combine::Method;
use crate::run::Combiner;
use crate::search::{Greedy, Search, Simplex};
use crate::stacking::Stacking;
use crate::{EnsembleError, Result};

/// The combiner's settings by name. Every field has a default; only `method` usually needs setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CombinerSpec {
    /// mean, weighted, rank, geometric, power, search (weights chosen on out-of-fold AUC) or stack
    /// (logistic-regression meta-model). Default: search, since an experiment has the out-of-fold rows.
    pub method: String,
    /// One weight per member (required by weighted; optional for rank, geometric, power).
    pub weights: Option<Vec<f64>>,
    /// Exponent of the power mean.
    pub power: Option<f64>,
    /// Search algorithm: greedy (Caruana's forward selection) or simplex (pattern search).
    pub search: String,
    /// What the search blends: probabilities (weighted mean) or ranks (weighted per-class rank average).
    pub search_space: String,
    /// Greedy search: selection steps.
    pub iterations: usize,
    /// Greedy search: bags of random member subsets (0: no bagging).
    pub bags: usize,
    /// Seed of the search.
    pub seed: u64,
    /// Stacking: inverse strength of the L2 penalty (scikit-learn's C).
    pub c: f64,
}

impl Default for CombinerSpec {
    fn default() -> Self {
        CombinerSpec {
            method: "search".into(),
            weights: None,
            power: None,
            search: "greedy".into(),
            search_space: "probabilities".into(),
            iterations: Greedy::default().iterations,
            bags: 0,
            seed: 0,
            c: Stacking::default().c,
        }
    }
}

fn invalid(message: String) -> EnsembleError {
    EnsembleError::Config(message)
}

impl CombinerSpec {
    /// The combiner these settings describe, or what is wrong with them.
    pub fn combiner(&self) -> Result<Combiner> {
        let fixed = |method| Combiner::Fixed { method, weights: self.weights.clone() };
        let combiner = match self.method.as_str() {
            "mean" => fixed(Method::Mean),
            "weighted" if self.weights.is_none() => {
                return Err(invalid(
                    "method weighted needs weights, e.g. --weights 2,1,1,1 (weights = [2, 1, 1, 1] in a file)".into(),
                ))
            }
            "weighted" => fixed(Method::Mean),
            "rank" => fixed(Method::Rank),
            "geometric" => fixed(Method::Geometric),
            "power" => match self.power {
                Some(p) if p.is_finite() && p != 0.0 => fixed(Method::Power(p)),
                Some(p) => {
                    return Err(invalid(format!(
                        "power {p}: the exponent must be finite and non-zero (use method geometric for 0)"
                    )))
                }
                None => return Err(invalid("method power needs an exponent: --power P (power = P in a file)".into())),
            },
            "search" => Combiner::Search {
                search: match self.search.as_str() {
                    "greedy" => Search::Greedy(Greedy {
                        iterations: self.iterations,
                        bags: self.bags,
                        seed: self.seed,
                        ..Greedy::default()
                    }),
                    "simplex" => Search::Simplex(Simplex { seed: self.seed, ..Simplex::default() }),
                    other => return Err(invalid(format!("search {other:?}: expected greedy or simplex"))),
                },
                ranks: match self.search_space.as_str() {
                    "probabilities" => false,
                    "ranks" => true,
                    other => return Err(invalid(format!("search space {other:?}: expected probabilities or ranks"))),
                },
            },
            "stack" => Combiner::Stack(Stacking { c: self.c, ..Stacking::default() }),
            other => {
                return Err(invalid(format!(
                    "method {other:?}: expected mean, weighted, rank, geometric, power, search or stack"
                )))
            }
        };
        if self.weights.is_some() && matches!(combiner, Combiner::Search { .. } | Combiner::Stack(_)) {
            return Err(invalid(format!("weights cannot be given with method {}: it chooses its own", self.method)));
        }
        Ok(combiner)
    }

    /// How the summary names the method.
    pub fn label(&self) -> String {
        match self.method.as_str() {
            "search" => format!("search ({}, {})", self.search, self.search_space),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_combiners_and_mistakes_are_named() {
        let spec = |method: &str| CombinerSpec { method: method.into(), ..Default::default() };
        assert!(matches!(
            CombinerSpec::default().combiner().unwrap(),
            Combiner::Search { ranks: false, search: Search::Greedy(_) }
        ));
        assert_eq!(spec("rank").combiner().unwrap(), Combiner::Fixed { method: Method::Rank, weights: None });
        assert_eq!(
            CombinerSpec { power: Some(2.0), ..spec("power") }.combiner().unwrap(),
            Combiner::Fixed { method: Method::Power(2.0), weights: None }
        );
        for (bad, want) in [
            (spec("weighted"), "--weights"),
            (spec("power"), "--power"),
            (CombinerSpec { power: Some(0.0), ..spec("power") }, "geometric"),
            (spec("median"), "expected mean, weighted"),
            (CombinerSpec { weights: Some(vec![1.0]), ..spec("search") }, "chooses its own"),
            (CombinerSpec { search: "anneal".into(), ..spec("search") }, "greedy or simplex"),
        ] {
            let err = bad.combiner().unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        assert_eq!(CombinerSpec { search_space: "ranks".into(), ..spec("search") }.label(), "search (greedy, ranks)");
        let parsed: CombinerSpec = toml::from_str("method = \"stack\"\nc = 0.5\n").unwrap();
        assert_eq!(parsed.combiner().unwrap(), Combiner::Stack(Stacking { c: 0.5, ..Stacking::default() }));
        assert!(toml::from_str::<CombinerSpec>("methd = \"mean\"\n").is_err(), "typos are refused");
    }
}
