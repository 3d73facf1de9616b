//! Convolutions by Winograd's minimal filtering on CPUs with AVX-512 (`csrc/winograd.cpp`): `act(conv(x) +
//! bias)` with zero padding, stride 1, for the inference form of ResNets' and Inception-ResNet's 3×3
//! convolutions (F(4×4, 3×3): 4× fewer multiplications than the direct convolution's) and of Inception's
//! 1×7, 7×1, 1×3 and 3×1 ones (F(m, r) along one axis: 2–2.3×).
//!
//! The transforms are Cook–Toom's: interpolation at a few small points and ∞, G and Aᵀ from the points,
//! Bᵀ solved from the identity y = Aᵀ[(G g) ⊙ (Bᵀ d)] (in f64, once per layer). The 3×3 kernel has its
//! Bᵀ and Aᵀ written out; the tests check they are these.

use std::ffi::{c_char, c_int};

use tch::{Kind, Tensor};
use torch_sys::C_tensor;

use crate::fused_conv::PostOp;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn orchard_winograd_conv(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        u: *const C_tensor,
        bias: *const C_tensor,
        outputs: i64,
        top: i64,
        left: i64,
        out_h: i64,
        out_w: i64,
        act: c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn orchard_winograd_line_conv(
        out: *mut *mut C_tensor,
        x: *const C_tensor,
        u: *const C_tensor,
        bias: *const C_tensor,
        bt: *const C_tensor,
        at: *const C_tensor,
        outputs: i64,
        rows: c_int,
        before: i64,
        out_h: i64,
        out_w: i64,
        act: c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// Whether this CPU runs the kernels (AVX-512F, as the depthwise kernel).
pub fn available() -> bool {
    crate::pooled_depthwise::available()
}

/// Whether the kernels read `x`: 4-D f32 on the CPU, channels-last, dense or a slice of a dense tensor's
/// channels (an Inception branch's input).
pub fn reads(x: &Tensor) -> bool {
    let (Ok([_, c, h, w]), Ok([sn, sc, sh, sw])) = (<[i64; 4]>::try_from(x.size()), <[i64; 4]>::try_from(x.stride()))
    else {
        return false;
    };
    x.kind() == Kind::Float && x.device() == tch::Device::Cpu && sc == 1 && sw >= c && sh == w * sw && sn == h * sh
}

/// Cook–Toom's F(m, r) over `points` (α − 1 = m + r − 2 of them) and ∞, in f64: (Aᵀ m × α, G α × r, Bᵀ α × α).
pub fn cook_toom(m: usize, r: usize, points: &[f64]) -> (Tensor, Tensor, Tensor) {
    let alpha = m + r - 1;
    assert_eq!(points.len(), alpha - 1, "F({m}, {r}) interpolates at {} points and ∞", alpha - 1);
    let (mut at, mut g) = (vec![0.0; m * alpha], vec![0.0; alpha * r]);
    for (i, &a) in points.iter().enumerate() {
        let f: f64 = points.iter().filter(|&&b| b != a).map(|&b| a - b).product();
        for j in 0..m {
            at[j * alpha + i] = a.powi(j as i32);
        }
        for k in 0..r {
            g[i * r + k] = a.powi(k as i32) / f;
        }
    }
    at[(m - 1) * alpha + alpha - 1] = 1.0;
    g[(alpha - 1) * r + r - 1] = 1.0;
    // Bᵀ: Σ_i Aᵀ[j][i] G[i][k] Bᵀ[i][p] = [p = j + k] for every output j, tap k and input p.
    let (mut q, mut rhs) = (vec![0.0; m * r * alpha], vec![0.0; m * r * alpha]);
    for j in 0..m {
        for k in 0..r {
            for i in 0..alpha {
                q[(j * r + k) * alpha + i] = at[j * alpha + i] * g[i * r + k];
            }
            rhs[(j * r + k) * alpha + j + k] = 1.0;
        }
    }
    let f64s = |v: &[f64], rows: usize, cols: usize| Tensor::from_slice(v).view([rows as i64, cols as i64]);
    let bt = f64s(&q, m * r, alpha).linalg_pinv(1e-12, false).matmul(&f64s(&rhs, m * r, alpha));
    (f64s(&at, m, alpha), f64s(&g, alpha, r), bt)
}

/// The points each scheme interpolates at: the smallest (the least rounding) for its tile.
const SQUARE_POINTS: [f64; 5] = [0.0, 1.0, -1.0, 2.0, -2.0];

/// F(m, r) along one axis for an r-tap kernel, and its points; `None` for another r.
fn line_scheme(r: i64) -> Option<(usize, &'static [f64])> {
    match r {
        // 1×3 and 3×1 (Inception-ResNet's block8, 8×8 maps: two tiles of 4).
        3 => Some((4, &SQUARE_POINTS)),
        // 1×7 and 7×1 (block17, 17×17 maps: six tiles of 3, one output wasted): 21 multiplications in 9.
        7 => Some((3, &[0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0])),
        _ => None,
    }
}

/// A kernel size's transforms in f64: G (α × r), Bᵀ (α × α), Aᵀ (m × α), for the training node
/// ([`crate::winograd_train`]), which transforms the weights itself each step.
pub(crate) struct Matrices {
    pub g: Tensor,
    pub bt: Tensor,
    pub at: Tensor,
}

impl Matrices {
    /// The scheme of a kh×kw `kernel`: F(4×4, 3×3) for 3×3 (whose Bᵀ and Aᵀ the kernel has written out), F(m,
    /// r) for 1×r and r×1; `None` for another kernel.
    pub(crate) fn of(kernel: [i64; 2]) -> Option<Matrices> {
        let (at, g, bt) = match kernel {
            [3, 3] => cook_toom(4, 3, &SQUARE_POINTS),
            [1, r] | [r, 1] => {
                let (m, points) = line_scheme(r)?;
                cook_toom(m, r as usize, points)
            }
            _ => return None,
        };
        Some(Matrices { g, bt, at })
    }
}

/// Which scheme a layer runs.
#[derive(Debug)]
enum Scheme {
    /// F(4×4, 3×3).
    Square,
    /// F(m, r) along the rows (an r×1 kernel) or the columns (1×r); Bᵀ and Aᵀ in f32 for the kernel, G's
    /// left inverse (f64) to read the weights back.
    Line { rows: bool, bt: Tensor, at: Tensor, g_inverse: Tensor },
}

/// A convolution's transformed weights and bias as the kernels read them.
#[derive(Debug)]
pub struct PackedWinograd {
    /// terms × C_in × C_out': U = G g Gᵀ (3×3) or G g (one axis) for each pair of channels, computed in f64;
    /// the outputs padded with zeros to a multiple of 16 (C_out').
    u: Tensor,
    bias: Tensor,
    outputs: i64,
    scheme: Scheme,
}

impl PackedWinograd {
    /// From an N×C×kh×kw weight and N bias: 3×3, or 1×r and r×1 for r of 3 and 7; `None` for another kernel.
    pub fn new(weight: &Tensor, bias: &Tensor) -> Option<PackedWinograd> {
        let [outputs, channels, kh, kw]: [i64; 4] = weight.size().try_into().ok()?;
        tch::no_grad(|| {
            let w = weight.to_kind(Kind::Double);
            let (u, scheme) = if [kh, kw] == [3, 3] {
                let (_, g, _) = cook_toom(4, 3, &SQUARE_POINTS);
                // [N, C, 6, 6] = G w Gᵀ, then ξ = 6·row + column first.
                let u = g.matmul(&w).matmul(&g.transpose(0, 1));
                (u.permute([2, 3, 1, 0]).reshape([36, channels, outputs]), Scheme::Square)
            } else if kh == 1 || kw == 1 {
                let rows = kw == 1;
                let (m, points) = line_scheme(kh.max(kw))?;
                let r = (kh * kw) as usize;
                let (at, g, bt) = cook_toom(m, r, points);
                // [N, C, r] → G w = [N, C, α] → α first.
                let u = w.view([outputs, channels, r as i64, 1]);
                let u = g.matmul(&u).squeeze_dim(-1).permute([2, 1, 0]);
                let (bt, at) = (bt.to_kind(Kind::Float).contiguous(), at.to_kind(Kind::Float).contiguous());
                (u, Scheme::Line { rows, bt, at, g_inverse: g.linalg_pinv(1e-12, false) })
            } else {
                return None;
            };
            let u = u.to_kind(Kind::Float).constant_pad_nd([0, (outputs + 15) / 16 * 16 - outputs]).contiguous();
            let bias = bias.to_kind(Kind::Float).contiguous();
            Some(PackedWinograd { u, bias, outputs, scheme })
        })
    }

    /// The N×C×kh×kw weight back from its transform (within f32 rounding of the transform).
    pub fn weight(&self) -> Tensor {
        tch::no_grad(|| {
            let terms = self.u.size()[0];
            let channels = self.u.size()[1];
            let u = self.u.narrow(2, 0, self.outputs).to_kind(Kind::Double);
            let weight = match &self.scheme {
                Scheme::Square => {
                    let g = cook_toom(4, 3, &SQUARE_POINTS).1;
                    let l = g.linalg_pinv(1e-12, false);
                    let u = u.view([6, 6, channels, self.outputs]).permute([3, 2, 0, 1]);
                    l.matmul(&u).matmul(&l.transpose(0, 1))
                }
                Scheme::Line { rows, g_inverse, .. } => {
                    let u = u.view([terms, channels, self.outputs]).permute([2, 1, 0]).unsqueeze(-1);
                    let taps = g_inverse.matmul(&u);
                    let r = taps.size()[2];
                    taps.view(if *rows { [self.outputs, channels, r, 1] } else { [self.outputs, channels, 1, r] })
                }
            };
            weight.to_kind(Kind::Float).contiguous()
        })
    }

    /// Whether a scheme runs a kh×kw `kernel` padded symmetrically by `padding` = [rows, columns]: 3×3 padded
    /// by at most 2, or 1×r and r×1 for r of 3 and 7 padded by less than r along their axis and not across.
    pub fn runs(kernel: [i64; 2], padding: [i64; 2]) -> bool {
        match kernel {
            [3, 3] => padding.iter().all(|&p| (0..=2).contains(&p)),
            [1, r] => line_scheme(r).is_some() && padding[0] == 0 && (0..r).contains(&padding[1]),
            [r, 1] => line_scheme(r).is_some() && padding[1] == 0 && (0..r).contains(&padding[0]),
            _ => false,
        }
    }

    /// Whether the kernels apply `act` (none and ReLU).
    pub fn applies(act: PostOp) -> bool {
        matches!(act, PostOp::None | PostOp::Relu)
    }

    /// The convolution of x (see [`reads`]) padded with zeros by `before` = [top, left] rows and columns (a
    /// 3×3 kernel: at most 2 each; one axis: at most r − 1 along it, none across), `output` = [h, w], then
    /// `act` (see [`PackedWinograd::applies`]); a new channels-last tensor.
    pub fn forward(&self, x: &Tensor, before: [i64; 2], output: [i64; 2], act: PostOp) -> Result<Tensor, String> {
        let act = match act {
            PostOp::None => 0,
            PostOp::Relu => 1,
            other => return Err(format!("the Winograd kernels apply no {other:?}")),
        };
        let (u, bias, outputs, [out_h, out_w]) = (self.u.as_ptr(), self.bias.as_ptr(), self.outputs, output);
        let along = match &self.scheme {
            Scheme::Line { rows, .. } => {
                let (along, across) = if *rows { (before[0], before[1]) } else { (before[1], before[0]) };
                if across != 0 {
                    return Err("a one-axis kernel pads only along its axis".into());
                }
                along
            }
            Scheme::Square => 0,
        };
        // SAFETY: every pointer is live for the call; `call` takes over the tensor the shim makes.
        crate::fused_conv::call(|out, err, len| unsafe {
            match &self.scheme {
                Scheme::Square => orchard_winograd_conv(
                    out,
                    x.as_ptr(),
                    u,
                    bias,
                    outputs,
                    before[0],
                    before[1],
                    out_h,
                    out_w,
                    act,
                    err,
                    len,
                ),
                Scheme::Line { rows, bt, at, .. } => orchard_winograd_line_conv(
                    out,
                    x.as_ptr(),
                    u,
                    bias,
                    bt.as_ptr(),
                    at.as_ptr(),
                    outputs,
                    c_int::from(*rows),
                    along,
                    out_h,
                    out_w,
                    act,
                    err,
                    len,
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Cook–Toom at 0, ±1, ±2 gives Lavin's F(4×4, 3×3) transforms, the ones `csrc/winograd.cpp` writes out;
    /// and every scheme's transforms compute the correlation exactly (in f64).
    #[test]
    fn cook_toom_gives_lavins_transforms_and_exact_correlations() {
        let (at, g, bt) = cook_toom(4, 3, &SQUARE_POINTS);
        let lavin_bt = [
            [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
            [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
            [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
            [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
            [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
            [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
        ];
        let lavin_at = [
            [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
            [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
            [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
        ];
        let lavin_g = [
            [0.25, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        let close = |t: &Tensor, rows: Vec<f64>, name: &str| {
            let expected = Tensor::from_slice(&rows).view(t.size().as_slice());
            let error = (t - expected).abs().max().double_value(&[]);
            assert!(error < 1e-12, "{name} differs from Lavin's by {error:e}");
        };
        close(&bt, lavin_bt.concat(), "Bᵀ");
        close(&at, lavin_at.concat(), "Aᵀ");
        close(&g, lavin_g.concat(), "G");
        tch::manual_seed(2);
        for r in [3, 7] {
            let (m, points) = line_scheme(r).unwrap();
            let (at, g, bt) = cook_toom(m, r as usize, points);
            let alpha = (m as i64) + r - 1;
            let taps = Tensor::randn([r], (Kind::Double, Device::Cpu));
            let d = Tensor::randn([alpha], (Kind::Double, Device::Cpu));
            let y = at.mv(&(g.mv(&taps) * bt.mv(&d)));
            let direct: Vec<f64> =
                (0..m as i64).map(|j| (d.narrow(0, j, r) * &taps).sum(Kind::Double).double_value(&[])).collect();
            let error = (y - Tensor::from_slice(&direct)).abs().max().double_value(&[]);
            assert!(error < 1e-9, "F({m}, {r}) misses the correlation by {error:e}");
        }
    }

    /// Each kernel's output is libtorch's convolution (f64) within f32 rounding: 3×3 with padding 0 to 2 on
    /// either side, 1×7, 7×1, 1×3 and 3×1 padded along their axis; sizes that fill whole tiles and that do
    /// not, channels that fill the 16 lanes and that do not, with and without ReLU, dense input and a slice
    /// of a wider tensor's channels; the weight read back from its transform is the one given.
    #[test]
    fn the_kernels_compute_the_convolution_and_give_the_weights_back() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(21);
        let cpu = (Kind::Float, Device::Cpu);
        // (batch, in, out, [kh, kw], [top, bottom, left, right], h, w, act)
        let cases = [
            (2, 16, 32, [3, 3], [1, 1, 1, 1], 12, 12, PostOp::Relu),
            (3, 5, 7, [3, 3], [0, 0, 0, 0], 13, 10, PostOp::None),
            (1, 24, 20, [3, 3], [2, 1, 0, 2], 9, 11, PostOp::Relu),
            (2, 16, 17, [1, 7], [0, 0, 3, 3], 17, 17, PostOp::Relu),
            (2, 20, 16, [7, 1], [3, 3, 0, 0], 17, 13, PostOp::None),
            (2, 32, 48, [1, 3], [0, 0, 1, 1], 8, 8, PostOp::Relu),
            (3, 18, 33, [3, 1], [1, 1, 0, 0], 7, 5, PostOp::Relu),
            (1, 8, 16, [1, 7], [0, 0, 0, 0], 4, 9, PostOp::None),
        ];
        for (i, &(n, c_in, c_out, [kh, kw], [top, bottom, left, right], h, w, act)) in cases.iter().enumerate() {
            let weight = Tensor::randn([c_out, c_in, kh, kw], cpu) * (2.0 / (kh * kw * c_in) as f64).sqrt();
            let bias = Tensor::randn([c_out], cpu) * 0.1;
            let packed = PackedWinograd::new(&weight, &bias).expect("a kernel the schemes run");
            let wide = crate::channels_last(&Tensor::randn([n, c_in + 3, h, w], cpu));
            for (what, x) in
                [("dense", crate::channels_last(&wide.narrow(1, 0, c_in))), ("a slice", wide.narrow(1, 2, c_in))]
            {
                assert!(reads(&x), "case {i}: {what} is read");
                let padded = x.to_kind(Kind::Double).constant_pad_nd([left, right, top, bottom]);
                let mut expected = padded.conv2d(
                    &weight.to_kind(Kind::Double),
                    Some(&bias.to_kind(Kind::Double)),
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    1,
                );
                if act == PostOp::Relu {
                    expected = expected.relu();
                }
                let [_, _, oh, ow]: [i64; 4] = expected.size().try_into().unwrap();
                let out = packed.forward(&x, [top, left], [oh, ow], act).unwrap();
                assert_eq!(out.size(), expected.size(), "case {i}");
                let scale = expected.abs().max().double_value(&[]);
                let error = (out.to_kind(Kind::Double) - &expected).abs().max().double_value(&[]) / scale;
                assert!(error < 1e-5, "case {i}, {what}: differs by {error:e} of the largest output");
            }
            let error = (packed.weight() - &weight).abs().max().double_value(&[]);
            assert!(error < 1e-6, "case {i}: the weight read back differs by {error:e}");
        }
        assert!(!reads(&Tensor::randn([1, 4, 5, 5], cpu)), "NCHW is not read");
        let runs = [([3, 3], [2, 0]), ([1, 7], [0, 3]), ([7, 1], [6, 0]), ([3, 1], [0, 0])];
        let refused = [([3, 3], [3, 1]), ([1, 7], [1, 3]), ([7, 1], [7, 0]), ([5, 5], [2, 2]), ([1, 5], [0, 2])];
        assert!(runs.iter().all(|&(k, p)| PackedWinograd::runs(k, p)), "a scheme refused a kernel it runs");
        assert!(!refused.iter().any(|&(k, p)| PackedWinograd::runs(k, p)), "a scheme took a kernel it cannot run");
        let line = PackedWinograd::new(&Tensor::randn([4, 4, 1, 7], cpu), &Tensor::zeros([4], cpu)).unwrap();
        let x = crate::channels_last(&Tensor::randn([1, 4, 5, 9], cpu));
        assert!(line.forward(&x, [1, 3], [7, 9], PostOp::None).is_err(), "a 1×7 kernel padded across its axis");
        assert!(PackedWinograd::new(&Tensor::randn([4, 4, 5, 5], cpu), &Tensor::zeros([4], cpu)).is_none());
        assert!(PackedWinograd::new(&Tensor::randn([4, 4, 1, 5], cpu), &Tensor::zeros([4], cpu)).is_none());
    }
}
