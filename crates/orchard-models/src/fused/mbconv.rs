//! EfficientNet's MBConv passes on CPUs with AVX-512 (f32, no autocast), which replace a block's layers where
//! they run: the depthwise layer with its swish and squeeze-excitation's pooling ([`PooledDepthwise`]), the
//! expand convolution computed inside that pass ([`ExpandInPass`]), and the projection with the gate applied
//! in its pass ([`GatedProjection`]); squeeze-excitation's two convolutions as matrix products
//! ([`DenseExcitation`]). The expand and projection kernels hold the only copy of their layer's
//! weights: the [`FusedConv`] they were made from reads its weight back from them for its fallback.

use std::sync::Arc;

use orchard_torch::pooled_depthwise::{pooled_depthwise, Window};
use orchard_torch::scaled_pointwise::PackedPointwise;
use tch::{Kind, Tensor};

use super::{Activation, FusedConv};
use crate::layers::{spatial, Padding};

/// A depthwise layer with swish and squeeze-excitation's pooling after it, run as one pass by
/// [`pooled_depthwise`] where the CPU has AVX-512 (f32, no autocast); made from the layer's folded form.
#[derive(Debug)]
pub(crate) struct PooledDepthwise {
    /// K×K×C.
    weight: Tensor,
    bias: Tensor,
    kernel: i64,
    stride: i64,
    padding: Padding,
}

impl PooledDepthwise {
    /// `None` where the kernel does not run `layer`: not a depthwise swish layer, not f32, or not 3×3 / 5×5
    /// with stride 1 or 2.
    pub fn new(layer: &FusedConv) -> Option<Self> {
        let plain = layer.weight();
        let [c, per_group, kh, kw]: [i64; 4] = plain.size().try_into().ok()?;
        let fits = per_group == 1
            && layer.groups == c
            && kh == kw
            && matches!(kh, 3 | 5)
            && matches!(layer.stride, 1 | 2)
            && layer.act == Activation::Swish
            && plain.kind() == Kind::Float
            && orchard_torch::pooled_depthwise::available();
        fits.then(|| {
            let weight = tch::no_grad(|| plain.squeeze_dim(1).permute([1, 2, 0]).contiguous());
            let bias = layer.bias.contiguous();
            PooledDepthwise { weight, bias, kernel: kh, stride: layer.stride, padding: layer.padding }
        })
    }

    /// Whether the kernel runs on `xs`.
    pub fn runs(&self, xs: &Tensor) -> bool {
        super::cpu_f32_outside_autocast(xs)
    }

    /// `(swish(layer(in(xs))), its mean over positions N×C×1×1)`, `in` swish when `input_swish` (the expand
    /// convolution's activation, left to this pass).
    pub fn forward(&self, xs: &Tensor, input_swish: bool) -> (Tensor, Tensor) {
        self.run(xs, input_swish, None)
    }

    /// [`PooledDepthwise::forward`] of `swish(expand(xs))`, the expand convolution computed inside the pass row
    /// by row: its output, six times as wide as `xs`, is never written whole.
    pub fn forward_expanded(&self, xs: &Tensor, expand: &ExpandInPass) -> (Tensor, Tensor) {
        self.run(xs, true, Some(&*expand.packed))
    }

    fn run(&self, xs: &Tensor, input_swish: bool, expand: Option<&PackedPointwise>) -> (Tensor, Tensor) {
        let (h, w) = spatial(xs);
        let side = |n: i64| {
            let (before, after) = self.padding.sides(n, self.kernel, self.stride);
            ((n + before + after - self.kernel) / self.stride + 1, before)
        };
        let ((out_h, top), (out_w, left)) = (side(h), side(w));
        let window = Window { stride: self.stride, before: [top, left], output: [out_h, out_w] };
        let (y, sums) = pooled_depthwise(xs, &self.weight, &self.bias, window, input_swish, expand)
            .unwrap_or_else(|e| panic!("the pooled depthwise kernel failed: {e}"));
        let n = sums.size()[0];
        let mean = (sums / (out_h * out_w) as f64).view([n, -1, 1, 1]);
        (y, mean)
    }
}

/// The most weights an [`ExpandInPass`] has: each input row passes through all of them, which must then stay
/// in the core's L2 cache (640 KiB of f32; 1 MiB here). Alternated 3 rounds against none in the pass: B0
/// (224, batch 16) 104–108 → 113–117 images/s, B7 (600, batch 2) 1.72–1.74 → 1.84–1.99; without the
/// bound, B7's wide late expansions (640→3840: 9.8 MB of weights read for each row) made it 3% slower.
const MAX_EXPAND_IN_PASS_WEIGHTS: usize = 160 * 1024;

/// A 1×1 expand convolution (batch norm folded, its swish left to the pass) computed inside
/// [`PooledDepthwise::forward_expanded`]; made where the CPU has AVX-512 and the layer is f32.
#[derive(Debug)]
pub(crate) struct ExpandInPass {
    /// Shared with the layer it was made from, whose fallback reads its weight back from it.
    packed: Arc<PackedPointwise>,
}

impl ExpandInPass {
    /// `None` where the pass does not run `layer`: not a 1×1 stride-1 swish convolution, not f32, or with
    /// more than [`MAX_EXPAND_IN_PASS_WEIGHTS`].
    pub fn new(layer: &FusedConv) -> Option<Self> {
        let fits = layer.pointwise()
            && layer.weight().numel() <= MAX_EXPAND_IN_PASS_WEIGHTS
            && layer.act == Activation::Swish
            && layer.bias.kind() == Kind::Float
            && orchard_torch::pooled_depthwise::available();
        fits.then(|| ExpandInPass { packed: layer.pointwise_kernel() })
    }
}

/// The most outputs a [`GatedProjection`] runs: wider projections are faster in oneDNN's kernels even with
/// the pass that scales their input (B7's 2304→640 at 19², batch 2: 10.4 ms against 11.7; 1344→384 4.1
/// against 4.1). The narrower ones measured were faster in the gated kernel or level with oneDNN (B0's
/// 1152→320 and 1152→192 at 7²), most at large sizes (B7's 64→32 at 300²: 30 against 7 ms).
const MAX_GATED_OUTPUTS: i64 = 384;

/// A 1×1 projection after squeeze-excitation, `conv(x · gate) + bias (+ residual)`, run as one pass by
/// [`PackedPointwise`] where the CPU has AVX-512 (f32, no autocast): no pass scales `x` by the gate.
#[derive(Debug)]
pub(crate) struct GatedProjection {
    /// Shared with the layer it was made from, whose fallback reads its weight back from it.
    packed: Arc<PackedPointwise>,
}

impl GatedProjection {
    /// `None` where the kernel does not run `layer`: not a 1×1 stride-1 convolution without activation, not
    /// f32, or wider than [`MAX_GATED_OUTPUTS`].
    pub fn new(layer: &FusedConv) -> Option<Self> {
        let fits = layer.kernel == [1, 1]
            && layer.bias.size()[0] <= MAX_GATED_OUTPUTS
            && layer.stride == 1
            && layer.groups == 1
            && layer.act == Activation::None
            && layer.bias.kind() == Kind::Float
            && orchard_torch::scaled_pointwise::available();
        fits.then(|| GatedProjection { packed: layer.pointwise_kernel() })
    }

    /// `conv(x · gate) + bias (+ residual)`: x channels-last dense f32 on the CPU (what
    /// [`PooledDepthwise`] gives), gate N×C×1×1; the sum is written into `residual`.
    pub fn forward(&self, x: &Tensor, gate: &Tensor, residual: Option<Tensor>) -> Tensor {
        self.packed.forward(x, gate, residual).unwrap_or_else(|e| panic!("the gated projection kernel failed: {e}"))
    }
}

/// Squeeze-excitation's reduce and expand convolutions on the pooled N×C×1×1 input as two matrix products with
/// their activations: oneDNN's convolution costs ~0.1 ms a call at these 1×1 sizes whatever the work (B0's
/// 48→1152 at batch 16: 129 µs against 43 for `addmm`), 32 calls in B0's pass, 110 in B7's.
#[derive(Debug)]
pub(crate) struct DenseExcitation {
    /// C×C_r and C_r×C: the convolutions' weights transposed, as `addmm` multiplies.
    reduce: (Tensor, Tensor, Activation),
    expand: (Tensor, Tensor, Activation),
}

impl DenseExcitation {
    /// From the folded 1×1 convolutions (their weights copied; the layers can go).
    pub fn new(reduce: &FusedConv, expand: &FusedConv) -> Self {
        let dense = |layer: &FusedConv| {
            let weight = layer.weight();
            let [outputs, inputs]: [i64; 2] = weight.size()[..2].try_into().expect("a 4-D kernel");
            let transposed = tch::no_grad(|| weight.reshape([outputs, inputs]).tr().contiguous());
            (transposed, layer.bias.shallow_clone(), layer.act)
        };
        DenseExcitation { reduce: dense(reduce), expand: dense(expand) }
    }

    /// The gate N×C×1×1 from the pooled input N×C×1×1.
    pub fn forward(&self, pooled: &Tensor) -> Tensor {
        let n = pooled.size()[0];
        let layer = |x: &Tensor, (weight, bias, act): &(Tensor, Tensor, Activation)| {
            let mut y = bias.addmm(x, weight);
            super::apply_(&mut y, *act);
            y
        };
        let gate = layer(&layer(&pooled.reshape([n, -1]), &self.reduce), &self.expand);
        gate.view([n, -1, 1, 1])
    }
}

#[cfg(test)]
mod tests {
    use tch::{nn, Device};

    use super::super::Held;
    use super::*;
    use crate::layers::{Conv2d, ConvConfig};

    /// The projection pass takes the layer's weight over: the layer keeps no copy of its own, reads the weight
    /// back bit-equal from the pass's, and its oneDNN fallback and the pass both still compute the layer.
    #[test]
    fn a_pass_holds_the_only_copy_of_its_layers_weight_and_the_layer_still_runs() {
        if !orchard_torch::scaled_pointwise::available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(9);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = Conv2d::new(&vs.root(), 24, 40, ConvConfig::new(1).bias(true));
        let layer = FusedConv::fold(&conv, None, Activation::None);
        let folded = layer.weight().copy();
        let gated = GatedProjection::new(&layer).expect("a 1×1 f32 projection of 40 outputs");
        match &*layer.held() {
            Held::Pointwise(kernel) => assert!(Arc::ptr_eq(kernel, &gated.packed), "the layer holds another copy"),
            other => panic!("the layer still holds its weight: {other:?}"),
        }
        assert!(layer.weight().equal(&folded), "the weight read back from the pass differs");
        let xs = orchard_torch::channels_last(&Tensor::randn([2, 24, 5, 7], (Kind::Float, Device::Cpu)));
        let expected = xs.conv2d(&conv.weight, conv.bias.as_ref(), [1, 1], [0, 0], [1, 1], 1);
        let out = tch::no_grad(|| layer.forward(&xs));
        assert!(out.allclose(&expected, 1e-5, 1e-5, false), "the layer's own path differs");
        let ones = Tensor::ones([2, 24], (Kind::Float, Device::Cpu));
        let out = tch::no_grad(|| gated.forward(&xs, &ones, None));
        assert!(out.allclose(&expected, 1e-5, 1e-5, false), "the pass differs");
    }
}
