//! Batch normalisation as Keras and PyTorch train it, and the settings one model's batch norms share.
//!
//! The momentum with which running statistics move is a property of each layer in the reference frameworks,
//! but a training option too: Keras' 0.99 suits fine-tuning from pretrained statistics, while a model trained
//! from scratch for a few hundred steps keeps running statistics still close to their initial values, which
//! ruins its evaluation (PyTorch's default corresponds to 0.9). And in data-parallel training the batch
//! statistics may be those of the global batch (synchronised batch norm, PyTorch's `SyncBatchNorm`) rather
//! than each replica's. So every batch norm of a model holds one [`SharedBatchNorm`], which the model's owner
//! sets once ([`crate::Classifier::set_batch_norm_momentum`], [`crate::Classifier::set_batch_norm_sync`]).

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use orchard_torch::fused_conv::PostOp as Activation;
use orchard_torch::fused_train::{self, Running};
use orchard_torch::recomputed_conv;
use tch::{nn, Kind, Tensor};

use crate::layers::{Conv2d, Pads};

/// The sum of a tensor over the replicas of a data-parallel job, differentiable: its gradient is the sum of
/// the replicas' gradients. Every replica calls it in the same order.
pub trait ReplicaSum: Send + Sync + fmt::Debug {
    fn sum(&self, xs: &Tensor) -> Tensor;
}

/// The settings shared by the batch norms of one model: a momentum overriding the layers' own (f64 bits, NaN
/// for "each layer's own") and the replicas whose statistics training pools. Clones share the settings.
#[derive(Clone, Debug)]
pub(crate) struct SharedBatchNorm(Arc<Settings>);

#[derive(Debug)]
struct Settings {
    momentum: AtomicU64,
    sync: RwLock<Option<Arc<dyn ReplicaSum>>>,
}

thread_local! {
    /// The settings that batch norms created now share: open only while [`SharedBatchNorm::share`] builds a
    /// model.
    static BUILDING: RefCell<Option<SharedBatchNorm>> = const { RefCell::new(None) };
}

impl SharedBatchNorm {
    /// Settings of their own, unset.
    pub fn new() -> Self {
        SharedBatchNorm(Arc::new(Settings { momentum: AtomicU64::new(f64::NAN.to_bits()), sync: RwLock::new(None) }))
    }

    /// The momentum in Keras' convention (the weight of the old running value), or `None` for each layer's own.
    pub fn set(&self, momentum: Option<f64>) {
        self.0.momentum.store(momentum.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<f64> {
        Some(f64::from_bits(self.0.momentum.load(Ordering::Relaxed))).filter(|m| !m.is_nan())
    }

    /// Pools the batch statistics of training over the replicas `sync` sums over; `None` for each replica's own.
    pub fn set_sync(&self, sync: Option<Arc<dyn ReplicaSum>>) {
        *self.0.sync.write().expect("batch-norm settings lock") = sync;
    }

    fn sync(&self) -> Option<Arc<dyn ReplicaSum>> {
        self.0.sync.read().expect("batch-norm settings lock").clone()
    }

    /// Runs `build` so that every [`BatchNorm`] it creates shares one new setting, returned with the result.
    ///
    /// Model construction is synchronous and every batch norm is made by [`BatchNorm::build`], so a scope open
    /// while it runs reaches each of them without a parameter through every family's constructors; nothing
    /// stays shared once it returns.
    pub fn share<T>(build: impl FnOnce() -> T) -> (T, SharedBatchNorm) {
        /// Closes the scope, restoring an enclosing one, even when `build` panics.
        struct Restore(Option<SharedBatchNorm>);
        impl Drop for Restore {
            fn drop(&mut self) {
                BUILDING.with(|b| *b.borrow_mut() = self.0.take());
            }
        }
        let shared = SharedBatchNorm::new();
        let _restore = Restore(BUILDING.with(|b| b.replace(Some(shared.clone()))));
        (build(), shared)
    }

    /// The setting of the model being built, or one of its own for a layer built outside [`Self::share`].
    fn of_scope() -> Self {
        BUILDING.with(|b| b.borrow().clone()).unwrap_or_else(SharedBatchNorm::new)
    }
}

/// Batch normalisation as Keras (`keras.layers.BatchNormalization`) or PyTorch (`nn.BatchNorm2d`) trains it.
///
/// In training it normalises by the batch's mean and biased variance and moves the running statistics as
/// `moving = momentum · moving + (1 - momentum) · batch`. Keras moves the variance by the batch's biased
/// variance, PyTorch by the unbiased one; which one is the layer's [`RunningVariance`]. In evaluation it uses
/// the running statistics. With replicas to pool over, training uses the global batch's statistics.
#[derive(Debug)]
pub(crate) struct BatchNorm {
    /// The scale `gamma`; `None` for Keras' `scale=False`, which multiplies by one.
    weight: Option<Tensor>,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    epsilon: f64,
    /// The layer's own momentum (Keras' convention: the weight of the old running value).
    momentum: f64,
    /// The model-wide settings: a momentum that overrides the layer's own, the replicas to pool over.
    shared: SharedBatchNorm,
    running_variance: RunningVariance,
}

/// Which batch variance a [`BatchNorm`] folds into its running variance in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunningVariance {
    /// The biased variance (divided by the number of values), as Keras.
    Biased,
    /// The unbiased variance (divided by one less), as PyTorch.
    Unbiased,
}

impl BatchNorm {
    /// Keras' defaults for the architectures here: epsilon 1e-3, momentum 0.99 (0.01 in PyTorch's convention).
    pub const KERAS_EPSILON: f64 = 1e-3;
    pub const KERAS_MOMENTUM: f64 = 0.99;
    /// PyTorch's `nn.BatchNorm2d` defaults: epsilon 1e-5, momentum 0.1 in PyTorch's convention (0.9 here).
    pub const TORCH_EPSILON: f64 = 1e-5;
    pub const TORCH_MOMENTUM: f64 = 0.9;

    /// Batch norm over `channels` channels with epsilon 1e-3 and momentum 0.99.
    pub fn new(path: &nn::Path, channels: i64) -> Self {
        Self::with_constants(path, channels, Self::KERAS_EPSILON, Self::KERAS_MOMENTUM)
    }

    /// Keras' batch norm; `momentum` is Keras' (the weight of the old running value).
    pub fn with_constants(path: &nn::Path, channels: i64, epsilon: f64, momentum: f64) -> Self {
        Self::build(path, channels, epsilon, momentum, true, RunningVariance::Biased)
    }

    /// Batch norm without a learnt scale (Keras `scale=False`): no `weight` variable, only the offset `bias`
    /// and the running statistics. Inception-ResNet-v2 uses it before every ReLU, where a scale would be
    /// redundant with the next convolution.
    pub fn without_scale(path: &nn::Path, channels: i64, epsilon: f64, momentum: f64) -> Self {
        Self::build(path, channels, epsilon, momentum, false, RunningVariance::Biased)
    }

    /// PyTorch's `nn.BatchNorm2d(channels, eps=epsilon, momentum=1 - momentum)`: `momentum` here is the weight of
    /// the old running value, as in Keras, so PyTorch's default 0.1 is [`Self::TORCH_MOMENTUM`].
    pub fn torch(path: &nn::Path, channels: i64, epsilon: f64, momentum: f64) -> Self {
        Self::build(path, channels, epsilon, momentum, true, RunningVariance::Unbiased)
    }

    /// Every constructor ends here, which hands the layer the [`SharedBatchNorm`] of the model being built.
    fn build(
        path: &nn::Path,
        channels: i64,
        epsilon: f64,
        momentum: f64,
        scale: bool,
        running_variance: RunningVariance,
    ) -> Self {
        let options = (Kind::Float, path.device());
        BatchNorm {
            weight: scale.then(|| path.add("weight", Tensor::ones([channels], options), true)),
            bias: path.add("bias", Tensor::zeros([channels], options), true),
            running_mean: path.add("running_mean", Tensor::zeros([channels], options), false),
            running_var: path.add("running_var", Tensor::ones([channels], options), false),
            epsilon,
            momentum,
            shared: SharedBatchNorm::of_scope(),
            running_variance,
        }
    }

    /// The per-channel `(scale, shift)` that evaluation applies, `x · scale + shift`, in f64: what the inference
    /// form folds into the preceding convolution.
    pub(crate) fn affine(&self) -> (Tensor, Tensor) {
        let var = self.running_var.to_kind(Kind::Double);
        let inv_std = (var + self.epsilon).rsqrt();
        let scale = match &self.weight {
            Some(w) => w.to_kind(Kind::Double) * inv_std,
            None => inv_std,
        };
        let shift = self.bias.to_kind(Kind::Double) - self.running_mean.to_kind(Kind::Double) * &scale;
        (scale, shift)
    }

    /// The type of the layer's variables.
    pub(crate) fn kind(&self) -> Kind {
        self.bias.kind()
    }

    /// The momentum of the running statistics: the model's setting if it has one, else the layer's own.
    fn momentum(&self) -> f64 {
        self.shared.get().unwrap_or(self.momentum)
    }

    /// # Shapes
    /// N×C×H×W → N×C×H×W.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            if let Some(sync) = self.shared.sync() {
                return self.forward_pooled(xs, sync.as_ref());
            }
        }
        if !train || self.running_variance == RunningVariance::Unbiased {
            // Evaluation reads the running statistics; PyTorch's training step (libtorch's own) normalises by
            // the batch's and moves the running ones in place, by the unbiased variance.
            return xs.batch_norm(
                self.weight.as_ref(),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                train,
                1.0 - self.momentum(),
                self.epsilon,
                true,
            );
        }
        let none = None::<&Tensor>;
        let (out, mean, invstd) =
            xs.native_batch_norm(self.weight.as_ref(), Some(&self.bias), none, none, true, 0.0, self.epsilon);
        tch::no_grad(|| {
            // `invstd = 1 / sqrt(var + eps)` with the biased batch variance.
            let var = invstd.pow_tensor_scalar(-2.0) - self.epsilon;
            let m = self.momentum();
            for (stat, batch) in [(&self.running_mean, mean), (&self.running_var, var)] {
                let moved = stat * m + batch.to_kind(stat.kind()) * (1.0 - m);
                stat.shallow_clone().copy_(&moved);
            }
        });
        out
    }

    /// `act(self.forward_t(xs, train))`. In training on a channels-last f32 CPU tensor (without replicas to
    /// pool over) one fused autograd node ([`fused_train::bn_act`]): fewer passes over the activation and no normalised
    /// tensor kept for the backward.
    pub fn forward_act_t(&self, xs: &Tensor, train: bool, act: Activation) -> Tensor {
        if let Some(running) = self.fused_running(xs, train, act) {
            return fused_train::bn_act(xs, self.weight.as_ref(), &self.bias, running, self.epsilon, act)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        activate(&self.forward_t(xs, train), act)
    }

    /// `conv` of `act(self.forward_t(xs, train))` padded by `pads` (top, bottom, left, right). In training, where
    /// the fused node runs and `conv` has no bias, one node that keeps `xs` and makes the convolution's
    /// input again in the backward ([`recomputed_conv::bn_act_conv`]): one tensor fewer kept for the step.
    pub(crate) fn act_conv_t(&self, xs: &Tensor, train: bool, act: Activation, conv: &Conv2d, pads: Pads) -> Tensor {
        let running = self.fused_running(xs, train, act);
        match (running, conv.geometry(pads)) {
            (Some(running), Some(geometry)) if recomputed_conv::applies(xs, &conv.weight) => {
                recomputed_conv::bn_act_conv(
                    xs,
                    self.weight.as_ref(),
                    &self.bias,
                    running,
                    self.epsilon,
                    act,
                    &conv.weight,
                    geometry,
                )
                .unwrap_or_else(|e| panic!("{e}"))
            }
            _ => conv.forward_padded(&self.forward_act_t(xs, train, act), pads),
        }
    }

    /// Whether [`Self::side_by_side_act_t`] runs `bns` on a tensor laid out as `xs`: the fused node takes it
    /// and the layers agree in kind, epsilon and momentum.
    pub(crate) fn side_by_side_runs(bns: &[&BatchNorm], xs: &Tensor, act: Activation) -> bool {
        let Some(first) = bns.first() else { return false };
        let alike = |b: &&BatchNorm| {
            b.epsilon == first.epsilon
                && b.momentum() == first.momentum()
                && b.running_variance == first.running_variance
                && b.weight.is_some() == first.weight.is_some()
        };
        bns.iter().all(alike) && first.fused_running(xs, true, act).is_some()
    }

    /// `act` of the batch norms `bns` side by side in training, over `xs`'s channels in their order (the
    /// output of convolutions merged into one): one fused node over their concatenated variables, each
    /// layer's running statistics moved as its own would. `None` where [`Self::side_by_side_runs`] says no or
    /// `xs` has another width (the caller runs the layers one by one).
    pub(crate) fn side_by_side_act_t(bns: &[&BatchNorm], xs: &Tensor, act: Activation) -> Option<Tensor> {
        let channels: i64 = bns.iter().map(|b| b.bias.size()[0]).sum();
        if !Self::side_by_side_runs(bns, xs, act) || xs.size().get(1) != Some(&channels) {
            return None;
        }
        let first = bns[0];
        let running = first.fused_running(xs, true, act)?;
        let cat =
            |pick: &dyn Fn(&BatchNorm) -> &Tensor| Tensor::cat(&bns.iter().map(|b| pick(b)).collect::<Vec<_>>(), 0);
        let weight = first.weight.as_ref().map(|_| cat(&|b| b.weight.as_ref().expect("alike layers")));
        let bias = cat(&|b| &b.bias);
        let (mean, var) = tch::no_grad(|| (cat(&|b| &b.running_mean), cat(&|b| &b.running_var)));
        let running = Running { mean: &mean, var: &var, ..running };
        let out = fused_train::bn_act(xs, weight.as_ref(), &bias, running, first.epsilon, act)
            .unwrap_or_else(|e| panic!("{e}"));
        tch::no_grad(|| {
            let mut start = 0;
            for b in bns {
                let n = b.bias.size()[0];
                b.running_mean.shallow_clone().copy_(&mean.narrow(0, start, n));
                b.running_var.shallow_clone().copy_(&var.narrow(0, start, n));
                start += n;
            }
        });
        Some(out)
    }

    /// The running statistics for the fused training node, where it runs: training on a tensor it takes
    /// (channels-last f32 on a CPU with its kernels), without replicas to pool over.
    fn fused_running(&self, xs: &Tensor, train: bool, act: Activation) -> Option<Running<'_>> {
        (train && fused_train::bn_act_applies(xs, act) && self.shared.sync().is_none()).then(|| Running {
            mean: &self.running_mean,
            var: &self.running_var,
            keep: self.momentum(),
            unbiased: self.running_variance == RunningVariance::Unbiased,
        })
    }

    /// Training on the statistics of the global batch: the mean and then the biased variance summed over the
    /// replicas (two passes, as exact as one replica's), the gradients flowing back through the sums.
    fn forward_pooled(&self, xs: &Tensor, sync: &dyn ReplicaSum) -> Tensor {
        let dims = [0i64, 2, 3];
        let shape = [1, -1, 1, 1];
        let x = xs.to_kind(Kind::Float);
        let channels = x.size()[1];
        // One sum carries the channel sums and the number of values behind each (replicas' batches may
        // differ), in f64: a global batch of large images holds more values than f32 counts exactly.
        let local = Tensor::from_slice(&[(x.numel() as i64 / channels) as f64]).to_device(x.device());
        let sums = sync.sum(&Tensor::cat(&[x.sum_dim_intlist(dims.as_slice(), false, Kind::Double), local], 0));
        let count = sums.double_value(&[channels]);
        let mean = (sums.narrow(0, 0, channels) / count).to_kind(Kind::Float);
        let centred = &x - mean.view(shape);
        let var = sync.sum(&centred.square().sum_dim_intlist(dims.as_slice(), false, Kind::Float)) / count;
        let normalised = centred * (&var + self.epsilon).rsqrt().view(shape);
        let scaled = match &self.weight {
            Some(weight) => normalised * weight.view(shape),
            None => normalised,
        };
        let out = scaled + self.bias.view(shape);
        tch::no_grad(|| {
            let var = match self.running_variance {
                RunningVariance::Biased => var.detach(),
                RunningVariance::Unbiased => var.detach() * (count / (count - 1.0).max(1.0)),
            };
            let m = self.momentum();
            for (stat, batch) in [(&self.running_mean, mean.detach()), (&self.running_var, var)] {
                let moved = stat * m + batch.to_kind(stat.kind()) * (1.0 - m);
                stat.shallow_clone().copy_(&moved);
            }
        });
        out.to_kind(xs.kind())
    }
}

/// `act(xs)`, out of place (autograd keeps what the activation's backward needs).
pub(crate) fn activate(xs: &Tensor, act: Activation) -> Tensor {
    match act {
        Activation::None => xs.shallow_clone(),
        Activation::Relu => xs.relu(),
        Activation::Relu6 => xs.relu6(),
        Activation::Swish => xs.silu(),
        Activation::Sigmoid => xs.sigmoid(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn batch_norm_trains_on_batch_statistics_and_moves_running_ones_as_keras() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm::new(&vs.root().sub("bn"), 3);
        let xs = Tensor::randn([4, 3, 5, 5], (Kind::Float, Device::Cpu)) * 3.0 + 2.0;
        let dims = [0i64, 2, 3];
        let mean = xs.mean_dim(dims.as_slice(), false, None::<Kind>);
        let biased_var = xs.var_dim(dims.as_slice(), false, false);

        // Fresh statistics (mean 0, variance 1) in evaluation.
        assert!(bn.forward_t(&xs, false).allclose(&(&xs / (1.0 + 1e-3f64).sqrt()), 1e-5, 1e-5, false));
        let y = bn.forward_t(&xs, true);
        let expected = (&xs - mean.view([1, 3, 1, 1])) / (&biased_var + 1e-3).sqrt().view([1, 3, 1, 1]);
        assert!(y.allclose(&expected, 1e-4, 1e-4, false));
        let vars = vs.variables();
        assert!(vars["bn.running_mean"].allclose(&(&mean * 0.01), 1e-5, 1e-6, false));
        assert!(vars["bn.running_var"].allclose(&(&biased_var * 0.01 + 0.99), 1e-5, 1e-6, false));

        // Evaluation reads the running statistics and leaves them alone.
        let before = vars["bn.running_var"].copy();
        let y = bn.forward_t(&xs, false);
        let rm = vars["bn.running_mean"].view([1, 3, 1, 1]);
        let rv = vars["bn.running_var"].view([1, 3, 1, 1]);
        assert!(y.allclose(&((&xs - rm) / (rv + 1e-3).sqrt()), 1e-5, 1e-5, false));
        assert!(vars["bn.running_var"].equal(&before));
    }

    /// The sum over `replicas` identical replicas.
    #[derive(Debug)]
    struct Identical {
        replicas: f64,
    }

    impl ReplicaSum for Identical {
        fn sum(&self, xs: &Tensor) -> Tensor {
            xs * self.replicas
        }
    }

    #[test]
    fn pooled_statistics_of_identical_replicas_train_as_one_replica_does() {
        for torch_style in [false, true] {
            tch::manual_seed(7);
            let xs = (Tensor::randn([4, 3, 5, 5], (Kind::Float, Device::Cpu)) * 3.0 + 2.0).set_requires_grad(true);
            let target = Tensor::randn([4, 3, 5, 5], (Kind::Float, Device::Cpu));
            let run = |sync: Option<Arc<dyn ReplicaSum>>| {
                let vs = nn::VarStore::new(Device::Cpu);
                let (bn, shared) = SharedBatchNorm::share(|| match torch_style {
                    false => BatchNorm::new(&vs.root().sub("bn"), 3),
                    true => BatchNorm::torch(&vs.root().sub("bn"), 3, 1e-5, 0.9),
                });
                tch::no_grad(|| {
                    vs.variables()["bn.weight"].shallow_clone().copy_(&Tensor::from_slice(&[0.5f32, 2.0, -1.0]))
                });
                shared.set_sync(sync);
                let _ = xs.grad().f_zero_();
                let y = bn.forward_t(&xs, true);
                let loss = (&y * &target).sum(Kind::Float);
                loss.backward();
                let vars = vs.variables();
                (y.detach(), xs.grad().copy(), vars["bn.weight"].grad().copy(), vars["bn.running_var"].copy())
            };
            let (y, dx, dw, var) = run(None);
            let (y1, dx1, dw1, var1) = run(Some(Arc::new(Identical { replicas: 1.0 })));
            for (a, b, what) in [(&y, &y1, "output"), (&dx, &dx1, "input gradient"), (&dw, &dw1, "scale gradient")] {
                assert!(a.allclose(b, 1e-4, 1e-4, false), "{what}, torch_style {torch_style}");
            }
            assert!(var.allclose(&var1, 1e-5, 1e-6, false));
            // Two identical replicas: the same statistics, but the unbiased variance counts twice the values.
            let (y2, _, _, var2) = run(Some(Arc::new(Identical { replicas: 2.0 })));
            assert!(y.allclose(&y2, 1e-4, 1e-4, false));
            // Running variance 0.9 + 0.1 · v · n / (n - 1) from one replica, 0.9 + 0.1 · v · 2n / (2n - 1) from two.
            let n = 4.0 * 25.0;
            let expected =
                if torch_style { (&var - 0.9) * (2.0 * (n - 1.0) / (2.0 * n - 1.0)) + 0.9 } else { var.copy() };
            assert!(var2.allclose(&expected, 1e-4, 1e-5, false), "torch_style {torch_style}: {var2:?} vs {expected:?}");
        }
    }

    #[test]
    fn batch_norm_without_scale_has_no_weight_and_only_shifts() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm::without_scale(&vs.root().sub("bn"), 2, 1e-3, 0.99);
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(!names.contains(&"bn.weight".to_string()) && names.len() == 3, "{names:?}");
        let vars = vs.variables();
        tch::no_grad(|| vars["bn.bias"].shallow_clone().copy_(&Tensor::from_slice(&[0.5f32, -2.0])));
        let xs = Tensor::randn([3, 2, 4, 4], (Kind::Float, Device::Cpu));
        let expected = &xs / (1.0 + 1e-3f64).sqrt() + Tensor::from_slice(&[0.5f32, -2.0]).view([1, 2, 1, 1]);
        assert!(bn.forward_t(&xs, false).allclose(&expected, 1e-5, 1e-5, false));
    }

    #[test]
    fn torch_batch_norm_moves_running_statistics_by_the_unbiased_variance() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm::torch(&vs.root().sub("bn"), 3, BatchNorm::TORCH_EPSILON, BatchNorm::TORCH_MOMENTUM);
        let xs = Tensor::randn([4, 3, 5, 5], (Kind::Float, Device::Cpu)) * 3.0 + 2.0;
        let dims = [0i64, 2, 3];
        let mean = xs.mean_dim(dims.as_slice(), false, None::<Kind>);
        let (biased, unbiased) = (xs.var_dim(dims.as_slice(), false, false), xs.var_dim(dims.as_slice(), true, false));
        let y = bn.forward_t(&xs, true);
        let expected = (&xs - mean.view([1, 3, 1, 1])) / (&biased + 1e-5).sqrt().view([1, 3, 1, 1]);
        assert!(y.allclose(&expected, 1e-4, 1e-4, false), "training normalises by the biased batch variance");
        let vars = vs.variables();
        assert!(vars["bn.running_mean"].allclose(&(&mean * 0.1), 1e-5, 1e-6, false));
        assert!(vars["bn.running_var"].allclose(&(&unbiased * 0.1 + 0.9), 1e-5, 1e-6, false));
    }

    #[test]
    fn batch_norms_built_together_share_one_momentum_setting_and_none_restores_their_own() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let ((keras, torch), shared) = SharedBatchNorm::share(|| {
            (BatchNorm::new(&vs.root().sub("k"), 2), BatchNorm::torch(&vs.root().sub("t"), 2, 1e-5, 0.9))
        });
        let alone = BatchNorm::new(&vs.root().sub("alone"), 2);
        let xs = Tensor::randn([4, 2, 3, 3], (Kind::Float, Device::Cpu)) + 1.0;
        let mean = xs.mean_dim([0i64, 2, 3].as_slice(), false, None::<Kind>);
        // One training pass from zero running means moves each by (1 - momentum) · batch mean.
        let moved = |bn: &BatchNorm| {
            let _ = tch::no_grad(|| bn.running_mean.shallow_clone().zero_());
            let _ = bn.forward_t(&xs, true);
            (&bn.running_mean / &mean).mean(Kind::Float).double_value(&[])
        };
        shared.set(Some(0.5));
        assert_eq!(shared.get(), Some(0.5));
        for (bn, own) in [(&keras, 0.01), (&torch, 0.1)] {
            assert!((moved(bn) - 0.5).abs() < 1e-5, "the shared setting overrides the layer's");
            assert!((moved(&alone) - 0.01).abs() < 1e-5, "a layer built outside the scope keeps its own");
            shared.set(None);
            assert!((moved(bn) - own).abs() < 1e-5, "None restores the layer's own momentum");
            shared.set(Some(0.5));
        }
    }

    #[test]
    fn a_momentum_scope_closes_when_its_build_returns_or_panics_and_restores_the_enclosing_one() {
        let vs = nn::VarStore::new(Device::Cpu);
        let ((inner_bn, inner, outer_bn), outer) = SharedBatchNorm::share(|| {
            let (inner_bn, inner) = SharedBatchNorm::share(|| BatchNorm::new(&vs.root().sub("inner"), 1));
            (inner_bn, inner, BatchNorm::new(&vs.root().sub("outer"), 1))
        });
        inner.set(Some(0.5));
        assert_eq!(inner_bn.shared.get(), Some(0.5));
        assert_eq!(outer_bn.shared.get(), None, "the enclosing scope is restored when a nested one closes");
        outer.set(Some(0.7));
        assert_eq!((inner_bn.shared.get(), outer_bn.shared.get()), (Some(0.5), Some(0.7)));

        let panicked = std::panic::catch_unwind(|| SharedBatchNorm::share(|| panic!("building failed")));
        assert!(panicked.is_err());
        let after = BatchNorm::new(&vs.root().sub("after"), 1);
        outer.set(Some(0.1));
        assert_eq!(after.shared.get(), None, "no scope stays open after a build, even one that panicked");
    }
}
