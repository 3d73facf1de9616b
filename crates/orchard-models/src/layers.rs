//! Layers with the reference frameworks' semantics, shared by the architecture files: convolutions with TF
//! "same" or PyTorch's symmetric padding, a convolution with its batch norm ([`crate::batch_norm`]), dense
//! layers, explicit zero padding, pooling and stochastic depth.
//!
//! Each layer's variables are created under the layer's own [`nn::Path`] with PyTorch's names and layouts:
//! `weight` (OIHW for convolutions, out×in for dense), `bias`, `running_mean`, `running_var`.

use orchard_torch::recomputed_conv::ConvGeometry;
use orchard_torch::{fused_train, winograd_train};
use tch::{nn, Kind, Tensor};

use crate::batch_norm::BatchNorm;
use crate::fused::Activation;
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

impl Padding {
    /// `(before, after)`: the zeros this padding puts on each side of a dimension of `size` for a `kernel` at
    /// `stride`.
    pub(crate) fn sides(self, size: i64, kernel: i64, stride: i64) -> (i64, i64) {
        match self {
            Padding::Same => same_pads(size, kernel, stride),
            Padding::Symmetric(p) => (p, p),
            Padding::Valid => (0, 0),
        }
    }
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
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
    pub(crate) config: ConvConfig,
    pub(crate) groups: i64,
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

    /// Its geometry for a node that convolves an input it makes itself ([`orchard_torch::recomputed_conv`]),
    /// the input padded by `pads` (top, bottom, left, right); `None` for a convolution with a bias, which
    /// those nodes do not run.
    pub(crate) fn geometry(&self, pads: Pads) -> Option<ConvGeometry> {
        let ConvConfig { stride, .. } = self.config;
        self.bias.is_none().then_some(ConvGeometry { stride, pads, groups: self.groups })
    }

    /// The zeros [`Self::forward`] pads an input of `height`×`width` with: top, bottom, left, right.
    pub(crate) fn pads(&self, height: i64, width: i64) -> Pads {
        let ConvConfig { kernel: [kh, kw], stride, padding, .. } = self.config;
        let (top, bottom) = padding.sides(height, kh, stride);
        let (left, right) = padding.sides(width, kw, stride);
        [top, bottom, left, right]
    }

    /// The convolution of `xs` padded by `pads` (top, bottom, left, right) whatever [`ConvConfig::padding`]
    /// says; a symmetric padding without a padded copy.
    pub(crate) fn forward_padded(&self, xs: &Tensor, pads: Pads) -> Tensor {
        let [top, bottom, left, right] = pads;
        let conv = |xs: &Tensor, pad: [i64; 2]| {
            let stride = self.config.stride;
            xs.conv2d(&self.weight, self.bias.as_ref(), [stride, stride], pad, [1, 1], self.groups)
        };
        match top == bottom && left == right {
            true if self.trains_by_winograd(xs, [top, left]) => winograd_train::conv(xs, &self.weight, [top, left])
                .unwrap_or_else(|e| panic!("the Winograd training convolution failed: {e}")),
            true => conv(xs, [top, left]),
            false => conv(&zero_pad(xs, pads), [0, 0]),
        }
    }

    /// Whether a training step runs this layer on `xs` padded by `padding` by Winograd's kernels
    /// ([`winograd_train`]): a stride-1 layer without groups or bias whose weight autograd follows.
    fn trains_by_winograd(&self, xs: &Tensor, padding: [i64; 2]) -> bool {
        self.config.stride == 1
            && self.groups == 1
            && self.bias.is_none()
            && self.weight.requires_grad()
            && winograd_train::grad_enabled()
            && winograd_train::applies(xs, &self.weight, padding)
    }

    /// # Shapes
    /// N×C_in×H×W → N×C_out×H'×W', with `H' = ceil(H / stride)` for [`Padding::Same`],
    /// `H' = (H - k) / stride + 1` for [`Padding::Valid`] and `H' = (H + 2p - k) / stride + 1` for
    /// [`Padding::Symmetric`]`(p)`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let (h, w) = spatial(xs);
        self.forward_padded(xs, self.pads(h, w))
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

    /// `act(self.forward_t(xs, train))`, the batch norm and activation fused in training where they can be.
    pub fn forward_act_t(&self, xs: &Tensor, train: bool, act: Activation) -> Tensor {
        self.bn.forward_act_t(&self.conv.forward(xs), train, act)
    }
}

/// A fully connected layer (Keras `Dense`): `weight` is out×in, `bias` has `out` entries.
#[derive(Debug)]
pub(crate) struct Dense {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
}

impl Dense {
    pub fn new(path: &nn::Path, c_in: i64, c_out: i64, init: Initializer) -> Self {
        let weight = path.add("weight", init.sample(&[c_out, c_in], c_in, c_out, path.device()), true);
        let bias = path.add("bias", init.sample_bias(c_out, c_in, path.device()), true);
        Dense { weight, bias }
    }

    /// Draws the weights afresh in place as [`Dense::new`] draws them with `init` (the kernel by `init`, the
    /// bias zero but for [`Initializer::PyTorchDefault`]), drawing the same random numbers.
    pub fn reset(&self, init: Initializer) {
        let (c_out, c_in) = (self.weight.size()[0], self.weight.size()[1]);
        let device = self.weight.device();
        tch::no_grad(|| {
            self.weight.shallow_clone().copy_(&init.sample(&[c_out, c_in], c_in, c_out, device));
            self.bias.shallow_clone().copy_(&init.sample_bias(c_out, c_in, device));
        });
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
/// In training on a tensor [`fused_train::max_pool`] takes, that node: it keeps its input and output instead
/// of libtorch's int64 index per output value (94 MB at Inception-ResNet-v2's 299, batch 16).
///
/// # Shapes
/// N×C×H×W → N×C×H'×W', `H' = (H - kernel) / stride + 1`.
pub(crate) fn max_pool(xs: &Tensor, kernel: i64, stride: i64) -> Tensor {
    if xs.requires_grad() && fused_train::max_pool_applies(xs, kernel, 0) {
        return fused_train::max_pool(xs, kernel, stride).unwrap_or_else(|e| panic!("{e}"));
    }
    max_pool_zero_padded(xs, kernel, stride, 0)
}

/// [`max_pool`] of `xs` zero-padded by `pad` on every side (Keras' `ZeroPadding2D` then `MaxPooling2D`)
/// without the padded copy. Outside autograd, on a tensor it takes, Orchard's pooling
/// ([`fused_train::max_pool_padded`]): libtorch's writes an int64 index per output even there. Else
/// libtorch's padded pooling leaves the padding out, and a window that covers some of it then takes max(its
/// values, 0), what the zeros would have given: the same values, bit for bit. `pad` at most half the kernel
/// (libtorch's bound).
pub(crate) fn max_pool_zero_padded(xs: &Tensor, kernel: i64, stride: i64, pad: i64) -> Tensor {
    if !xs.requires_grad() && fused_train::max_pool_applies(xs, kernel, pad) {
        return fused_train::max_pool_padded(xs, kernel, stride, pad).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = xs.max_pool2d([kernel, kernel], [stride, stride], [pad, pad], [1, 1], false);
    for dim in [2i64, 3] {
        let (size, positions) = (xs.size()[dim as usize], out.size()[dim as usize]);
        let touches_padding = |o: i64| o * stride < pad || o * stride - pad + kernel > size;
        for o in (0..positions).filter(|&o| touches_padding(o)) {
            let _ = out.narrow(dim, o, 1).clamp_min_(0.0);
        }
    }
    out
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
/// A sum divided by H·W, the values of libtorch's mean (which sums, then divides): the mean's backward
/// divides the broadcast gradient, writing a tensor of the input's size, while the sum's is a broadcast view,
/// and the division happens on the pooled values.
///
/// # Shapes
/// N×C×H×W → N×C (or N×C×1×1 with `keepdim`).
pub(crate) fn global_avg_pool(xs: &Tensor, keepdim: bool) -> Tensor {
    let (h, w) = spatial(xs);
    xs.sum_dim_intlist([-2i64, -1].as_slice(), keepdim, None::<Kind>) / (h * w) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Pooling without the padded copy gives what pooling the zero-padded input gives, bit for bit: windows
    /// over the padding at the start only (even sizes at stride 2) and at both ends (odd sizes, stride 1),
    /// where every value is negative and the padding's zero wins.
    #[test]
    fn max_pooling_leaves_the_zero_padding_out_and_gets_the_same_values() {
        tch::manual_seed(4);
        let cpu = (Kind::Float, Device::Cpu);
        for (size, kernel, stride) in [(12, 3, 2), (11, 3, 2), (9, 3, 1)] {
            let xs = Tensor::randn([2, 5, size, size + 1], cpu) - 0.5;
            let _ = xs.narrow(1, 0, 1).fill_(-1.0);
            let expected = max_pool(&zero_pad(&xs, [1, 1, 1, 1]), kernel, stride);
            let out = max_pool_zero_padded(&xs, kernel, stride, 1);
            assert!(out.equal(&expected), "{size}², {kernel}×{kernel} stride {stride}: the pooled values differ");
            let zeros = out.narrow(1, 0, 1).eq(0.0).sum(Kind::Int64).int64_value(&[]);
            assert!(zeros > 0, "{size}²: no window took the padding's zero");
        }
    }

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
    fn same_average_pooling_averages_only_inside_the_input() {
        let xs = Tensor::arange(9, (Kind::Float, Device::Cpu)).view([1, 1, 3, 3]);
        let y = avg_pool_same(&xs, 3);
        // Corner: mean of 0, 1, 3, 4; centre: mean of all nine.
        assert_eq!(y.double_value(&[0, 0, 0, 0]), 2.0);
        assert_eq!(y.double_value(&[0, 0, 1, 1]), 4.0);
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
