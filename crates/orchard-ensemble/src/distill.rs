//! Self-distillation targets: `α · out-of-fold prediction + (1 − α) · label` for every training image, the
//! first-place Plant Pathology 2020 recipe (α = 0.3). A second training round fits these soft targets
//! (`orchard train --soft-targets`), which carry the first round's view of how alike the classes look.
//!
//! Several out-of-fold files (members) are averaged first. Every training image needs an out-of-fold row:
//! a target made from the label alone would silently weaken the recipe, so missing ids are an error.

use orchard_files::{Predictions, Truth};

use crate::aligned::Aligned;
use crate::{EnsembleError, Result};

/// The default weight of the out-of-fold prediction.
pub const DEFAULT_ALPHA: f64 = 0.3;

/// Soft targets on the truth's ids and classes (in its order) from the members' aligned out-of-fold
/// predictions.
pub fn soft_targets(oof: &Aligned, truth: &Truth, alpha: f64) -> Result<Predictions> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(EnsembleError::Config(format!("alpha {alpha} must lie in [0, 1]")));
    }
    let labels = truth.aligned(&oof.files[0], &oof.ids, &oof.classes)?;
    let n = oof.members.len() as f64;
    let values: Vec<f64> = (0..labels.len())
        .map(|i| {
            let prediction = oof.members.iter().map(|m| m[i]).sum::<f64>() / n;
            alpha * prediction + (1.0 - alpha) * labels[i]
        })
        .collect();
    let blended = Predictions::new(&oof.id_column, oof.classes.clone(), oof.ids.clone(), values);
    // The truth's class order; a predicted class that label lists never name (so absent from the truth) last.
    let extra = oof.classes.iter().filter(|c| !truth.classes.contains(c)).cloned();
    let classes: Vec<String> = truth.classes.iter().filter(|c| oof.classes.contains(c)).cloned().chain(extra).collect();
    Ok(Predictions::new(&oof.id_column, classes.clone(), truth.ids.clone(), blended.reordered(&truth.ids, &classes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aligned::read_aligned;
    use crate::test_files::file;

    #[test]
    fn the_blend_follows_the_formula_on_the_truths_ids_and_classes() {
        let dir = tempfile::tempdir().unwrap();
        let truth = Truth::read_csv(&file(&dir, "train.csv", "image_id,a,b\nX,1,0\nY,0,1\nZ,1,0\n")).unwrap();
        // Two members, ids and columns in another order than the truth's.
        let m1 = file(&dir, "m1.csv", "image_id,b,a\nZ,0.5,0.5\nX,0.25,0.75\nY,1,0\n");
        let m2 = file(&dir, "m2.csv", "image_id,a,b\nY,0.5,0.5\nX,0.25,0.75\nZ,0,1\n");
        let st = soft_targets(&read_aligned(&[m1, m2]).unwrap(), &truth, 0.4).unwrap();
        assert_eq!(st.ids, ["X", "Y", "Z"]);
        assert_eq!(st.classes, ["a", "b"]);
        // X: mean prediction (0.5, 0.5) → 0.4·0.5 + 0.6·(1, 0); Y: (0.25, 0.75); Z: (0.25, 0.75).
        let want = [0.8, 0.2, 0.1, 0.9, 0.7, 0.3];
        for (got, want) in st.values.iter().zip(want) {
            assert!((got - want).abs() < 1e-15, "{:?}", st.values);
        }
    }

    #[test]
    fn every_training_image_needs_an_oof_row_and_alpha_is_a_weight() {
        let dir = tempfile::tempdir().unwrap();
        let truth = Truth::read_csv(&file(&dir, "train.csv", "image_id,a,b\nX,1,0\nY,0,1\nZ,1,0\n")).unwrap();
        let partial = read_aligned(&[file(&dir, "oof.csv", "image_id,a,b\nX,0.5,0.5\n")]).unwrap();
        let err = soft_targets(&partial, &truth, 0.3).unwrap_err().to_string();
        assert!(err.contains("oof.csv") && err.contains("2 id(s)") && err.contains("'Y', 'Z'"), "{err}");
        let full = read_aligned(&[file(&dir, "full.csv", "image_id,a,b\nX,0.5,0.5\nY,0,1\nZ,1,0\n")]).unwrap();
        assert!(soft_targets(&full, &truth, 1.5).unwrap_err().to_string().contains("alpha 1.5"));
        assert_eq!(soft_targets(&full, &truth, 0.0).unwrap().values, truth.values, "alpha 0: the labels");
    }
}
