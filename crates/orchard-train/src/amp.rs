//! Dynamic loss scaling for f16 training (PyTorch's `GradScaler` policy; the scaler's state and policy are
//! `orchard_files::state::LossScaler`): the loss is multiplied by a scale
//! before the backward pass so that small gradients survive f16; the gradients are divided by it before the
//! step, which is skipped, and the scale halved, when any gradient overflowed; after `growth_interval` good
//! steps in a row the scale doubles.

use orchard_files::state::LossScaler;
use orchard_torch::foreach;
use tch::{Kind, Tensor};

/// Divides every defined gradient of `params` by the scaler's scale; returns whether all are finite, and
/// moves the scale for the next step accordingly. One multi-tensor kernel does the division and the check,
/// and the device is synchronised once, to read the verdict.
pub fn unscale<'a>(scaler: &mut LossScaler, params: impl Iterator<Item = &'a Tensor>) -> bool {
    let grads: Vec<Tensor> = params.map(Tensor::grad).filter(Tensor::defined).collect();
    let finite = grads.first().is_none_or(|g| {
        let device = g.device();
        let found_inf = Tensor::zeros([1], (Kind::Float, device));
        // The scale is a power of two, so its inverse is exact in f32.
        let inverse = Tensor::from_slice(&[(1.0 / scaler.scale) as f32]).to_device(device);
        foreach::unscale_(&grads, &found_inf, &inverse).unwrap_or_else(|e| panic!("unscaling failed in libtorch: {e}"));
        found_inf.double_value(&[0]) == 0.0
    });
    scaler.update(finite);
    finite
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_halves_the_scale_and_good_steps_grow_it() {
        let mut s = LossScaler { scale: 8.0, good_steps: 0, growth_interval: 2 };
        let w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        (&w * 8.0 * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
        assert!(unscale(&mut s, std::iter::once(&w)));
        assert_eq!(Vec::<f32>::try_from(w.grad()).unwrap(), vec![3.0, 4.0]);
        let _ = w.grad().zero_();
        (&w * f64::from(f32::MAX) * 4.0).sum(Kind::Float).backward();
        assert!(!unscale(&mut s, std::iter::once(&w)));
        assert_eq!((s.scale, s.good_steps), (4.0, 0));
        for _ in 0..2 {
            let _ = w.grad().zero_();
            (&w * 1.0).sum(Kind::Float).backward();
            assert!(unscale(&mut s, std::iter::once(&w)));
        }
        assert_eq!((s.scale, s.good_steps), (8.0, 0));
    }
}
