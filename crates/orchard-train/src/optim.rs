//! Optimizers written on tensor operations, so that their whole state (moments, step counts) is ours to save
//! in a checkpoint and restore bit for bit; libtorch's C++ optimizers, as tch exposes them, cannot be.
//!
//! - `adam`: Keras' Adam (the reference): `α = lr·√(1-β2^t)/(1-β1^t)`, `θ -= α·m/(√v + ε)`, ε = 1e-7; weight
//!   decay, when set, is an L2 term added to the gradient.
//! - `adam_w`: PyTorch's AdamW: `θ -= lr·wd·θ`, then `θ -= lr/(1-β1^t) · m/(√v/√(1-β2^t) + ε)`.
//! - `sgd`: PyTorch's SGD with momentum (the first step sets the buffer to the gradient) and Nesterov.
//!
//! Every parameter has its own step count, so parameters unfrozen late start their bias correction afresh,
//! and a learning-rate multiplier (discriminative learning rates per layer group).

use std::collections::BTreeMap;

use orchard_torch::foreach::{self, AdamStep, FusedAdam};
use tch::Tensor;

use orchard_files::config::{OptimizerConfig, OptimizerKind};

/// A parameter the optimizer updates.
#[derive(Debug)]
pub struct Param {
    /// Its var-store name, which also names its state in checkpoints.
    pub name: String,
    pub tensor: Tensor,
    /// Factor on the schedule's learning rate.
    pub lr_mult: f64,
}

#[derive(Debug, Default)]
struct State {
    step: u64,
    /// Adam's first moment, or SGD's momentum buffer (zeros before the first step, which then holds the
    /// gradient, as PyTorch's first step sets it).
    m: Option<Tensor>,
    /// Adam's second moment.
    v: Option<Tensor>,
}

/// One of the optimizers above over a fixed list of parameters.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<Param>,
    states: Vec<State>,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, params: Vec<Param>) -> Self {
        let states = params.iter().map(|_| State::default()).collect();
        Optimizer { config, params, states }
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// Scales the gradients so that their global L2 norm is at most `max_norm`; returns the norm before.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.params.iter().map(|p| p.tensor.grad()).filter(Tensor::defined).collect();
            if grads.is_empty() {
                return 0.0;
            }
            let squares: Vec<Tensor> = grads.iter().map(|g| g.square().sum(tch::Kind::Double)).collect();
            let norm = Tensor::stack(&squares, 0).sum(tch::Kind::Double).sqrt().double_value(&[]);
            if norm > max_norm {
                let factor = max_norm / (norm + 1e-6);
                for mut g in grads {
                    let _ = g.g_mul_scalar_(factor);
                }
            }
            norm
        })
    }

    /// Applies one update at learning rate `lr` to every parameter that has a gradient (frozen ones have none).
    /// Parameters that share a step count and a learning rate are updated together by libtorch's multi-tensor
    /// kernels ([`orchard_torch::foreach`]): a few launches per step rather than a dozen per parameter.
    pub fn step(&mut self, lr: f64) {
        let c = self.config.clone();
        let mut groups: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
        for (i, (p, state)) in self.params.iter().zip(&mut self.states).enumerate() {
            if p.tensor.requires_grad() && p.tensor.grad().defined() {
                state.step += 1;
                groups.entry((state.step, p.lr_mult.to_bits())).or_default().push(i);
            }
        }
        tch::no_grad(|| {
            for ((step, lr_mult), members) in groups {
                let lr = lr * f64::from_bits(lr_mult);
                let params: Vec<Tensor> = members.iter().map(|&i| self.params[i].tensor.shallow_clone()).collect();
                let grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
                let mut state = |i: usize, second: bool| {
                    let s = &mut self.states[members[i]];
                    let slot = if second { &mut s.v } else { &mut s.m };
                    slot.get_or_insert_with(|| grads[i].zeros_like()).shallow_clone()
                };
                let momentum = c.kind != OptimizerKind::Sgd || c.momentum != 0.0;
                let m: Vec<Tensor> =
                    if momentum { (0..members.len()).map(|i| state(i, false)).collect() } else { Vec::new() };
                let result = match c.kind {
                    OptimizerKind::Adam | OptimizerKind::AdamW => {
                        let v: Vec<Tensor> = (0..members.len()).map(|i| state(i, true)).collect();
                        adam_step(&c, step, lr, [&params, &grads, &m, &v])
                    }
                    OptimizerKind::Sgd => foreach::sgd_(
                        &params,
                        &grads,
                        momentum.then_some(&m[..]),
                        lr,
                        c.momentum,
                        c.nesterov,
                        c.weight_decay,
                    ),
                };
                result.unwrap_or_else(|e| panic!("optimizer step failed in libtorch: {e}"));
            }
        });
    }

    /// The state as named tensors (`m/<param>`, `v/<param>`) plus the step count of every parameter.
    pub fn state(&self) -> (Vec<(String, Tensor)>, BTreeMap<String, u64>) {
        let mut tensors = Vec::new();
        let mut steps = BTreeMap::new();
        for (p, s) in self.params.iter().zip(&self.states) {
            steps.insert(p.name.clone(), s.step);
            for (key, t) in [("m", &s.m), ("v", &s.v)] {
                if let Some(t) = t {
                    tensors.push((format!("{key}/{}", p.name), t.shallow_clone()));
                }
            }
        }
        (tensors, steps)
    }

    /// Restores what [`Optimizer::state`] returned; a parameter absent from `steps` starts afresh.
    pub fn load_state(
        &mut self,
        tensors: &BTreeMap<String, Tensor>,
        steps: &BTreeMap<String, u64>,
    ) -> Result<(), String> {
        for (p, s) in self.params.iter().zip(&mut self.states) {
            s.step = steps.get(&p.name).copied().unwrap_or(0);
            let take = |key: &str| -> Result<Option<Tensor>, String> {
                match tensors.get(&format!("{key}/{}", p.name)) {
                    None => Ok(None),
                    Some(t) if t.size() != p.tensor.size() => Err(format!(
                        "optimizer state {key}/{} has shape {:?}, the parameter {:?}",
                        p.name,
                        t.size(),
                        p.tensor.size()
                    )),
                    // In the parameter's memory layout (a channels-last convolution's moments come back from
                    // the file contiguous), which the fused update needs.
                    Some(t) => {
                        let mut state = p.tensor.empty_like();
                        tch::no_grad(|| state.copy_(t));
                        Ok(Some(state))
                    }
                }
            };
            s.m = take("m")?;
            s.v = take("v")?;
        }
        Ok(())
    }
}

/// One Adam or AdamW update of `[params, grads, m, v]` at step `step`, by libtorch's fused kernel when it takes
/// the lists, by the multi-tensor form otherwise. The fused kernel computes PyTorch's form,
/// `lr/(1-β1^t) · m/(√v/√(1-β2^t) + ε)`; Keras' `lr·√(1-β2^t)/(1-β1^t) · m/(√v + ε)` is the same with
/// `ε/√(1-β2^t)` in place of ε (every parameter of a group shares `t`), and its L2 weight decay is the
/// kernel's non-decoupled one.
fn adam_step(c: &OptimizerConfig, step: u64, lr: f64, [params, grads, m, v]: [&[Tensor]; 4]) -> Result<(), String> {
    let t = step as f64;
    let bias1 = 1.0 - c.beta1.powf(t);
    let bias2_sqrt = (1.0 - c.beta2.powf(t)).sqrt();
    let keras = c.kind == OptimizerKind::Adam;
    let fused = FusedAdam {
        step,
        lr,
        beta1: c.beta1,
        beta2: c.beta2,
        eps: if keras { c.eps / bias2_sqrt } else { c.eps },
        weight_decay: c.weight_decay,
        decoupled: !keras,
    };
    if foreach::fused_adam_(params, grads, m, v, &fused)? {
        return Ok(());
    }
    let (beta1, beta2, eps) = (c.beta1, c.beta2, c.eps);
    let s = if keras {
        AdamStep { step: lr * bias2_sqrt / bias1, beta1, beta2, eps, l2: c.weight_decay, decay: 0.0, denom_scale: 1.0 }
    } else {
        AdamStep {
            step: lr / bias1,
            beta1,
            beta2,
            eps,
            l2: 0.0,
            decay: lr * c.weight_decay,
            denom_scale: 1.0 / bias2_sqrt,
        }
    };
    foreach::adam_(params, grads, m, v, &s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn param(values: &[f32]) -> Param {
        Param { name: "w".into(), tensor: Tensor::from_slice(values).set_requires_grad(true), lr_mult: 1.0 }
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_about_lr_against_its_gradient() {
        let mut opt = Optimizer::new(OptimizerConfig::default(), vec![param(&[1.0, -2.0])]);
        let w = opt.params()[0].tensor.shallow_clone();
        (&w * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float).backward();
        opt.step(0.1);
        let after: Vec<f32> = Vec::try_from(w.detach()).unwrap();
        assert!((after[0] - 0.9).abs() < 1e-6 && (after[1] + 1.9).abs() < 1e-6, "{after:?}");
    }

    #[test]
    fn frozen_parameters_are_left_alone_and_clipping_bounds_the_norm() {
        let mut opt = Optimizer::new(
            OptimizerConfig { kind: OptimizerKind::Sgd, ..Default::default() },
            vec![param(&[1.0, 1.0])],
        );
        let w = opt.params()[0].tensor.shallow_clone();
        (&w * Tensor::from_slice(&[30.0f32, 40.0])).sum(Kind::Float).backward();
        assert!((opt.clip_grad_norm(5.0) - 50.0).abs() < 1e-9);
        let g: Vec<f32> = Vec::try_from(w.grad()).unwrap();
        assert!((g[0] - 3.0).abs() < 1e-4 && (g[1] - 4.0).abs() < 1e-4, "{g:?}");
        opt.zero_grad();
        let frozen = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let mut opt2 = Optimizer::new(
            OptimizerConfig::default(),
            vec![Param { name: "f".into(), tensor: frozen.shallow_clone(), lr_mult: 1.0 }],
        );
        opt2.step(1.0);
        assert_eq!(frozen.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}
