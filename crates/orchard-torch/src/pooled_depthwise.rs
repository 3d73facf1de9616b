//! EfficientNet's depthwise stage in one pass on CPUs with AVX-512 (`csrc/depthwise.cpp`):
//! `y = swish(depthwise(in(x)) + bias)`, `in` swish or the identity, and the sums of `y` over its positions
//! (squeeze-excitation's pooling). The expand convolution before it then runs without its activation: the
//! swish is applied here as each input row is read, and oneDNN's swish post-op (a sixth of B0's inference
//! time) is not run at all. TF's asymmetric "same" padding is applied as TF says, with no extra taps.

use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

use tch::{Kind, Tensor};
use torch_sys::C_tensor;

use crate::scaled_pointwise::PackedPointwise;

extern "C" {
    fn orchard_pooled_depthwise_available() -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn orchard_pooled_depthwise(
        out: *mut *mut C_tensor,
        sums: *mut *mut C_tensor,
        x: *const C_tensor,
        weight: *const C_tensor,
        bias: *const C_tensor,
        expand_weight: *const C_tensor,
        expand_bias: *const C_tensor,
        stride: i64,
        top: i64,
        left: i64,
        out_h: i64,
        out_w: i64,
        input_swish: c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// Whether this CPU runs the kernel (AVX-512F); asked once.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: a plain C function.
    *AVAILABLE.get_or_init(|| unsafe { orchard_pooled_depthwise_available() } == 1)
}

/// A depthwise layer's geometry: stride, the zero padding before the image `[top, left]` and the output size
/// `[h, w]` (the padding after is what the output needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub stride: i64,
    pub before: [i64; 2],
    pub output: [i64; 2],
}

/// `(swish(depthwise(in(e(x))) + bias), Σ over positions)`: x N×C×H×W f32 on the CPU (channels-last is read
/// without a copy), `weight` K×K×C f32 contiguous (K 3 or 5), `bias` C; `in` is swish when `input_swish`;
/// `e` the identity, or with `expand` a 1×1 convolution to C channels (x is then N×C_in×H×W), computed row
/// by row as the pass reads them: its output is never stored whole. Returns y N×C×H'×W' (channels-last) and
/// the sums N×C.
pub fn pooled_depthwise(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    window: Window,
    input_swish: bool,
    expand: Option<&PackedPointwise>,
) -> Result<(Tensor, Tensor), String> {
    debug_assert_eq!(weight.kind(), Kind::Float);
    let mut err = [0 as c_char; 1024];
    let (mut out, mut sums): (*mut C_tensor, *mut C_tensor) = (std::ptr::null_mut(), std::ptr::null_mut());
    let Window { stride, before: [top, left], output: [out_h, out_w] } = window;
    let (expand_weight, expand_bias) = match expand {
        Some(e) => (e.weight.as_ptr(), e.bias.as_ptr()),
        None => (std::ptr::null(), std::ptr::null()),
    };
    // SAFETY: every pointer is live for the call; on success the shim hands over two new tensor handles.
    let status = unsafe {
        orchard_pooled_depthwise(
            &mut out,
            &mut sums,
            x.as_ptr(),
            weight.as_ptr(),
            bias.as_ptr(),
            expand_weight,
            expand_bias,
            stride,
            top,
            left,
            out_h,
            out_w,
            c_int::from(input_swish),
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if status == 0 {
        // SAFETY: both handles are new and owned by the returned tensors.
        Ok(unsafe { (Tensor::from_ptr(out), Tensor::from_ptr(sums)) })
    } else {
        // SAFETY: the shim writes a NUL-terminated message that fits the buffer.
        Err(unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// libtorch's `swish(depthwise(x) + bias)` with TF's "same" padding (`kernel` C×1×K×K), and the window
    /// that asks the pass for it.
    fn tf_depthwise(x: &Tensor, kernel: &Tensor, bias: &Tensor, stride: i64) -> (Tensor, Window) {
        let (k, c, h, w) = (kernel.size()[2], x.size()[1], x.size()[2], x.size()[3]);
        let out = |n: i64| (n + stride - 1) / stride;
        let pads = |n: i64| {
            let total = ((out(n) - 1) * stride + k - n).max(0);
            (total / 2, total - total / 2)
        };
        let ((top, bottom), (left, right)) = (pads(h), pads(w));
        let padded = x.constant_pad_nd([left, right, top, bottom]);
        let y = padded.conv2d(kernel, Some(bias), [stride, stride], [0, 0], [1, 1], c).silu();
        (y, Window { stride, before: [top, left], output: [out(h), out(w)] })
    }

    /// libtorch's depthwise convolution of the TF-padded input, with swish before and after, and its sums:
    /// every kernel size, stride and parity of the input the kernel runs, channel counts that fill 16 lanes
    /// and that do not, inputs large enough for the clamped exponent; batches split into bands of rows (fewer
    /// images than twice the threads) and into whole images.
    #[test]
    fn the_pooled_depthwise_kernel_computes_swish_of_the_padded_depthwise_convolution_and_its_sums() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(11);
        let cpu = (Kind::Float, Device::Cpu);
        let cases = [
            (1, 3, 1, 16, 9, 9, true),
            (2, 3, 2, 24, 10, 11, false),
            (2, 5, 1, 40, 8, 7, true),
            (2, 5, 2, 7, 11, 10, true),
            (2 * tch::get_num_threads() as i64 + 1, 3, 2, 40, 12, 12, true),
        ];
        for (batch, k, stride, c, h, w, input_swish) in cases {
            let x = crate::channels_last(&(Tensor::randn([batch, c, h, w], cpu) * 30.0));
            let kernel = Tensor::randn([c, 1, k, k], cpu) * 0.3;
            let bias = Tensor::randn([c], cpu);
            let input = if input_swish { x.silu() } else { x.shallow_clone() };
            let (expected, window) = tf_depthwise(&input, &kernel, &bias, stride);
            let weight = kernel.squeeze_dim(1).permute([1, 2, 0]).contiguous();
            let (y, sums) = pooled_depthwise(&x, &weight, &bias, window, input_swish, None).unwrap();
            assert_eq!(y.size(), expected.size(), "{k}×{k} stride {stride}");
            assert!(crate::is_channels_last_dense(&y));
            let error = ((&y - &expected).abs() / (expected.abs() + 1.0)).max().double_value(&[]);
            assert!(error < 1e-5, "{k}×{k} stride {stride}, {c} channels, {h}×{w}: y differs by {error:e}");
            let expected_sums = expected.sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float);
            let error = ((&sums - &expected_sums).abs() / (expected_sums.abs() + 1.0)).max().double_value(&[]);
            assert!(error < 1e-5, "{k}×{k} stride {stride}: sums differ by {error:e}");
        }
    }

    /// With an expand convolution the pass computes `swish(conv1x1(x) + b)` row by row and gives what the
    /// layers compute one after another: output channels that fill 16 lanes and that do not, one and two
    /// column chunks, bands of rows and whole images.
    #[test]
    fn the_pass_with_an_expand_convolution_gives_the_layers_one_after_another() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(13);
        let cpu = (Kind::Float, Device::Cpu);
        let many = 2 * tch::get_num_threads() as i64 + 1;
        let cases =
            [(2, 3, 1, 24, 8, 9, 9), (many, 5, 2, 40, 16, 12, 11), (1, 3, 2, 7, 3, 8, 10), (2, 5, 1, 96, 24, 7, 6)];
        for (batch, k, stride, c, c_in, h, w) in cases {
            let x = crate::channels_last(&Tensor::randn([batch, c_in, h, w], cpu));
            let expand_weight = Tensor::randn([c, c_in, 1, 1], cpu) * 0.5;
            let expand_bias = Tensor::randn([c], cpu);
            let kernel = Tensor::randn([c, 1, k, k], cpu) * 0.3;
            let bias = Tensor::randn([c], cpu);
            let expanded = x.conv2d(&expand_weight, Some(&expand_bias), [1, 1], [0, 0], [1, 1], 1).silu();
            let (expected, window) = tf_depthwise(&expanded, &kernel, &bias, stride);
            let weight = kernel.squeeze_dim(1).permute([1, 2, 0]).contiguous();
            let packed = PackedPointwise::new(&expand_weight, &expand_bias);
            let (y, sums) = pooled_depthwise(&x, &weight, &bias, window, true, Some(&packed)).unwrap();
            assert_eq!(y.size(), expected.size(), "{k}×{k} stride {stride}");
            let error = ((&y - &expected).abs() / (expected.abs() + 1.0)).max().double_value(&[]);
            assert!(error < 1e-5, "{c_in}→{c}, {k}×{k} stride {stride}, {h}×{w}: y differs by {error:e}");
            let expected_sums = expected.sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float);
            let error = ((&sums - &expected_sums).abs() / (expected_sums.abs() + 1.0)).max().double_value(&[]);
            assert!(error < 1e-5, "{c_in}→{c}: sums differ by {error:e}");
        }
    }

    #[test]
    fn a_kernel_size_it_does_not_run_is_an_error() {
        if !available() {
            return;
        }
        let cpu = (Kind::Float, Device::Cpu);
        let x = crate::channels_last(&Tensor::randn([1, 4, 8, 8], cpu));
        let window = Window { stride: 1, before: [3, 3], output: [8, 8] };
        let err = pooled_depthwise(&x, &Tensor::zeros([7, 7, 4], cpu), &Tensor::zeros([4], cpu), window, false, None);
        assert!(err.unwrap_err().contains("3x3 and 5x5"));
    }
}
