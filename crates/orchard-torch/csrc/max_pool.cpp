// Max pooling in training (square window, no padding) as one autograd node over a channels-last f32 CPU
// tensor that keeps only its input. libtorch's keeps the input and an int64 index per output value for the
// backward: at Inception-ResNet-v2's stem at 299, batch 16, 94 MB of indices alive through the step. Here the
// backward finds each window's maximum again from the input, 9 reads of the input's row per output for a
// 3×3 window, and gives its gradient to the first position that holds it in the window's row-major order,
// the one libtorch's index names. A NaN pools as libtorch's does: a window holding one pools to NaN, and its
// gradient goes to the window's last NaN (libtorch's comparison `value > max || isnan(value)` moves the index
// to every NaN it meets).
//
// Inference pools through the same forward kernel without the node (`orchard_max_pool`), with zero padding
// where asked (Keras' ZeroPadding2D before MaxPooling2D): libtorch's max_pool2d writes an int64 index per
// output even then (ResNet50V2's stem at 224, batch 16: 25 MB beside its 13 MB of output, 16 ms a call).
//
// The kernels are compiled for AVX2 + FMA (`#pragma GCC target`) and used only where the CPU has both
// (`orchard_fused_train_available`, bn_act.cpp).
#include "row_sums.h"
#include "shim.h"

#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>

namespace {

// Channels per backward task: the tasks (images × channel blocks) write disjoint parts of the gradient.
constexpr int64_t kChannelBlock = 64;

struct Geometry {
  int64_t H, W, C, OH, OW, k, s;
  int64_t p = 0;  // zeros before and after each side (inference only)
};

#pragma GCC push_options
#pragma GCC target("avx2,fma")

// Output rows [r0, r1) of N·OH: out[n, oh, ow, :] = the maximum over the window, the padding's zeros
// included where the window covers some.
void __attribute__((noinline)) pool_rows(const float* x, float* out, const Geometry& g, int64_t r0, int64_t r1) {
  const int64_t C = g.C, v = C - C % 8;
  for (int64_t r = r0; r < r1; r++) {
    int64_t n = r / g.OH, oh = r % g.OH;
    const int64_t top = oh * g.s - g.p, i0 = std::max<int64_t>(0, -top), i1 = std::min(g.k, g.H - top);
    for (int64_t ow = 0; ow < g.OW; ow++) {
      const int64_t left = ow * g.s - g.p, j0 = std::max<int64_t>(0, -left), j1 = std::min(g.k, g.W - left);
      const bool padded = i0 > 0 || j0 > 0 || i1 < g.k || j1 < g.k;
      float* o = out + (r * g.OW + ow) * C;
      // The window's first position in the input, and the offset of its tap (i, j) from it.
      const float* first = x + ((n * g.H + top + i0) * g.W + left + j0) * C;
      auto tap = [&](int64_t i, int64_t j) { return ((i - i0) * g.W + (j - j0)) * C; };
      for (int64_t c = 0; c < v; c += 8) {
        __m256 m = padded ? _mm256_setzero_ps() : _mm256_loadu_ps(first + c);
        for (int64_t i = i0; i < i1; i++)
          for (int64_t j = j0; j < j1; j++) {
            // max_ps(v, m) keeps m where either is NaN; the blend then takes v where v is NaN.
            __m256 v = _mm256_loadu_ps(first + tap(i, j) + c);
            m = _mm256_blendv_ps(_mm256_max_ps(v, m), v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
          }
        _mm256_storeu_ps(o + c, m);
      }
      for (int64_t c = v; c < C; c++) {
        float m = padded ? 0.0f : first[c];
        for (int64_t i = i0; i < i1; i++)
          for (int64_t j = j0; j < j1; j++) {
            float v = first[tap(i, j) + c];
            if (v > m || std::isnan(v)) m = v;
          }
        o[c] = m;
      }
    }
  }
}

// gx[the window's last NaN] += gy: the position libtorch's index names where the window pooled to NaN.
void place_at_last_nan(const float* x, float gy, float* gx, const Geometry& g, int64_t corner) {
  int64_t last = corner;
  for (int64_t i = 0; i < g.k; i++)
    for (int64_t j = 0; j < g.k; j++)
      if (std::isnan(x[corner + (i * g.W + j) * g.C])) last = corner + (i * g.W + j) * g.C;
  gx[last] += gy;
}

// Channels [c0, c1) of image n: gx[first position of the window's maximum] += gy, for every window (a NaN
// maximum: its last NaN).
void __attribute__((noinline)) pool_grad(const float* x, const float* out, const float* gy, float* gx,
                                         const Geometry& g, int64_t n, int64_t c0, int64_t c1) {
  const int64_t C = g.C;
  const int64_t v = c0 + (c1 - c0) - (c1 - c0) % 8;
  for (int64_t oh = 0; oh < g.OH; oh++) {
    for (int64_t ow = 0; ow < g.OW; ow++) {
      int64_t o = ((n * g.OH + oh) * g.OW + ow) * C;
      int64_t corner = ((n * g.H + oh * g.s) * g.W + ow * g.s) * C;
      for (int64_t c = c0; c < v; c += 8) {
        __m256 m = _mm256_loadu_ps(out + o + c), grad = _mm256_loadu_ps(gy + o + c);
        __m256 open = _mm256_castsi256_ps(_mm256_set1_epi32(-1));  // lanes whose maximum is still unplaced
        for (int64_t i = 0; i < g.k; i++)
          for (int64_t j = 0; j < g.k; j++) {
            int64_t at = corner + (i * g.W + j) * C + c;
            __m256 here = _mm256_and_ps(open, _mm256_cmp_ps(_mm256_loadu_ps(x + at), m, _CMP_EQ_OQ));
            open = _mm256_andnot_ps(here, open);
            _mm256_storeu_ps(gx + at, _mm256_add_ps(_mm256_loadu_ps(gx + at), _mm256_and_ps(here, grad)));
          }
        // A NaN maximum equals nothing above, so its lanes received no gradient.
        int nan_lanes = _mm256_movemask_ps(_mm256_cmp_ps(m, m, _CMP_UNORD_Q));
        for (int lane = 0; nan_lanes != 0; lane++, nan_lanes >>= 1)
          if (nan_lanes & 1) place_at_last_nan(x, gy[o + c + lane], gx, g, corner + c + lane);
      }
      for (int64_t c = v; c < c1; c++) {
        if (std::isnan(out[o + c])) {
          place_at_last_nan(x, gy[o + c], gx, g, corner + c);
          continue;
        }
        bool placed = false;
        for (int64_t i = 0; i < g.k && !placed; i++)
          for (int64_t j = 0; j < g.k && !placed; j++) {
            int64_t at = corner + (i * g.W + j) * C + c;
            if (x[at] == out[o + c]) {
              gx[at] += gy[o + c];
              placed = true;
            }
          }
      }
    }
  }
}

#pragma GCC pop_options

Geometry geometry(const at::Tensor& x, int64_t k, int64_t s, int64_t p = 0) {
  int64_t H = x.size(2), W = x.size(3);
  return {H, W, x.size(1), (H + 2 * p - k) / s + 1, (W + 2 * p - k) / s + 1, k, s, p};
}

// The pooled x, a new channels-last tensor.
at::Tensor pool(const at::Tensor& x, const Geometry& g) {
  at::Tensor out = at::empty({x.size(0), g.C, g.OH, g.OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* xp = x.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, x.size(0) * g.OH, 1, [&](int64_t r0, int64_t r1) { pool_rows(xp, op, g, r0, r1); });
  return out;
}

// Checks x and that a k×k window at stride s fits it padded by p.
void check(const at::Tensor& x, int64_t k, int64_t s, int64_t p) {
  TORCH_CHECK(orchard_fused_train_available(), "max pooling: this CPU lacks AVX2 or FMA");
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu() &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "max pooling: a channels-last 4-D f32 CPU tensor expected");
  TORCH_CHECK(k >= 1 && s >= 1 && p >= 0 && p < k && x.size(2) + 2 * p >= k && x.size(3) + 2 * p >= k, "max pooling: a ", k,
              "×", k, " window at stride ", s, " does not fit ", x.sizes(), " padded by ", p);
}

struct MaxPool : public torch::autograd::Function<MaxPool> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t k, int64_t s) {
    at::Tensor out = pool(x, geometry(x, k, s));
    ctx->saved_data["k"] = k;
    ctx->saved_data["s"] = s;
    ctx->save_for_backward({x, out});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &out = saved[1];
    Geometry g = geometry(x, ctx->saved_data["k"].toInt(), ctx->saved_data["s"].toInt());
    at::Tensor gy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor gx = at::zeros_like(x, at::MemoryFormat::ChannelsLast);
    const float *xp = x.const_data_ptr<float>(), *op = out.const_data_ptr<float>(), *gp = gy.const_data_ptr<float>();
    float* gxp = gx.data_ptr<float>();
    int64_t blocks = (g.C + kChannelBlock - 1) / kChannelBlock;
    at::parallel_for(0, x.size(0) * blocks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        int64_t c0 = t % blocks * kChannelBlock;
        pool_grad(xp, op, gp, gxp, g, t / blocks, c0, std::min(g.C, c0 + kChannelBlock));
      }
    });
    return {gx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// Max pooling of x (N×C×H×W, channels-last, f32, CPU) over k×k windows at stride s without padding, one
// autograd node that keeps x and its output.
int orchard_max_pool_train(at::Tensor** out, const at::Tensor* x, int64_t k, int64_t s, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    check(*x, k, s, 0);
    *out = new at::Tensor(MaxPool::apply(*x, k, s));
  });
}

// Max pooling of x (as above) zero-padded by p on every side, for inference: no autograd node, no index.
int orchard_max_pool(at::Tensor** out, const at::Tensor* x, int64_t k, int64_t s, int64_t p, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    check(*x, k, s, p);
    *out = new at::Tensor(pool(*x, geometry(*x, k, s, p)));
  });
}
}
