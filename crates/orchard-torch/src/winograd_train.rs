//! Training convolutions by Winograd's minimal filtering (`csrc/winograd_train.cpp`): one autograd node
//! whose forward and input gradient run [`crate::winograd`]'s kernels (the input gradient of a stride-1
//! convolution is a stride-1 convolution of the output gradient with the kernel flipped), and whose weight
//! gradient is a sum over the tiles of the same transforms' products (the input's tiles' and the output
//! gradient's, by the adjoint of the output transform). 3×3 kernels by F(4×4, 3×3), 1×r and r×1 (r of 3
//! and 7) by F(m, r) along their axis; the weights are transformed afresh in each pass, since they change
//! every step.
//!
//! Callers ask [`applies`] and run libtorch's convolution otherwise.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::{Entry, HashMap};
use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicUsize, Ordering};

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::autocast::Autocast;
use crate::fused_conv::call;
use crate::winograd::{self, Matrices};

extern "C" {
    fn orchard_grad_enabled() -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn orchard_winograd_conv_train(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        w: *const C_tensor,
        g: *const C_tensor,
        bt: *const C_tensor,
        at: *const C_tensor,
        padding: *const i64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// The fewest output pixels (N · H' · W') a call must have: twice the inference form's floor, since each pass
/// here transforms its weights afresh (ResNet's 512 → 512 at 7², batch 16, 784 pixels: a 7.5 ms transform
/// against the 6.8 ms Winograd saved; 256 → 256 at 14², 3136 pixels: 0.8 ms against 7.6).
pub const MIN_PIXELS: i64 = 1024;

thread_local! {
    /// Set while [`direct`] runs on this thread.
    static DIRECT: Cell<bool> = const { Cell::new(false) };
}

/// How many convolutions [`conv`] has run in this process (what tests count).
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` with libtorch's convolutions instead of this node on this thread, to compare the two.
pub fn direct<T>(f: impl FnOnce() -> T) -> T {
    crate::with_flag(&DIRECT, f)
}

/// How many convolutions [`conv`] has run in this process.
pub fn runs() -> usize {
    RUNS.load(Ordering::Relaxed)
}

/// Whether autograd records operations on this thread now (libtorch's grad mode).
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag.
    unsafe { orchard_grad_enabled() != 0 }
}

/// Whether [`conv`] runs `x` (N×C×H×W) through the `weight` (K×C×kh×kw) padded symmetrically by `padding`
/// = [rows, columns] at stride 1: a kernel a scheme runs, channels-last f32 on a CPU with AVX-512F, CPU
/// autocast off, at least [`MIN_PIXELS`] output pixels, and not inside [`direct`].
pub fn applies(x: &Tensor, weight: &Tensor, padding: [i64; 2]) -> bool {
    let (Ok([n, c, h, w]), Ok([k, wc, kh, kw])) = (<[i64; 4]>::try_from(x.size()), <[i64; 4]>::try_from(weight.size()))
    else {
        return false;
    };
    let pixels = n * (h + 2 * padding[0] - kh + 1).max(0) * (w + 2 * padding[1] - kw + 1).max(0);
    k > 0
        && !DIRECT.with(Cell::get)
        && wc == c
        && winograd::PackedWinograd::runs([kh, kw], padding)
        && pixels >= MIN_PIXELS
        && x.kind() == Kind::Float
        && weight.kind() == Kind::Float
        && x.device() == Device::Cpu
        && weight.device() == Device::Cpu
        && crate::is_channels_last_dense(x)
        && !Autocast::is_enabled(Device::Cpu)
        && winograd::available()
}

thread_local! {
    /// Each kernel size's scheme in f32 (the weight transform, Bᵀ, Aᵀ), made once per thread.
    static SCHEMES: RefCell<HashMap<[i64; 2], [Tensor; 3]>> = RefCell::new(HashMap::new());
}

/// `conv(x, weight)` padded symmetrically by `padding` = [rows, columns], stride 1, in training: one autograd
/// node, differentiable in `x` and `weight`. Inputs must pass [`applies`].
pub fn conv(x: &Tensor, weight: &Tensor, padding: [i64; 2]) -> Result<Tensor, String> {
    let kernel: [i64; 2] = [weight.size()[2], weight.size()[3]];
    SCHEMES.with(|schemes| {
        let mut schemes = schemes.borrow_mut();
        let [g, bt, at] = match schemes.entry(kernel) {
            Entry::Occupied(scheme) => scheme.into_mut(),
            Entry::Vacant(slot) => {
                let Matrices { g, bt, at } =
                    Matrices::of(kernel).ok_or_else(|| format!("no Winograd scheme for {kernel:?}"))?;
                // The weight transform as one matrix over the taps: G ⊗ G for 3×3 ([a, b, i, j] = G[a][i] G[b][j]).
                let t = match kernel {
                    [3, 3] => (g.unsqueeze(1).unsqueeze(3) * g.unsqueeze(0).unsqueeze(2)).reshape([36, 9]),
                    _ => g,
                };
                let f32s = |t: Tensor| t.to_kind(Kind::Float).contiguous();
                slot.insert([f32s(t), f32s(bt), f32s(at)])
            }
        };
        RUNS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: every handle is live for the call; `padding` holds the two values the shim reads.
        call(|out, err, len| unsafe {
            orchard_winograd_conv_train(
                out,
                x.as_ptr(),
                weight.as_ptr(),
                g.as_ptr(),
                bt.as_ptr(),
                at.as_ptr(),
                padding.as_ptr(),
                err,
                len,
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(t: &Tensor) -> Tensor {
        t.detach().copy().set_requires_grad(true)
    }

    /// The largest gap relative to the reference's largest magnitude.
    fn gap(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.size(), b.size());
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-12)
    }

    /// Output, input gradient and weight gradient equal libtorch's convolution (in f64) within the
    /// transforms' rounding, for 3×3 kernels padded by 0 ("valid") and 1 ("same"), 1×7, 7×1, 1×3 and 3×1
    /// padded as "same", channel counts on and off the kernels' 16 lanes, odd image sides.
    #[test]
    fn the_node_gives_libtorchs_values_and_gradients() {
        if !winograd::available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(3);
        // Kernel, padding, input and output channels, image side.
        type Case = ([i64; 2], [i64; 2], i64, i64, i64);
        let cases: [Case; 7] = [
            ([3, 3], [1, 1], 16, 32, 13),
            ([3, 3], [0, 0], 19, 24, 15),
            ([3, 3], [1, 1], 3, 40, 11),
            ([1, 7], [0, 3], 20, 36, 17),
            ([7, 1], [3, 0], 33, 16, 17),
            ([1, 3], [0, 1], 16, 18, 12),
            ([3, 1], [1, 0], 24, 48, 11),
        ];
        for (kernel, padding, c, k, side) in cases {
            let what = format!("{kernel:?} padded {padding:?}, {c} → {k} at {side}");
            let x = crate::channels_last(&Tensor::randn([8, c, side, side + 2], (Kind::Float, Device::Cpu)));
            let w = Tensor::randn([k, c, kernel[0], kernel[1]], (Kind::Float, Device::Cpu)) * 0.2;
            assert!(applies(&x, &w, padding), "{what}: applies");
            // F(3, 7)'s points reach 3 and ½: its weight gradient, a sum over every tile of products of
            // transforms, rounds to ~2e-5 here (1.3e-5 at IRv2's 17², batch 16).
            let weight_tolerance = if kernel.contains(&7) { 5e-5 } else { 1e-5 };
            let (x1, w1) = (leaf(&x), leaf(&w));
            let y = conv(&x1, &w1, padding).unwrap();
            let (x2, w2) = (leaf(&x.to_kind(Kind::Double)), leaf(&w.to_kind(Kind::Double)));
            let reference = x2.conv2d(&w2, None::<&Tensor>, [1, 1], padding, [1, 1], 1);
            let upstream = Tensor::randn(reference.size(), (Kind::Double, Device::Cpu));
            (&y * upstream.to_kind(Kind::Float)).sum(Kind::Float).backward();
            (&reference * &upstream).sum(Kind::Double).backward();
            for (name, got, want, tolerance) in [
                ("output", y.detach(), reference.detach(), 1e-5),
                ("input gradient", x1.grad(), x2.grad(), 1e-5),
                ("weight gradient", w1.grad(), w2.grad(), weight_tolerance),
            ] {
                let g = gap(&got.to_kind(Kind::Double), &want);
                assert!(g < tolerance, "{what}: {name} off by {g:.2e}");
            }
            assert!(crate::is_channels_last_dense(&y), "{what}: channels-last output");
        }
    }

    /// Where a scheme does not run the layer, or too few pixels would, [`applies`] says no; the node refuses
    /// malformed arguments with an error instead of computing something else.
    #[test]
    fn the_node_takes_only_what_it_runs() {
        if !winograd::available() {
            return;
        }
        let x = crate::channels_last(&Tensor::randn([4, 8, 16, 16], (Kind::Float, Device::Cpu)));
        let w = |kh, kw| Tensor::randn([8, 8, kh, kw], (Kind::Float, Device::Cpu));
        assert!(applies(&x, &w(3, 3), [1, 1]));
        assert!(!applies(&x, &w(5, 5), [2, 2]), "5×5: no scheme");
        assert!(!applies(&x, &w(1, 7), [1, 3]), "a one-axis kernel padded across");
        assert!(!applies(&x.contiguous(), &w(3, 3), [1, 1]), "contiguous NCHW");
        assert!(!applies(&x.narrow(0, 0, 1), &w(3, 3), [1, 1]), "256 output pixels, below the floor");
        assert!(!applies(&x, &Tensor::randn([8, 4, 3, 3], (Kind::Float, Device::Cpu)), [1, 1]), "channels differ");
        let err = conv(&x, &w(5, 5), [2, 2]).unwrap_err();
        assert!(err.contains("no Winograd scheme"), "{err}");
        let err = conv(&x.contiguous(), &w(3, 3), [1, 1]).unwrap_err();
        assert!(err.contains("channels-last"), "{err}");
    }
}
