//! An exponential moving average of a model's state (parameters and batch-norm statistics, as timm's
//! `ModelEmaV2`), used in place of the raw weights for evaluation and for the saved models.

use orchard_torch::foreach;
use tch::Tensor;

/// Shadow copies of named tensors, `shadow = decay·shadow + (1-decay)·value` after every optimizer step.
#[derive(Debug)]
pub struct Ema {
    decay: f64,
    /// (name, live tensor, shadow), in a fixed order.
    entries: Vec<(String, Tensor, Tensor)>,
}

impl Ema {
    /// Starts the average at the current values of `variables`; integer tensors are not averaged.
    pub fn new(decay: f64, variables: &[(String, Tensor)]) -> Self {
        let entries = variables
            .iter()
            .filter(|(_, t)| t.is_floating_point())
            .map(|(n, t)| (n.clone(), t.shallow_clone(), t.detach().copy()))
            .collect();
        Ema { decay, entries }
    }

    /// Folds the live values into the average, all tensors in one multi-tensor launch.
    pub fn update(&mut self) {
        let (shadows, lives): (Vec<Tensor>, Vec<Tensor>) =
            self.entries.iter().map(|(_, live, shadow)| (shadow.shallow_clone(), live.detach())).unzip();
        foreach::lerp_(&shadows, &lives, 1.0 - self.decay)
            .unwrap_or_else(|e| panic!("EMA update failed in libtorch: {e}"));
    }

    /// The averages by name, for checkpoints.
    pub fn shadows(&self) -> Vec<(String, Tensor)> {
        self.entries.iter().map(|(n, _, s)| (n.clone(), s.shallow_clone())).collect()
    }

    /// Overwrites the averages with saved ones; every entry must be present with its shape.
    pub fn load(&mut self, saved: &std::collections::BTreeMap<String, Tensor>) -> Result<(), String> {
        for (name, live, shadow) in &mut self.entries {
            let t = saved.get(name.as_str()).ok_or_else(|| format!("the checkpoint has no EMA of {name}"))?;
            if t.size() != live.size() {
                return Err(format!("EMA of {name} has shape {:?}, the variable {:?}", t.size(), live.size()));
            }
            tch::no_grad(|| shadow.copy_(t));
        }
        Ok(())
    }

    /// Puts the averages into the live tensors and returns what they held, for [`Ema::restore`].
    pub fn swap_in(&self) -> Vec<Tensor> {
        tch::no_grad(|| {
            self.entries
                .iter()
                .map(|(_, live, shadow)| {
                    let saved = live.detach().copy();
                    live.detach().copy_(shadow);
                    saved
                })
                .collect()
        })
    }

    /// Puts back the values [`Ema::swap_in`] returned.
    pub fn restore(&self, saved: Vec<Tensor>) {
        tch::no_grad(|| {
            for ((_, live, _), value) in self.entries.iter().zip(saved) {
                live.detach().copy_(&value);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn average_follows_the_formula_and_swapping_is_reversible() {
        let w = Tensor::from_slice(&[0.0f32, 10.0]);
        let mut ema = Ema::new(0.9, &[("w".into(), w.shallow_clone())]);
        tch::no_grad(|| w.detach().copy_(&Tensor::from_slice(&[1.0f32, 0.0])));
        ema.update();
        let shadow: Vec<f32> = Vec::try_from(&ema.shadows()[0].1).unwrap();
        assert!((shadow[0] - 0.1).abs() < 1e-6 && (shadow[1] - 9.0).abs() < 1e-6, "{shadow:?}");
        let saved = ema.swap_in();
        assert!(w.allclose(&ema.shadows()[0].1, 0.0, 0.0, false));
        ema.restore(saved);
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![1.0, 0.0]);
        assert_eq!(w.kind(), Kind::Float);
    }
}
