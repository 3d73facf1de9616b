//! Training convolutions whose input autograd does not keep (`csrc/recomputed_conv.cpp`): the node keeps what
//! made the input, one cheap pass away, and makes it again in the backward. In EfficientNet's blocks two of
//! the five tensors of the expanded width that a step keeps only feed a convolution's weight gradient:
//! - [`bn_act_conv`]: `conv(act(batch_norm(x)))`, the depthwise convolution of the expand layer's swish;
//!   the batch norm keeps `x` anyway;
//! - [`scaled_conv`]: `conv(x · s)`, the projection of squeeze-excitation's gated activation; the gate's
//!   gradient needs `x` anyway.
//!
//! Both compute what [`fused_train::bn_act`] / [`fused_train::channel_scale`] followed by libtorch's
//! convolution compute, values and gradients; callers ask [`applies`] and fall back to those otherwise.

use std::ffi::{c_char, c_int};

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::autocast::Autocast;
use crate::fused_conv::{call, PostOp};
use crate::fused_train::{self, Running};

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn orchard_bn_act_conv_train(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        weight: *const C_tensor,
        bias: *const C_tensor,
        running_mean: *const C_tensor,
        running_var: *const C_tensor,
        keep: f64,
        unbiased: c_int,
        eps: f64,
        act: i64,
        conv_weight: *const C_tensor,
        geometry: *const i64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_scaled_conv_train(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        s: *const C_tensor,
        conv_weight: *const C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// A convolution's stride, zero padding and groups (no dilation, no bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: i64,
    /// Zeros before and after each axis: top, bottom, left, right (TF's "same" may put more after).
    pub pads: [i64; 4],
    pub groups: i64,
}

impl ConvGeometry {
    fn values(&self) -> [i64; 6] {
        let [top, bottom, left, right] = self.pads;
        [self.stride, top, bottom, left, right, self.groups]
    }
}

/// Whether the nodes take input `x` and convolution weight `conv_weight`: what the fused training nodes take
/// (channels-last f32 on a CPU with AVX2 and FMA), a 4-D f32 CPU weight, and CPU autocast off (the node's
/// convolution would run in bf16 and its backward not).
pub fn applies(x: &Tensor, conv_weight: &Tensor) -> bool {
    fused_train::takes(x)
        && conv_weight.dim() == 4
        && conv_weight.kind() == Kind::Float
        && conv_weight.device() == Device::Cpu
        && !Autocast::is_enabled(Device::Cpu)
}

/// `conv(act(batch_norm(x)), conv_weight)` in training, the batch norm as [`fused_train::bn_act`]'s (running
/// statistics moved in place); differentiable in `x`, `weight`, `bias` and `conv_weight`. Inputs must pass
/// [`applies`].
#[allow(clippy::too_many_arguments)]
pub fn bn_act_conv(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: &Tensor,
    running: Running,
    eps: f64,
    act: PostOp,
    conv_weight: &Tensor,
    geometry: ConvGeometry,
) -> Result<Tensor, String> {
    let act = fused_train::code(act).ok_or_else(|| format!("recomputed convolution: {act:?} is not fused"))?;
    let weight = weight.map_or(std::ptr::null(), |w| w.as_ptr());
    let geometry = geometry.values();
    // SAFETY: every handle is live for the call; `weight` may be null, as the shim allows; `geometry` holds
    // the six values the shim reads.
    call(|out, err, len| unsafe {
        orchard_bn_act_conv_train(
            out,
            x.as_ptr(),
            weight,
            bias.as_ptr(),
            running.mean.as_ptr(),
            running.var.as_ptr(),
            running.keep,
            c_int::from(running.unbiased),
            eps,
            act,
            conv_weight.as_ptr(),
            geometry.as_ptr(),
            err,
            len,
        )
    })
}

/// `conv(x · s, conv_weight)` in training for a 1×1 convolution without bias (K×C×1×1, stride 1), `s` one gate
/// per sample and channel (N×C×1×1 f32); differentiable in `x`, `s` and `conv_weight`. Inputs must pass
/// [`applies`]; `x · s` is made again in the backward.
pub fn scaled_conv(x: &Tensor, s: &Tensor, conv_weight: &Tensor) -> Result<Tensor, String> {
    // SAFETY: every handle is live for the call.
    call(|out, err, len| unsafe {
        orchard_scaled_conv_train(out, x.as_ptr(), s.as_ptr(), conv_weight.as_ptr(), err, len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Tensor, b: &Tensor, what: &str) {
        assert_eq!(a.size(), b.size(), "{what}: shapes");
        let scale = b.abs().max().double_value(&[]).max(1e-6);
        let gap = (a - b).abs().max().double_value(&[]);
        assert!(gap <= 2e-5 * scale, "{what}: largest gap {gap} (scale {scale})");
    }

    /// libtorch's convolution with `geometry`, the asymmetric padding as a padded copy.
    fn reference_conv(y: &Tensor, w: &Tensor, g: ConvGeometry) -> Tensor {
        let [top, bottom, left, right] = g.pads;
        let padded = y.constant_pad_nd([left, right, top, bottom]);
        padded.conv2d(w, None::<&Tensor>, [g.stride, g.stride], [0, 0], [1, 1], g.groups)
    }

    fn leaf(t: &Tensor) -> Tensor {
        t.detach().copy().set_requires_grad(true)
    }

    /// Values, every gradient and the running statistics equal the unrecomputed nodes' followed by libtorch's
    /// convolution: depthwise 3×3 and 5×5 at stride 1 and 2 with TF's asymmetric padding, a dense 1×1,
    /// channel counts with and without the kernels' tail of eight.
    #[test]
    fn the_batch_norm_convolution_node_computes_the_unrecomputed_values_and_gradients() {
        let options = (Kind::Float, Device::Cpu);
        tch::manual_seed(5);
        let cases = [
            (24, 3, ConvGeometry { stride: 1, pads: [1, 1, 1, 1], groups: 24 }),
            (13, 5, ConvGeometry { stride: 2, pads: [1, 2, 1, 2], groups: 13 }),
            (16, 3, ConvGeometry { stride: 2, pads: [0, 1, 0, 1], groups: 16 }),
            (40, 1, ConvGeometry { stride: 1, pads: [0, 0, 0, 0], groups: 1 }),
        ];
        for (channels, kernel, geometry) in cases {
            let x = crate::channels_last(&(Tensor::randn([2, channels, 10, 9], options) * 2.0 + 0.5));
            let out_channels = if geometry.groups == 1 { 24 } else { channels };
            let w = crate::channels_last(&Tensor::randn(
                [out_channels, channels / geometry.groups, kernel, kernel],
                options,
            ));
            if !applies(&x, &w) {
                eprintln!("skipped: this CPU lacks AVX2 or FMA");
                return;
            }
            let (bn_weight, bn_bias) = (Tensor::randn([channels], options) + 1.0, Tensor::randn([channels], options));
            let upstream = Tensor::randn_like(&reference_conv(&x, &w, geometry));
            let run = |recomputed: bool| {
                let (x, w, bn_weight, bn_bias) = (leaf(&x), leaf(&w), leaf(&bn_weight), leaf(&bn_bias));
                let (mean, var) = (Tensor::zeros([channels], options), Tensor::ones([channels], options));
                let running = Running { mean: &mean, var: &var, keep: 0.9, unbiased: false };
                let out = match recomputed {
                    true => {
                        bn_act_conv(&x, Some(&bn_weight), &bn_bias, running, 1e-3, PostOp::Swish, &w, geometry).unwrap()
                    }
                    false => {
                        let y =
                            fused_train::bn_act(&x, Some(&bn_weight), &bn_bias, running, 1e-3, PostOp::Swish).unwrap();
                        reference_conv(&y, &w, geometry)
                    }
                };
                (&out * &upstream).sum(Kind::Float).backward();
                [out.detach(), x.grad(), w.grad(), bn_weight.grad(), bn_bias.grad(), mean, var]
            };
            let (recomputed, reference) = (run(true), run(false));
            let names = ["output", "input gradient", "convolution weight gradient", "scale gradient", "shift gradient"];
            for ((a, b), name) in recomputed.iter().zip(&reference).zip(names.iter().chain(&["mean", "variance"])) {
                close(a, b, &format!("{channels} channels, {geometry:?}: {name}"));
            }
            assert_eq!(recomputed[1].stride(), x.stride(), "the input gradient is channels-last");
        }
    }

    #[test]
    fn the_scaled_convolution_node_computes_the_unrecomputed_values_and_gradients() {
        let options = (Kind::Float, Device::Cpu);
        tch::manual_seed(6);
        for (channels, outputs) in [(13, 7), (96, 32)] {
            let x = crate::channels_last(&Tensor::randn([3, channels, 9, 11], options));
            let s = Tensor::rand([3, channels, 1, 1], options);
            let w = crate::channels_last(&Tensor::randn([outputs, channels, 1, 1], options));
            if !applies(&x, &w) {
                eprintln!("skipped: this CPU lacks AVX2 or FMA");
                return;
            }
            let geometry = ConvGeometry { stride: 1, pads: [0; 4], groups: 1 };
            let upstream = Tensor::randn([3, outputs, 9, 11], options);
            let run = |recomputed: bool| {
                let (x, s, w) = (leaf(&x), leaf(&s), leaf(&w));
                let out = match recomputed {
                    true => scaled_conv(&x, &s, &w).unwrap(),
                    false => reference_conv(&fused_train::channel_scale(&x, &s).unwrap(), &w, geometry),
                };
                (&out * &upstream).sum(Kind::Float).backward();
                [out.detach(), x.grad(), s.grad(), w.grad()]
            };
            let (recomputed, reference) = (run(true), run(false));
            for ((a, b), name) in recomputed.iter().zip(&reference).zip(["output", "x", "gates", "weight"]) {
                close(a, b, &format!("{channels} channels: {name}"));
            }
        }
    }

    /// Bad shapes and geometries come back as errors, not reads past the end.
    #[test]
    fn malformed_inputs_are_refused() {
        let options = (Kind::Float, Device::Cpu);
        let x = crate::channels_last(&Tensor::randn([2, 8, 5, 5], options));
        let w = crate::channels_last(&Tensor::randn([8, 1, 3, 3], options));
        if !applies(&x, &w) {
            return;
        }
        let geometry = ConvGeometry { stride: 1, pads: [1; 4], groups: 8 };
        let e = scaled_conv(&x, &Tensor::ones([2, 8], options), &w).unwrap_err();
        assert!(e.contains("gates of shape N×C×1×1"), "{e}");
        let e = scaled_conv(&x, &Tensor::ones([2, 8, 1, 1], options), &w).unwrap_err();
        assert!(e.contains("a 1×1 weight over the input's 8 channels expected"), "{e}");
        let (short, full) = (Tensor::zeros([7], options), Tensor::ones([8], options));
        let running = Running { mean: &full, var: &full, keep: 0.9, unbiased: false };
        let e = bn_act_conv(&x, None, &short, running, 1e-3, PostOp::Relu, &w, geometry).unwrap_err();
        assert!(e.contains("per-channel f32 tensors of 8 values expected"), "{e}");
        let running = Running { mean: &full, var: &full, keep: 0.9, unbiased: false };
        let bad = ConvGeometry { pads: [1, -1, 1, 1], ..geometry };
        let e = bn_act_conv(&x, None, &full, running, 1e-3, PostOp::Relu, &w, bad).unwrap_err();
        assert!(e.contains("negative padding"), "{e}");
        let _autocast = Autocast::new(Device::Cpu, crate::autocast::HalfType::BFloat16).unwrap();
        assert!(!applies(&x, &w), "under CPU autocast the node's convolution would run in bf16");
    }
}
