// Inception-ResNet's residual sum, act(x + s · y) with act ReLU or none and s a constant, as one autograd
// node over channels-last f32 CPU tensors. libtorch runs it as three passes forward (the product, the sum,
// the ReLU) and two backward (the ReLU's mask, the product); here one pass forward and one backward, which
// reads the output's gradient and the output (the ReLU's mask) and writes both inputs' gradients.
//
// The kernels are compiled for AVX2 + FMA (`#pragma GCC target`) and used only where the CPU has both
// (`orchard_fused_train_available`, bn_act.cpp).
#include "row_sums.h"
#include "shim.h"

#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/csrc/autograd/custom_function.h>

namespace {

// Values per task: a pass over them is a few microseconds.
constexpr int64_t kGrain = 32768;

#pragma GCC push_options
#pragma GCC target("avx2,fma")

// out[i] = act(x[i] + s · y[i]) for i in [i0, i1).
void __attribute__((noinline)) residual_rows(const float* x, const float* y, float* out, float s, bool relu,
                                              int64_t i0, int64_t i1) {
  const __m256 sv = _mm256_set1_ps(s), zero = _mm256_setzero_ps();
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(y + i), sv, _mm256_loadu_ps(x + i));
    _mm256_storeu_ps(out + i, relu ? _mm256_max_ps(v, zero) : v);
  }
  for (; i < i1; i++) {
    float v = x[i] + s * y[i];
    out[i] = relu && !(v > 0.f) ? 0.f : v;
  }
}

// gx[i] = g[i] where out[i] > 0 (every i without the ReLU), else 0; gy[i] = s · gx[i]. `gx` is null without
// the ReLU (x's gradient is g itself).
void __attribute__((noinline)) residual_grad_rows(const float* g, const float* out, float* gx, float* gy,
                                                   float s, int64_t i0, int64_t i1) {
  const __m256 sv = _mm256_set1_ps(s), zero = _mm256_setzero_ps();
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    __m256 v = _mm256_loadu_ps(g + i);
    if (gx) {
      v = _mm256_and_ps(v, _mm256_cmp_ps(_mm256_loadu_ps(out + i), zero, _CMP_GT_OQ));
      _mm256_storeu_ps(gx + i, v);
    }
    _mm256_storeu_ps(gy + i, _mm256_mul_ps(v, sv));
  }
  for (; i < i1; i++) {
    float v = gx && !(out[i] > 0.f) ? 0.f : g[i];
    if (gx) gx[i] = v;
    gy[i] = s * v;
  }
}

#pragma GCC pop_options

struct Residual : public torch::autograd::Function<Residual> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& y,
                            double scale, bool relu) {
    at::Tensor out = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    const float *xp = x.const_data_ptr<float>(), *yp = y.const_data_ptr<float>();
    float* op = out.data_ptr<float>();
    float s = static_cast<float>(scale);
    at::parallel_for(0, x.numel(), kGrain,
                     [&](int64_t i0, int64_t i1) { residual_rows(xp, yp, op, s, relu, i0, i1); });
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["relu"] = relu;
    if (relu) ctx->save_for_backward({out});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    float s = static_cast<float>(ctx->saved_data["scale"].toDouble());
    bool relu = ctx->saved_data["relu"].toBool();
    at::Tensor g = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor out = relu ? ctx->get_saved_variables()[0] : at::Tensor();
    at::Tensor gx = relu ? at::empty_like(g, at::MemoryFormat::ChannelsLast) : g;
    at::Tensor gy = at::empty_like(g, at::MemoryFormat::ChannelsLast);
    const float* gp = g.const_data_ptr<float>();
    const float* op = relu ? out.const_data_ptr<float>() : nullptr;
    float* gxp = relu ? gx.data_ptr<float>() : nullptr;
    float* gyp = gy.data_ptr<float>();
    at::parallel_for(0, g.numel(), kGrain,
                     [&](int64_t i0, int64_t i1) { residual_grad_rows(gp, op, gxp, gyp, s, i0, i1); });
    return {gx, gy, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// act(x + scale · y), act ReLU where `relu`, for x and y N×C×H×W of one shape (channels-last, f32, CPU): one
// autograd node.
int orchard_residual(at::Tensor** out, const at::Tensor* x, const at::Tensor* y, double scale, int relu, char* err,
                     size_t len) {
  return orchard::guarded(err, len, [&] {
    TORCH_CHECK(orchard_fused_train_available(), "fused residual: this CPU lacks AVX2 or FMA");
    for (const at::Tensor* t : {x, y})
      TORCH_CHECK(t->dim() == 4 && t->scalar_type() == at::kFloat && t->device().is_cpu() &&
                      t->is_contiguous(at::MemoryFormat::ChannelsLast),
                  "fused residual: channels-last 4-D f32 CPU tensors expected");
    TORCH_CHECK(x->sizes() == y->sizes(), "fused residual: x is ", x->sizes(), " but y ", y->sizes());
    *out = new at::Tensor(Residual::apply(*x, *y, scale, relu != 0));
  });
}
}
