//! Dynamic loss scaling for f16 training (PyTorch's `GradScaler` policy): the loss is multiplied by a scale
//! before the backward pass so that small gradients survive f16; the gradients are divided by it before the
//! step, which is skipped, and the scale halved, when any gradient overflowed; after `growth_interval` good
//! steps in a row the scale doubles.

use serde::{Deserialize, Serialize};
use orchard_torch::foreach;
use tch::{Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Consecutive steps without overflow.
    pub good_steps: u64,
    pub growth_interval: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler { scale: 65536.0, good_steps: 0, growth_interval: 2000 }
    }
}

impl LossScaler {
    /// Divides every defined gradient of `params` by the scale; returns whether all are finite, and updates
    /// the scale for the next step accordingly. One multi-tensor kernel does the division and the check, and
    /// the device is synchronised once, to read the verdict.
    pub fn unscale_and_update<'a>(&mut self, params: impl Iterator<Item = &'a Tensor>) -> bool {
        let grads: Vec<Tensor> = params.map(Tensor::grad).filter(Tensor::defined).collect();
        let finite = grads.first().is_none_or(|g| {
            let device = g.device();
            let found_inf = Tensor::zeros([1], (Kind::Float, device));
            // The scale is a power of two, so its inverse is exact in f32.
            let inverse = Tensor::from_slice(&[(1.0 / self.scale) as f32]).to_device(device);
            foreach::unscale_(&grads, &found_inf, &inverse).unwrap_or_else(|e| panic!("unscaling failed in libtorch: {e}"));
            found_inf.double_value(&[0]) == 0.0
        });
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_halves_the_scale_and_good_steps_grow_it() {
        let mut s = LossScaler { scale: 8.0, good_steps: 0, growth_interval: 2 };
        let w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        (&w * 8.0 * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
        assert!(s.unscale_and_update(std::iter::once(&w)));
        assert_eq!(Vec::<f32>::try_from(w.grad()).unwrap(), vec![3.0, 4.0]);
        let _ = w.grad().zero_();
        (&w * f64::from(f32::MAX) * 4.0).sum(Kind::Float).backward();
        assert!(!s.unscale_and_update(std::iter::once(&w)));
        assert_eq!((s.scale, s.good_steps), (4.0, 0));
        for _ in 0..2 {
            let _ = w.grad().zero_();
            (&w * 1.0).sum(Kind::Float).backward();
            assert!(s.unscale_and_update(std::iter::once(&w)));
        }
        assert_eq!((s.scale, s.good_steps), (8.0, 0));
    }
}
