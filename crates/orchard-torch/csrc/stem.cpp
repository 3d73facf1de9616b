// An image model's first convolution in its inference form, for CPUs with AVX-512:
//   y = act(conv(pad(x)) + bias),  pad = each channel's `pad_value` outside the image,  act = none/ReLU/swish
// over an image of a few channels (RGB). The model's input normalization is folded into the weights by the
// caller, and padding with the raw value that normalizes to zero keeps the border exact, so the normalized
// image is never written. What it saves against oneDNN: that normalization pass and the padded copy, and
// oneDNN's slow kernel for 3 input channels with its swish post-op (EfficientNet-B0's 3→32 stem at 224, batch
// 16: 6.7 ms, 26 GFLOP/s; normalization 3.3 ms, the padded copy 0.4).
//
// Each output row is a matrix product: its pixels' K×K×C windows gathered into one buffer (a few KiB, in L1)
// times the K·K·C × outputs weights, with tiles.h's register tiles; the activation applied to the row in cache.
#include "shim.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;

struct Stem {
  int64_t H, W, C, OH, OW, kernel, stride, top, left, N, Np;  // N outputs, Np padded to 16
  const float *x, *weight, *bias, *pad;
  float* y;
  int act;  // 0 none, 1 ReLU, 2 swish
  std::vector<int> chunks;
};

#pragma GCC push_options
#pragma GCC target("avx512f")

#include "swish.h"  // inside the target region
#include "tiles.h"

// dst[0, n) = src[0, n) in masked vector moves: the runs here are a few floats, where a call to memmove
// costs more than the move (B0's stem: 9 calls of 3 floats per pixel were 9 of its 10 ms).
inline void copy_short(const float* src, int64_t n, float* dst) {
  for (; n > 0; n -= kLanes, src += kLanes, dst += kLanes) {
    const __mmask16 m = n >= kLanes ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
    _mm512_mask_storeu_ps(dst, m, _mm512_maskz_loadu_ps(m, src));
  }
}

// Output row `oh` of image `n`; `patch` holds OW windows of K·K·C floats.
void stem_row(const Stem& s, int64_t n, int64_t oh, float* patch) {
  const int64_t depth = s.kernel * s.kernel * s.C, run = s.kernel * s.C;
  const float* image = s.x + n * s.H * s.W * s.C;
  for (int64_t ow = 0; ow < s.OW; ow++) {
    float* window = patch + ow * depth;
    const int64_t iw0 = ow * s.stride - s.left;
    const bool columns_inside = iw0 >= 0 && iw0 + s.kernel <= s.W;
    for (int64_t kh = 0; kh < s.kernel; kh++, window += run) {
      const int64_t ih = oh * s.stride - s.top + kh;
      if (ih >= 0 && ih < s.H && columns_inside) {
        copy_short(image + (ih * s.W + iw0) * s.C, run, window);  // the K taps of this row, one run
        continue;
      }
      for (int64_t kw = 0; kw < s.kernel; kw++) {
        const int64_t iw = iw0 + kw;
        const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
        copy_short(inside ? image + (ih * s.W + iw) * s.C : s.pad, s.C, window + kw * s.C);
      }
    }
  }
  float* out = s.y + (n * s.OH + oh) * s.OW * s.N;
  const __mmask16 last = static_cast<__mmask16>((1u << (s.N - (s.Np / kLanes - 1) * kLanes)) - 1);
  int64_t col = 0;
  for (int V : s.chunks) {
    const int R = rows_for(V);
    const __mmask16 mask = col + V * kLanes >= s.Np ? last : static_cast<__mmask16>(0xFFFF);
    for (int64_t p = 0; p < s.OW; p += R) {
      const int rows = static_cast<int>(std::min<int64_t>(R, s.OW - p));
      const Tile t{patch + p * depth, depth, s.weight + col, s.Np, depth, out + p * s.N + col, s.N, s.bias + col,
                   false, mask};
      kRows[V - 1](rows, t);
    }
    col += V * kLanes;
  }
  if (s.act == 0) return;
  const int64_t total = s.OW * s.N;
  for (int64_t i = 0; i < total; i += kLanes) {
    const __mmask16 m = total - i >= kLanes ? static_cast<__mmask16>(0xFFFF)
                                            : static_cast<__mmask16>((1u << (total - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, out + i);
    _mm512_mask_storeu_ps(out + i, m, s.act == 1 ? _mm512_max_ps(v, _mm512_setzero_ps()) : swish(v));
  }
}

#pragma GCC pop_options

}  // namespace

extern "C" {

// x: N×C×H×W f32 on the CPU, channels-last dense; weight: K·K·C × Np f32 contiguous (rows in (kh, kw, c)
// order, outputs padded with zeros to Np, a multiple of 16); bias: Np; pad_value: C. The output window
// (top, left: the padding before the image; out_h × out_w) is the caller's; act 0 none, 1 ReLU, 2 swish.
int orchard_stem_conv(at::Tensor** out, const at::Tensor* x, const at::Tensor* weight, const at::Tensor* bias,
                      const at::Tensor* pad_value, int64_t outputs, int64_t kernel, int64_t stride, int64_t top,
                      int64_t left, int64_t out_h, int64_t out_w, int act, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    TORCH_CHECK(x->dim() == 4 && x->scalar_type() == at::kFloat && x->device().is_cpu() &&
                    x->is_contiguous(at::MemoryFormat::ChannelsLast),
                "x must be 4-D f32 on the CPU, channels-last");
    const int64_t N = x->size(0), C = x->size(1), H = x->size(2), W = x->size(3);
    const int64_t Np = (outputs + kLanes - 1) / kLanes * kLanes, depth = kernel * kernel * C;
    TORCH_CHECK(outputs > 0 && kernel > 0 && stride > 0 && out_h > 0 && out_w > 0 && act >= 0 && act <= 2,
                "a stem needs outputs, a kernel, a stride, an output and an activation of 0-2");
    TORCH_CHECK(top >= 0 && left >= 0 && top < kernel && left < kernel && (out_h - 1) * stride - top < H &&
                    (out_w - 1) * stride - left < W,
                "every output window must reach the image");
    TORCH_CHECK(weight->dim() == 2 && weight->size(0) == depth && weight->size(1) == Np &&
                    weight->is_contiguous() && weight->scalar_type() == at::kFloat,
                "weight must be K·K·C × Np f32, contiguous");
    TORCH_CHECK(bias->numel() == Np && bias->is_contiguous() && bias->scalar_type() == at::kFloat,
                "bias must be Np f32");
    TORCH_CHECK(pad_value->numel() == C && pad_value->is_contiguous() && pad_value->scalar_type() == at::kFloat,
                "pad_value must be C f32");
    at::Tensor y = at::empty({N, outputs, out_h, out_w}, x->options().memory_format(at::MemoryFormat::ChannelsLast));
    const Stem s{H,    W,  C,  out_h, out_w, kernel, stride, top, left, outputs, Np, x->data_ptr<float>(),
                 weight->data_ptr<float>(), bias->data_ptr<float>(), pad_value->data_ptr<float>(), y.data_ptr<float>(),
                 act, column_chunks(Np / kLanes)};
    // Rows of every image, a few per task: each is a few KiB of output.
    at::parallel_for(0, N * out_h, 4, [&](int64_t begin, int64_t end) {
      std::vector<float> patch(out_w * depth);
      for (int64_t row = begin; row < end; row++) stem_row(s, row / out_h, row % out_h, patch.data());
    });
    *out = new at::Tensor(y);
  });
}
}
