// EfficientNet's depthwise stage in one pass over its input, for the inference form on CPUs with AVX-512:
//   y = swish(depthwise(in(x)) + bias),  in = swish or identity,  sums[n, c] = Σ_{h,w} y[n, c, h, w]
// (the sums are squeeze-excitation's pooling). What it saves against oneDNN: the expand convolution's swish
// (applied here to each input row once, as it enters a ring of K rows), the separate pooling pass over y,
// and the kernel taps TF's asymmetric "same" padding costs oneDNN (padded here on each side as TF says).
// oneDNN's swish post-op cost EfficientNet-B0 22 ms of a 130 ms batch; the swish here is ~17 instructions.
//
// With the block's expand convolution (a 1×1 convolution of at most 160K weights, which stay in L2), each
// input row is computed here as it enters the ring (tiles.h's matrix-product tiles): the expanded activation,
// six times as wide as the block's input, is never written to memory whole.
//
// Work is split over images, or bands of rows where the batch is too small to fill the cores; each task
// reads and writes whole rows (contiguous in channels-last memory) through a ring of K input rows.
#include "shim.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;

// The expand convolution computed into the ring as each input row enters it (x then holds the block's
// input): weights inputs × padded_channels (outputs padded with zeros), bias padded_channels.
struct Expand {
  const float *weight, *bias;
  int64_t inputs;
  std::vector<int> chunks;  // the outputs' columns of tiles
};

struct Geometry {
  int64_t H, W, C, OH, OW, top, left, padded_width, padded_channels;
  const Expand* expand;  // or null: x holds the depthwise layer's input
};

#pragma GCC push_options
#pragma GCC target("avx512f")

#include "swish.h"  // inside the target region, as tiles.h
#include "tiles.h"

// One input row of `width` pixels through the expand convolution into `dst` (pixels `Cp` floats apart, every
// padded channel written: the zero-padded weights and bias give zeros there).
void expand_row(const Expand& e, const float* src, int64_t width, float* dst, int64_t Cp) {
  int64_t col = 0;
  for (int V : e.chunks) {
    const int R = rows_for(V);
    for (int64_t p = 0; p < width; p += R) {
      const int rows = static_cast<int>(std::min<int64_t>(R, width - p));
      const Tile t{src + p * e.inputs, e.inputs, e.weight + col, Cp, e.inputs, dst + p * Cp + col, Cp, e.bias + col,
                   false, static_cast<__mmask16>(0xFFFF)};
      kRows[V - 1](rows, t);
    }
    col += V * kLanes;
  }
}

// One output row of channels [c, c + 16) (`mask` the ones that exist): OWB outputs at a time over the K padded
// input rows `rows` (pixels `Cp` floats apart), into y (pixels C apart); their sum added to `sum`.
template <int K, int S>
inline void output_row(const float* const* rows, int64_t c, const __m512* w, __m512 bias, float* y, const Geometry& g,
                       __mmask16 mask, __m512& sum) {
  constexpr int OWB = K == 3 ? 8 : 4;
  const int64_t Cp = g.padded_channels;
  int64_t ow = 0;
  for (; ow + OWB <= g.OW; ow += OWB) {
    __m512 acc[OWB];
    for (int j = 0; j < OWB; j++) acc[j] = bias;
    for (int kh = 0; kh < K; kh++) {
      const float* r = rows[kh] + ow * S * Cp + c;
      for (int kw = 0; kw < K; kw++) {
        const __m512 wk = w[kh * K + kw];
        for (int j = 0; j < OWB; j++) acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(r + (j * S + kw) * Cp), wk, acc[j]);
      }
    }
    for (int j = 0; j < OWB; j++) {
      const __m512 out = swish(acc[j]);
      sum = _mm512_add_ps(sum, out);
      _mm512_mask_storeu_ps(y + (ow + j) * g.C + c, mask, out);
    }
  }
  for (; ow < g.OW; ow++) {
    __m512 acc = bias;
    for (int kh = 0; kh < K; kh++) {
      const float* r = rows[kh] + ow * S * Cp + c;
      for (int kw = 0; kw < K; kw++) acc = _mm512_fmadd_ps(_mm512_loadu_ps(r + kw * Cp), w[kh * K + kw], acc);
    }
    const __m512 out = swish(acc);
    sum = _mm512_add_ps(sum, out);
    _mm512_mask_storeu_ps(y + ow * g.C + c, mask, out);
  }
}

// Output rows [oh0, oh1) of one image, every channel: x and y point at the image's; `sums` (Cp floats) gets
// this band's sums. `ring` holds K padded input rows (Wp pixels of Cp floats), zero outside the image's
// columns and channels; `zeros` one such row.
template <int K, int S>
void band(const float* x, const float* weight, const float* bias, float* y, float* sums, const Geometry& g,
          int64_t oh0, int64_t oh1, bool input_swish, float* ring, const float* zeros) {
  const int64_t Cp = g.padded_channels, blocks = Cp / kLanes;
  const __mmask16 tail = static_cast<__mmask16>((1u << (g.C - (blocks - 1) * kLanes)) - 1);
  std::fill(sums, sums + Cp, 0.f);
  int64_t loaded = -1;  // the last input row put in the ring; rows enter in order
  const float* rows[K];
  for (int64_t oh = oh0; oh < oh1; oh++) {
    const int64_t ih0 = oh * S - g.top;
    for (int kh = 0; kh < K; kh++) {
      const int64_t ih = ih0 + kh;
      if (ih < 0 || ih >= g.H) {
        rows[kh] = zeros;
        continue;
      }
      float* slot = ring + (ih % K) * g.padded_width * Cp;
      if (ih > loaded) {
        float* dst = slot + g.left * Cp;
        if (g.expand) {
          expand_row(*g.expand, x + ih * g.W * g.expand->inputs, g.W, dst, Cp);
          if (input_swish)
            for (int64_t i = 0; i < g.W * Cp; i += kLanes) _mm512_storeu_ps(dst + i, swish(_mm512_loadu_ps(dst + i)));
        } else {
          const float* src = x + ih * g.W * g.C;
          for (int64_t iw = 0; iw < g.W; iw++) {
            for (int64_t b = 0; b < blocks; b++) {
              __m512 v = _mm512_maskz_loadu_ps(b + 1 == blocks ? tail : 0xFFFF, src + iw * g.C + b * kLanes);
              if (input_swish) v = swish(v);
              _mm512_storeu_ps(dst + iw * Cp + b * kLanes, v);
            }
          }
        }
        loaded = ih;
      }
      rows[kh] = slot;
    }
    for (int64_t b = 0; b < blocks; b++) {
      const __mmask16 mask = b + 1 == blocks ? tail : 0xFFFF;
      const int64_t c = b * kLanes;
      __m512 w[K * K];
      for (int i = 0; i < K * K; i++) w[i] = _mm512_maskz_loadu_ps(mask, weight + i * g.C + c);
      __m512 sum = _mm512_loadu_ps(sums + c);
      output_row<K, S>(rows, c, w, _mm512_maskz_loadu_ps(mask, bias + c), y + oh * g.OW * g.C, g, mask, sum);
      _mm512_storeu_ps(sums + c, sum);
    }
  }
}

#pragma GCC pop_options

using BandFn = void (*)(const float*, const float*, const float*, float*, float*, const Geometry&, int64_t, int64_t,
                        bool, float*, const float*);

BandFn band_fn(int64_t k, int64_t s) {
  if (k == 3 && s == 1) return band<3, 1>;
  if (k == 3 && s == 2) return band<3, 2>;
  if (k == 5 && s == 1) return band<5, 1>;
  if (k == 5 && s == 2) return band<5, 2>;
  throw std::invalid_argument("the pooled depthwise kernel runs 3x3 and 5x5 kernels with stride 1 or 2");
}

}  // namespace

extern "C" {

// 1 where the CPU runs AVX-512F.
int orchard_pooled_depthwise_available() { return __builtin_cpu_supports("avx512f") ? 1 : 0; }

// x: N×C×H×W f32 on the CPU (channels-last, else made so); weight: K×K×C f32 contiguous; bias: C. Padding
// `top`, `left` before the image and as needed after for an `out_h`×`out_w` output. `out` gets y (channels-
// last), `sums` the N×C sums of y over its positions. With `expand_weight` (C_in×C', C padded to 16 with zero
// columns) and `expand_bias` (C'), x is N×C_in×H×W and the depthwise layer's input is its 1×1 convolution.
int orchard_pooled_depthwise(at::Tensor** out, at::Tensor** sums, const at::Tensor* x, const at::Tensor* weight,
                             const at::Tensor* bias, const at::Tensor* expand_weight, const at::Tensor* expand_bias,
                             int64_t stride, int64_t top, int64_t left, int64_t out_h, int64_t out_w, int input_swish,
                             char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    TORCH_CHECK(x->dim() == 4 && x->scalar_type() == at::kFloat && x->device().is_cpu(), "x must be 4-D f32 on the CPU");
    TORCH_CHECK(weight->dim() == 3, "weight must be K×K×C");
    const int64_t N = x->size(0), C = weight->size(2), H = x->size(2), W = x->size(3);
    const int64_t Cp = (C + kLanes - 1) / kLanes * kLanes;
    TORCH_CHECK(weight->size(0) == weight->size(1) && weight->is_contiguous() && weight->scalar_type() == at::kFloat,
                "weight must be K×K×C f32, contiguous");
    Expand expand{nullptr, nullptr, 0, {}};
    if (expand_weight) {
      TORCH_CHECK(expand_bias && expand_weight->dim() == 2 && expand_weight->size(0) == x->size(1) &&
                      expand_weight->size(1) == Cp && expand_weight->is_contiguous() &&
                      expand_weight->scalar_type() == at::kFloat && expand_bias->numel() == Cp &&
                      expand_bias->is_contiguous() && expand_bias->scalar_type() == at::kFloat,
                  "the expand weight must be C_in×C' and its bias C' f32, contiguous (C' the channels padded to 16)");
      expand = Expand{expand_weight->data_ptr<float>(), expand_bias->data_ptr<float>(), x->size(1),
                      column_chunks(Cp / kLanes)};
    } else {
      TORCH_CHECK(x->size(1) == C, "x must have the weight's channels");
    }
    const int64_t K = weight->size(0);
    TORCH_CHECK(bias->numel() == C && bias->is_contiguous() && bias->scalar_type() == at::kFloat, "bias must be C f32");
    TORCH_CHECK(top >= 0 && left >= 0 && top < K && left < K && out_h > 0 && out_w > 0, "bad padding or output size");
    TORCH_CHECK((out_h - 1) * stride - top < H && (out_w - 1) * stride - left < W, "output larger than the input allows");
    const BandFn fn = band_fn(K, stride);
    const at::Tensor xs = x->contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor y = at::empty({N, C, out_h, out_w}, xs.options().memory_format(at::MemoryFormat::ChannelsLast));
    const int64_t padded = std::max(left + W, (out_w - 1) * stride + K);
    const Geometry g{H, W, C, out_h, out_w, top, left, padded, Cp, expand_weight ? &expand : nullptr};
    // Whole images while there are enough of them for the threads, else bands of rows (the K - 1 rows above a
    // band are read again by it).
    const int64_t threads = at::get_num_threads();
    const int64_t bands = std::min(out_h, N >= 2 * threads ? 1 : (2 * threads + N - 1) / N);
    const int64_t rows_per_band = (out_h + bands - 1) / bands;
    std::vector<float> partial(N * bands * Cp);
    const float *xp = xs.data_ptr<float>(), *wp = weight->data_ptr<float>(), *bp = bias->data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, N * bands, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> ring(K * padded * Cp, 0.f), zeros(padded * Cp, 0.f);
      for (int64_t task = begin; task < end; task++) {
        const int64_t n = task / bands, oh0 = (task % bands) * rows_per_band;
        const int64_t oh1 = std::min(out_h, oh0 + rows_per_band);
        fn(xp + n * H * W * xs.size(1), wp, bp, yp + n * out_h * out_w * C, partial.data() + task * Cp, g, oh0, oh1,
           input_swish != 0, ring.data(), zeros.data());
      }
    });
    at::Tensor s = at::zeros({N, C}, xs.options());
    float* sp = s.data_ptr<float>();
    for (int64_t task = 0; task < N * bands; task++)
      for (int64_t c = 0; c < C; c++) sp[(task / bands) * C + c] += partial[task * Cp + c];
    *out = new at::Tensor(y);
    *sums = new at::Tensor(s);
  });
}
}
