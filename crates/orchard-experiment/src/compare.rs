//! Blends an experiment reports beside its ensemble, to compare against it: a published recipe's fixed
//! weights, another combiner. They are scored on the same out-of-fold rows as the ensemble (cross-validated
//! when they fit anything) and written into the summary; the submission stays the `[ensemble]`'s.
//!
//! ```toml
//! [ensemble]
//! method = "search"
//!
//! [[ensemble.compare]]            # any number of them
//! name = "reference"              # how the summary names it
//! method = "weighted"             # any [ensemble] setting: mean, weighted, rank, ..., search, stack
//! weights = { b7 = 2, b6 = 1, r152 = 1, irv2 = 1 }   # by member name (others 0), or [2, 1, 1, 1] in member order
//! ```

use std::collections::BTreeSet;

use orchard_ensemble::aligned::Aligned;
use orchard_ensemble::run::{self, Oof};
use orchard_ensemble::spec::CombinerSpec;
use orchard_files::experiment_summary::ComparedBlend;
use orchard_files::Task;
use serde::Deserialize;
use toml::{Table, Value};

use crate::Result;

/// A blend to compare, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    pub name: String,
    pub spec: CombinerSpec,
}

/// The `compare` array of an `[ensemble]` table, for members named `members` (in member order); the error
/// names the blend.
pub fn parse(value: Value, members: &[String]) -> std::result::Result<Vec<Compare>, String> {
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
                    members[0]
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

/// Scores every blend on the members' out-of-fold rows (`test` only gives the class order the ensemble
/// uses).
pub fn score(blends: &[Compare], test: &Aligned, oof: &Oof, task: Task) -> Result<Vec<ComparedBlend>> {
    let mut out = Vec::new();
    for blend in blends {
        let label = blend.spec.label();
        let outcome = run::run(&blend.spec.combiner()?, &label, test, Some(oof), task)?;
        out.push(ComparedBlend {
            name: blend.name.clone(),
            method: label,
            weights: outcome.summary.weights,
            oof_auc: outcome.summary.ensemble_oof.and_then(|a| a.mean),
            cv_auc: outcome.summary.cv.and_then(|cv| cv.pooled.mean),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchard_ensemble::combine::Method;
    use orchard_ensemble::run::Combiner;
    use orchard_files::Predictions;
    use std::path::PathBuf;

    fn members() -> Vec<String> {
        ["b7", "b6", "r152", "irv2"].map(String::from).to_vec()
    }

    fn parsed(text: &str) -> std::result::Result<Vec<Compare>, String> {
        let table: Table = toml::from_str(text).unwrap();
        parse(table["compare"].clone(), &members())
    }

    #[test]
    fn weights_come_by_name_or_in_member_order_and_mistakes_name_the_blend() {
        let by_name = parsed(
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
        let in_order = parsed("[[compare]]\nname = \"r\"\nmethod = \"rank\"\nweights = [2, 1, 1, 1]\n").unwrap();
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
        ] {
            let err = parsed(text).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn a_fixed_blend_is_scored_on_the_out_of_fold_rows_and_a_searched_one_cross_validated() {
        // Two members on four rows of two classes: the first ranks every row right, the second every row wrong.
        let classes = vec!["a".to_string(), "b".to_string()];
        let ids: Vec<String> = (0..4).map(|i| format!("r{i}")).collect();
        let good = vec![0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.1, 0.9];
        let bad = vec![0.2, 0.8, 0.3, 0.7, 0.6, 0.4, 0.9, 0.1];
        let member = |v: &Vec<f64>| Predictions::new("image_id", classes.clone(), ids.clone(), v.clone());
        let aligned = orchard_ensemble::aligned::align(vec![
            (PathBuf::from("good.csv"), member(&good)),
            (PathBuf::from("bad.csv"), member(&bad)),
        ])
        .unwrap();
        let truth = vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
        let oof = Oof { members: aligned.clone(), truth, folds: Some(vec![0, 1, 0, 1]) };
        let names = ["good", "bad"].map(String::from).to_vec();
        let table: Table = toml::from_str(
            "[[compare]]\nname = \"good only\"\nmethod = \"weighted\"\nweights = { good = 1 }\n\
             [[compare]]\nname = \"bad only\"\nmethod = \"weighted\"\nweights = [0, 1]\n\
             [[compare]]\nname = \"searched\"\nmethod = \"search\"\n",
        )
        .unwrap();
        let blends = parse(table["compare"].clone(), &names).unwrap();
        let scored = score(&blends, &aligned, &oof, Task::MultiClass).unwrap();
        assert_eq!(scored[0].oof_auc, Some(1.0));
        assert_eq!(scored[1].oof_auc, Some(0.0));
        assert_eq!(scored[0].weights, Some(vec![1.0, 0.0]));
        assert_eq!((scored[0].cv_auc, scored[0].method.as_str()), (None, "weighted"));
        // The search, fitted on one fold and scored on the other, finds the good member both times.
        assert_eq!((scored[2].cv_auc, scored[2].method.as_str()), (Some(1.0), "search (greedy, probabilities)"));
    }
}
