//! Autograd nodes that fuse what libtorch runs as several passes over a training step's activations, for
//! channels-last f32 tensors on CPUs with AVX2 and FMA:
//! - [`bn_act`]: batch norm in training followed by its activation (`csrc/bn_act.cpp`). libtorch runs the
//!   pair as separate kernels, each a pass over the activation, and keeps the normalised tensor for the
//!   activation's backward; the fused node makes two passes forward and two backward and keeps only its input.
//! - [`channel_scale`]: `x · s` with one gate per sample and channel (squeeze-excitation,
//!   `csrc/channel_scale.cpp`), whose backward is one pass instead of three.
//! - [`residual`]: `act(x + s · y)` with a constant `s` (Inception-ResNet's residual sum,
//!   `csrc/residual.cpp`): one pass forward instead of three, one backward instead of two.
//! - [`max_pool`]: max pooling that keeps its input and output instead of an int64 index per output value
//!   (`csrc/max_pool.cpp`), its backward finding each window's maximum again; [`max_pool_padded`] its
//!   forward alone for inference, with zero padding.
//!
//! Callers ask [`bn_act_applies`] / [`channel_scale_applies`] / [`residual_applies`] / [`max_pool_applies`]
//! and fall back to libtorch's operations otherwise; each computes the same values within f32 rounding.

use std::cell::Cell;
use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::fused_conv::{call, PostOp};

extern "C" {
    fn orchard_fused_train_available() -> c_int;
    fn orchard_affine_act(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        scale: *const C_tensor,
        shift: *const C_tensor,
        act: i64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_channel_scale(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        s: *const C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_residual(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        y: *const C_tensor,
        scale: f64,
        relu: c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_max_pool_train(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        kernel: i64,
        stride: i64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_max_pool(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        kernel: i64,
        stride: i64,
        pad: i64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn orchard_bn_act_train(
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
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// Whether this CPU runs the fused kernels (asked once; `ORCHARD_FUSED_BN=0` turns them off, for comparisons).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: a plain C function without arguments that cannot throw.
    *AVAILABLE.get_or_init(|| {
        std::env::var("ORCHARD_FUSED_BN").map_or(true, |v| v != "0") && unsafe { orchard_fused_train_available() } == 1
    })
}

thread_local! {
    /// Set while [`unfused`] runs on this thread.
    static UNFUSED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the fused nodes off on this thread (libtorch's operations instead), to compare the two.
pub fn unfused<T>(f: impl FnOnce() -> T) -> T {
    crate::with_flag(&UNFUSED, f)
}

/// The activation's code in the C++ file, if it fuses it.
pub(crate) fn code(act: PostOp) -> Option<i64> {
    match act {
        PostOp::None => Some(0),
        PostOp::Relu => Some(1),
        PostOp::Relu6 => Some(2),
        PostOp::Swish => Some(3),
        PostOp::Sigmoid => None,
    }
}

/// Whether the fused nodes take `x`: a non-empty 4-D channels-last f32 CPU tensor, on a CPU with the kernels.
pub(crate) fn takes(x: &Tensor) -> bool {
    x.device() == Device::Cpu
        && x.kind() == Kind::Float
        && x.dim() == 4
        && x.numel() > 0
        && channels_last_dense(x)
        && !UNFUSED.with(Cell::get)
        && available()
}

/// Whether [`bn_act`] takes `x` with `act`.
pub fn bn_act_applies(x: &Tensor, act: PostOp) -> bool {
    code(act).is_some() && takes(x)
}

/// Whether [`affine_act`] takes `x` with `act` (and per-channel f32 `scale`): as [`bn_act`], and `x` outside
/// autograd (the kernel records no backward).
pub fn affine_act_applies(x: &Tensor, scale: &Tensor, act: PostOp) -> bool {
    bn_act_applies(x, act) && !x.requires_grad() && scale.kind() == Kind::Float
}

/// `act(x · scale + shift)` per channel in one pass (a batch norm frozen at its running statistics, in
/// inference); `x` must pass [`affine_act_applies`], `scale` and `shift` hold C f32 values.
pub fn affine_act(x: &Tensor, scale: &Tensor, shift: &Tensor, act: PostOp) -> Result<Tensor, String> {
    let act = code(act).ok_or("affine activation: an activation the kernel does not apply")?;
    // SAFETY: every handle is live for the call.
    call(|out, err, len| unsafe { orchard_affine_act(out, x.as_ptr(), scale.as_ptr(), shift.as_ptr(), act, err, len) })
}

/// Whether [`channel_scale`] takes `x` (N×C×H×W) and `s`: gates of shape N×C×1×1 in f32.
pub fn channel_scale_applies(x: &Tensor, s: &Tensor) -> bool {
    takes(x) && s.kind() == Kind::Float && s.size() == [x.size()[0], x.size()[1], 1, 1]
}

/// `x · s`, differentiable in both; `x` and `s` must pass [`channel_scale_applies`].
pub fn channel_scale(x: &Tensor, s: &Tensor) -> Result<Tensor, String> {
    // SAFETY: both handles are live for the call.
    call(|out, err, len| unsafe { orchard_channel_scale(out, x.as_ptr(), s.as_ptr(), err, len) })
}

/// Whether [`residual`] takes `x` and `y`: tensors it takes of one shape.
pub fn residual_applies(x: &Tensor, y: &Tensor) -> bool {
    takes(x) && takes(y) && x.size() == y.size()
}

/// `relu(x + scale · y)` (`relu`), or `x + scale · y`, differentiable in `x` and `y`; both must pass
/// [`residual_applies`].
pub fn residual(x: &Tensor, y: &Tensor, scale: f64, relu: bool) -> Result<Tensor, String> {
    // SAFETY: both handles are live for the call.
    call(|out, err, len| unsafe { orchard_residual(out, x.as_ptr(), y.as_ptr(), scale, c_int::from(relu), err, len) })
}

/// Whether [`max_pool`] (`pad` 0) and [`max_pool_padded`] take `x` with a `kernel`×`kernel` window: a tensor
/// they take that the window fits, padded by `pad` (less than the window).
pub fn max_pool_applies(x: &Tensor, kernel: i64, pad: i64) -> bool {
    let fits = |side: i64| side + 2 * pad >= kernel;
    takes(x) && kernel >= 1 && (0..kernel).contains(&pad) && fits(x.size()[2]) && fits(x.size()[3])
}

/// Max pooling of `x` over `kernel`×`kernel` windows at `stride`, without padding: libtorch's values and
/// gradient (each window's gradient to the first position of its maximum in row-major order), keeping `x`
/// and the output rather than an index per output. `x` must pass [`max_pool_applies`].
pub fn max_pool(x: &Tensor, kernel: i64, stride: i64) -> Result<Tensor, String> {
    // SAFETY: the handle is live for the call.
    call(|out, err, len| unsafe { orchard_max_pool_train(out, x.as_ptr(), kernel, stride, err, len) })
}

/// Max pooling of `x` zero-padded by `pad` on every side, for inference (no autograd node): libtorch's values,
/// without the int64 index per output that libtorch's pooling writes even then. `x` must pass
/// [`max_pool_applies`].
pub fn max_pool_padded(x: &Tensor, kernel: i64, stride: i64, pad: i64) -> Result<Tensor, String> {
    // SAFETY: the handle is live for the call.
    call(|out, err, len| unsafe { orchard_max_pool(out, x.as_ptr(), kernel, stride, pad, err, len) })
}

/// Whether `x` (N×C×H×W) is laid out as a dense N×H×W×C array (strides of dimensions of size one aside).
fn channels_last_dense(x: &Tensor) -> bool {
    let (size, stride) = (x.size(), x.stride());
    let (n, c, h, w) = (size[0], size[1], size[2], size[3]);
    let want = [(0, h * w * c, n), (1, 1, c), (2, w * c, h), (3, c, w)];
    want.iter().all(|&(d, s, len)| len == 1 || stride[d] == s)
}

/// The running statistics a training step moves, and how.
pub struct Running<'a> {
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
    /// The weight of the old value (Keras' momentum): `running = keep · running + (1 - keep) · batch`.
    pub keep: f64,
    /// Whether the batch variance folded in is the unbiased one (PyTorch) rather than the biased (Keras).
    pub unbiased: bool,
}

/// `act(batch_norm(x))` in training: normalised by the batch's mean and biased variance, scaled by `weight`
/// (none: by one) and shifted by `bias`, the running statistics moved in place. Differentiable in `x`,
/// `weight` and `bias`. `x` must pass [`bn_act_applies`].
pub fn bn_act(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: &Tensor,
    running: Running,
    eps: f64,
    act: PostOp,
) -> Result<Tensor, String> {
    let act = code(act).ok_or_else(|| format!("fused batch norm: {act:?} is not fused"))?;
    let weight = weight.map_or(std::ptr::null(), |w| w.as_ptr());
    // SAFETY: every handle is live for the call; `weight` may be null, as the shim allows.
    call(|out, err, len| unsafe {
        orchard_bn_act_train(
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
            err,
            len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" {
        fn orchard_parallel_threads(n: i64) -> c_int;
    }

    /// The one-pass frozen batch norm computes `act(x · scale + shift)` per channel, for channel counts with
    /// and without a tail of the kernel's eight lanes, and refuses a tensor that autograd follows.
    #[test]
    fn the_affine_activation_is_the_frozen_batch_norm_and_its_activation() {
        tch::manual_seed(8);
        let cpu = (Kind::Float, Device::Cpu);
        for (c, act) in [(16, PostOp::Relu), (13, PostOp::None), (5, PostOp::Swish), (24, PostOp::Relu6)] {
            let x = crate::channels_last(&Tensor::randn([2, c, 5, 7], cpu));
            let (scale, shift) = (Tensor::randn([c], cpu), Tensor::randn([c], cpu));
            if !affine_act_applies(&x, &scale, act) {
                eprintln!("skipped: this CPU has no AVX2 with FMA");
                return;
            }
            let z = &x * scale.view([1, c, 1, 1]) + shift.view([1, c, 1, 1]);
            let expected = match act {
                PostOp::Relu => z.relu(),
                PostOp::Swish => z.silu(),
                PostOp::Relu6 => z.clamp(0.0, 6.0),
                _ => z,
            };
            let out = affine_act(&x, &scale, &shift, act).unwrap();
            assert!(out.allclose(&expected, 1e-5, 1e-5, false), "{c} channels, {act:?}: the output differs");
        }
        let tracked = crate::channels_last(&Tensor::randn([1, 4, 3, 3], cpu)).set_requires_grad(true);
        assert!(!affine_act_applies(&tracked, &Tensor::ones([4], cpu), PostOp::Relu), "autograd would be lost");
    }

    /// The kernels' `at::parallel_for` loops run on libtorch's threads (`csrc/parallel.cpp`): compiled without
    /// OpenMP they ran on one, and B0's training step was 23% slower.
    #[test]
    fn the_kernels_loops_run_on_every_libtorch_thread() {
        tch::set_num_threads(2);
        // SAFETY: a plain C function that cannot throw.
        let threads = unsafe { orchard_parallel_threads(1024) };
        assert_eq!(threads, 2, "the shims' parallel loops ran on {threads} of 2 threads");
    }

    #[test]
    fn the_channel_scale_node_computes_libtorchs_product_and_gradients() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX2 or FMA");
            return;
        }
        tch::manual_seed(8);
        let options = (Kind::Float, Device::Cpu);
        // 13 channels: a vector and a tail; 3 samples of 9×11 rows (several tasks cross sample boundaries).
        for (channels, side) in [(13, 9), (96, 40)] {
            let x = Tensor::randn([3, side, side + 2, channels], options).permute([0, 3, 1, 2]);
            let s = Tensor::rand([3, channels, 1, 1], options);
            let upstream = Tensor::randn([3, channels, side, side + 2], options);
            let run = |fused: bool| {
                let (x, s) = (x.detach().set_requires_grad(true), s.detach().set_requires_grad(true));
                let y = match fused {
                    true => {
                        assert!(channel_scale_applies(&x, &s));
                        channel_scale(&x, &s).unwrap()
                    }
                    false => &x * &s,
                };
                (&y * &upstream).sum(Kind::Float).backward();
                (y.detach(), x.grad(), s.grad())
            };
            let (fused, reference) = (run(true), run(false));
            close(&fused.0, &reference.0, "product");
            close(&fused.1, &reference.1, "gradient of x");
            close(&fused.2, &reference.2, "gradient of s");
            assert_eq!(fused.1.stride(), x.stride(), "the gradient of x is channels-last");
        }
        assert!(!channel_scale_applies(&Tensor::zeros([2, 3, 4, 4], options), &Tensor::zeros([2, 3, 1, 1], options)));
    }

    #[test]
    fn the_residual_node_computes_libtorchs_sum_and_gradients() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX2 or FMA");
            return;
        }
        tch::manual_seed(9);
        let options = (Kind::Float, Device::Cpu);
        // 13 channels over 5×7: 455 values a sample, a tail of the eight lanes; 1088 over 17×17: many tasks.
        for ((channels, side), relu) in [((13, 5), true), ((13, 5), false), ((1088, 17), true)] {
            let shape = [2, channels, side, side + 2];
            let x = crate::channels_last(&Tensor::randn(shape, options));
            let y = crate::channels_last(&Tensor::randn(shape, options));
            let upstream = Tensor::randn(shape, options);
            let run = |fused: bool| {
                let (x, y) = (x.detach().set_requires_grad(true), y.detach().set_requires_grad(true));
                let out = match fused {
                    true => {
                        assert!(residual_applies(&x, &y));
                        residual(&x, &y, 0.17, relu).unwrap()
                    }
                    false if relu => (&x + &y * 0.17).relu(),
                    false => &x + &y * 0.17,
                };
                (&out * &upstream).sum(Kind::Float).backward();
                (out.detach(), x.grad(), y.grad())
            };
            let (fused, reference) = (run(true), run(false));
            let what = format!("{channels} channels, relu {relu}");
            close(&fused.0, &reference.0, &format!("{what}: sum"));
            close(&fused.1, &reference.1, &format!("{what}: gradient of x"));
            close(&fused.2, &reference.2, &format!("{what}: gradient of y"));
            assert!(crate::is_channels_last_dense(&fused.0), "{what}: the sum is channels-last");
            if relu {
                assert!(fused.0.min().double_value(&[]) == 0.0, "{what}: the ReLU clipped nothing");
            }
        }
        let plain = Tensor::zeros([2, 3, 4, 4], options);
        assert!(!residual_applies(&plain, &plain), "a tensor in NCHW order would be read as channels-last");
        let cl = crate::channels_last(&plain);
        assert!(!residual_applies(&cl, &crate::channels_last(&Tensor::zeros([2, 3, 4, 5], options))));
    }

    /// The pooled values and `x`'s gradient under an upstream gradient from 0.5 to 2.0, by the node (`fused`)
    /// or by libtorch. With NaN in `x` the loss is NaN, but its gradient with respect to the output is still
    /// the upstream, finite everywhere.
    fn pooled(x: &Tensor, kernel: i64, stride: i64, fused: bool) -> (Tensor, Tensor) {
        let x = x.detach().set_requires_grad(true);
        let y = match fused {
            true => max_pool(&x, kernel, stride).unwrap(),
            false => x.max_pool2d([kernel, kernel], [stride, stride], [0, 0], [1, 1], false),
        };
        let upstream = Tensor::linspace(0.5, 2.0, y.numel() as i64, (Kind::Float, Device::Cpu)).view_as(&y);
        (&y * upstream).sum(Kind::Float).backward();
        (y.detach(), x.grad())
    }

    #[test]
    fn the_max_pool_node_computes_libtorchs_pooling_and_gradient() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX2 or FMA");
            return;
        }
        tch::manual_seed(10);
        let options = (Kind::Float, Device::Cpu);
        // 13 channels: a vector and a tail; 64 over two channel blocks; the 1×1 window at stride 2 (ResNet
        // v2's subsampling); odd sides, as IRv2's stem (147 → 73).
        for (channels, side, kernel, stride) in [(13, 9, 3, 2), (136, 11, 3, 2), (64, 8, 1, 2), (8, 7, 3, 1)] {
            // Values from a few levels: ties within windows, where the first position must take the gradient.
            let x = crate::channels_last(&(Tensor::randint(5, [2, channels, side, side + 2], options) - 2.0));
            assert!(max_pool_applies(&x, kernel, 0));
            let (fused, reference) = (pooled(&x, kernel, stride, true), pooled(&x, kernel, stride, false));
            let what = format!("{channels} channels, {kernel}×{kernel} at {stride}");
            assert_eq!(fused.0.size(), reference.0.size(), "{what}");
            assert!(fused.0.equal(&reference.0), "{what}: the pooled values differ");
            close(&fused.1, &reference.1, &format!("{what}: gradient"));
            assert!(crate::is_channels_last_dense(&fused.1), "{what}: the gradient is channels-last");
        }
        let plain = Tensor::zeros([2, 3, 4, 4], options);
        assert!(!max_pool_applies(&plain, 3, 0), "a tensor in NCHW order would be read as channels-last");
        assert!(!max_pool_applies(&crate::channels_last(&plain), 5, 0), "the window does not fit");
        assert!(max_pool_applies(&crate::channels_last(&plain), 5, 1), "the window fits the padded tensor");
        assert!(!max_pool_applies(&crate::channels_last(&plain), 3, 3), "padding as wide as the window");
    }

    #[test]
    fn the_max_pool_node_pools_nan_as_libtorch_does() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX2 or FMA");
            return;
        }
        tch::manual_seed(11);
        let options = (Kind::Float, Device::Cpu);
        // One value in six NaN: windows with none, one and several, in the vectors (136) and the tail (13).
        for channels in [13, 136] {
            let levels = Tensor::randint(5, [2, channels, 9, 11], options);
            let nan = Tensor::rand([2, channels, 9, 11], options).lt(1.0 / 6.0);
            let x = crate::channels_last(&levels.masked_fill(&nan, f64::NAN));
            let (fused, reference) = (pooled(&x, 3, 2, true), pooled(&x, 3, 2, false));
            let pooled_nan = reference.0.isnan();
            let windows_with_nan = pooled_nan.sum(Kind::Int64).int64_value(&[]);
            assert!(windows_with_nan > 0 && windows_with_nan < reference.0.numel() as i64, "{channels}: a mix");
            assert!(fused.0.isnan().equal(&pooled_nan), "{channels} channels: NaN pooled in other windows");
            let numbers = |t: &Tensor| t.nan_to_num(0.0, None, None);
            assert!(numbers(&fused.0).equal(&numbers(&reference.0)), "{channels} channels: pooled values");
            let at_nan = reference.1.masked_select(&nan).abs().sum(Kind::Float).double_value(&[]);
            assert!(at_nan > 0.0, "{channels} channels: libtorch gives NaN positions a gradient");
            close(&fused.1, &reference.1, &format!("{channels} channels with NaN: gradient"));
        }
    }

    /// The inference pooling equals libtorch's pooling of the zero-padded input, NaN where libtorch's is:
    /// windows over the padding at the start only (even sides at stride 2) and at both ends (odd sides,
    /// stride 1) where every value is negative and the padding's zero wins, unpadded windows, ResNet v2's 1×1
    /// subsampling; channels in the vectors and the tail.
    #[test]
    fn inference_max_pooling_equals_libtorchs_pooling_of_the_zero_padded_input() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX2 or FMA");
            return;
        }
        tch::manual_seed(14);
        let options = (Kind::Float, Device::Cpu);
        for (channels, side, kernel, stride, pad) in
            [(13, 12, 3, 2, 1), (136, 11, 3, 2, 1), (24, 9, 3, 1, 1), (16, 10, 3, 2, 0), (64, 8, 1, 2, 0)]
        {
            let levels = Tensor::randint(5, [2, channels, side, side + 1], options) - 3.0;
            let nan = Tensor::rand([2, channels, side, side + 1], options).lt(0.05);
            let x = crate::channels_last(&levels.masked_fill(&nan, f64::NAN));
            let _ = x.narrow(1, 0, 1).fill_(-1.0);
            assert!(max_pool_applies(&x, kernel, pad));
            let padded = x.constant_pad_nd([pad, pad, pad, pad]);
            let expected = padded.max_pool2d([kernel, kernel], [stride, stride], [0, 0], [1, 1], false);
            let out = max_pool_padded(&x, kernel, stride, pad).unwrap();
            let what = format!("{channels} channels, {side}², {kernel}×{kernel} at {stride}, pad {pad}");
            assert_eq!(out.size(), expected.size(), "{what}");
            assert!(crate::is_channels_last_dense(&out), "{what}: channels-last");
            assert!(out.isnan().equal(&expected.isnan()), "{what}: NaN pooled in other windows");
            let numbers = |t: &Tensor| t.nan_to_num(0.0, None, None);
            assert!(numbers(&out).equal(&numbers(&expected)), "{what}: the pooled values differ");
            let zeros = out.narrow(1, 0, 1).eq(0.0).sum(Kind::Int64).int64_value(&[]);
            assert_eq!(zeros > 0, pad > 0, "{what}: windows took the padding's zero");
        }
    }

    /// libtorch's batch norm in training and the activation, as the models run them without the fused node.
    fn reference(
        x: &Tensor,
        weight: Option<&Tensor>,
        bias: &Tensor,
        running: &Running,
        eps: f64,
        act: PostOp,
    ) -> Tensor {
        let y = x.batch_norm(
            weight,
            Some(bias),
            Some(running.mean),
            Some(running.var),
            true,
            1.0 - running.keep,
            eps,
            false,
        );
        match act {
            PostOp::None => y,
            PostOp::Relu => y.relu(),
            PostOp::Relu6 => y.clamp(0.0, 6.0),
            PostOp::Swish => y.silu(),
            PostOp::Sigmoid => y.sigmoid(),
        }
    }

    fn close(a: &Tensor, b: &Tensor, what: &str) {
        let scale = b.abs().max().double_value(&[]).max(1e-6);
        let gap = (a - b).abs().max().double_value(&[]);
        assert!(gap <= 2e-5 * scale, "{what}: largest gap {gap} (scale {scale})");
    }

    #[test]
    fn the_fused_node_computes_libtorchs_values_gradients_and_running_statistics() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX2 or FMA");
            return;
        }
        tch::manual_seed(3);
        // 13 channels: one vector of eight and a scalar tail. 3×5×7 rows run as one task; 3×40×40 rows with
        // 40 channels as several, on every thread.
        let cases = [
            (13, 5, PostOp::Swish, true),
            (16, 5, PostOp::Relu, false),
            (24, 5, PostOp::Relu6, true),
            (8, 5, PostOp::None, true),
            (40, 40, PostOp::Swish, true),
            (40, 40, PostOp::Relu, false),
            (2048, 1, PostOp::Relu, true),
            (1536, 1, PostOp::Relu, false),
            (320, 2, PostOp::Relu6, true),
        ];
        for (channels, side, act, scaled) in cases {
            for unbiased in [false, true] {
                let options = (Kind::Float, Device::Cpu);
                let x = (Tensor::randn([3, side, side + 2, channels], options) * 2.5 + 1.5).permute([0, 3, 1, 2]);
                let weight = scaled.then(|| (Tensor::randn([channels], options) + 1.0).set_requires_grad(true));
                let bias = (Tensor::randn([channels], options) * 2.0).set_requires_grad(true);
                let upstream = Tensor::randn([3, channels, side, side + 2], options);
                let stats = |seed| {
                    tch::manual_seed(seed);
                    (Tensor::randn([channels], options), Tensor::rand([channels], options) + 0.5)
                };
                let run = |fused: bool| {
                    let x = x.detach().set_requires_grad(true);
                    let (mean, var) = stats(9);
                    let running = Running { mean: &mean, var: &var, keep: 0.9, unbiased };
                    for p in weight.iter().chain([&bias]) {
                        let _ = p.grad().f_zero_();
                    }
                    let before = var.copy();
                    let y = match fused {
                        true => {
                            assert!(bn_act_applies(&x, act));
                            bn_act(&x, weight.as_ref(), &bias, running, 1e-3, act).unwrap()
                        }
                        false => reference(&x, weight.as_ref(), &bias, &running, 1e-3, act),
                    };
                    (&y * &upstream).sum(Kind::Float).backward();
                    if !fused && !unbiased {
                        // Keras' running variance folds in the biased batch variance: libtorch's, rescaled.
                        let m = (x.numel() / channels as usize) as f64;
                        let batch = (&var - &before * 0.9) / 0.1 * ((m - 1.0) / m);
                        tch::no_grad(|| var.shallow_clone().copy_(&(&before * 0.9 + batch * 0.1)));
                    }
                    let grads = weight.iter().chain([&bias]).map(|p| p.grad().copy()).collect::<Vec<_>>();
                    (y.detach(), x.grad(), grads, mean, var)
                };
                let (fused, reference) = (run(true), run(false));
                let what = format!("{channels} channels, {act:?}, scaled {scaled}, unbiased {unbiased}");
                close(&fused.0, &reference.0, &format!("{what}: output"));
                close(&fused.1, &reference.1, &format!("{what}: input gradient"));
                for (a, b) in fused.2.iter().zip(&reference.2) {
                    close(a, b, &format!("{what}: parameter gradient"));
                }
                close(&fused.3, &reference.3, &format!("{what}: running mean"));
                close(&fused.4, &reference.4, &format!("{what}: running variance"));
                assert!(fused.0.size() == x.size() && fused.1.stride() == x.stride(), "{what}: channels-last out");
            }
        }
    }
    #[test]
    fn per_channel_tensors_of_another_size_are_refused_not_read_past() {
        if !available() {
            return;
        }
        let options = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([2, 4, 3, 8], options).permute([0, 3, 1, 2]);
        let (short, full) = (Tensor::zeros([7], options), Tensor::zeros([8], options));
        fn running(t: &Tensor) -> Running<'_> {
            Running { mean: t, var: t, keep: 0.9, unbiased: false }
        }
        for (bias, stats) in [(&short, &full), (&full, &short)] {
            let e = bn_act(&x, None, bias, running(stats), 1e-3, PostOp::Relu).unwrap_err();
            assert!(e.contains("per-channel f32 tensors of 8 values expected, got [7]"), "{e}");
        }
        assert!(bn_act(&x, None, &full, running(&full), 1e-3, PostOp::Relu).is_ok());
    }
}
