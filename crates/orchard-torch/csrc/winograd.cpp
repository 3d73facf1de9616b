// Convolutions in their inference form by Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016), for CPUs with AVX-512:
//   y = act(conv(pad(x, zeros)) + bias),  act = none/ReLU
// over tiles of the output. A tile's inputs d give its outputs Aᵀ[(G g) ⊙ (Bᵀ d)], the ⊙ summed over the input
// channels: one matrix product per term ξ, M[ξ] = V[ξ] · U[ξ], with V = Bᵀ d the tiles' transforms and
// U = G g the weights' (made by the caller once). Two schemes:
//   - 3×3 stride 1, F(4×4, 3×3): a 6×6 input tile gives 4×4 outputs, 36 terms for 144 multiplications of the
//     direct convolution (4×); Bᵀ and Aᵀ hand-written (interpolation at 0, ±1, ±2, ∞).
//   - 1×r and r×1 stride 1 (Inception's 1×7, 7×1, 1×3, 3×1), F(m, r) along one axis: α = m + r − 1 inputs give
//     m outputs, α terms for m·r multiplications; Bᵀ and Aᵀ given by the caller (any points), applied as
//     matrices (α² multiply-adds a vector of 16 channels, small beside the products' α·K).
// The price: the two transforms, memory-bound passes over the tiles (V and M are α/m² times the input and
// output), and rounding (the transforms' coefficients reach 8: see the tests' tolerances).
//
// Tiles go in chunks whose transforms fit in the last-level cache: a chunk's tiles are transformed (every
// thread, a few tiles each), multiplied (tiles.h's register tiles, blocked as pointwise.cpp's product: each
// thread a term and a block of tiles at a time, reading U as it is: MKL's batched product packed all of U
// again for every chunk and scaled its output first, a third of its time), and transformed back into the
// output with the bias and activation applied in registers.
#include "winograd.h"

#include "shim.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;
constexpr int kAlpha = 6;  // F(4×4, 3×3): a tile's side, 4 outputs + 3 − 1
constexpr int kOut = 4;
constexpr int kMaxAlpha = 10;    // the longest tile of a 1-D scheme
constexpr int64_t kDepth = 256;  // C per block of a product: 256 × 64 outputs of U is 64 KiB
constexpr int64_t kTiles = 96;   // tiles per block: 96 × 256 of V is 96 KiB

// What every scheme's tiles share: the input's and output's sizes and where each tile's transforms go.
struct Layout {
  int64_t N, C, H, W, K, Kp, OH, OW;  // Kp: K padded to 16, the row length of U and M
  int64_t pixel;                      // floats from one input pixel to the next: C, or more for a channel slice
  int64_t chunk;                      // tiles in a chunk: V[ξ] is chunk × C, M[ξ] chunk × Kp
};

inline __mmask16 lanes(int64_t remaining) {
  return remaining >= kLanes ? 0xFFFF : static_cast<__mmask16>((1u << remaining) - 1);
}

#pragma GCC push_options
#pragma GCC target("avx512f")

#include "tiles.h"
#include "grad_tiles.h"

// Bᵀ d over 6 values (d, at stride `s` in `in`), into out[0..6) at stride `t`.
inline void input_1d(const __m512* in, int s, __m512* out, int t) {
  const __m512 d0 = in[0], d1 = in[s], d2 = in[2 * s], d3 = in[3 * s], d4 = in[4 * s], d5 = in[5 * s];
  const __m512 four = _mm512_set1_ps(4.f), five = _mm512_set1_ps(-5.f), two = _mm512_set1_ps(2.f);
  const __m512 m4 = _mm512_set1_ps(-4.f);
  out[0] = _mm512_fmadd_ps(four, d0, _mm512_fmadd_ps(five, d2, d4));
  out[t] = _mm512_fmadd_ps(m4, _mm512_add_ps(d1, d2), _mm512_add_ps(d3, d4));
  out[2 * t] = _mm512_fmadd_ps(four, _mm512_sub_ps(d1, d2), _mm512_sub_ps(d4, d3));
  out[3 * t] = _mm512_fmadd_ps(two, _mm512_sub_ps(d3, d1), _mm512_sub_ps(d4, d2));
  out[4 * t] = _mm512_fmadd_ps(two, _mm512_sub_ps(d1, d3), _mm512_sub_ps(d4, d2));
  out[5 * t] = _mm512_fmadd_ps(four, d1, _mm512_fmadd_ps(five, d3, d5));
}

// Aᵀ m over 6 values (at stride `s`), into out[0..4) at stride `t`.
inline void output_1d(const __m512* in, int s, __m512* out, int t) {
  const __m512 m0 = in[0], m1 = in[s], m2 = in[2 * s], m3 = in[3 * s], m4 = in[4 * s], m5 = in[5 * s];
  const __m512 a = _mm512_add_ps(m1, m2), b = _mm512_sub_ps(m1, m2);
  const __m512 c = _mm512_add_ps(m3, m4), d = _mm512_sub_ps(m3, m4);
  out[0] = _mm512_add_ps(_mm512_add_ps(m0, a), c);
  out[t] = _mm512_fmadd_ps(_mm512_set1_ps(2.f), d, b);
  out[2 * t] = _mm512_fmadd_ps(_mm512_set1_ps(4.f), c, a);
  out[3 * t] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.f), d, b), m5);
}

// A g over 4 values (at stride `s`), into out[0..6) at stride `t`: the adjoint of output_1d, which takes
// an output tile's gradient to its terms' (the weight gradient's transform of the output gradient).
inline void output_grad_1d(const __m512* in, int s, __m512* out, int t) {
  const __m512 g0 = in[0], g1 = in[s], g2 = in[2 * s], g3 = in[3 * s];
  const __m512 a = _mm512_add_ps(g0, g2), b = _mm512_add_ps(g1, g3);
  const __m512 c = _mm512_fmadd_ps(_mm512_set1_ps(4.f), g2, g0);
  const __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(8.f), g3, _mm512_add_ps(g1, g1));
  out[0] = g0;
  out[t] = _mm512_add_ps(a, b);
  out[2 * t] = _mm512_sub_ps(a, b);
  out[3 * t] = _mm512_add_ps(c, d);
  out[4 * t] = _mm512_sub_ps(c, d);
  out[5 * t] = g3;
}

inline __m512 activate(__m512 v, bool relu) { return relu ? _mm512_max_ps(v, _mm512_setzero_ps()) : v; }

// F(4×4, 3×3) over the image padded by `top` and `left`.
struct Square {
  Layout l;
  int64_t top, left, tiles_h, tiles_w;
  static constexpr int terms = kAlpha * kAlpha;

  // V[ξ][tile][c] of the chunk's tile `tile` (the image's tile `global`), every channel.
  void input(const float* x, int64_t global, float* v, int64_t tile) const {
    const int64_t n = global / (tiles_h * tiles_w), rest = global % (tiles_h * tiles_w);
    const int64_t y0 = rest / tiles_w * kOut - top, x0 = rest % tiles_w * kOut - left;
    unsigned rows = 0, cols = 0;  // the tile's rows and columns inside the image, as bits
    for (int i = 0; i < kAlpha; i++) {
      rows |= (y0 + i >= 0 && y0 + i < l.H) << i;
      cols |= (x0 + i >= 0 && x0 + i < l.W) << i;
    }
    const float* image = x + n * l.H * l.W * l.pixel;
    __m512 d[terms], t[terms];
    for (int64_t c = 0; c < l.C; c += kLanes) {
      const __mmask16 m = lanes(l.C - c);
      for (int i = 0; i < kAlpha; i++)
        for (int j = 0; j < kAlpha; j++)
          d[i * kAlpha + j] = (rows >> i & cols >> j & 1)
                                  ? _mm512_maskz_loadu_ps(m, image + ((y0 + i) * l.W + x0 + j) * l.pixel + c)
                                  : _mm512_setzero_ps();
      for (int j = 0; j < kAlpha; j++) input_1d(d + j, kAlpha, t + j, kAlpha);          // columns: Bᵀ d
      for (int i = 0; i < kAlpha; i++) input_1d(t + i * kAlpha, 1, d + i * kAlpha, 1);  // rows: (Bᵀ d) B
      for (int e = 0; e < terms; e++) _mm512_mask_storeu_ps(v + (e * l.chunk + tile) * l.C + c, m, d[e]);
    }
  }

  // The output pixels of the chunk's tile `tile` from M[ξ][tile][·], with the bias and activation.
  void output(const float* mm, int64_t global, int64_t tile, const float* bias, bool relu, float* y) const {
    const int64_t n = global / (tiles_h * tiles_w), rest = global % (tiles_h * tiles_w);
    const int64_t y0 = rest / tiles_w * kOut, x0 = rest % tiles_w * kOut;
    const int64_t rows = std::min<int64_t>(kOut, l.OH - y0), cols = std::min<int64_t>(kOut, l.OW - x0);
    float* image = y + n * l.OH * l.OW * l.K;
    __m512 m[terms], s[kAlpha * kOut], o[kOut * kOut];
    for (int64_t k = 0; k < l.K; k += kLanes) {
      const __mmask16 mask = lanes(l.K - k);
      for (int e = 0; e < terms; e++) m[e] = _mm512_loadu_ps(mm + (e * l.chunk + tile) * l.Kp + k);
      for (int j = 0; j < kAlpha; j++) output_1d(m + j, kAlpha, s + j, kAlpha);    // columns: Aᵀ m, 4 × 6
      for (int i = 0; i < kOut; i++) output_1d(s + i * kAlpha, 1, o + i * kOut, 1);  // rows: (Aᵀ m) A
      const __m512 b = _mm512_maskz_loadu_ps(mask, bias + k);
      for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
          _mm512_mask_storeu_ps(image + ((y0 + i) * l.OW + x0 + j) * l.K + k, mask,
                                activate(_mm512_add_ps(o[i * kOut + j], b), relu));
    }
  }

  // dM[ξ][tile][·] of the chunk's tile `tile` from the output gradient dy (laid out as the output): the
  // adjoint of `output`, outputs beyond the image counting as zero.
  void output_grad(const float* dy, int64_t global, int64_t tile, float* mm) const {
    const int64_t n = global / (tiles_h * tiles_w), rest = global % (tiles_h * tiles_w);
    const int64_t y0 = rest / tiles_w * kOut, x0 = rest % tiles_w * kOut;
    const int64_t rows = std::min<int64_t>(kOut, l.OH - y0), cols = std::min<int64_t>(kOut, l.OW - x0);
    const float* image = dy + n * l.OH * l.OW * l.K;
    __m512 g[kOut * kOut], s[kAlpha * kOut], d[terms];
    for (int64_t k = 0; k < l.K; k += kLanes) {
      const __mmask16 mask = lanes(l.K - k);
      for (int i = 0; i < kOut; i++)
        for (int j = 0; j < kOut; j++)
          g[i * kOut + j] = i < rows && j < cols
                                ? _mm512_maskz_loadu_ps(mask, image + ((y0 + i) * l.OW + x0 + j) * l.K + k)
                                : _mm512_setzero_ps();
      for (int j = 0; j < kOut; j++) output_grad_1d(g + j, kOut, s + j, kOut);          // columns: A g, 6 × 4
      for (int i = 0; i < kAlpha; i++) output_grad_1d(s + i * kOut, 1, d + i * kAlpha, 1);  // rows: (A g) Aᵀ
      for (int e = 0; e < terms; e++) _mm512_mask_storeu_ps(mm + (e * l.chunk + tile) * l.Kp + k, mask, d[e]);
    }
  }
};

// F(m, r) along one axis (rows for an r×1 kernel, columns for 1×r), padded by `before` along it.
struct Line {
  Layout l;
  int64_t before, alpha, m, along;  // along: tiles along the axis
  bool rows;                        // the axis: rows (r×1) or columns (1×r)
  const float *bt, *at;             // Bᵀ (α × α) and Aᵀ (m × α), row-major
  int terms;

  // Image n, the position across the axis and the tile's first output along it.
  void place(int64_t global, int64_t& n, int64_t& across, int64_t& first) const {
    const int64_t wide = rows ? l.OW : l.OH, per_image = along * wide;
    n = global / per_image;
    const int64_t rest = global % per_image;
    // Rows: tiles of one band of rows side by side (neighbouring columns); columns: a row's tiles in turn.
    across = rows ? rest % wide : rest / along;
    first = (rows ? rest / wide : rest % along) * m;
  }

  void input(const float* x, int64_t global, float* v, int64_t tile) const {
    int64_t n, across, first;
    place(global, n, across, first);
    const int64_t length = rows ? l.H : l.W, step = (rows ? l.W : 1) * l.pixel;
    const float* line = x + n * l.H * l.W * l.pixel + across * (rows ? 1 : l.W) * l.pixel;
    const int64_t start = first - before;
    __m512 d[kMaxAlpha];
    for (int64_t c = 0; c < l.C; c += kLanes) {
      const __mmask16 mask = lanes(l.C - c);
      for (int p = 0; p < alpha; p++)
        d[p] = start + p >= 0 && start + p < length ? _mm512_maskz_loadu_ps(mask, line + (start + p) * step + c)
                                                    : _mm512_setzero_ps();
      for (int e = 0; e < alpha; e++) {
        __m512 sum = _mm512_setzero_ps();
        for (int p = 0; p < alpha; p++)
          if (const float b = bt[e * alpha + p]; b != 0.f) sum = _mm512_fmadd_ps(_mm512_set1_ps(b), d[p], sum);
        _mm512_mask_storeu_ps(v + (e * l.chunk + tile) * l.C + c, mask, sum);
      }
    }
  }

  void output(const float* mm, int64_t global, int64_t tile, const float* bias, bool relu, float* y) const {
    int64_t n, across, first;
    place(global, n, across, first);
    const int64_t length = rows ? l.OH : l.OW, step = (rows ? l.OW : 1) * l.K;
    float* line = y + n * l.OH * l.OW * l.K + across * (rows ? 1 : l.OW) * l.K;
    const int64_t count = std::min<int64_t>(m, length - first);
    __m512 in[kMaxAlpha];
    for (int64_t k = 0; k < l.K; k += kLanes) {
      const __mmask16 mask = lanes(l.K - k);
      for (int e = 0; e < alpha; e++) in[e] = _mm512_loadu_ps(mm + (e * l.chunk + tile) * l.Kp + k);
      const __m512 b = _mm512_maskz_loadu_ps(mask, bias + k);
      for (int j = 0; j < count; j++) {
        __m512 sum = b;
        for (int e = 0; e < alpha; e++)
          if (const float a = at[j * alpha + e]; a != 0.f) sum = _mm512_fmadd_ps(_mm512_set1_ps(a), in[e], sum);
        _mm512_mask_storeu_ps(line + (first + j) * step + k, mask, activate(sum, relu));
      }
    }
  }

  // dM[ξ][tile][·] from the output gradient: the adjoint of `output` (Σ_j Aᵀ[j][ξ] g_j over the tile's
  // outputs inside the image).
  void output_grad(const float* dy, int64_t global, int64_t tile, float* mm) const {
    int64_t n, across, first;
    place(global, n, across, first);
    const int64_t length = rows ? l.OH : l.OW, step = (rows ? l.OW : 1) * l.K;
    const float* line = dy + n * l.OH * l.OW * l.K + across * (rows ? 1 : l.OW) * l.K;
    const int64_t count = std::min<int64_t>(m, length - first);
    __m512 g[kMaxAlpha];
    for (int64_t k = 0; k < l.K; k += kLanes) {
      const __mmask16 mask = lanes(l.K - k);
      for (int j = 0; j < count; j++) g[j] = _mm512_maskz_loadu_ps(mask, line + (first + j) * step + k);
      for (int e = 0; e < alpha; e++) {
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < count; j++)
          if (const float a = at[j * alpha + e]; a != 0.f) sum = _mm512_fmadd_ps(_mm512_set1_ps(a), g[j], sum);
        _mm512_mask_storeu_ps(mm + (e * l.chunk + tile) * l.Kp + k, mask, sum);
      }
    }
  }
};

// M[ξ][t][·] = V[ξ][t][·] · U[ξ] for tiles [t0, t1) of the chunk.
void products(const Layout& l, const float* v, const float* u, float* m, int64_t e, int64_t t0, int64_t t1,
              const std::vector<int>& columns) {
  for (int64_t c0 = 0; c0 < l.C; c0 += kDepth) {
    const int64_t depth = std::min(kDepth, l.C - c0);
    int64_t col = 0;
    for (int V : columns) {
      const int R = rows_for(V);
      for (int64_t t = t0; t < t1; t += R) {
        const Tile tile{v + (e * l.chunk + t) * l.C + c0,
                        l.C,
                        u + (e * l.C + c0) * l.Kp + col,
                        l.Kp,
                        depth,
                        m + (e * l.chunk + t) * l.Kp + col,
                        l.Kp,
                        nullptr,
                        c0 > 0,
                        static_cast<__mmask16>(0xFFFF)};
        kRows[V - 1](static_cast<int>(std::min<int64_t>(R, t1 - t)), tile);
      }
      col += V * kLanes;
    }
  }
}

#pragma GCC pop_options

// How many tiles a chunk holds: its transforms (terms × (C + Kp) floats a tile) in about 4 MiB, within the
// last-level cache; at least one block.
int64_t chunk_tiles(int64_t terms, int64_t C, int64_t Kp, int64_t tiles) {
  constexpr int64_t kBudget = 4 << 20;
  const int64_t per_tile = terms * (C + Kp) * static_cast<int64_t>(sizeof(float));
  return std::min(tiles, std::max<int64_t>(kTiles, kBudget / per_tile / kTiles * kTiles));
}

// The layout of x (channels-last, dense or a channel slice), u (terms × C × Kp) and an output of `outputs`
// channels, out_h × out_w, checked.
Layout layout(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias, int64_t terms, int64_t outputs,
              int64_t out_h, int64_t out_w) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu(), "x must be 4-D f32 on the CPU");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), pixel = x.stride(3);
  TORCH_CHECK(x.stride(1) == 1 && pixel >= C && x.stride(2) == W * pixel && x.stride(0) == H * W * pixel,
              "x must be channels-last, dense or a slice of a dense tensor's channels");
  TORCH_CHECK(u.dim() == 3 && u.size(0) == terms && u.size(1) == C && u.size(2) % kLanes == 0 &&
                  u.is_contiguous() && u.scalar_type() == at::kFloat,
              "u must be terms × C × Kp f32, contiguous, Kp a multiple of 16");
  const int64_t Kp = u.size(2);
  TORCH_CHECK(outputs > 0 && outputs <= Kp && Kp - outputs < kLanes, "Kp must be the outputs padded to 16");
  TORCH_CHECK(bias.numel() == outputs && bias.is_contiguous() && bias.scalar_type() == at::kFloat,
              "bias must be one f32 per output");
  TORCH_CHECK(out_h > 0 && out_w > 0, "the output must have pixels");
  return Layout{N, C, H, W, outputs, Kp, out_h, out_w, pixel, 0};
}

// The tiles of `scheme` in chunks: transformed, multiplied, transformed back into y.
template <typename Scheme>
void run(Scheme& scheme, int64_t tiles, const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias, bool relu,
         at::Tensor& y) {
  Layout& l = scheme.l;
  const int64_t terms = scheme.terms;
  l.chunk = chunk_tiles(terms, l.C, l.Kp, tiles);
  at::Tensor v = at::empty({terms, l.chunk, l.C}, x.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor m = at::empty({terms, l.chunk, l.Kp}, v.options());
  const std::vector<int> columns = column_chunks(l.Kp / kLanes);
  const float* xp = x.data_ptr<float>();
  const float* up = u.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  float *vp = v.data_ptr<float>(), *mp = m.data_ptr<float>(), *yp = y.data_ptr<float>();
  for (int64_t first = 0; first < tiles; first += l.chunk) {
    const int64_t count = std::min(l.chunk, tiles - first), blocks = (count + kTiles - 1) / kTiles;
    at::parallel_for(0, count, 4, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; t++) scheme.input(xp, first + t, vp, t);
    });
    at::parallel_for(0, terms * blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; task++) {
        const int64_t e = task / blocks, t0 = task % blocks * kTiles;
        products(l, vp, up, mp, e, t0, std::min(count, t0 + kTiles), columns);
      }
    });
    at::parallel_for(0, count, 4, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; t++) scheme.output(mp, first + t, t, bp, relu, yp);
    });
  }
}

// The weight gradient's terms, dU[ξ] = Σ_tiles dM[ξ]ᵀ · V[ξ] (terms × K × C), of the tiles of `scheme` in
// chunks: the input's tiles transformed as in `run`, the output gradient's by the adjoint of the output
// transform, and each term's product reduced over the chunk's tiles (grad_tiles.h), the threads taking
// terms and blocks of K. Chunks hold at least 512 tiles: each adds to all of dU (9.4 MiB for 256 × 256
// channels), which a few hundred tiles' products amortise.
template <typename Scheme>
at::Tensor run_weight_grad(Scheme& scheme, int64_t tiles, const at::Tensor& x, const at::Tensor& dy) {
  Layout& l = scheme.l;
  const int64_t terms = scheme.terms;
  constexpr int64_t kRowsPerTask = 128;
  l.chunk = std::min(tiles, std::max<int64_t>(512, chunk_tiles(terms, l.C, l.Kp, tiles)));
  const auto dense = x.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor v = at::empty({terms, l.chunk, l.C}, dense);
  at::Tensor m = at::empty({terms, l.chunk, l.Kp}, dense);
  at::Tensor du = at::empty({terms, l.K, l.C}, dense);
  const float *xp = x.data_ptr<float>(), *gp = dy.data_ptr<float>();
  float *vp = v.data_ptr<float>(), *mp = m.data_ptr<float>(), *dup = du.data_ptr<float>();
  const int64_t row_blocks = (l.K + kRowsPerTask - 1) / kRowsPerTask;
  for (int64_t first = 0; first < tiles; first += l.chunk) {
    const int64_t count = std::min(l.chunk, tiles - first);
    at::parallel_for(0, count, 4, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; t++) {
        scheme.input(xp, first + t, vp, t);
        scheme.output_grad(gp, first + t, t, mp);
      }
    });
    at::parallel_for(0, terms * row_blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; task++) {
        const int64_t e = task / row_blocks, r0 = task % row_blocks * kRowsPerTask;
        grad_product(mp + e * l.chunk * l.Kp, l.Kp, vp + e * l.chunk * l.C, l.C, count, dup + e * l.K * l.C, l.C, r0,
                     std::min(l.K, r0 + kRowsPerTask), l.C, first == 0);
      }
    });
  }
  return du;
}

// The layout of a weight gradient's input x (dense channels-last) and output gradient dy (N × K × OH × OW,
// dense channels-last), checked.
Layout grad_layout(const at::Tensor& x, const at::Tensor& dy) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu() &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "x must be a dense channels-last 4-D f32 CPU tensor");
  TORCH_CHECK(dy.dim() == 4 && dy.scalar_type() == at::kFloat && dy.device().is_cpu() &&
                  dy.is_contiguous(at::MemoryFormat::ChannelsLast) && dy.size(0) == x.size(0),
              "dy must be a dense channels-last 4-D f32 CPU tensor over x's images");
  const int64_t K = dy.size(1);
  TORCH_CHECK(K > 0 && x.size(1) > 0 && dy.size(2) > 0 && dy.size(3) > 0, "empty channels or output");
  return Layout{x.size(0), x.size(1), x.size(2), x.size(3), K, (K + kLanes - 1) / kLanes * kLanes,
                dy.size(2), dy.size(3), x.size(1), 0};
}

at::Tensor output_like(const at::Tensor& x, int64_t outputs, int64_t out_h, int64_t out_w) {
  return at::empty({x.size(0), outputs, out_h, out_w}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
}

}  // namespace

namespace orchard {

at::Tensor winograd_square(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias, int64_t outputs,
                           int64_t top, int64_t left, int64_t out_h, int64_t out_w, bool relu) {
  Square s{layout(x, u, bias, Square::terms, outputs, out_h, out_w), top, left, (out_h + kOut - 1) / kOut,
           (out_w + kOut - 1) / kOut};
  TORCH_CHECK(top >= 0 && left >= 0 && top <= 2 && left <= 2, "a 3×3 window is padded by 0 to 2");
  at::Tensor y = output_like(x, outputs, out_h, out_w);
  run(s, x.size(0) * s.tiles_h * s.tiles_w, x, u, bias, relu, y);
  return y;
}

at::Tensor winograd_line(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias, const at::Tensor& bt,
                         const at::Tensor& at, int64_t outputs, bool rows, int64_t before, int64_t out_h,
                         int64_t out_w, bool relu) {
  const int64_t alpha = u.size(0), m = at.size(0);
  TORCH_CHECK(alpha >= 2 && alpha <= kMaxAlpha && m >= 1 && m < alpha, "a tile of 2 to 10 inputs, 1 to α − 1 outputs");
  TORCH_CHECK(bt.numel() == alpha * alpha && at.numel() == m * alpha && bt.is_contiguous() && at.is_contiguous() &&
                  bt.scalar_type() == at::kFloat && at.scalar_type() == at::kFloat,
              "bt must be α × α and at m × α f32, contiguous");
  const Layout l = layout(x, u, bias, alpha, outputs, out_h, out_w);
  const int64_t r = alpha - m + 1;
  TORCH_CHECK(before >= 0 && before < r, "the padding before the image is 0 to r − 1");
  TORCH_CHECK(rows ? out_w == l.W : out_h == l.H, "the axis without a kernel keeps its size");
  const int64_t along = ((rows ? out_h : out_w) + m - 1) / m;
  Line s{l, before, alpha, m, along, rows, bt.data_ptr<float>(), at.data_ptr<float>(), static_cast<int>(alpha)};
  at::Tensor y = output_like(x, outputs, out_h, out_w);
  run(s, l.N * along * (rows ? out_w : out_h), x, u, bias, relu, y);
  return y;
}

at::Tensor winograd_square_weight_grad(const at::Tensor& x, const at::Tensor& dy, int64_t top, int64_t left) {
  TORCH_CHECK(top >= 0 && left >= 0 && top <= 2 && left <= 2, "a 3×3 window is padded by 0 to 2");
  const Layout l = grad_layout(x, dy);
  Square s{l, top, left, (l.OH + kOut - 1) / kOut, (l.OW + kOut - 1) / kOut};
  return run_weight_grad(s, l.N * s.tiles_h * s.tiles_w, x, dy);
}

at::Tensor winograd_line_weight_grad(const at::Tensor& x, const at::Tensor& dy, const at::Tensor& bt,
                                     const at::Tensor& at, bool rows, int64_t before) {
  const int64_t alpha = bt.size(0), m = at.size(0);
  TORCH_CHECK(alpha >= 2 && alpha <= kMaxAlpha && m >= 1 && m < alpha, "a tile of 2 to 10 inputs, 1 to α − 1 outputs");
  TORCH_CHECK(bt.numel() == alpha * alpha && at.numel() == m * alpha && bt.is_contiguous() && at.is_contiguous() &&
                  bt.scalar_type() == at::kFloat && at.scalar_type() == at::kFloat,
              "bt must be α × α and at m × α f32, contiguous");
  const Layout l = grad_layout(x, dy);
  TORCH_CHECK(before >= 0 && before < alpha - m + 1, "the padding before the image is 0 to r − 1");
  TORCH_CHECK(rows ? l.OW == l.W : l.OH == l.H, "the axis without a kernel keeps its size");
  const int64_t along = ((rows ? l.OH : l.OW) + m - 1) / m;
  Line s{l, before, alpha, m, along, rows, bt.data_ptr<float>(), at.data_ptr<float>(), static_cast<int>(alpha)};
  return run_weight_grad(s, l.N * along * (rows ? l.OW : l.OH), x, dy);
}

}  // namespace orchard

extern "C" {

// x: N×C×H×W f32 on the CPU, channels-last: dense, or a slice of the channels of a dense tensor (the
// branches of an Inception block read slices of one merged convolution's output); u: 36 × C × Kp f32
// contiguous (G g Gᵀ, ξ = 6·row + column; the `outputs` padded with zeros to Kp, a multiple of 16); bias:
// `outputs`. The output window (top, left ≤ 2: zero padding before the image; out_h × out_w) is the caller's;
// act 0 none, 1 ReLU.
int orchard_winograd_conv(at::Tensor** out, const at::Tensor* x, const at::Tensor* u, const at::Tensor* bias,
                          int64_t outputs, int64_t top, int64_t left, int64_t out_h, int64_t out_w, int act, char* err,
                          size_t len) {
  return orchard::guarded(err, len, [&] {
    TORCH_CHECK(act == 0 || act == 1, "the activation is 0 (none) or 1 (ReLU)");
    *out = new at::Tensor(orchard::winograd_square(*x, *u, *bias, outputs, top, left, out_h, out_w, act == 1));
  });
}

// F(m, r) along the rows (`rows` 1: an r×1 kernel) or the columns (1×r): x as above; u: α × C × Kp (G g per
// pair of channels, α = m + r − 1); bt: α × α, at: m × α f32 contiguous; `before` zeros padded before the
// image along the axis (the other axis unpadded: its kernel size is 1).
int orchard_winograd_line_conv(at::Tensor** out, const at::Tensor* x, const at::Tensor* u, const at::Tensor* bias,
                               const at::Tensor* bt, const at::Tensor* at, int64_t outputs, int rows, int64_t before,
                               int64_t out_h, int64_t out_w, int act, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    TORCH_CHECK(act == 0 || act == 1, "the activation is 0 (none) or 1 (ReLU)");
    *out = new at::Tensor(
        orchard::winograd_line(*x, *u, *bias, *bt, *at, outputs, rows != 0, before, out_h, out_w, act == 1));
  });
}
}
