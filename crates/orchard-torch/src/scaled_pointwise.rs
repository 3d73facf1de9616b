//! EfficientNet's projection after squeeze-excitation in one pass on CPUs with AVX-512
//! (`csrc/pointwise.cpp`): `conv1x1(x · gate) + bias (+ residual)`, each image's gate folded into its own copy
//! of the weights instead of a pass that scales `x`, with kernels that keep pace with ONNX Runtime's on the
//! narrow outputs where oneDNN's fall behind.

use std::ffi::c_char;

use tch::{Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn orchard_scaled_pointwise(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        gate: *const C_tensor,
        weight: *const C_tensor,
        bias: *const C_tensor,
        residual: *const C_tensor,
        outputs: i64,
        err: *mut c_char,
        len: usize,
    ) -> std::ffi::c_int;
}

/// Whether this CPU runs the kernel (AVX-512F, as the depthwise kernel).
pub fn available() -> bool {
    crate::pooled_depthwise::available()
}

/// A 1×1 convolution's weights and bias as the kernel reads them.
#[derive(Debug)]
pub struct PackedPointwise {
    /// K×N' (the N×K matrix transposed, outputs padded with zeros to a multiple of 16).
    pub(crate) weight: Tensor,
    /// N'.
    pub(crate) bias: Tensor,
    outputs: i64,
}

// SAFETY: the tensors are never changed after `new`: every method only reads them (as the kernel's inputs, or
// as the source of a new view), which libtorch allows from many threads at once. Shared by a layer and the
// pass that replaces it (one copy of the weights, `Arc`).
unsafe impl Sync for PackedPointwise {}

impl PackedPointwise {
    /// From a 1×1 convolution's N×K×1×1 f32 weight and N bias.
    pub fn new(weight: &Tensor, bias: &Tensor) -> PackedPointwise {
        let (outputs, inputs) = (weight.size()[0], weight.size()[1]);
        let padded = (outputs + 15) / 16 * 16;
        tch::no_grad(|| {
            let weight = weight.view([outputs, inputs]).tr().constant_pad_nd([0, padded - outputs]).contiguous();
            let bias = bias.to_kind(Kind::Float).constant_pad_nd([0, padded - outputs]).contiguous();
            PackedPointwise { weight, bias, outputs }
        })
    }

    /// The N×K×1×1 weight it was made from, read back (a layer's fallback where the kernel holds its only
    /// copy).
    pub fn weight(&self) -> Tensor {
        let inputs = self.weight.size()[0];
        tch::no_grad(|| self.weight.narrow(1, 0, self.outputs).tr().contiguous().view([self.outputs, inputs, 1, 1]))
    }

    /// `conv1x1(x · gate) + bias (+ residual)`: x N×K×H×W f32 channels-last dense on the CPU, gate N×K (or
    /// N×K×1×1) f32. With a residual (N×N_out×H×W) the sum is written into its storage and returned (pass one
    /// no one reads afterwards); else a new channels-last tensor.
    pub fn forward(&self, x: &Tensor, gate: &Tensor, residual: Option<Tensor>) -> Result<Tensor, String> {
        let gate = gate.contiguous();
        let residual_ptr = residual.as_ref().map_or(std::ptr::null(), |r| r.as_ptr());
        // SAFETY: every pointer is live for the call (the residual, if any, is held by `residual`); `call`
        // takes over the tensor the shim makes.
        crate::fused_conv::call(|out, err, len| unsafe {
            orchard_scaled_pointwise(
                out,
                x.as_ptr(),
                gate.as_ptr(),
                self.weight.as_ptr(),
                self.bias.as_ptr(),
                residual_ptr,
                self.outputs,
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

    /// libtorch's 1×1 convolution of `x · gate`, plus the residual where there is one: outputs that fill 16
    /// lanes and that do not, one to several column chunks, K over one block of the kernel's depth, pixel
    /// counts that leave partial tiles, batches split into parts of images and into whole images.
    #[test]
    fn the_scaled_pointwise_kernel_computes_the_gated_convolution_plus_the_residual() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(12);
        let cpu = (Kind::Float, Device::Cpu);
        let many = 2 * tch::get_num_threads() as i64 + 1;
        let cases = [
            (1, 32, 16, 11, 9, false),
            (2, 144, 24, 7, 13, true),
            (2, 240, 80, 5, 5, true),
            (many, 300, 7, 3, 4, false),
            (3, 600, 200, 6, 5, true),
            (many, 16, 72, 9, 9, true),
        ];
        for (batch, k, n, h, w, with_residual) in cases {
            let x = crate::channels_last(&Tensor::randn([batch, k, h, w], cpu));
            let gate = Tensor::rand([batch, k], cpu);
            let weight = Tensor::randn([n, k, 1, 1], cpu) * 0.1;
            let bias = Tensor::randn([n], cpu);
            let residual = crate::channels_last(&Tensor::randn([batch, n, h, w], cpu));
            let scaled = &x * gate.view([batch, k, 1, 1]);
            let mut expected = scaled.conv2d(&weight, Some(&bias), [1, 1], [0, 0], [1, 1], 1);
            if with_residual {
                expected += &residual;
            }
            let packed = PackedPointwise::new(&weight, &bias);
            let y = packed.forward(&x, &gate, with_residual.then(|| residual.copy())).unwrap();
            assert_eq!(y.size(), expected.size());
            assert!(crate::is_channels_last_dense(&y));
            let error = ((&y - &expected).abs() / (expected.abs() + 1.0)).max().double_value(&[]);
            assert!(error < 1e-5, "{k}→{n} at {h}×{w}, batch {batch}: differs by {error:e}");
        }
    }

    #[test]
    fn an_input_that_is_not_channels_last_is_an_error() {
        if !available() {
            return;
        }
        let cpu = (Kind::Float, Device::Cpu);
        let packed = PackedPointwise::new(&Tensor::zeros([8, 4, 1, 1], cpu), &Tensor::zeros([8], cpu));
        let err = packed.forward(&Tensor::zeros([1, 4, 3, 3], cpu), &Tensor::zeros([1, 4], cpu), None);
        assert!(err.unwrap_err().contains("channels-last"));
    }
}
