//! The layers of a model's inference form ([`crate::inference`]): a convolution with its batch norm folded
//! into its weights and bias and its activation fused ([`FusedConv`]), and a batch norm frozen to its running
//! statistics ([`FrozenBatchNorm`]) where no convolution precedes it to fold into.
//!
//! On the CPU a [`FusedConv`] runs oneDNN's fused convolution (convolution + bias + activation, or + a
//! residual, in one kernel, over weights reordered once for the first input's shape): what inductor emits for
//! a frozen model. Off the CPU, without oneDNN, or under autocast, it runs libtorch's convolution and applies
//! the activation in place. Both compute what the eager layers compute, within f32 rounding.
//!
//! TF's "same" padding of a stride-2 layer on an even size pads one more row (column) after than before, and
//! libtorch's convolutions pad symmetrically. The eager layers copy the input into a padded tensor first; the
//! oneDNN path instead runs the kernel with one zero row (column) put before its taps, padded symmetrically by
//! the larger side: the same windows, the same sums, and no copy of the input (for EfficientNet-B0 at 224,
//! 130 MB a batch of 16; inference 106.5 → 118.3 images/s, peak memory 463 → 382 MiB). Training keeps the
//! copy: there libtorch's depthwise backward over the larger kernel cost more than the copy saves (B0
//! training 21.3 → 20.0 images/s, measured before the fused training kernels ran on every thread).

use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub use orchard_torch::fused_conv::PostOp as Activation;
use orchard_torch::fused_conv::{self, Geometry};
use orchard_torch::scaled_pointwise::PackedPointwise;
use orchard_torch::winograd::PackedWinograd;
use tch::{Device, Kind, Tensor};

use crate::batch_norm::BatchNorm;
use crate::layers::{same_pads, spatial, zero_pad, Conv2d, Padding, Pads};

mod mbconv;
mod preactivated;
mod stem;
mod winograd;
pub(crate) use mbconv::{DenseExcitation, ExpandInPass, GatedProjection, PooledDepthwise};
pub(crate) use preactivated::PreactivatedPointwise;
pub(crate) use stem::InputStem;

thread_local! {
    /// The kind the inference form being made keeps its tensors in, when not the model's own; set by
    /// [`in_kind`] around the making of a whole form.
    static FORM_KIND: Cell<Option<Kind>> = const { Cell::new(None) };
}

/// Runs `make` with every inference layer it makes keeping its tensors in `kind` (bf16 inference): the
/// folding itself is done in f64 from the model's own weights, and only its results are rounded to `kind`.
pub(crate) fn in_kind<T>(kind: Kind, make: impl FnOnce() -> T) -> T {
    struct Reset(Option<Kind>);
    impl Drop for Reset {
        fn drop(&mut self) {
            FORM_KIND.with(|k| k.set(self.0));
        }
    }
    let _reset = Reset(FORM_KIND.with(|k| k.replace(Some(kind))));
    make()
}

/// The kind an inference layer made from tensors of kind `model` keeps: `model` unless [`in_kind`] says.
fn form_kind(model: Kind) -> Kind {
    FORM_KIND.with(|k| k.get()).unwrap_or(model)
}

/// A convolution, its batch norm folded in, its activation fused: what `act(bn(conv(x)))` computes in
/// inference, in one kernel where oneDNN runs.
#[derive(Debug)]
pub(crate) struct FusedConv {
    /// The weight (OIHW, the batch norm's scale folded in), held in one place only: one copy of a large
    /// model's weights in memory, not two (InceptionResNetV2's are 214 MiB). [`FusedConv::weight`] reads it
    /// back from wherever it is.
    held: Mutex<Held>,
    /// Whether the weight was made channels-last, the order [`FusedConv::weight`] gives it back in.
    channels_last: bool,
    /// The convolution's bias and the batch norm's shift, folded.
    bias: Tensor,
    kernel: [i64; 2],
    stride: i64,
    padding: Padding,
    groups: i64,
    act: Activation,
    /// The weight in oneDNN's blocked format for the first input's shape, made by the first forward pass on
    /// the CPU; `None` inside when oneDNN cannot run this convolution. One per [`Shift`] (by its index): the
    /// zero taps put before the kernel's rows and columns.
    packed: [OnceLock<Option<Tensor>>; 4],
    /// The weight's Winograd transform, made by the first forward pass it runs (a stride-1 3×3, 1×r or r×1
    /// layer on the CPU; see `fused/winograd.rs`); `None` inside for a layer it cannot run.
    winograd: OnceLock<Option<Box<PackedWinograd>>>,
}

/// Where a [`FusedConv`]'s folded weight is.
#[derive(Debug)]
enum Held {
    /// Here, in the original kernel's memory format: until oneDNN or a pointwise kernel holds a copy.
    Plain(Tensor),
    /// In oneDNN's packed copies only (`FusedConv::packed`).
    OneDnn,
    /// In a pointwise kernel's copy only, which the pass that replaces this layer holds too
    /// ([`FusedConv::pointwise_kernel`]).
    Pointwise(Arc<PackedPointwise>),
    /// In its Winograd transform only (`FusedConv::winograd`).
    Winograd,
}

/// The most input channels for which a layer with TF's asymmetric "same" padding copies its input padded
/// instead of running a kernel with a zero row and column before its taps.
const MAX_COPIED_CHANNELS: i64 = 4;

/// Zero rows and columns (0 or 1 each) put before a kernel's taps, which with symmetric padding by the larger
/// side gives TF's asymmetric "same" windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shift {
    rows: i64,
    columns: i64,
}

impl Shift {
    const NONE: Shift = Shift { rows: 0, columns: 0 };

    fn index(self) -> usize {
        (self.rows * 2 + self.columns) as usize
    }
}

impl FusedConv {
    /// `act(bn(conv(x)))` (without `bn`, `act(conv(x))`), the batch norm read at its running statistics now:
    /// later changes to the model's variables do not reach the result.
    pub fn fold(conv: &Conv2d, bn: Option<&BatchNorm>, act: Activation) -> Self {
        tch::no_grad(|| {
            let weight = conv.weight.detach();
            let c_out = weight.size()[0];
            let bias = match &conv.bias {
                Some(b) => b.to_kind(Kind::Double),
                None => Tensor::zeros([c_out], (Kind::Double, weight.device())),
            };
            let (weight, bias) = match bn {
                Some(bn) => {
                    let (scale, shift) = bn.affine();
                    let folded = weight.to_kind(Kind::Double) * scale.view([-1, 1, 1, 1]);
                    (folded.to_kind(form_kind(weight.kind())), bias * scale + shift)
                }
                None => (weight.to_kind(form_kind(weight.kind())).copy(), bias),
            };
            let weight = like(&weight, &conv.weight);
            let (kernel, stride, padding) = (conv.config.kernel, conv.config.stride, conv.config.padding);
            let bias = bias.to_kind(form_kind(conv.weight.kind()));
            let (held, channels_last) = hold(weight);
            let (packed, winograd) = Default::default();
            let groups = conv.groups;
            FusedConv { held, channels_last, bias, kernel, stride, padding, groups, act, packed, winograd }
        })
    }

    /// The same layer padding as `padding` says, which folds an explicit zero padding before a "valid"
    /// convolution (Keras' `ZeroPadding2D`, `correct_pad`) into the convolution: symmetric padding then costs
    /// no copy of the input.
    pub fn with_padding(self, padding: Padding) -> Self {
        FusedConv { padding, ..self }
    }

    /// The same layer with its output multiplied by `factor` before the activation (Inception-ResNet's
    /// residual scale), folded into the weights and bias.
    pub fn scaled(self, factor: f64) -> Self {
        let plain = self.weight();
        let (weight, bias) = tch::no_grad(|| (like(&(&plain * factor), &plain), &self.bias * factor));
        self.with_weights(weight, bias)
    }

    /// This layer's geometry and activation with other weights.
    fn with_weights(&self, weight: Tensor, bias: Tensor) -> Self {
        let (held, channels_last) = hold(weight);
        let (kernel, stride, padding, groups, act) = (self.kernel, self.stride, self.padding, self.groups, self.act);
        let (packed, winograd) = Default::default();
        FusedConv { held, channels_last, bias, kernel, stride, padding, groups, act, packed, winograd }
    }

    /// The folded weight (OIHW): the one made, or a copy back from where it went (a fallback's, or another
    /// [`Shift`]'s packing, which a model sees at most once per shift).
    pub fn weight(&self) -> Tensor {
        let weight = match &*self.held() {
            Held::Plain(weight) => return weight.shallow_clone(),
            Held::Pointwise(kernel) => kernel.weight(),
            Held::Winograd => {
                let kernel = self.winograd.get().and_then(Option::as_ref);
                kernel.expect("the weight goes to its transform only once that exists").weight()
            }
            Held::OneDnn => {
                let (index, packed) = (self.packed.iter().enumerate())
                    .find_map(|(i, p)| p.get().and_then(Option::as_ref).map(|p| (i, p)))
                    .expect("the weight goes to oneDNN only once a packed copy exists");
                let shift = Shift { rows: index as i64 / 2, columns: index as i64 % 2 };
                let [kh, kw] = self.kernel;
                tch::no_grad(|| {
                    packed.to_dense(None::<Kind>, false).narrow(2, shift.rows, kh).narrow(3, shift.columns, kw)
                })
            }
        };
        if self.channels_last {
            orchard_torch::channels_last(&weight)
        } else {
            tch::no_grad(|| weight.contiguous())
        }
    }

    /// The weight and bias as the pointwise kernel reads them, which from now on holds the only copy of the
    /// weight: the pass made with it replaces this layer, which keeps only its fallback (read back from the
    /// kernel's copy). For a 1×1 layer ([`FusedConv::pointwise`]).
    fn pointwise_kernel(&self) -> Arc<PackedPointwise> {
        let kernel = Arc::new(PackedPointwise::new(&self.weight(), &self.bias));
        *self.held() = Held::Pointwise(Arc::clone(&kernel));
        kernel
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A 1×1 convolution with stride 1 over all channels: no padding, so any input's pixels.
    fn pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == 1 && self.groups == 1 && self.symmetric() == [0, 0]
    }

    /// One convolution computing `convs` (1×1 ones of one input and one activation; see [`ParallelChains`]) with
    /// their output channels one after another.
    fn concat(convs: Vec<FusedConv>) -> Self {
        let first = &convs[0];
        let weights: Vec<Tensor> = convs.iter().map(FusedConv::weight).collect();
        let biases: Vec<&Tensor> = convs.iter().map(|c| &c.bias).collect();
        let (weight, bias) = tch::no_grad(|| (like(&Tensor::cat(&weights, 0), &weights[0]), Tensor::cat(&biases, 0)));
        first.with_weights(weight, bias)
    }

    /// The symmetric padding the convolution applies itself, and the explicit padding put before it when TF's
    /// "same" rule pads one side more than the other (stride-2 layers on even sizes).
    fn pads(&self, xs: &Tensor) -> ([i64; 2], Option<Pads>) {
        match self.same_pads(xs) {
            Some([top, bottom, left, right]) if top != bottom || left != right => {
                ([0, 0], Some([top, bottom, left, right]))
            }
            Some([top, _, left, _]) => ([top, left], None),
            None => (self.symmetric(), None),
        }
    }

    /// TF's "same" padding `[top, bottom, left, right]` of `xs` when this layer pads so.
    fn same_pads(&self, xs: &Tensor) -> Option<Pads> {
        (self.padding == Padding::Same).then(|| {
            let (h, w) = spatial(xs);
            let (top, bottom) = same_pads(h, self.kernel[0], self.stride);
            let (left, right) = same_pads(w, self.kernel[1], self.stride);
            [top, bottom, left, right]
        })
    }

    /// The padding of a "valid" or symmetric layer.
    fn symmetric(&self) -> [i64; 2] {
        match self.padding {
            Padding::Symmetric(p) => [p, p],
            Padding::Valid | Padding::Same => [0, 0],
        }
    }

    /// The symmetric padding and the kernel's [`Shift`] that give this layer's windows on `xs` without a copy
    /// (see the module's doc). TF's "same" padding puts at most one more after than before.
    fn shifted_pads(&self, xs: &Tensor) -> ([i64; 2], Shift) {
        match self.same_pads(xs) {
            Some([top, bottom, left, right]) => ([bottom, right], Shift { rows: bottom - top, columns: right - left }),
            None => (self.symmetric(), Shift::NONE),
        }
    }

    /// The oneDNN-packed weight with `shift`'s zero taps, when oneDNN runs this convolution on `xs`.
    fn packed(&self, xs: &Tensor, geometry: Geometry, shift: Shift) -> Option<&Tensor> {
        let fusable = xs.device() == Device::Cpu
            && xs.kind() == self.bias.kind()
            && matches!(xs.kind(), Kind::Float | Kind::BFloat16)
            && !orchard_torch::autocast::Autocast::is_enabled(Device::Cpu)
            && fused_conv::available();
        if !fusable {
            return None;
        }
        let input_size: [i64; 4] = xs.size().try_into().ok()?;
        let packed = self.packed[shift.index()]
            .get_or_init(|| {
                let weight = tch::no_grad(|| self.weight().constant_pad_nd([shift.columns, 0, shift.rows, 0]));
                fused_conv::reorder_weight(&weight.contiguous(), geometry, input_size).ok()
            })
            .as_ref();
        if packed.is_some() {
            *self.held() = Held::OneDnn;
        }
        packed
    }

    /// `act(bn(conv(x)))`.
    ///
    /// # Shapes
    /// N×C_in×H×W → N×C_out×H'×W', as [`Conv2d::forward`].
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.run(xs, None, self.act)
    }

    /// `act(bn(conv(x)) + residual)`, `residual` of the output's shape; `act` is [`Activation::None`] or
    /// [`Activation::Relu`] (what oneDNN fuses after a sum). The result is written into `residual`'s storage
    /// where oneDNN runs (its sum post-op, one tensor fewer streamed through the kernel): pass a residual no
    /// one reads afterwards, not a view of a tensor still in use.
    ///
    /// # Shapes
    /// N×C_in×H×W, N×C_out×H'×W' → N×C_out×H'×W'.
    pub fn forward_add(&self, xs: &Tensor, residual: Tensor) -> Tensor {
        self.run(xs, Some(residual), self.act)
    }

    /// `act(bn(conv(x)))` with `act` instead of the layer's own activation.
    pub fn forward_with(&self, xs: &Tensor, act: Activation) -> Tensor {
        self.run(xs, None, act)
    }

    fn run(&self, xs: &Tensor, residual: Option<Tensor>, act: Activation) -> Tensor {
        // `explicit`: TF's asymmetric padding, which oneDNN runs as a kernel with a zero row and column before
        // its taps, except for an image's few channels (a stem): those are cheaper to copy padded than to run
        // through the larger kernel (EfficientNet-B0's stem at 224, batch 16: 5.2 ms with the 4×4 kernel).
        let (padding, explicit) = self.pads(xs);
        if residual.is_none() && explicit.is_none() {
            if let Some(out) = self.winograd(xs, padding, act) {
                return out;
            }
        }
        let mut padded = explicit.filter(|_| xs.size()[1] <= MAX_COPIED_CHANNELS).map(|pads| zero_pad(xs, pads));
        let residual = match &padded {
            Some(input) => self.onednn(input, residual, act, padding, Shift::NONE),
            None => {
                let (padding, shift) = self.shifted_pads(xs);
                self.onednn(xs, residual, act, padding, shift)
            }
        };
        let residual = match residual {
            Ok(out) => return out,
            Err(residual) => residual,
        };
        if padded.is_none() {
            padded = explicit.map(|pads| zero_pad(xs, pads));
        }
        let xs = padded.as_ref().unwrap_or(xs);
        let stride = [self.stride, self.stride];
        let mut x = xs.conv2d(&self.weight(), Some(&self.bias), stride, padding, [1, 1], self.groups);
        if let Some(other) = residual {
            x += &other;
        }
        apply_(&mut x, act);
        x
    }

    /// oneDNN's fused convolution of `xs` padded symmetrically by `padding` with `shift`'s kernel, when oneDNN
    /// runs this convolution; else the residual back.
    fn onednn(
        &self,
        xs: &Tensor,
        residual: Option<Tensor>,
        act: Activation,
        padding: [i64; 2],
        shift: Shift,
    ) -> Result<Tensor, Option<Tensor>> {
        let geometry = Geometry { padding, stride: [self.stride, self.stride], groups: self.groups };
        let Some(packed) = self.packed(xs, geometry, shift) else { return Err(residual) };
        let fused = match residual {
            None => fused_conv::conv(xs, packed, Some(&self.bias), geometry, act),
            Some(other) => fused_conv::conv_add_into(xs, other, packed, Some(&self.bias), geometry, act),
        };
        Ok(fused.unwrap_or_else(|e| panic!("oneDNN's fused convolution failed: {e}")))
    }
}

/// Chains of fused convolutions over one input whose outputs the caller concatenates (Inception's branches).
/// The chains that open with a 1×1 convolution open with one: their first layers run as a single
/// convolution over all their output channels, whose slices go on down each chain. The input is then read
/// once, and oneDNN's kernel runs wider (InceptionResNetV2's three 320→32 convolutions of a block35 took
/// 86 ms a batch of 16 against ONNX Runtime's 57).
#[derive(Debug)]
pub(crate) struct ParallelChains {
    /// The merged opening convolution, when at least two chains open with a 1×1 one.
    opening: Option<Opening>,
    /// Each chain's layers after its opening one where that was merged, else all of them.
    chains: Vec<Vec<FusedConv>>,
}

/// [`ParallelChains`]' merged convolution and, for each chain, its channels in the merged output (start,
/// width), `None` for a chain that does not open with it.
#[derive(Debug)]
struct Opening {
    conv: FusedConv,
    channels: Vec<Option<(i64, i64)>>,
}

impl ParallelChains {
    pub fn new(mut chains: Vec<Vec<FusedConv>>) -> Self {
        let act = chains.iter().find_map(|c| c.first().filter(|f| f.pointwise())).map(|f| f.act);
        let merges = |c: &Vec<FusedConv>| c.first().is_some_and(|f| f.pointwise() && Some(f.act) == act);
        if chains.iter().filter(|c| merges(c)).count() < 2 {
            return ParallelChains { opening: None, chains };
        }
        let (mut firsts, mut ranges, mut start) = (Vec::new(), Vec::new(), 0);
        for chain in &mut chains {
            ranges.push(merges(chain).then(|| {
                let first = chain.remove(0);
                let width = first.bias.size()[0];
                firsts.push(first);
                start += width;
                (start - width, width)
            }));
        }
        ParallelChains { opening: Some(Opening { conv: FusedConv::concat(firsts), channels: ranges }), chains }
    }

    /// Each chain's output, in order.
    pub fn forward(&self, xs: &Tensor) -> Vec<Tensor> {
        let opened = self.opening.as_ref().map(|o| (o.conv.forward(xs), &o.channels));
        let input = |i: usize| match &opened {
            Some((out, channels)) => channels[i].map(|(start, width)| out.narrow(1, start, width)),
            None => None,
        };
        let chains = self.chains.iter().enumerate();
        chains
            .map(|(i, chain)| chain.iter().fold(input(i).unwrap_or_else(|| xs.shallow_clone()), |x, l| l.forward(&x)))
            .collect()
    }
}

/// Whether Orchard's own CPU passes (the MBConv passes, the stem) take `xs`: f32 on the CPU, not under
/// autocast (whose lower precision the caller asked for).
fn cpu_f32_outside_autocast(xs: &Tensor) -> bool {
    xs.device() == Device::Cpu
        && xs.kind() == Kind::Float
        && !orchard_torch::autocast::Autocast::is_enabled(Device::Cpu)
}

/// A weight as [`FusedConv`] holds it, and whether it is channels-last.
fn hold(weight: Tensor) -> (Mutex<Held>, bool) {
    let channels_last = is_channels_last(&weight);
    (Mutex::new(Held::Plain(weight)), channels_last)
}

/// Whether a 4-D kernel or activation is in channels-last order.
fn is_channels_last(t: &Tensor) -> bool {
    t.dim() == 4 && t.stride()[1] == 1 && t.size()[1] > 1
}

/// `t` in `model`'s memory order: channels-last when `model` is (a channels-last model's kernels), else
/// contiguous.
fn like(t: &Tensor, model: &Tensor) -> Tensor {
    if is_channels_last(model) {
        orchard_torch::channels_last(t)
    } else {
        t.contiguous()
    }
}

/// Applies `act` to `x` in place.
pub(crate) fn apply_(x: &mut Tensor, act: Activation) {
    let _ = match act {
        Activation::None => return,
        Activation::Relu => x.relu_(),
        Activation::Relu6 => x.clamp_(0.0, 6.0),
        Activation::Swish => x.silu_(),
        Activation::Sigmoid => x.sigmoid_(),
    };
}

/// A batch norm frozen at its running statistics as they are now (ResNet v2's pre-activations, which follow a
/// residual sum and so have no convolution to fold into).
#[derive(Debug)]
pub(crate) struct FrozenBatchNorm {
    scale: Tensor,
    shift: Tensor,
    /// The running statistics of the folded form: zero means, unit variances.
    zeros: Tensor,
    ones: Tensor,
}

impl FrozenBatchNorm {
    pub fn new(bn: &BatchNorm) -> Self {
        let (scale, shift) = tch::no_grad(|| bn.affine());
        Self::affine(&scale, &shift, bn.kind())
    }

    /// `x · scale + shift` per channel, in `kind`.
    pub fn affine(scale: &Tensor, shift: &Tensor, kind: Kind) -> Self {
        let kind = form_kind(kind);
        let (scale, shift) = (scale.to_kind(kind), shift.to_kind(kind));
        FrozenBatchNorm { zeros: shift.zeros_like(), ones: scale.ones_like(), scale, shift }
    }

    /// `act(bn(x))`, one pass for the normalisation (libtorch's batch norm over the folded scale and shift).
    ///
    /// # Shapes
    /// N×C×H×W → N×C×H×W.
    pub fn forward(&self, xs: &Tensor, act: Activation) -> Tensor {
        if orchard_torch::fused_train::affine_act_applies(xs, &self.scale, act) {
            return orchard_torch::fused_train::affine_act(xs, &self.scale, &self.shift, act)
                .unwrap_or_else(|e| panic!("the affine activation kernel failed: {e}"));
        }
        let (scale, shift) = (Some(&self.scale), Some(&self.shift));
        let mut x = xs.batch_norm(scale, shift, Some(&self.zeros), Some(&self.ones), false, 0.0, 0.0, true);
        apply_(&mut x, act);
        x
    }
}

#[cfg(test)]
mod tests {
    use tch::nn;

    use super::*;
    use crate::layers::ConvConfig;

    /// Once oneDNN has packed a layer's weight the layer keeps only the packed copy: its weight read back is
    /// the folded one, and inputs that need another packing (another parity of TF's padding) or no oneDNN
    /// at all (under autocast) still get the layer's output.
    #[test]
    fn a_packed_layer_drops_its_plain_weight_and_recovers_it_where_needed() {
        if !fused_conv::available() {
            eprintln!("skipped: this libtorch has no oneDNN");
            return;
        }
        tch::manual_seed(6);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = Conv2d::new(&vs.root(), 5, 7, ConvConfig::new(3).stride(2).bias(true));
        let layer = FusedConv::fold(&conv, None, Activation::Relu).with_padding(Padding::Same);
        let folded = layer.weight().copy();
        let expected = |xs: &Tensor| {
            let (h, w) = spatial(xs);
            let ((top, bottom), (left, right)) = (same_pads(h, 3, 2), same_pads(w, 3, 2));
            let padded = xs.constant_pad_nd([left, right, top, bottom]);
            padded.conv2d(&conv.weight, conv.bias.as_ref(), [2, 2], [0, 0], [1, 1], 1).relu()
        };
        let cpu = (Kind::Float, Device::Cpu);
        let even = orchard_torch::channels_last(&Tensor::randn([2, 5, 8, 8], cpu));
        let odd = orchard_torch::channels_last(&Tensor::randn([2, 5, 9, 9], cpu));
        for xs in [&even, &odd, &even] {
            let out = tch::no_grad(|| layer.forward(xs));
            assert!(out.allclose(&expected(xs), 1e-5, 1e-5, false), "{:?}: the output differs", xs.size());
            assert!(matches!(*layer.held(), Held::OneDnn), "the plain weight is kept beside the packed one");
        }
        assert!(layer.weight().allclose(&folded, 0.0, 0.0, false), "the weight read back differs");
        let half = orchard_torch::autocast::HalfType::BFloat16;
        let autocast = orchard_torch::autocast::Autocast::new(Device::Cpu, half).unwrap();
        let out = tch::no_grad(|| layer.forward(&even)).to_kind(Kind::Float);
        drop(autocast);
        assert!(out.allclose(&expected(&even), 0.05, 0.05, false), "the fallback's output differs");
    }

    /// Chains opening with a 1×1 convolution of one activation share one convolution; the others (a 3×3
    /// opening, another activation) run as they are; every chain's output is what it computes alone.
    #[test]
    fn parallel_chains_open_with_one_merged_convolution_and_give_each_chains_output() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let conv =
            |name: &str, c_in, c_out, k| Conv2d::new(&root.sub(name), c_in, c_out, ConvConfig::new(k).bias(true));
        let relu = |c: &Conv2d| FusedConv::fold(c, None, Activation::Relu).with_padding(Padding::Same);
        let layers =
            [conv("a", 8, 4, 1), conv("b", 8, 6, 1), conv("b2", 6, 5, 3), conv("c", 8, 3, 3), conv("d", 8, 2, 1)];
        let make = || {
            vec![
                vec![relu(&layers[0])],
                vec![relu(&layers[1]), relu(&layers[2])],
                vec![relu(&layers[3])],
                vec![FusedConv::fold(&layers[4], None, Activation::Sigmoid)],
            ]
        };
        let alone = make();
        let merged = ParallelChains::new(make());
        let opening = merged.opening.as_ref().expect("two chains open with a 1×1 ReLU convolution");
        assert_eq!(opening.conv.weight().size()[0], 10);
        assert_eq!(opening.channels, [Some((0, 4)), Some((4, 6)), None, None]);
        let xs = orchard_torch::channels_last(&Tensor::randn([2, 8, 9, 9], (Kind::Float, Device::Cpu)));
        let outputs = merged.forward(&xs);
        assert_eq!(outputs.len(), 4);
        for (chain, out) in alone.iter().zip(&outputs) {
            let expected = chain.iter().fold(xs.shallow_clone(), |x, layer| layer.forward(&x));
            assert_eq!(out.size(), expected.size());
            assert!(out.allclose(&expected, 1e-5, 1e-5, false), "a chain's output differs");
        }
    }

    /// TF's "same" windows of a stride-2 layer through the shifted kernel (oneDNN) equal the eager layer's
    /// explicit padding, for every parity of height and width, dense and depthwise, 3×3 and 5×5: one layer over
    /// the four shapes packs one weight per shift.
    #[test]
    fn shifted_kernels_give_the_windows_of_explicit_same_padding() {
        assert!(fused_conv::available(), "libtorch's oneDNN convolutions are missing");
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        for kernel in [3, 5] {
            for depthwise in [false, true] {
                let path = vs.root().sub(format!("k{kernel}d{depthwise}"));
                let config = ConvConfig::new(kernel).stride(2).bias(true);
                let conv =
                    if depthwise { Conv2d::depthwise(&path, 8, config) } else { Conv2d::new(&path, 8, 16, config) };
                let _ = tch::no_grad(|| conv.bias.as_ref().unwrap().shallow_clone().uniform_(-1.0, 1.0));
                let fused = FusedConv::fold(&conv, None, Activation::None);
                for (h, w) in [(10, 10), (11, 11), (10, 11), (11, 10)] {
                    let xs = orchard_torch::channels_last(&Tensor::randn([2, 8, h, w], (Kind::Float, Device::Cpu)));
                    let eager = tch::no_grad(|| conv.forward(&xs));
                    let out = fused.forward(&xs);
                    assert_eq!(out.size(), eager.size(), "{kernel}×{kernel}, {h}×{w}");
                    let error = (&out - &eager).abs().max().double_value(&[]);
                    assert!(error < 1e-5, "{kernel}×{kernel} depthwise {depthwise}, {h}×{w}: differs by {error:e}");
                }
                let packed = fused.packed.iter().filter(|p| p.get().is_some_and(Option::is_some)).count();
                assert_eq!(packed, 4, "{kernel}×{kernel}: one oneDNN weight per shift");
            }
        }
    }

    /// A stem's few channels are copied padded instead: the same windows, one kernel without zero taps.
    #[test]
    fn a_stem_copies_its_input_padded_and_runs_the_kernel_as_it_is() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = Conv2d::new(&vs.root(), 3, 8, ConvConfig::new(3).stride(2).bias(true));
        let fused = FusedConv::fold(&conv, None, Activation::Swish);
        for (h, w) in [(10, 10), (11, 11), (10, 11)] {
            let xs = orchard_torch::channels_last(&Tensor::randn([2, 3, h, w], (Kind::Float, Device::Cpu)));
            let eager = tch::no_grad(|| conv.forward(&xs)).silu();
            let out = fused.forward(&xs);
            assert_eq!(out.size(), eager.size(), "{h}×{w}");
            let error = (&out - &eager).abs().max().double_value(&[]);
            assert!(error < 1e-5, "{h}×{w}: differs by {error:e}");
        }
        let packed: Vec<bool> = fused.packed.iter().map(|p| p.get().is_some_and(Option::is_some)).collect();
        assert_eq!(packed, [true, false, false, false], "only the kernel as it is");
    }
}
