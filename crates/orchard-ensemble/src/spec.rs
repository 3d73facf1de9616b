//! A combiner as a user names it — `orchard ensemble`'s flags or an experiment's `[ensemble]` table — and
//! its validation into a [`Combiner`], in one place so both read the same names and refuse the same
//! mistakes; and the whole `[ensemble]` table of an experiment file, with the blends compared beside it
//! ([`EnsembleTable`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

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

/// A blend an experiment reports beside its ensemble (`[[ensemble.compare]]`), validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    pub name: String,
    pub spec: CombinerSpec,
}

/// An experiment's `[ensemble]` table: the combiner of the submission and the blends compared beside it.
///
/// ```toml
/// [ensemble]
/// method = "search"
///
/// [[ensemble.compare]]            # any number of them
/// name = "reference"              # how the summary names it
/// method = "weighted"             # any [ensemble] setting: mean, weighted, rank, ..., search, stack
/// weights = { b7 = 2, b6 = 1, r152 = 1, irv2 = 1 }   # by member name (others 0), or [2, 1, 1, 1] in member order
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleTable {
    pub spec: CombinerSpec,
    pub compare: Vec<Compare>,
}

impl EnsembleTable {
    /// Reads the table for members named `members` (in member order); the error names the table or blend.
    pub fn parse(mut table: Table, members: &[String]) -> std::result::Result<EnsembleTable, String> {
        let compare = table.remove("compare");
        let spec =
            CombinerSpec::deserialize(Value::Table(table)).map_err(|e| format!("[ensemble]: {}", e.message()))?;
        spec.combiner().map_err(|e| format!("[ensemble]: {e}"))?;
        let compare = compare.map(|c| parse_compare(c, members)).transpose()?.unwrap_or_default();
        Ok(EnsembleTable { spec, compare })
    }
}

/// The `compare` array of an `[ensemble]` table.
fn parse_compare(value: Value, members: &[String]) -> std::result::Result<Vec<Compare>, String> {
    let Value::Array(tables) = value else {
        return Err("[ensemble] compare must be an array of tables: [[ensemble.compare]]".into());
    };
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, table) in tables.into_iter().enumerate() {
        let Value::Table(mut table) = table else {
            return Err("[ensemble] compare must be an array of tables: [[ensemble.compare]]".into());
        };
        let name = match table.remove("name") {
            Some(Value::String(name)) if !name.is_empty() => name,
            _ => return Err(format!("[[ensemble.compare]] #{}: needs a name = \"...\"", i + 1)),
        };
        let bad = |message: String| format!("[[ensemble.compare]] {name:?}: {message}");
        if !names.insert(name.clone()) {
            return Err(bad("two blends have this name".into()));
        }
        if let Some(Value::Table(by_name)) = table.get("weights") {
            let weights = weights_by_name(by_name, members).map_err(bad)?;
            table.insert("weights".into(), weights);
        }
        let spec = CombinerSpec::deserialize(Value::Table(table)).map_err(|e| bad(e.message().to_string()))?;
        spec.combiner().map_err(|e| bad(e.to_string()))?;
        if let Some(weights) = &spec.weights {
            if weights.len() != members.len() {
                return Err(bad(format!(
                    "{} weights for {} members (give them in member order, or by name: {{ {} = 1, ... }})",
                    weights.len(),
                    members.len(),
                    members.first().map_or("name", String::as_str)
                )));
            }
        }
        out.push(Compare { name, spec });
    }
    Ok(out)
}

/// `{ name = weight, ... }` as an array in member order, members not named weighing 0.
fn weights_by_name(by_name: &Table, members: &[String]) -> std::result::Result<Value, String> {
    let mut weights = vec![0.0; members.len()];
    for (name, weight) in by_name {
        let m = members
            .iter()
            .position(|m| m == name)
            .ok_or_else(|| format!("weights name {name:?}, which is not a member ({})", members.join(", ")))?;
        weights[m] = match weight {
            Value::Integer(w) => *w as f64,
            Value::Float(w) => *w,
            other => return Err(format!("the weight of {name} must be a number, not {other}")),
        };
    }
    Ok(Value::Array(weights.into_iter().map(Value::Float).collect()))
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

    fn compared(text: &str) -> std::result::Result<Vec<Compare>, String> {
        let members = ["b7", "b6", "r152", "irv2"].map(String::from).to_vec();
        Ok(EnsembleTable::parse(toml::from_str(text).unwrap(), &members)?.compare)
    }

    #[test]
    fn compared_weights_come_by_name_or_in_member_order_and_mistakes_name_the_blend() {
        let by_name = compared(
            "[[compare]]\nname = \"reference\"\nmethod = \"weighted\"\nweights = { b7 = 2, b6 = 1, r152 = 1, irv2 = 1 }\n\
             [[compare]]\nname = \"b7 alone\"\nmethod = \"weighted\"\nweights = { b7 = 1.5 }\n\
             [[compare]]\nname = \"ranks\"\nmethod = \"search\"\nsearch_space = \"ranks\"\n",
        )
        .unwrap();
        assert_eq!(by_name[0].spec.weights, Some(vec![2.0, 1.0, 1.0, 1.0]));
        assert_eq!(by_name[1].spec.weights, Some(vec![1.5, 0.0, 0.0, 0.0]));
        assert_eq!(
            by_name[0].spec.combiner().unwrap(),
            Combiner::Fixed { method: Method::Mean, weights: Some(vec![2.0, 1.0, 1.0, 1.0]) }
        );
        assert_eq!(by_name[2].spec.label(), "search (greedy, ranks)");
        let in_order = compared("[[compare]]\nname = \"r\"\nmethod = \"rank\"\nweights = [2, 1, 1, 1]\n").unwrap();
        assert_eq!(in_order[0].spec.weights, Some(vec![2.0, 1.0, 1.0, 1.0]));

        for (text, want) in [
            ("[[compare]]\nmethod = \"mean\"\n", "#1: needs a name"),
            (
                "[[compare]]\nname = \"x\"\nmethod = \"weighted\"\nweights = { b5 = 1 }\n",
                "\"x\": weights name \"b5\", which is not a member (b7, b6, r152, irv2)",
            ),
            ("[[compare]]\nname = \"x\"\nmethod = \"weighted\"\nweights = [1, 2]\n", "\"x\": 2 weights for 4 members"),
            ("[[compare]]\nname = \"x\"\nmethod = \"weighted\"\n", "\"x\": method weighted needs weights"),
            ("[[compare]]\nname = \"x\"\nmethod = \"mean\"\nwieghts = [1]\n", "\"x\": unknown field `wieghts`"),
            (
                "[[compare]]\nname = \"x\"\nmethod = \"mean\"\n[[compare]]\nname = \"x\"\nmethod = \"rank\"\n",
                "two blends",
            ),
            ("compare = 3\n", "array of tables"),
            ("methd = \"rank\"\n", "[ensemble]: unknown field `methd`"),
        ] {
            let err = compared(text).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
