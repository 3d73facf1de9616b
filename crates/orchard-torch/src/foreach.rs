//! Multi-tensor updates over lists of tensors: libtorch's `_foreach_*` kernels, which tch does not bind,
//! through the C++ shim in `csrc/foreach.cpp`. One fused launch per operation covers every parameter, where
//! a loop over parameters launches a dozen small kernels for each: on a GPU that loop was half of an
//! EfficientNet-B0 training step.
//!
//! Lists are matched by position; all tensors of a call should share a device and a type (mixed lists are
//! correct, only slower).

use std::ffi::{c_char, c_int, CStr};

use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn orchard_foreach_lerp(
        targets: *const *mut C_tensor,
        ends: *const *mut C_tensor,
        n: usize,
        weight: f64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn orchard_foreach_adam(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        m: *const *mut C_tensor,
        v: *const *mut C_tensor,
        n: usize,
        step: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        l2: f64,
        decay: f64,
        denom_scale: f64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    /// `lists`: the parameters, gradients, first and second moments, `n` handles each.
    fn orchard_fused_adam(
        lists: *const *const *mut C_tensor,
        n: usize,
        constants: *const FusedConstants,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn orchard_foreach_sgd(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        bufs: *const *mut C_tensor,
        n: usize,
        lr: f64,
        momentum: f64,
        nesterov: c_int,
        l2: f64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_foreach_unscale(
        grads: *const *mut C_tensor,
        n: usize,
        found_inf: *mut C_tensor,
        inv_scale: *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// The C++ side copies the tensor handles and changes only the storage behind them, never the handles.
fn handles(tensors: &[Tensor]) -> Vec<*mut C_tensor> {
    tensors.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

fn check(lists: &[&[Tensor]]) {
    assert!(lists.windows(2).all(|w| w[0].len() == w[1].len()), "foreach lists differ in length");
}

/// Runs one shim call with an error buffer and turns its status into a `Result`. Empty lists are a no-op
/// (libtorch refuses them).
fn call(n: usize, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    if n == 0 {
        return Ok(());
    }
    let mut err = [0 as c_char; 1024];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        Ok(())
    } else {
        // SAFETY: the shim writes a NUL-terminated message that fits the buffer.
        Err(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned())
    }
}

/// `targets[i] ← targets[i] + weight·(ends[i] − targets[i])`, in place (moving averages).
pub fn lerp_(targets: &[Tensor], ends: &[Tensor], weight: f64) -> Result<(), String> {
    check(&[targets, ends]);
    let (t, e) = (handles(targets), handles(ends));
    // SAFETY: both arrays hold `t.len()` live tensor handles for the duration of the call.
    call(t.len(), |err, len| unsafe { orchard_foreach_lerp(t.as_ptr(), e.as_ptr(), t.len(), weight, err, len) })
}

/// The constants of one Adam update (see [`adam_`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Factor on `m / (√v·denom_scale + ε)`, bias corrections included.
    pub step: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// L2 term added to the gradient (Keras' Adam, SGD-style weight decay).
    pub l2: f64,
    /// Decoupled decay: parameters are first multiplied by `1 − decay` (AdamW).
    pub decay: f64,
    pub denom_scale: f64,
}

/// One Adam update of every parameter, in the form Keras' Adam and PyTorch's AdamW share:
/// `θ ← θ(1 − decay)`, `g ← g + l2·θ`, `m ← lerp(m, g, 1 − β1)`, `v ← lerp(v, g², 1 − β2)`,
/// `θ ← θ − step·m/(√v·denom_scale + ε)`. The gradients are not modified.
pub fn adam_(params: &[Tensor], grads: &[Tensor], m: &[Tensor], v: &[Tensor], s: &AdamStep) -> Result<(), String> {
    check(&[params, grads, m, v]);
    let (p, g, m, v) = (handles(params), handles(grads), handles(m), handles(v));
    // SAFETY: every array holds `p.len()` live tensor handles for the duration of the call.
    call(p.len(), |err, len| unsafe {
        orchard_foreach_adam(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            p.len(),
            s.step,
            s.beta1,
            s.beta2,
            s.eps,
            s.l2,
            s.decay,
            s.denom_scale,
            err,
            len,
        )
    })
}

/// The constants of one fused Adam update (see [`fused_adam_`]): PyTorch's Adam and AdamW.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedAdam {
    /// The step number `t` of the bias corrections, from 1.
    pub step: u64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW's decoupled decay `θ ← θ(1 − lr·wd)`; otherwise an L2 term `wd·θ` added to the gradient.
    pub decoupled: bool,
}

/// [`FusedAdam`] as the C++ side reads it (`FusedAdamConstants` in `csrc/foreach.cpp`).
#[repr(C)]
struct FusedConstants {
    step: f64,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: c_int,
}

/// One Adam update of every parameter by libtorch's fused kernel (`_fused_adam_`, `_fused_adamw_`), one pass
/// over each parameter's memory: `m ← lerp(m, g, 1 − β1)`, `v ← β2·v + (1 − β2)·g²`,
/// `θ ← θ − lr/(1 − β1^t)·m/(√v/√(1 − β2^t) + ε)`, after the weight decay. `Ok(false)`, with nothing changed,
/// when the kernel cannot take the lists: a gradient or moment whose strides differ from its parameter's, a
/// non-dense tensor, mixed types or devices; [`adam_`] can.
pub fn fused_adam_(
    params: &[Tensor],
    grads: &[Tensor],
    m: &[Tensor],
    v: &[Tensor],
    s: &FusedAdam,
) -> Result<bool, String> {
    check(&[params, grads, m, v]);
    let (p, g, m, v) = (handles(params), handles(grads), handles(m), handles(v));
    let lists = [p.as_ptr(), g.as_ptr(), m.as_ptr(), v.as_ptr()];
    let constants = FusedConstants {
        step: s.step as f64,
        lr: s.lr,
        beta1: s.beta1,
        beta2: s.beta2,
        eps: s.eps,
        weight_decay: s.weight_decay,
        decoupled: c_int::from(s.decoupled),
    };
    let mut done = true;
    call(p.len(), |err, len| {
        // SAFETY: every list holds `p.len()` live tensor handles for the duration of the call; the shim reads
        // `constants` only.
        let status = unsafe { orchard_fused_adam(lists.as_ptr(), p.len(), &constants, err, len) };
        done = status != 1;
        if done {
            status
        } else {
            0
        }
    })?;
    Ok(done)
}

/// One SGD update as PyTorch's: `g ← g + l2·θ`, `buf ← μ·buf + g`, `θ ← θ − lr·(g + μ·buf)` with Nesterov
/// or `θ ← θ − lr·buf` without. `bufs` (zeros before the first step) is needed when `momentum` is not 0.
pub fn sgd_(
    params: &[Tensor],
    grads: &[Tensor],
    bufs: Option<&[Tensor]>,
    lr: f64,
    momentum: f64,
    nesterov: bool,
    l2: f64,
) -> Result<(), String> {
    check(&[params, grads]);
    assert!(
        momentum == 0.0 || bufs.is_some_and(|b| b.len() == params.len()),
        "momentum needs one buffer per parameter"
    );
    let (p, g) = (handles(params), handles(grads));
    let b = bufs.map(handles).unwrap_or_default();
    // SAFETY: `p` and `g` hold `p.len()` live handles, and `b` too whenever the shim reads it (momentum ≠ 0).
    call(p.len(), |err, len| unsafe {
        orchard_foreach_sgd(p.as_ptr(), g.as_ptr(), b.as_ptr(), p.len(), lr, momentum, nesterov as c_int, l2, err, len)
    })
}

/// Multiplies every gradient by `inv_scale` (a one-element f32 tensor) and sets `found_inf` (a one-element f32
/// tensor, zero before) to 1 when any value is infinite or NaN: PyTorch's GradScaler kernel, with no
/// synchronisation until `found_inf` is read.
pub fn unscale_(grads: &[Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> Result<(), String> {
    let g = handles(grads);
    // SAFETY: `g` holds `g.len()` live handles; the two scalars outlive the call.
    call(g.len(), |err, len| unsafe {
        orchard_foreach_unscale(
            g.as_ptr(),
            g.len(),
            found_inf.as_ptr() as *mut C_tensor,
            inv_scale.as_ptr() as *mut C_tensor,
            err,
            len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn t(values: &[f64]) -> Tensor {
        Tensor::from_slice(values)
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::try_from(t).unwrap()
    }

    #[test]
    fn lerp_moves_each_target_toward_its_end() {
        let targets = [t(&[0.0, 10.0]), t(&[4.0])];
        lerp_(&targets, &[t(&[10.0, 0.0]), t(&[0.0])], 0.25).unwrap();
        assert_eq!(values(&targets[0]), [2.5, 7.5]);
        assert_eq!(values(&targets[1]), [3.0]);
    }

    #[test]
    fn adam_matches_the_formula_written_out() {
        let (theta, g) = ([0.5, -1.5, 2.0], [0.3, -0.2, 0.05]);
        let (m0, v0) = ([0.1, 0.0, -0.2], [0.01, 0.02, 0.0]);
        let s = AdamStep { step: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-7, l2: 0.1, decay: 0.02, denom_scale: 1.3 };
        let (p, m, v) = (t(&theta), t(&m0), t(&v0));
        adam_(&[p.shallow_clone()], &[t(&g)], &[m.shallow_clone()], &[v.shallow_clone()], &s).unwrap();
        for i in 0..3 {
            let th = theta[i] * (1.0 - s.decay);
            let gi = g[i] + s.l2 * th;
            let mi = m0[i] + (1.0 - s.beta1) * (gi - m0[i]);
            let vi = v0[i] + (1.0 - s.beta2) * (gi * gi - v0[i]);
            let expected = th - s.step * mi / (vi.sqrt() * s.denom_scale + s.eps);
            assert!((values(&p)[i] - expected).abs() < 1e-15, "{i}: {} vs {expected}", values(&p)[i]);
            assert!((values(&m)[i] - mi).abs() < 1e-15 && (values(&v)[i] - vi).abs() < 1e-15);
        }
    }

    #[test]
    fn fused_adam_matches_the_formula_written_out_in_both_decay_forms() {
        let (theta, g) = ([0.5, -1.5, 2.0], [0.3, -0.2, 0.05]);
        let (m0, v0) = ([0.1, 0.0, -0.2], [0.01, 0.02, 0.0]);
        for decoupled in [false, true] {
            let s = FusedAdam { step: 3, lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-7, weight_decay: 0.1, decoupled };
            let (p, m, v) = (t(&theta), t(&m0), t(&v0));
            let fused = fused_adam_(&[p.shallow_clone()], &[t(&g)], &[m.shallow_clone()], &[v.shallow_clone()], &s);
            assert!(fused.unwrap(), "dense f64 vectors take the fused kernel");
            let (bias1, bias2) = (1.0 - s.beta1.powi(3), 1.0 - s.beta2.powi(3));
            for i in 0..3 {
                let th = if decoupled { theta[i] * (1.0 - s.lr * s.weight_decay) } else { theta[i] };
                let gi = if decoupled { g[i] } else { g[i] + s.weight_decay * theta[i] };
                let mi = m0[i] + (1.0 - s.beta1) * (gi - m0[i]);
                let vi = s.beta2 * v0[i] + (1.0 - s.beta2) * gi * gi;
                let expected = th - s.lr / bias1 * mi / (vi.sqrt() / bias2.sqrt() + s.eps);
                assert!((values(&p)[i] - expected).abs() < 1e-15, "{decoupled} {i}: {} vs {expected}", values(&p)[i]);
                assert!((values(&m)[i] - mi).abs() < 1e-15 && (values(&v)[i] - vi).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn fused_adam_leaves_lists_it_cannot_take_alone() {
        // A moment in another memory order than its parameter: the flat kernel would mix up elements.
        let p = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0]).view([2, 2]);
        let m = Tensor::zeros([2, 2], (Kind::Double, Device::Cpu)).transpose(0, 1).contiguous().transpose(0, 1);
        let v = Tensor::zeros([2, 2], (Kind::Double, Device::Cpu));
        let s = FusedAdam { step: 1, lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true };
        assert!(!fused_adam_(&[p.shallow_clone()], &[p.ones_like()], &[m], &[v], &s).unwrap());
        assert_eq!(Vec::<f64>::try_from(p.view([-1])).unwrap(), [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn fused_adam_takes_a_channels_last_weight_whose_moments_differ_only_in_size_one_strides() {
        // A 1×1 convolution's weight in channels-last, its gradient and moments with other (meaningless)
        // strides in the size-1 dimensions: the same memory order, which the fused kernel takes.
        let p = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).as_strided([2, 3, 1, 1], [3, 1, 3, 3], None);
        let fresh = |value: f64| Tensor::full([2, 3, 1, 1], value, (Kind::Double, Device::Cpu));
        let (g, m, v) = (fresh(1.0), fresh(0.0), fresh(0.0));
        assert_ne!(p.stride(), g.stride());
        let s = FusedAdam { step: 1, lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true };
        assert!(fused_adam_(&[p.shallow_clone()], &[g], &[m], &[v], &s).unwrap());
        // The first step moves every weight by about lr against its gradient's sign.
        let moved: Vec<f64> = Vec::try_from(p.reshape([-1])).unwrap();
        assert!(moved.iter().zip(1..).all(|(w, i)| (w - (i as f64 - 0.1)).abs() < 1e-6), "{moved:?}");
    }

    #[test]
    fn sgd_with_nesterov_momentum_matches_the_formula_written_out() {
        let (p, buf) = (t(&[1.0, 2.0]), t(&[0.5, -0.5]));
        sgd_(&[p.shallow_clone()], &[t(&[0.1, 0.2])], Some(&[buf.shallow_clone()]), 0.1, 0.9, true, 0.0).unwrap();
        let b = [0.9 * 0.5 + 0.1, 0.9 * -0.5 + 0.2];
        assert_eq!(values(&buf), b);
        let expected = [1.0 - 0.1 * (0.1 + 0.9 * b[0]), 2.0 - 0.1 * (0.2 + 0.9 * b[1])];
        assert!(values(&p).iter().zip(expected).all(|(a, e)| (a - e).abs() < 1e-15), "{:?}", values(&p));
    }

    #[test]
    fn unscale_divides_and_flags_only_non_finite_gradients() {
        let inv = Tensor::from_slice(&[0.5f32]);
        let grads = [Tensor::from_slice(&[2.0f32, 4.0]), Tensor::from_slice(&[6.0f32])];
        let found = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        unscale_(&grads, &found, &inv).unwrap();
        assert_eq!(Vec::<f32>::try_from(&grads[0]).unwrap(), [1.0, 2.0]);
        assert_eq!(found.double_value(&[0]), 0.0);
        unscale_(&[Tensor::from_slice(&[1.0f32, f32::INFINITY])], &found, &inv).unwrap();
        assert_eq!(found.double_value(&[0]), 1.0);
    }

    #[test]
    fn empty_lists_change_nothing() {
        lerp_(&[], &[], 0.5).unwrap();
        sgd_(&[], &[], Some(&[]), 0.1, 0.9, false, 0.0).unwrap();
        unscale_(&[], &Tensor::zeros([1], (Kind::Float, Device::Cpu)), &Tensor::ones([1], (Kind::Float, Device::Cpu)))
            .unwrap();
    }

    #[test]
    fn a_libtorch_error_comes_back_as_a_message() {
        let err = lerp_(&[t(&[1.0, 2.0])], &[t(&[1.0, 2.0, 3.0])], 0.5).unwrap_err();
        assert!(err.contains("size"), "{err}");
    }
}
