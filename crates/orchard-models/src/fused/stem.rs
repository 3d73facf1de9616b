//! An image model's input normalization (`x · scale + shift` per channel) and first convolution as one layer
//! of the inference form ([`InputStem`]): the normalization folded into the convolution's weights and bias,
//! the border padded with the raw value each channel normalizes to zero, so the result is the same at the
//! border too and the normalized image is never written. On CPUs with AVX-512 one pass computes it
//! (`orchard_torch::stem_conv`); elsewhere the padded image goes through the folded [`FusedConv`].

use orchard_torch::stem_conv::{self, PackedStem};
use tch::{Kind, Tensor};

use super::{FrozenBatchNorm, FusedConv};
use crate::layers::{spatial, Padding, Pads};

/// The most input channels the stem kernel gathers per tap (an image's).
const MAX_STEM_CHANNELS: i64 = 4;

#[derive(Debug)]
pub(crate) enum InputStem {
    Folded {
        /// The convolution, the normalization folded in, over an input already padded ([`Padding::Valid`]).
        conv: FusedConv,
        /// The convolution's own padding, done with `pad_value`.
        padding: Padding,
        /// C: the raw value each channel's normalization maps to zero.
        pad_value: Tensor,
        /// The one-pass kernel, where the CPU runs it.
        kernel: Option<PackedStem>,
    },
    /// A normalization that cannot be folded (a channel scaled by zero or a non-finite value), run as it is.
    Separate { input: FrozenBatchNorm, conv: FusedConv },
}

impl InputStem {
    /// `conv(x · scale + shift)`, `scale` and `shift` (C, f64) the normalization's, `conv` the stem's folded form.
    pub fn new(scale: &Tensor, shift: &Tensor, conv: FusedConv) -> Self {
        let foldable = tch::no_grad(|| {
            let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
            finite(scale) && finite(shift) && scale.ne(0.0).all().int64_value(&[]) == 1
        });
        if !foldable {
            return InputStem::Separate { input: FrozenBatchNorm::affine(scale, shift, conv.bias.kind()), conv };
        }
        let padding = conv.padding;
        let (weight, bias, pad_value) = tch::no_grad(|| {
            let plain = conv.weight();
            let (kind, c) = (plain.kind(), scale.size()[0]);
            let (scale, shift) = (scale.view([1, c, 1, 1]), shift.view([1, c, 1, 1]));
            let weight = plain.to_kind(Kind::Double);
            let bias =
                conv.bias.to_kind(Kind::Double) + (&weight * &shift).sum_dim_intlist(&[1i64, 2, 3][..], false, None);
            let folded = super::like(&(weight * &scale).to_kind(kind), &plain);
            (folded, bias.to_kind(kind), (-shift / scale).view([c]).to_kind(kind))
        });
        let fits = conv.groups == 1
            && weight.size()[1] <= MAX_STEM_CHANNELS
            && weight.kind() == Kind::Float
            && stem_conv::available();
        let kernel = fits.then(|| PackedStem::new(&weight, &bias, &pad_value, conv.stride, conv.act)).flatten();
        let conv = conv.with_weights(weight, bias).with_padding(Padding::Valid);
        InputStem::Folded { conv, padding, pad_value, kernel }
    }

    /// # Shapes
    /// N×C×H×W → N×C_out×H'×W', as the convolution of the normalized image.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let (conv, padding, pad_value, kernel) = match self {
            InputStem::Separate { input, conv } => return conv.forward(&input.forward(xs, super::Activation::None)),
            InputStem::Folded { conv, padding, pad_value, kernel } => (conv, *padding, pad_value, kernel),
        };
        let (h, w) = spatial(xs);
        let [k, _] = conv.kernel;
        let ((top, bottom), (left, right)) = (padding.sides(h, k, conv.stride), padding.sides(w, k, conv.stride));
        if let Some(kernel) = kernel.as_ref().filter(|_| super::cpu_f32_outside_autocast(xs)) {
            let output = [(h + top + bottom - k) / conv.stride + 1, (w + left + right - k) / conv.stride + 1];
            let xs = orchard_torch::channels_last(xs);
            return kernel.forward(&xs, [top, left], output).unwrap_or_else(|e| panic!("the stem kernel failed: {e}"));
        }
        conv.forward(&pad_with(xs, [top, bottom, left, right], pad_value))
    }
}

/// `xs` padded by `pads` with each channel's `value`, in `xs`'s kind and memory order.
fn pad_with(xs: &Tensor, [top, bottom, left, right]: Pads, value: &Tensor) -> Tensor {
    let [n, c, h, w]: [i64; 4] = xs.size().try_into().expect("a 4-D input");
    let fill = value.to_kind(xs.kind()).to_device(xs.device()).view([1, c, 1, 1]);
    let padded = super::like(&fill.expand([n, c, h + top + bottom, w + left + right], false), xs);
    padded.narrow(2, top, h).narrow(3, left, w).copy_(xs);
    padded
}

#[cfg(test)]
mod tests {
    use tch::{nn, Device};

    use super::super::Activation;
    use super::*;
    use crate::layers::{same_pads, zero_pad, Conv2d, ConvConfig};

    /// The folded stem computes the convolution of the normalized image, zero-padded as TF's "same" rule
    /// says, on even sizes (padding after only) and odd ones (both sides), through the kernel and through
    /// the fallback (under autocast); a normalization that cannot be folded runs as it is.
    #[test]
    fn the_folded_stem_is_the_convolution_of_the_normalized_image_border_included() {
        tch::manual_seed(17);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = Conv2d::new(&vs.root(), 3, 24, ConvConfig::new(3).stride(2).padding(Padding::Valid).bias(true));
        let scale = Tensor::from_slice(&[0.017f64, 0.018, 0.0175]).to_kind(Kind::Double);
        let shift = Tensor::from_slice(&[-2.1f64, -2.0, -1.8]).to_kind(Kind::Double);
        let expected = |xs: &Tensor, scale: &Tensor, shift: &Tensor| {
            let norm =
                xs * scale.to_kind(Kind::Float).view([1, 3, 1, 1]) + shift.to_kind(Kind::Float).view([1, 3, 1, 1]);
            let (h, w) = spatial(xs);
            let ((top, bottom), (left, right)) = (same_pads(h, 3, 2), same_pads(w, 3, 2));
            let padded = zero_pad(&norm, [top, bottom, left, right]);
            padded.conv2d(&conv.weight, conv.bias.as_ref(), [2, 2], [0, 0], [1, 1], 1).silu()
        };
        let stem = |scale: &Tensor, shift: &Tensor| {
            InputStem::new(scale, shift, FusedConv::fold(&conv, None, Activation::Swish).with_padding(Padding::Same))
        };
        let folded = stem(&scale, &shift);
        assert!(matches!(folded, InputStem::Folded { .. }), "a normalization of finite nonzero scales folds");
        let cpu = (Kind::Float, Device::Cpu);
        for size in [16, 17] {
            let xs = orchard_torch::channels_last(&(Tensor::rand([2, 3, size, size], cpu) * 255.0));
            let want = expected(&xs, &scale, &shift);
            let out = tch::no_grad(|| folded.forward(&xs));
            let diff = (&out - &want).abs().max().double_value(&[]);
            assert!(out.allclose(&want, 1e-4, 1e-4, false), "{size}²: the folded stem differs by {diff}");
            let half = orchard_torch::autocast::HalfType::BFloat16;
            let autocast = orchard_torch::autocast::Autocast::new(Device::Cpu, half).unwrap();
            let out = tch::no_grad(|| folded.forward(&xs)).to_kind(Kind::Float);
            drop(autocast);
            assert!(out.allclose(&want, 0.05, 0.05, false), "{size}²: the fallback differs");
        }
        let zero = Tensor::from_slice(&[0.017f64, 0.0, 0.0175]).to_kind(Kind::Double);
        let separate = stem(&zero, &shift);
        assert!(matches!(separate, InputStem::Separate { .. }), "a channel scaled by zero cannot fold");
        let xs = orchard_torch::channels_last(&(Tensor::rand([1, 3, 16, 16], cpu) * 255.0));
        let out = tch::no_grad(|| separate.forward(&xs));
        assert!(out.allclose(&expected(&xs, &zero, &shift), 1e-4, 1e-4, false), "the separate stem differs");
    }
}
