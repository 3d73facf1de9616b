//! oneDNN's fused convolutions on the CPU: convolution + bias + activation, optionally + a residual, in one
//! kernel over weights reordered once into oneDNN's blocked format. These are the ops inductor emits for a
//! frozen model on the CPU (`mkldnn::_convolution_pointwise`, its `.binary` form and
//! `mkldnn::_reorder_convolution_weight`); tch binds none of them, so `csrc/fused_conv.cpp` calls them through
//! libtorch's dispatcher. [`available`] says whether this libtorch and CPU have them; callers fall back to
//! the plain convolution otherwise (and off the CPU).

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::OnceLock;

use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn orchard_fused_conv_available() -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn orchard_fused_conv_reorder(
        out: *mut *mut C_tensor,
        weight: *const C_tensor,
        padding: *const i64,
        stride: *const i64,
        groups: i64,
        input_size: *const i64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn orchard_fused_conv(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        weight: *const C_tensor,
        bias: *const C_tensor,
        padding: *const i64,
        stride: *const i64,
        groups: i64,
        attr: *const c_char,
        scalars: *const f64,
        n_scalars: usize,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn orchard_fused_conv_add(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        other: *const C_tensor,
        weight: *const C_tensor,
        bias: *const C_tensor,
        padding: *const i64,
        stride: *const i64,
        groups: i64,
        unary: *const c_char,
        into: c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// Whether libtorch was built with oneDNN, the CPU runs it and the fused-convolution operators are
/// registered (asked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: a plain C function that catches every exception.
    *AVAILABLE.get_or_init(|| unsafe { orchard_fused_conv_available() } == 1)
}

/// The activation a fused convolution applies to its output, as oneDNN's post-op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PostOp {
    None,
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x · sigmoid(x)` (SiLU).
    Swish,
    Sigmoid,
}

impl PostOp {
    /// oneDNN's attribute name and its scalars.
    fn attr(self) -> (&'static str, &'static [f64]) {
        match self {
            PostOp::None => ("none", &[]),
            PostOp::Relu => ("relu", &[]),
            PostOp::Relu6 => ("hardtanh", &[0.0, 6.0]),
            PostOp::Swish => ("swish", &[]),
            PostOp::Sigmoid => ("sigmoid", &[]),
        }
    }
}

/// A convolution's geometry: symmetric zero padding `[h, w]`, stride `[h, w]`, groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub padding: [i64; 2],
    pub stride: [i64; 2],
    pub groups: i64,
}

/// Runs one shim call that makes one tensor, turning its status into a `Result`.
pub(crate) fn call(f: impl FnOnce(*mut *mut C_tensor, *mut c_char, usize) -> c_int) -> Result<Tensor, String> {
    let mut err = [0 as c_char; 1024];
    let mut out: *mut C_tensor = std::ptr::null_mut();
    if f(&mut out, err.as_mut_ptr(), err.len()) == 0 {
        // SAFETY: on success the shim handed over a new tensor handle, which the `Tensor` now owns.
        Ok(unsafe { Tensor::from_ptr(out) })
    } else {
        // SAFETY: the shim writes a NUL-terminated message that fits the buffer.
        Err(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned())
    }
}

fn bias_ptr(bias: Option<&Tensor>) -> *const C_tensor {
    bias.map_or(std::ptr::null(), |b| b.as_ptr())
}

/// `weight` (OIHW, f32 or bf16) reordered into the blocked format oneDNN prefers for inputs of
/// `input_size` (N, C, H, W); the result only feeds [`conv`] and [`conv_add_into`]. Any input size still works
/// with it, those of `input_size` without a reorder per call.
pub fn reorder_weight(weight: &Tensor, geometry: Geometry, input_size: [i64; 4]) -> Result<Tensor, String> {
    let Geometry { padding, stride, groups } = geometry;
    // SAFETY: every pointer is live for the call; the arrays hold 2, 2 and 4 values.
    call(|out, err, len| unsafe {
        orchard_fused_conv_reorder(
            out,
            weight.as_ptr(),
            padding.as_ptr(),
            stride.as_ptr(),
            groups,
            input_size.as_ptr(),
            err,
            len,
        )
    })
}

/// `post(conv(x, weight) + bias)` in one oneDNN kernel; the output is channels-last when `x` is.
pub fn conv(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geometry: Geometry,
    post: PostOp,
) -> Result<Tensor, String> {
    let Geometry { padding, stride, groups } = geometry;
    let (attr, scalars) = post.attr();
    let attr = CString::new(attr).expect("no NUL in an attribute name");
    // SAFETY: every pointer is live for the call; `bias` may be null, as the shim allows.
    call(|out, err, len| unsafe {
        orchard_fused_conv(
            out,
            x.as_ptr(),
            weight.as_ptr(),
            bias_ptr(bias),
            padding.as_ptr(),
            stride.as_ptr(),
            groups,
            attr.as_ptr(),
            scalars.as_ptr(),
            scalars.len(),
            err,
            len,
        )
    })
}

/// `post(conv(x, weight) + bias + other)` in one oneDNN kernel, `other` of the output's shape (a residual);
/// `post` is [`PostOp::None`] or [`PostOp::Relu`]. Where `other` is channels-last and dense the result is
/// written into its storage and returned (oneDNN's sum post-op, one tensor fewer streamed through the
/// kernel), so no one may read it afterwards through another handle; else it is read and a new tensor made.
pub fn conv_add_into(
    x: &Tensor,
    other: Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geometry: Geometry,
    post: PostOp,
) -> Result<Tensor, String> {
    let into = crate::is_channels_last_dense(&other) && other.kind() == x.kind();
    let Geometry { padding, stride, groups } = geometry;
    let unary = match post {
        PostOp::None => None,
        act => Some(CString::new(act.attr().0).expect("no NUL in an attribute name")),
    };
    // SAFETY: every pointer is live for the call; `bias` and `unary` may be null, as the shim allows.
    call(|out, err, len| unsafe {
        orchard_fused_conv_add(
            out,
            x.as_ptr(),
            other.as_ptr(),
            weight.as_ptr(),
            bias_ptr(bias),
            padding.as_ptr(),
            stride.as_ptr(),
            groups,
            unary.as_ref().map_or(std::ptr::null(), |u| u.as_ptr()),
            c_int::from(into),
            err,
            len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn close(a: &Tensor, b: &Tensor) -> bool {
        a.allclose(b, 1e-4, 1e-4, false)
    }

    #[test]
    fn fused_convolutions_compute_what_the_separate_ops_compute() {
        if !available() {
            eprintln!("skipped: this libtorch has no oneDNN fused convolutions");
            return;
        }
        tch::manual_seed(3);
        let cpu = (Kind::Float, Device::Cpu);
        for (c_in, c_out, k, stride, groups) in [(8, 16, 3, 1, 1), (16, 16, 5, 2, 16), (8, 4, 1, 1, 1)] {
            let weight = Tensor::randn([c_out, c_in / groups, k, k], cpu);
            let bias = Tensor::randn([c_out], cpu);
            let geometry = Geometry { padding: [k / 2, k / 2], stride: [stride, stride], groups };
            let packed = reorder_weight(&weight, geometry, [2, c_in, 9, 9]).unwrap();
            for shape in [[2, c_in, 9, 9], [1, c_in, 6, 7]] {
                let x = crate::channels_last(&Tensor::randn(shape, cpu));
                let plain = x.conv2d(&weight, Some(&bias), [stride, stride], [k / 2, k / 2], [1, 1], groups);
                let cases = [
                    (PostOp::None, plain.shallow_clone()),
                    (PostOp::Relu, plain.relu()),
                    (PostOp::Relu6, plain.clamp(0.0, 6.0)),
                    (PostOp::Swish, plain.silu()),
                    (PostOp::Sigmoid, plain.sigmoid()),
                ];
                for (post, expected) in cases {
                    let fused = tch::no_grad(|| conv(&x, &packed, Some(&bias), geometry, post)).unwrap();
                    assert!(close(&fused, &expected), "{post:?}, {shape:?}");
                }
                let other = Tensor::randn(plain.size(), cpu);
                for (post, expected) in [(PostOp::None, &plain + &other), (PostOp::Relu, (&plain + &other).relu())] {
                    // Into a channels-last residual: the result is written where the residual was.
                    let residual = crate::channels_last(&other);
                    let at = residual.data_ptr();
                    let into = tch::no_grad(|| conv_add_into(&x, residual, &packed, Some(&bias), geometry, post));
                    let into = into.unwrap();
                    assert!(close(&into, &expected), "add into, then {post:?}, {shape:?}");
                    assert_eq!(into.data_ptr(), at, "written into the residual's storage");
                    // A residual in another layout is read, not written.
                    let before = other.copy();
                    let read =
                        tch::no_grad(|| conv_add_into(&x, other.shallow_clone(), &packed, Some(&bias), geometry, post));
                    assert!(close(&read.unwrap(), &expected), "add, contiguous residual, then {post:?}");
                    assert!(other.equal(&before), "a contiguous residual is left as it was");
                }
            }
        }
    }

    #[test]
    fn a_refused_call_is_an_error_naming_the_problem() {
        if !available() {
            return;
        }
        let cpu = (Kind::Float, Device::Cpu);
        let weight = Tensor::randn([4, 3, 3, 3], cpu);
        let geometry = Geometry { padding: [1, 1], stride: [1, 1], groups: 1 };
        let err = conv(&Tensor::randn([1, 5, 8, 8], cpu), &weight, None, geometry, PostOp::Relu).unwrap_err();
        assert!(!err.is_empty());
    }
}
