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

use orchard_ensemble::aligned::Aligned;
use orchard_ensemble::run::{self, Oof};
use orchard_files::experiment_summary::ComparedBlend;
use orchard_files::Task;

use crate::Result;

pub use orchard_ensemble::spec::Compare;

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
    use orchard_files::Predictions;
    use std::path::PathBuf;

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
        let table: toml::Table = toml::from_str(
            "[[compare]]\nname = \"good only\"\nmethod = \"weighted\"\nweights = { good = 1 }\n\
             [[compare]]\nname = \"bad only\"\nmethod = \"weighted\"\nweights = [0, 1]\n\
             [[compare]]\nname = \"searched\"\nmethod = \"search\"\n",
        )
        .unwrap();
        let blends = orchard_ensemble::spec::EnsembleTable::parse(table, &names).unwrap().compare;
        let scored = score(&blends, &aligned, &oof, Task::MultiClass).unwrap();
        assert_eq!(scored[0].oof_auc, Some(1.0));
        assert_eq!(scored[1].oof_auc, Some(0.0));
        assert_eq!(scored[0].weights, Some(vec![1.0, 0.0]));
        assert_eq!((scored[0].cv_auc, scored[0].method.as_str()), (None, "weighted"));
        // The search, fitted on one fold and scored on the other, finds the good member both times.
        assert_eq!((scored[2].cv_auc, scored[2].method.as_str()), (Some(1.0), "search (greedy, probabilities)"));
    }
}
