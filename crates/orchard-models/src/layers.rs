//! Layers with the reference frameworks' semantics, shared by the architecture files: convolutions with TF
//! "same" or PyTorch's symmetric padding, batch normalisation as Keras or PyTorch trains it, dense layers,
//! explicit zero padding and stochastic depth.
//!
//! Each layer's variables are created under the layer's own [`nn::Path`] with PyTorch's names and layouts:
//! `weight` (OIHW for convolutions, out×in for dense), `bias`, `running_mean`, `running_var`.

use tch::{nn, Kind, Tensor};

use crate::init::Initializer;

/// Zero padding of the two spatial dimensions: `[top, bottom, left, right]`.
pub(crate) type Pads = [i64; 4];

/// TensorFlow's "same" padding of one spatial dimension, `(before, after)`: the output has `ceil(size /
/// stride)` positions and any odd padding goes after.
pub(crate) fn same_pads(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - size).max(0);
    (total / 2, total - total / 2)
}

/// Keras `imagenet_utils.correct_pad` for an input whose spatial size is known: the zero padding put before a
/// stride-2 "valid" convolution with a square `kernel`.
///
/// Keras reads the size from the graph's static shape. A model built with an unknown input size (Keras'
/// `include_top=False` without `input_shape`) always pads as for an even size; Orchard pads for the size it is
/// given, which is what Keras does whenever it knows the size, and the same on even sizes either way.
pub(crate) fn correct_pad(height: i64, width: i64, kernel: i64) -> Pads {
    let half = kernel / 2;
    let adjust = |size: i64| 1 - size % 2;
    [half - adjust(height), half, half - adjust(width), half]
}

/// Pads the last two dimensions of an N×C×H×W tensor with zeros (Keras `ZeroPadding2D`).
pub(crate) fn zero_pad(xs: &Tensor, [top, bottom, left, right]: Pads) -> Tensor {
    xs.constant_pad_nd([left, right, top, bottom])
}

/// Spatial size `(H, W)` of an N×C×H×W tensor.
pub(crate) fn spatial(xs: &Tensor) -> (i64, i64) {
    let size = xs.size();
    (size[size.len() - 2], size[size.len() - 1])
}

/// The variable path of a layer named with dots (`classifier.1`, a PyTorch `Sequential` entry): one
/// sub-path per component, since [`nn::Path::sub`] takes a single component.
pub(crate) fn layer_path<'a>(path: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    dotted.split('.').fold(path.clone(), |p, c| p.sub(c))
}

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Padding {
    /// TF/Keras "same": asymmetric when the total is odd, the extra row/column after.
    Same,
    /// No padding.
    Valid,
    /// PyTorch's `padding=p`: `p` zeros on every side, whatever the input size.
    Symmetric(i64),
}

/// A 2-D convolution's hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvConfig {
    /// Kernel size `[height, width]`.
    pub kernel: [i64; 2],
    /// Stride of both spatial dimensions; default 1.
    pub stride: i64,
    /// Default [`Padding::Same`].
    pub padding: Padding,
    /// Whether the layer adds a bias; default false.
    pub bias: bool,
    /// Initialiser of the kernel; default Keras' `glorot_uniform`. Biases start at zero.
    pub init: Initializer,
}

impl ConvConfig {
    /// A square `kernel`×`kernel` convolution.
    pub fn new(kernel: i64) -> Self {
        Self::rect(kernel, kernel)
    }
    /// A `height`×`width` kernel (Inception's factorised 1×7 and 7×1 convolutions).
    pub fn rect(height: i64, width: i64) -> Self {
        ConvConfig {
            kernel: [height, width],
            stride: 1,
            padding: Padding::Same,
            bias: false,
            init: Initializer::GLOROT_UNIFORM,
        }
    }
    pub fn stride(self, stride: i64) -> Self {
        ConvConfig { stride, ..self }
    }
    pub fn padding(self, padding: Padding) -> Self {
        ConvConfig { padding, ..self }
    }
    pub fn bias(self, bias: bool) -> Self {
        ConvConfig { bias, ..self }
    }
    pub fn init(self, init: Initializer) -> Self {
        ConvConfig { init, ..self }
    }
}

/// A 2-D convolution, regular (Keras `Conv2D`) or depthwise with multiplier 1 (Keras `DepthwiseConv2D`).
#[derive(Debug)]
pub(crate) struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: ConvConfig,
    groups: i64,
}

impl Conv2d {
    /// A regular convolution from `c_in` to `c_out` channels: `weight` is `c_out×c_in×kh×kw`.
    pub fn new(path: &nn::Path, c_in: i64, c_out: i64, config: ConvConfig) -> Self {
        let [kh, kw] = config.kernel;
        let weight = config.init.sample(&[c_out, c_in, kh, kw], c_in * kh * kw, c_out * kh * kw, path.device());
        Self::with_weight(path, weight, c_out, config, 1)
    }

    /// A depthwise convolution over `channels` channels: `weight` is `channels×1×k×k`. Fans as Keras computes
    /// them from its `k×k×channels×1` kernel.
    pub fn depthwise(path: &nn::Path, channels: i64, config: ConvConfig) -> Self {
        let [kh, kw] = config.kernel;
        let weight = config.init.sample(&[channels, 1, kh, kw], channels * kh * kw, kh * kw, path.device());
        Self::with_weight(path, weight, channels, config, channels)
    }

    /// A PyTorch `nn.Conv2d(c_in, c_out, k, groups=groups)` (`groups = c_in = c_out` is depthwise): `weight` is
    /// `c_out×(c_in/groups)×k×k`, with the fans PyTorch reads off that shape.
    pub fn grouped(path: &nn::Path, c_in: i64, c_out: i64, groups: i64, config: ConvConfig) -> Self {
        let [kh, kw] = config.kernel;
        let fan_in = c_in / groups * kh * kw;
        let weight = config.init.sample(&[c_out, c_in / groups, kh, kw], fan_in, c_out * kh * kw, path.device());
        let conv = Self::with_weight(path, weight, c_out, config, groups);
        if let Some(bias) = &conv.bias {
            tch::no_grad(|| bias.shallow_clone().copy_(&config.init.sample_bias(c_out, fan_in, path.device())));
        }
        conv
    }

    fn with_weight(path: &nn::Path, weight: Tensor, c_out: i64, config: ConvConfig, groups: i64) -> Self {
        let weight = path.add("weight", weight, true);
        let bias = config.bias.then(|| path.add("bias", Tensor::zeros([c_out], (Kind::Float, path.device())), true));
        Conv2d { weight, bias, config, groups }
    }

    /// # Shapes
    /// N×C_in×H×W → N×C_out×H'×W', with `H' = ceil(H / stride)` for [`Padding::Same`],
    /// `H' = (H - k) / stride + 1` for [`Padding::Valid`] and `H' = (H + 2p - k) / stride + 1` for
    /// [`Padding::Symmetric`]`(p)`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let ConvConfig { kernel: [kh, kw], stride, padding, .. } = self.config;
        let conv = |xs: &Tensor, pad: [i64; 2]| {
            xs.conv2d(&self.weight, self.bias.as_ref(), [stride, stride], pad, [1, 1], self.groups)
        };
        match padding {
            Padding::Valid => conv(xs, [0, 0]),
            Padding::Symmetric(pad) => conv(xs, [pad, pad]),
            Padding::Same => {
                let (h, w) = spatial(xs);
                let (top, bottom) = same_pads(h, kh, stride);
                let (left, right) = same_pads(w, kw, stride);
                if top == bottom && left == right {
                    conv(xs, [top, left])
                } else {
                    conv(&zero_pad(xs, [top, bottom, left, right]), [0, 0])
                }
            }
        }
    }
}

thread_local! {
    static MOMENTUM_OVERRIDE: std::cell::Cell<Option<f64>> = const { std::cell::Cell::new(None) };
}

/// Overrides, on the calling thread, the momentum with which every batch-norm layer moves its running
/// statistics in training (Keras' convention: the weight of the old value); `None` restores each layer's own.
///
/// A training option, not part of an architecture: Keras' 0.99 suits fine-tuning from pretrained statistics,
/// but a model trained from scratch for a few hundred steps keeps running statistics still close to their
/// initial values, which ruins its evaluation; PyTorch's default corresponds to 0.9.
pub fn set_batch_norm_momentum(momentum: Option<f64>) {
    MOMENTUM_OVERRIDE.with(|o| o.set(momentum));
}

/// Batch normalisation as Keras (`keras.layers.BatchNormalization`) or PyTorch (`nn.BatchNorm2d`) trains it.
///
/// In training it normalises by the batch's mean and biased variance and moves the running statistics as
/// `moving = momentum · moving + (1 - momentum) · batch`. Keras moves the variance by the batch's biased
/// variance, PyTorch by the unbiased one; which one is the layer's [`RunningVariance`]. In evaluation it uses
/// the running statistics.
#[derive(Debug)]
pub(crate) struct BatchNorm {
    /// The scale `gamma`; `None` for Keras' `scale=False`, which multiplies by one.
    weight: Option<Tensor>,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    epsilon: f64,
    momentum: f64,
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

    fn build(path: &nn::Path, channels: i64, epsilon: f64, momentum: f64, scale: bool, running_variance: RunningVariance) -> Self {
        let options = (Kind::Float, path.device());
        BatchNorm {
            weight: scale.then(|| path.add("weight", Tensor::ones([channels], options), true)),
            bias: path.add("bias", Tensor::zeros([channels], options), true),
            running_mean: path.add("running_mean", Tensor::zeros([channels], options), false),
            running_var: path.add("running_var", Tensor::ones([channels], options), false),
            epsilon,
            momentum,
            running_variance,
        }
    }

    /// # Shapes
    /// N×C×H×W → N×C×H×W.
    /// The momentum of the running statistics: the layer's own unless overridden for training
    /// ([`set_batch_norm_momentum`]).
    fn momentum(&self) -> f64 {
        MOMENTUM_OVERRIDE.with(|o| o.get()).unwrap_or(self.momentum)
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
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
}

/// A convolution followed by batch normalisation, the unit of the PyTorch-layout families (torchvision's
/// `Conv2dNormActivation` without its activation, a ResNet `convN`/`bnN` pair, a Lite `_expand_conv`/`_bn0`).
#[derive(Debug)]
pub(crate) struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl ConvBn {
    /// torchvision's `nn.Conv2d(c_in, c_out, kernel, stride, padding=(kernel - 1) / 2, groups=groups,
    /// bias=False)` with `kaiming_normal_(mode="fan_out")` kernels, then `nn.BatchNorm2d(c_out)` with PyTorch's
    /// defaults: the convolution under `conv`, the batch norm under `bn`.
    pub fn torchvision(
        conv: &nn::Path,
        bn: &nn::Path,
        (c_in, c_out): (i64, i64),
        kernel: i64,
        stride: i64,
        groups: i64,
    ) -> Self {
        let config = ConvConfig::new(kernel)
            .stride(stride)
            .padding(Padding::Symmetric((kernel - 1) / 2))
            .init(Initializer::KAIMING_NORMAL_FAN_OUT);
        ConvBn {
            conv: Conv2d::grouped(conv, c_in, c_out, groups, config),
            bn: BatchNorm::torch(bn, c_out, BatchNorm::TORCH_EPSILON, BatchNorm::TORCH_MOMENTUM),
        }
    }

    /// # Shapes
    /// N×C_in×H×W → N×C_out×H'×W', as [`Conv2d::forward`].
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&self.conv.forward(xs), train)
    }
}

/// A fully connected layer (Keras `Dense`): `weight` is out×in, `bias` has `out` entries.
#[derive(Debug)]
pub(crate) struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    pub fn new(path: &nn::Path, c_in: i64, c_out: i64, init: Initializer) -> Self {
        let weight = path.add("weight", init.sample(&[c_out, c_in], c_in, c_out, path.device()), true);
        let bias = path.add("bias", init.sample_bias(c_out, c_in, path.device()), true);
        Dense { weight, bias }
    }

    /// # Shapes
    /// N×in → N×out.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, Some(&self.bias))
    }
}

/// Stochastic depth ("drop connect"): in training, zeroes whole samples of a residual branch with probability
/// `rate` and scales the rest by `1 / (1 - rate)` (Keras `Dropout(rate, noise_shape=(None, 1, 1, 1))`); the
/// identity in evaluation.
///
/// # Shapes
/// N×… → N×…
pub(crate) fn drop_path(xs: &Tensor, rate: f64, train: bool) -> Tensor {
    if !train || rate <= 0.0 {
        return xs.shallow_clone();
    }
    let keep = 1.0 - rate;
    let mut mask_shape = vec![1; xs.dim()];
    mask_shape[0] = xs.size()[0];
    let mut mask = Tensor::empty(mask_shape.as_slice(), (xs.kind(), xs.device()));
    let _ = mask.bernoulli_float_(keep);
    xs * mask / keep
}

/// Max pooling with a square window and no padding (Keras `MaxPooling2D(kernel, stride)`, "valid").
///
/// # Shapes
/// N×C×H×W → N×C×H'×W', `H' = (H - kernel) / stride + 1`.
pub(crate) fn max_pool(xs: &Tensor, kernel: i64, stride: i64) -> Tensor {
    xs.max_pool2d([kernel, kernel], [stride, stride], [0, 0], [1, 1], false)
}

/// Average pooling with a square odd window, stride 1 and "same" padding (Keras `AveragePooling2D(kernel,
/// strides=1, padding="same")`): each output averages only the input positions its window covers, as
/// TensorFlow does (PyTorch's `count_include_pad=False`).
///
/// # Shapes
/// N×C×H×W → N×C×H×W.
pub(crate) fn avg_pool_same(xs: &Tensor, kernel: i64) -> Tensor {
    let pad = kernel / 2;
    xs.avg_pool2d([kernel, kernel], [1, 1], [pad, pad], false, false, None)
}

/// Global average pooling of the spatial dimensions (Keras `GlobalAveragePooling2D`).
///
/// # Shapes
/// N×C×H×W → N×C (or N×C×1×1 with `keepdim`).
pub(crate) fn global_avg_pool(xs: &Tensor, keepdim: bool) -> Tensor {
    xs.mean_dim([-2i64, -1].as_slice(), keepdim, None::<Kind>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn keras_correct_pad_is_tf_same_padding_for_stride_two() {
        for size in 1..40 {
            for kernel in [3, 5, 7] {
                let (before, after) = same_pads(size, kernel, 2);
                assert_eq!(correct_pad(size, size + 1, kernel)[..2], [before, after], "size {size}, kernel {kernel}");
            }
        }
    }

    #[test]
    fn same_convolution_keeps_ceil_of_size_over_stride() {
        let vs = nn::VarStore::new(Device::Cpu);
        for (kernel, stride) in [(1, 1), (3, 1), (5, 1), (3, 2), (5, 2), (4, 2)] {
            let conv =
                Conv2d::new(&vs.root().sub(format!("c{kernel}{stride}")), 2, 3, ConvConfig::new(kernel).stride(stride));
            for size in [7, 8] {
                let y = conv.forward(&Tensor::ones([1, 2, size, size], (Kind::Float, Device::Cpu)));
                let out = (size + stride - 1) / stride;
                assert_eq!(y.size(), [1, 3, out, out], "kernel {kernel}, stride {stride}, size {size}");
            }
        }
    }

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

    #[test]
    fn same_average_pooling_averages_only_inside_the_input() {
        let xs = Tensor::arange(9, (Kind::Float, Device::Cpu)).view([1, 1, 3, 3]);
        let y = avg_pool_same(&xs, 3);
        // Corner: mean of 0, 1, 3, 4; centre: mean of all nine.
        assert_eq!(y.double_value(&[0, 0, 0, 0]), 2.0);
        assert_eq!(y.double_value(&[0, 0, 1, 1]), 4.0);
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
    fn drop_path_drops_whole_samples_only_in_training() {
        tch::manual_seed(2);
        let xs = Tensor::ones([1000, 2, 3, 3], (Kind::Float, Device::Cpu));
        assert!(drop_path(&xs, 0.25, false).equal(&xs));
        let y = drop_path(&xs, 0.25, true);
        let per_sample = y.view([1000, -1]);
        let (lo, hi) = (per_sample.amin([1i64].as_slice(), false), per_sample.amax([1i64].as_slice(), false));
        assert!(lo.equal(&hi), "a sample was partly dropped");
        let kept = hi.gt(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((kept - 0.75).abs() < 0.05, "kept {kept}");
        assert!((hi.max().double_value(&[]) - 1.0 / 0.75).abs() < 1e-6, "kept samples are scaled by 1 / (1 - rate)");
    }
}
