//! An image model's first convolution in one pass on CPUs with AVX-512 (`csrc/stem.cpp`): `act(conv(x) +
//! bias)` over a few input channels, the border padded with a value per channel, so that a model's input
//! normalization folded into the weights stays exact at the border (padding with the raw value that
//! normalizes to zero) and the normalized image is never written.

use std::ffi::c_char;

use tch::{Kind, Tensor};
use torch_sys::C_tensor;

use crate::fused_conv::PostOp;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn orchard_stem_conv(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        weight: *const C_tensor,
        bias: *const C_tensor,
        pad_value: *const C_tensor,
        outputs: i64,
        kernel: i64,
        stride: i64,
        top: i64,
        left: i64,
        out_h: i64,
        out_w: i64,
        act: std::ffi::c_int,
        err: *mut c_char,
        len: usize,
    ) -> std::ffi::c_int;
}

/// Whether this CPU runs the kernel (AVX-512F, as the depthwise kernel).
pub fn available() -> bool {
    crate::pooled_depthwise::available()
}

/// A square convolution's weights, bias, padding value and activation as the kernel reads them.
#[derive(Debug)]
pub struct PackedStem {
    /// K·K·C × N' (rows in (kh, kw, c) order, outputs padded with zeros to a multiple of 16).
    weight: Tensor,
    /// N'.
    bias: Tensor,
    /// C: what the image is padded with.
    pad_value: Tensor,
    outputs: i64,
    kernel: i64,
    stride: i64,
    act: std::ffi::c_int,
}

impl PackedStem {
    /// From an N×C×K×K f32 weight, N bias, C padding values; `None` for a non-square kernel or an activation
    /// the kernel does not apply (it applies none, ReLU and swish).
    pub fn new(weight: &Tensor, bias: &Tensor, pad_value: &Tensor, stride: i64, act: PostOp) -> Option<PackedStem> {
        let [outputs, channels, kh, kw]: [i64; 4] = weight.size().try_into().ok()?;
        let act = match act {
            PostOp::None => 0,
            PostOp::Relu => 1,
            PostOp::Swish => 2,
            PostOp::Relu6 | PostOp::Sigmoid => return None,
        };
        if kh != kw || stride < 1 || pad_value.numel() != channels as usize {
            return None;
        }
        let padded = (outputs + 15) / 16 * 16;
        tch::no_grad(|| {
            let rows = weight.to_kind(Kind::Float).permute([2, 3, 1, 0]).reshape([kh * kw * channels, outputs]);
            let weight = rows.constant_pad_nd([0, padded - outputs]).contiguous();
            let bias = bias.to_kind(Kind::Float).constant_pad_nd([0, padded - outputs]).contiguous();
            let pad_value = pad_value.to_kind(Kind::Float).contiguous();
            Some(PackedStem { weight, bias, pad_value, outputs, kernel: kh, stride, act })
        })
    }

    /// The convolution of x (N×C×H×W f32 channels-last dense, on the CPU) padded by `before` = [top, left]
    /// rows and columns of the padding value, `output` = [h, w]; a new channels-last tensor.
    pub fn forward(&self, x: &Tensor, before: [i64; 2], output: [i64; 2]) -> Result<Tensor, String> {
        // SAFETY: every pointer is live for the call; `call` takes over the tensor the shim makes.
        crate::fused_conv::call(|out, err, len| unsafe {
            orchard_stem_conv(
                out,
                x.as_ptr(),
                self.weight.as_ptr(),
                self.bias.as_ptr(),
                self.pad_value.as_ptr(),
                self.outputs,
                self.kernel,
                self.stride,
                before[0],
                before[1],
                output[0],
                output[1],
                self.act,
                err,
                len,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// libtorch's convolution of x padded with each channel's value, plus the bias, through each activation:
    /// 3×3 and 7×7 kernels, strides 1 and 2, padding on one side or both, outputs that fill 16 lanes and that
    /// do not, rows shorter and longer than a tile.
    #[test]
    fn the_stem_kernel_computes_the_convolution_of_the_image_padded_with_its_values() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(21);
        let cpu = (Kind::Float, Device::Cpu);
        // (batch, channels, outputs, kernel, stride, h, w, [top, bottom, left, right], act)
        let cases = [
            (2, 3, 32, 3, 2, 12, 10, [0, 1, 0, 1], PostOp::Swish),
            (3, 3, 24, 3, 2, 13, 9, [1, 1, 1, 1], PostOp::Relu),
            (1, 3, 64, 7, 2, 20, 17, [3, 3, 3, 3], PostOp::None),
            (2, 1, 40, 3, 1, 5, 30, [1, 1, 0, 2], PostOp::Swish),
            (1, 4, 8, 3, 2, 9, 9, [0, 0, 0, 0], PostOp::Relu),
        ];
        for (batch, c, n, k, stride, h, w, [top, bottom, left, right], act) in cases {
            let x = crate::channels_last(&(Tensor::rand([batch, c, h, w], cpu) * 255.0));
            let weight = Tensor::randn([n, c, k, k], cpu) * 0.05;
            let bias = Tensor::randn([n], cpu);
            let pad_value = Tensor::rand([c], cpu) * 255.0;
            let (ph, pw) = (h + top + bottom, w + left + right);
            let padded = pad_value.view([1, c, 1, 1]).expand([batch, c, ph, pw], false).copy();
            padded.narrow(2, top, h).narrow(3, left, w).copy_(&x);
            let mut expected = padded.conv2d(&weight, Some(&bias), [stride, stride], [0, 0], [1, 1], 1);
            expected = match act {
                PostOp::Relu => expected.relu(),
                PostOp::Swish => expected.silu(),
                _ => expected,
            };
            let (out_h, out_w) = ((ph - k) / stride + 1, (pw - k) / stride + 1);
            let stem = PackedStem::new(&weight, &bias, &pad_value, stride, act).expect("a square kernel");
            let out = stem.forward(&x, [top, left], [out_h, out_w]).unwrap();
            assert_eq!(out.size(), expected.size(), "{k}×{k} stride {stride}: the shape differs");
            let diff = (&out - &expected).abs().max().double_value(&[]);
            assert!(out.allclose(&expected, 1e-4, 1e-3, false), "{k}×{k} stride {stride}, {n} outputs: {diff}");
        }
        let stem = PackedStem::new(
            &Tensor::ones([8, 3, 3, 3], cpu),
            &Tensor::zeros([8], cpu),
            &Tensor::zeros([3], cpu),
            2,
            PostOp::None,
        )
        .unwrap();
        let far = stem.forward(&crate::channels_last(&Tensor::ones([1, 3, 8, 8], cpu)), [5, 0], [3, 3]);
        assert!(far.unwrap_err().contains("reach the image"), "a window wholly outside the image is refused");
    }
}
