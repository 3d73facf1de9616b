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
    #[allow(clippy::too_many_arguments)]
    fn orchard_preactivated_pointwise(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        scale: *const C_tensor,
        shift: *const C_tensor,
        weight: *const C_tensor,
        bias: *const C_tensor,
        outputs: i64,
        relu: std::ffi::c_int,
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

    /// `conv1x1(relu(x · scale + shift)) + bias`, ReLU'd where `relu`: a pre-activation (a frozen batch norm
    /// and ReLU, `scale` and `shift` K f32) applied to each block of x as the kernel copies it, so that it is
    /// never a tensor of its own. x N×K×H×W f32 channels-last dense on the CPU; a new channels-last tensor.
    pub fn forward_preactivated(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        relu: bool,
    ) -> Result<Tensor, String> {
        let (scale, shift) = (scale.contiguous(), shift.contiguous());
        // SAFETY: every pointer is live for the call; `call` takes over the tensor the shim makes.
        crate::fused_conv::call(|out, err, len| unsafe {
            orchard_preactivated_pointwise(
                out,
                x.as_ptr(),
                scale.as_ptr(),
                shift.as_ptr(),
                self.weight.as_ptr(),
                self.bias.as_ptr(),
                self.outputs,
                relu.into(),
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

    /// libtorch's `relu(conv1x1(relu(x · scale + shift)) + bias)`, and without the outer ReLU: channel counts
    /// that fill the vectors and that leave a masked tail, K over one and several blocks of the kernel's
    /// depth (its ReLU only after the last), outputs over one and several column chunks, partial tiles.
    #[test]
    fn the_preactivated_pointwise_kernel_computes_relu_of_the_convolution_of_the_preactivation() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(13);
        let cpu = (Kind::Float, Device::Cpu);
        let cases =
            [(1, 37, 16, 5, 7, true), (2, 256, 64, 9, 9, true), (3, 600, 200, 4, 5, false), (2, 520, 72, 6, 3, true)];
        for (batch, k, n, h, w, relu) in cases {
            let x = crate::channels_last(&Tensor::randn([batch, k, h, w], cpu));
            let scale = Tensor::rand([k], cpu) + 0.5;
            let shift = Tensor::randn([k], cpu);
            let weight = Tensor::randn([n, k, 1, 1], cpu) * 0.1;
            let bias = Tensor::randn([n], cpu);
            let preact = (&x * scale.view([1, k, 1, 1]) + shift.view([1, k, 1, 1])).relu();
            let mut expected = preact.conv2d(&weight, Some(&bias), [1, 1], [0, 0], [1, 1], 1);
            if relu {
                expected = expected.relu();
            }
            let y = PackedPointwise::new(&weight, &bias).forward_preactivated(&x, &scale, &shift, relu).unwrap();
            assert_eq!(y.size(), expected.size());
            assert!(crate::is_channels_last_dense(&y));
            let error = ((&y - &expected).abs() / (expected.abs() + 1.0)).max().double_value(&[]);
            assert!(error < 1e-5, "{k}→{n} at {h}×{w}, batch {batch}, relu {relu}: differs by {error:e}");
            let negative = y.lt(0.0).any().int64_value(&[]) != 0;
            assert_eq!(negative, !relu, "{k}→{n}: negative outputs {negative} with relu {relu}");
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
