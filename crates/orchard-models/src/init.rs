//! Weight initialisers of the reference frameworks, so that a model trained from scratch starts from the same
//! distribution as its reference.
//!
//! The fans are passed in explicitly rather than read off the tensor's shape, because Orchard stores kernels
//! in PyTorch's layouts while Keras computes its fans from its own (a depthwise kernel is `kh×kw×C×1` in Keras,
//! so its fan-out is `kh·kw`, but `C×1×kh×kw` here).

use tch::{Device, Kind, Tensor};

/// Which fan a [`Initializer::VarianceScaling`] divides by (Keras' `mode`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FanMode {
    /// `fan_in`: input units (input channels × receptive field).
    In,
    /// `fan_out`: output units (output channels × receptive field).
    Out,
    /// `fan_avg`: the mean of the two.
    Average,
}

/// The distribution of a [`Initializer::VarianceScaling`] (Keras' `distribution`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Normal, redrawn beyond two standard deviations, with the standard deviation corrected for the truncation
    /// (Keras `"truncated_normal"`).
    TruncatedNormal,
    /// Plain normal (Keras `"untruncated_normal"`).
    UntruncatedNormal,
    /// Uniform on `±sqrt(3·scale/fan)` (Keras `"uniform"`).
    Uniform,
}

/// How a variable's initial value is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Initializer {
    /// All zeros (Keras' default for biases and batch-norm offsets).
    Zeros,
    /// All ones (batch-norm scales).
    Ones,
    /// Keras `VarianceScaling(scale, mode, distribution)`: variance `scale / fan`.
    VarianceScaling { scale: f64, mode: FanMode, distribution: Distribution },
    /// Normal with mean 0 and a fixed standard deviation, whatever the fans (PyTorch `normal_(0, std)`).
    Normal { std: f64 },
    /// What PyTorch's `nn.Conv2d` and `nn.Linear` draw in `reset_parameters`: the kernel uniform on
    /// `±1/sqrt(fan_in)` (`kaiming_uniform_(a=sqrt(5))`) and the bias too ([`Initializer::sample_bias`]).
    PyTorchDefault,
}

/// Standard deviation of a unit normal truncated to ±2, which Keras divides out (`0.87962566103423978`).
const TRUNCATED_NORMAL_STD: f64 = 0.879_625_661_034_239_8;
/// `erf(√2)`: the probability mass of a normal within two standard deviations, as an `erf` argument range.
const ERF_SQRT_2: f64 = 0.954_499_736_103_641_6;

impl Initializer {
    /// Keras' default kernel initialiser, `glorot_uniform`.
    pub const GLOROT_UNIFORM: Initializer =
        Initializer::VarianceScaling { scale: 1.0, mode: FanMode::Average, distribution: Distribution::Uniform };
    /// PyTorch's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, torchvision's convolution kernels.
    pub const KAIMING_NORMAL_FAN_OUT: Initializer =
        Initializer::VarianceScaling { scale: 2.0, mode: FanMode::Out, distribution: Distribution::UntruncatedNormal };

    /// A new f32 tensor of `shape` on `device`, drawn for a weight with the given fans.
    pub fn sample(&self, shape: &[i64], fan_in: i64, fan_out: i64, device: Device) -> Tensor {
        let options = (Kind::Float, device);
        match *self {
            Initializer::Zeros => Tensor::zeros(shape, options),
            Initializer::Ones => Tensor::ones(shape, options),
            Initializer::Normal { std } => Tensor::empty(shape, options).normal_(0.0, std),
            // Variance scaling by a third of 1/fan_in: the bound is sqrt(3 · (1/3) / fan_in) = 1/sqrt(fan_in).
            Initializer::PyTorchDefault => Initializer::VarianceScaling {
                scale: 1.0 / 3.0,
                mode: FanMode::In,
                distribution: Distribution::Uniform,
            }
            .sample(shape, fan_in, fan_out, device),
            Initializer::VarianceScaling { scale, mode, distribution } => {
                let fan = match mode {
                    FanMode::In => fan_in as f64,
                    FanMode::Out => fan_out as f64,
                    FanMode::Average => (fan_in + fan_out) as f64 / 2.0,
                };
                let variance = scale / fan.max(1.0);
                let mut t = Tensor::empty(shape, options);
                match distribution {
                    Distribution::TruncatedNormal => {
                        // Inverse-CDF sampling of a normal restricted to ±2σ.
                        let std = variance.sqrt() / TRUNCATED_NORMAL_STD;
                        let _ = t.uniform_(-ERF_SQRT_2, ERF_SQRT_2);
                        let _ = t.erfinv_();
                        let _ = t.g_mul_scalar_(std * std::f64::consts::SQRT_2);
                        let _ = t.clamp_(-2.0 * std, 2.0 * std);
                    }
                    Distribution::UntruncatedNormal => {
                        let _ = t.normal_(0.0, variance.sqrt());
                    }
                    Distribution::Uniform => {
                        let limit = (3.0 * variance).sqrt();
                        let _ = t.uniform_(-limit, limit);
                    }
                }
                t
            }
        }
    }

    /// The bias of `n` entries of a layer whose kernel this initialiser draws: uniform on `±1/sqrt(fan_in)`
    /// for [`Initializer::PyTorchDefault`], zeros otherwise (Keras and torchvision zero their biases).
    pub fn sample_bias(&self, n: i64, fan_in: i64, device: Device) -> Tensor {
        match self {
            Initializer::PyTorchDefault => {
                let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                Tensor::empty([n], (Kind::Float, device)).uniform_(-bound, bound)
            }
            _ => Tensor::zeros([n], (Kind::Float, device)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variance_scaling_draws_have_the_keras_variance_and_range() {
        tch::manual_seed(0);
        let (fan_in, fan_out) = (64, 200);
        for distribution in [Distribution::TruncatedNormal, Distribution::UntruncatedNormal, Distribution::Uniform] {
            let init = Initializer::VarianceScaling { scale: 2.0, mode: FanMode::Out, distribution };
            let t = init.sample(&[400, 500], fan_in, fan_out, Device::Cpu);
            let expected = 2.0 / fan_out as f64;
            let var = t.var(true).double_value(&[]);
            assert!((var / expected - 1.0).abs() < 0.02, "{distribution:?}: variance {var}, expected {expected}");
            if distribution == Distribution::TruncatedNormal {
                let bound = 2.0 * expected.sqrt() / TRUNCATED_NORMAL_STD;
                assert!(t.abs().max().double_value(&[]) <= bound * (1.0 + 1e-6));
            }
        }
    }

    #[test]
    fn pytorch_default_draws_kernel_and_bias_within_one_over_root_fan_in() {
        tch::manual_seed(1);
        let fan_in = 75;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let kernel = Initializer::PyTorchDefault.sample(&[300, 3, 5, 5], fan_in, 7500, Device::Cpu);
        let bias = Initializer::PyTorchDefault.sample_bias(20000, fan_in, Device::Cpu);
        for t in [kernel, bias] {
            assert!(t.abs().max().double_value(&[]) <= bound);
            // Uniform on ±b has variance b²/3.
            let var = t.var(true).double_value(&[]);
            assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.03, "variance {var}");
        }
        let normal = Initializer::Normal { std: 0.01 }.sample(&[1000, 100], 100, 1000, Device::Cpu);
        assert!((normal.std(true).double_value(&[]) / 0.01 - 1.0).abs() < 0.01);
        assert_eq!(
            Initializer::Normal { std: 0.01 }.sample_bias(3, 100, Device::Cpu).abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
    }
}
