// x · s with s one value per sample and channel (squeeze-excitation's gates), as one autograd node over a
// channels-last f32 tensor on the CPU. libtorch's broadcasting product differentiates into g · s (a pass that
// writes), g · x (another) and the sum of the latter over the spatial positions (a third that reads it); here
// one pass reads g and x, writes g · s and sums g · x. The forward is libtorch's product.
//
// The kernel is compiled for AVX2 + FMA (`#pragma GCC target`) and used only where the CPU has both
// (`orchard_fused_train_available`, bn_act.cpp).
#include "channel_scale.h"
#include "row_sums.h"
#include "shim.h"

#include <immintrin.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <vector>

namespace {

using orchard::kBlock;

#pragma GCC push_options
#pragma GCC target("avx2,fma")

// For rows [r0, r1) of x and g (HW rows of C channels per sample): gx = g · s[n] and gs[n] += Σ g · x (f64),
// n = r / HW.
void __attribute__((noinline)) scale_grad_rows(const float* x, const float* g, const float* s, float* gx,
                                                int64_t r0, int64_t r1, int64_t HW, int64_t C, double* gs,
                                                float* block) {
  int64_t v = C - C % 8;
  int64_t r = r0;
  while (r < r1) {
    int64_t n = r / HW;
    int64_t end = std::min({r1, (n + 1) * HW, r + kBlock});
    const float* sn = s + n * C;
    std::fill(block, block + C, 0.f);
    for (; r < end; r++) {
      const float* xr = x + r * C;
      const float* gr = g + r * C;
      float* out = gx + r * C;
      for (int64_t c = 0; c < v; c += 8) {
        __m256 gv = _mm256_loadu_ps(gr + c);
        _mm256_storeu_ps(out + c, _mm256_mul_ps(gv, _mm256_loadu_ps(sn + c)));
        _mm256_storeu_ps(block + c, _mm256_fmadd_ps(gv, _mm256_loadu_ps(xr + c), _mm256_loadu_ps(block + c)));
      }
      for (int64_t c = v; c < C; c++) {
        out[c] = gr[c] * sn[c];
        block[c] += gr[c] * xr[c];
      }
    }
    for (int64_t c = 0; c < C; c++) gs[n * C + c] += block[c];
  }
}

#pragma GCC pop_options

}  // namespace

std::pair<at::Tensor, at::Tensor> orchard::channel_scale_backward(const at::Tensor& x, const at::Tensor& s,
                                                                  const at::Tensor& grad) {
  at::Tensor g = grad.contiguous(at::MemoryFormat::ChannelsLast), gates = s.contiguous();
  int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), M = N * HW;
  at::Tensor gx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  const float *xp = x.const_data_ptr<float>(), *gp = g.const_data_ptr<float>();
  const float* sp = gates.const_data_ptr<float>();
  float* gxp = gx.data_ptr<float>();
  auto sums = orchard::parallel_sums(M, C, N * C, [&](int64_t r0, int64_t r1, double* gs) {
    std::vector<float> block(C);
    scale_grad_rows(xp, gp, sp, gxp, r0, r1, HW, C, gs, block.data());
  });
  at::Tensor gs = at::empty({N, C, 1, 1}, x.options());
  std::copy(sums.begin(), sums.end(), gs.data_ptr<float>());
  return {gx, gs};
}

namespace {

struct ChannelScale : public torch::autograd::Function<ChannelScale> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& s) {
    ctx->save_for_backward({x, s});
    return at::mul(x, s);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto [gx, gs] = orchard::channel_scale_backward(saved[0], saved[1], grads[0]);
    return {gx, gs};
  }
};

}  // namespace

extern "C" {

// x · s for x N×C×H×W (channels-last, f32, CPU) and s N×C×1×1, one autograd node.
int orchard_channel_scale(at::Tensor** out, const at::Tensor* x, const at::Tensor* s, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    TORCH_CHECK(orchard_fused_train_available(), "fused channel scale: this CPU lacks AVX2 or FMA");
    TORCH_CHECK(x->dim() == 4 && x->scalar_type() == at::kFloat && x->device().is_cpu() &&
                    x->is_contiguous(at::MemoryFormat::ChannelsLast),
                "fused channel scale: a channels-last 4-D f32 CPU tensor expected");
    TORCH_CHECK(s->scalar_type() == at::kFloat &&
                    s->sizes() == at::IntArrayRef({x->size(0), x->size(1), 1, 1}),
                "fused channel scale: gates of shape N×C×1×1 expected");
    *out = new at::Tensor(ChannelScale::apply(*x, *s));
  });
}
}
