// Batch norm in training followed by an activation, as one autograd node over channels-last f32 tensors on
// the CPU. libtorch runs them as separate kernels: statistics, normalisation, activation forward; activation
// backward, batch-norm reduction, batch-norm input gradient, each a full pass over the activation, and it
// keeps the normalised tensor for the activation's backward. Here the forward makes one pass to gather the
// statistics and one to write act((x - mean) · scale + bias); the backward recomputes the activation's input
// from x in a pass that writes the activation's input gradient and sums it, and turns that into the input's
// gradient in place in a second. The normalised tensor is never stored.
//
// The kernels are compiled for AVX2 + FMA (`#pragma GCC target`, raw intrinsics) and used only where the CPU
// has both (`orchard_fused_train_available`); everything else in this file is generic code.
#include "bn_act.h"
#include "row_sums.h"
#include "shim.h"

#include <immintrin.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using orchard::kBlock;
using orchard::parallel_sums;
using orchard::row_grain;

// The activations (orchard_torch::fused_conv::PostOp's order for the four it shares).
enum Act : int64_t { kNone = 0, kRelu = 1, kRelu6 = 2, kSilu = 3 };

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "cephes_exp.h"  // inside the target region: its template takes the ISA

// AVX2's operations for cephes_exp.h.
struct Avx2 {
  using V = __m256;
  static V set(float v) { return _mm256_set1_ps(v); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V round(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V scale(V y, V n) {
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  }
};

// e^x for eight floats, inline (a call per vector into SLEEF cost more than the arithmetic).
inline __m256 exp8(__m256 x) { return cephes_exp<Avx2>(x); }

inline float act_scalar(float z, int64_t act) {
  switch (act) {
    case kRelu: return z > 0.f ? z : 0.f;
    case kRelu6: return z > 0.f ? (z < 6.f ? z : 6.f) : 0.f;
    case kSilu: return z / (1.f + std::exp(-z));
    default: return z;
  }
}

// d act / dz at z.
inline float act_grad_scalar(float z, int64_t act) {
  switch (act) {
    case kRelu: return z > 0.f ? 1.f : 0.f;
    case kRelu6: return (z > 0.f && z < 6.f) ? 1.f : 0.f;
    case kSilu: {
      float s = 1.f / (1.f + std::exp(-z));
      return s * (1.f + z * (1.f - s));
    }
    default: return 1.f;
  }
}

// 1 / (1 + e^-z): the reciprocal's estimate refined by one Newton step (about 22 bits; a division stalls).
inline __m256 sigmoid8(__m256 z) {
  const __m256 one = _mm256_set1_ps(1.f);
  __m256 d = _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), z)));
  __m256 r = _mm256_rcp_ps(d);
  return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.f)));
}

inline __m256 act8(__m256 z, int64_t act) {
  switch (act) {
    case kRelu: return _mm256_max_ps(z, _mm256_setzero_ps());
    case kRelu6: return _mm256_min_ps(_mm256_max_ps(z, _mm256_setzero_ps()), _mm256_set1_ps(6.f));
    case kSilu: return _mm256_mul_ps(z, sigmoid8(z));
    default: return z;
  }
}

inline __m256 act_grad8(__m256 z, int64_t act) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f);
  switch (act) {
    case kRelu: return _mm256_and_ps(_mm256_cmp_ps(z, zero, _CMP_GT_OQ), one);
    case kRelu6: {
      __m256 above = _mm256_cmp_ps(z, zero, _CMP_GT_OQ);
      __m256 inside = _mm256_and_ps(above, _mm256_cmp_ps(z, _mm256_set1_ps(6.f), _CMP_LT_OQ));
      return _mm256_and_ps(inside, one);
    }
    case kSilu: {
      __m256 s = sigmoid8(z);
      return _mm256_mul_ps(s, _mm256_fmadd_ps(z, _mm256_sub_ps(one, s), one));
    }
    default: return one;
  }
}

// Runs `row(r, b1, b2)` for rows [r0, r1), each adding its terms of two per-channel sums into the f32
// block sums b1 and b2 (`block` holds both); every kBlock rows the block sums join s1 and s2 (f64).
template <typename Row>
inline void blocked_sums(int64_t r0, int64_t r1, int64_t C, double* s1, double* s2, float* block, Row row) {
  float* b1 = block;
  float* b2 = block + C;
  for (int64_t start = r0; start < r1; start += kBlock) {
    int64_t end = std::min(r1, start + kBlock);
    std::fill(block, block + 2 * C, 0.f);
    for (int64_t r = start; r < end; r++) row(r, b1, b2);
    for (int64_t c = 0; c < C; c++) {
      s1[c] += b1[c];
      s2[c] += b2[c];
    }
  }
}

// Adds to s1 and s2 (f64, C) the sums over rows [r0, r1) of d = x[r, c] - shift[c] and of d². With the
// shift a value of the channel (the first row's), E[d²] - E[d]² loses little to cancellation, so one pass
// gives the variance.
void __attribute__((noinline)) sum_rows(const float* x, int64_t r0, int64_t r1, int64_t C, const float* shift,
                                         double* s1, double* s2, float* block) {
  int64_t v = C - C % 8;
  blocked_sums(r0, r1, C, s1, s2, block, [&](int64_t r, float* b1, float* b2) {
    const float* row = x + r * C;
    for (int64_t c = 0; c < v; c += 8) {
      __m256 d = _mm256_sub_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(shift + c));
      _mm256_storeu_ps(b1 + c, _mm256_add_ps(_mm256_loadu_ps(b1 + c), d));
      _mm256_storeu_ps(b2 + c, _mm256_fmadd_ps(d, d, _mm256_loadu_ps(b2 + c)));
    }
    for (int64_t c = v; c < C; c++) {
      float d = row[c] - shift[c];
      b1[c] += d;
      b2[c] += d * d;
    }
  });
}

// y[r, c] = act((x[r, c] - mean[c]) · scale[c] + beta[c]) for rows [r0, r1) (centred first, as libtorch does:
// x · scale + shift would cancel where the mean is large against the spread).
void __attribute__((noinline)) normalize_rows(const float* x, float* y, int64_t r0, int64_t r1, int64_t C,
                                               const float* scale, const float* mean, const float* beta,
                                               int64_t act) {
  int64_t v = C - C % 8;
  for (int64_t r = r0; r < r1; r++) {
    const float* in = x + r * C;
    float* out = y + r * C;
    for (int64_t c = 0; c < v; c += 8) {
      __m256 d = _mm256_sub_ps(_mm256_loadu_ps(in + c), _mm256_loadu_ps(mean + c));
      __m256 z = _mm256_fmadd_ps(d, _mm256_loadu_ps(scale + c), _mm256_loadu_ps(beta + c));
      _mm256_storeu_ps(out + c, act8(z, act));
    }
    for (int64_t c = v; c < C; c++) out[c] = act_scalar((in[c] - mean[c]) * scale[c] + beta[c], act);
  }
}

// Writes gz = g · act'(z), z = (x - mean) · scale + beta, for rows [r0, r1) into `gz_out` and adds to s1 and
// s2 (f64, C) their sums of gz and gz · (x - mean).
void __attribute__((noinline)) reduce_grad_rows(const float* x, const float* g, float* gz_out, int64_t r0,
                                                 int64_t r1, int64_t C, const float* scale, const float* mean,
                                                 const float* beta, int64_t act, double* s1, double* s2,
                                                 float* block) {
  int64_t v = C - C % 8;
  blocked_sums(r0, r1, C, s1, s2, block, [&](int64_t r, float* b1, float* b2) {
    const float* in = x + r * C;
    const float* gr = g + r * C;
    float* go = gz_out + r * C;
    for (int64_t c = 0; c < v; c += 8) {
      __m256 d = _mm256_sub_ps(_mm256_loadu_ps(in + c), _mm256_loadu_ps(mean + c));
      __m256 z = _mm256_fmadd_ps(d, _mm256_loadu_ps(scale + c), _mm256_loadu_ps(beta + c));
      __m256 gz = _mm256_mul_ps(_mm256_loadu_ps(gr + c), act_grad8(z, act));
      _mm256_storeu_ps(go + c, gz);
      _mm256_storeu_ps(b1 + c, _mm256_add_ps(_mm256_loadu_ps(b1 + c), gz));
      _mm256_storeu_ps(b2 + c, _mm256_fmadd_ps(gz, d, _mm256_loadu_ps(b2 + c)));
    }
    for (int64_t c = v; c < C; c++) {
      float d = in[c] - mean[c];
      float gz = gr[c] * act_grad_scalar(d * scale[c] + beta[c], act);
      go[c] = gz;
      b1[c] += gz;
      b2[c] += gz * d;
    }
  });
}

// gx[r, c] = k1[c] · gz[r, c] + k2[c] · (x - mean) + k3[c] for rows [r0, r1), written over gz.
void __attribute__((noinline)) input_grad_rows(const float* x, float* gz_gx, int64_t r0, int64_t r1, int64_t C,
                                                const float* mean, const float* k1, const float* k2,
                                                const float* k3) {
  int64_t v = C - C % 8;
  for (int64_t r = r0; r < r1; r++) {
    const float* in = x + r * C;
    float* out = gz_gx + r * C;
    for (int64_t c = 0; c < v; c += 8) {
      __m256 d = _mm256_sub_ps(_mm256_loadu_ps(in + c), _mm256_loadu_ps(mean + c));
      __m256 gz = _mm256_loadu_ps(out + c);
      __m256 o = _mm256_fmadd_ps(_mm256_loadu_ps(k2 + c), d, _mm256_loadu_ps(k3 + c));
      _mm256_storeu_ps(out + c, _mm256_fmadd_ps(_mm256_loadu_ps(k1 + c), gz, o));
    }
    for (int64_t c = v; c < C; c++) out[c] = k1[c] * out[c] + k2[c] * (in[c] - mean[c]) + k3[c];
  }
}

#pragma GCC pop_options

at::Tensor floats(const std::vector<double>& values) {
  auto t = at::empty({static_cast<int64_t>(values.size())}, at::kFloat);
  float* p = t.data_ptr<float>();
  for (size_t i = 0; i < values.size(); i++) p[i] = static_cast<float>(values[i]);
  return t;
}

// The kernels read C floats of each per-channel tensor: the shapes are checked, not assumed.
void check_inputs(const at::Tensor& x, std::initializer_list<const at::Tensor*> per_channel) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 4,
              "fused batch norm: a 4-D f32 CPU tensor expected");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "fused batch norm: a channels-last tensor expected");
  for (const at::Tensor* t : per_channel)
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->dim() == 1 && t->size(0) == x.size(1),
                "fused batch norm: per-channel f32 tensors of ", x.size(1), " values expected, got ", t->sizes());
}

// The per-channel scale of the normalisation: the activation's input is z = (x - mean) · scale + bias.
at::Tensor scale_of(const at::Tensor& weight, const at::Tensor& invstd) { return (weight * invstd).contiguous(); }

}  // namespace

namespace orchard {

BnActOut bn_act_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                        at::Tensor running_mean, at::Tensor running_var, double keep, bool unbiased, double eps,
                        int64_t act) {
  check_inputs(x, {&weight, &bias, &running_mean, &running_var});
  int64_t C = x.size(1), M = x.numel() / std::max<int64_t>(C, 1);
  TORCH_CHECK(M > 0, "fused batch norm: an empty batch");
  const float* xp = x.const_data_ptr<float>();
  std::vector<float> shift(xp, xp + C);
  auto sums = parallel_sums(M, C, 2 * C, [&](int64_t r0, int64_t r1, double* out) {
    std::vector<float> block(2 * C);
    sum_rows(xp, r0, r1, C, shift.data(), out, out + C, block.data());
  });
  std::vector<double> mean(C), var(C), inv(C);
  for (int64_t c = 0; c < C; c++) {
    double m = sums[c] / M;
    mean[c] = shift[c] + m;
    var[c] = std::max(0.0, sums[C + c] / M - m * m);
    inv[c] = 1.0 / std::sqrt(var[c] + eps);
  }
  at::Tensor mean_t = floats(mean), invstd_t = floats(inv);
  {
    // Running statistics: keep · running + (1 - keep) · batch, the variance unbiased as PyTorch's.
    std::vector<double> moved_var(var);
    if (unbiased && M > 1)
      for (auto& v : moved_var) v *= static_cast<double>(M) / (M - 1);
    at::NoGradGuard no_grad;
    running_mean.mul_(keep).add_(mean_t.to(running_mean.scalar_type()), 1.0 - keep);
    running_var.mul_(keep).add_(floats(moved_var).to(running_var.scalar_type()), 1.0 - keep);
  }
  return {bn_act_apply(x, weight, bias, mean_t, invstd_t, act), mean_t, invstd_t};
}

at::Tensor bn_act_apply(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                        const at::Tensor& mean, const at::Tensor& invstd, int64_t act) {
  int64_t C = x.size(1), M = x.numel() / std::max<int64_t>(C, 1);
  at::Tensor scale = scale_of(weight, invstd), beta = bias.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  const float *xp = x.const_data_ptr<float>(), *sp = scale.const_data_ptr<float>();
  const float *bp = beta.const_data_ptr<float>(), *mp = mean.const_data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, M, row_grain(C),
                   [&](int64_t r0, int64_t r1) { normalize_rows(xp, yp, r0, r1, C, sp, mp, bp, act); });
  return y;
}

BnActGrads bn_act_backward(const at::Tensor& x, const at::Tensor& grad, const at::Tensor& weight,
                           const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& invstd, int64_t act) {
  at::Tensor g = grad.contiguous(at::MemoryFormat::ChannelsLast);
  int64_t C = x.size(1), M = x.numel() / C;
  at::Tensor scale = scale_of(weight, invstd), beta = bias.contiguous();
  const float *xp = x.const_data_ptr<float>(), *gp = g.const_data_ptr<float>();
  const float *sp = scale.const_data_ptr<float>(), *bp = beta.const_data_ptr<float>();
  const float* mp = mean.const_data_ptr<float>();
  // gz goes into gx's memory; the second pass turns it into gx in place.
  at::Tensor gx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  float* gxp = gx.data_ptr<float>();
  auto sums = parallel_sums(M, C, 2 * C, [&](int64_t r0, int64_t r1, double* out) {
    std::vector<float> block(2 * C);
    reduce_grad_rows(xp, gp, gxp, r0, r1, C, sp, mp, bp, act, out, out + C, block.data());
  });
  // gx = scale · (gz - S1 / M - (x - mean) · invstd² · S2 / M) with S1 = Σ gz, S2 = Σ gz · (x - mean).
  std::vector<float> k1(C), k2(C), k3(C);
  std::vector<double> grad_weight(C), grad_bias(C);
  const float* ip = invstd.const_data_ptr<float>();
  for (int64_t c = 0; c < C; c++) {
    double s1 = sums[c], s2 = sums[C + c], a = sp[c], i = ip[c];
    double b = -a * i * i * s2 / M;
    k1[c] = static_cast<float>(a);
    k2[c] = static_cast<float>(b);
    k3[c] = static_cast<float>(-a * s1 / M);
    grad_weight[c] = s2 * i;
    grad_bias[c] = s1;
  }
  at::parallel_for(0, M, row_grain(C), [&](int64_t r0, int64_t r1) {
    input_grad_rows(xp, gxp, r0, r1, C, mp, k1.data(), k2.data(), k3.data());
  });
  return {gx, floats(grad_weight).to(weight.scalar_type()), floats(grad_bias).to(bias.scalar_type())};
}

}  // namespace orchard

namespace {

struct BnAct : public torch::autograd::Function<BnAct> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var,
                            double keep, bool unbiased, double eps, int64_t act) {
    auto out = orchard::bn_act_forward(x, weight, bias, running_mean, running_var, keep, unbiased, eps, act);
    ctx->save_for_backward({x, weight, bias});
    ctx->saved_data["mean"] = out.mean;
    ctx->saved_data["invstd"] = out.invstd;
    ctx->saved_data["act"] = act;
    return out.y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto g = orchard::bn_act_backward(saved[0], grads[0], saved[1], saved[2], ctx->saved_data["mean"].toTensor(),
                                      ctx->saved_data["invstd"].toTensor(), ctx->saved_data["act"].toInt());
    return {g.x, g.weight, g.bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// 1 when this CPU runs the fused training kernels (AVX2 and FMA), this file's and channel_scale.cpp's.
int orchard_fused_train_available() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
}

// act(x · scale + shift) per channel over channels-last f32 x, in one pass and without autograd: a batch norm
// frozen at its running statistics and its activation, in inference (libtorch runs the two as two passes).
// `act` as below.
int orchard_affine_act(at::Tensor** out, const at::Tensor* x, const at::Tensor* scale, const at::Tensor* shift,
                       int64_t act, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    TORCH_CHECK(act >= kNone && act <= kSilu, "affine activation: unknown activation ", act);
    TORCH_CHECK(orchard_fused_train_available(), "affine activation: this CPU lacks AVX2 or FMA");
    check_inputs(*x, {scale, shift});
    const int64_t C = x->size(1), M = x->numel() / std::max<int64_t>(C, 1);
    const at::Tensor s = scale->contiguous(), t = shift->contiguous(), zeros = at::zeros({C}, s.options());
    at::Tensor y = at::empty_like(*x, at::MemoryFormat::ChannelsLast);
    const float *xp = x->const_data_ptr<float>(), *sp = s.const_data_ptr<float>(), *tp = t.const_data_ptr<float>();
    const float* zp = zeros.const_data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, M, row_grain(C),
                     [&](int64_t r0, int64_t r1) { normalize_rows(xp, yp, r0, r1, C, sp, zp, tp, act); });
    *out = new at::Tensor(y);
  });
}

// act(batch_norm(x)) in training, one autograd node; `weight` may be null (no learnt scale); the running
// statistics move as keep · running + (1 - keep) · batch, the variance unbiased when `unbiased`. `act` is
// 0 none, 1 relu, 2 relu6, 3 silu.
int orchard_bn_act_train(at::Tensor** out, const at::Tensor* x, const at::Tensor* weight, const at::Tensor* bias,
                         const at::Tensor* running_mean, const at::Tensor* running_var, double keep, int unbiased,
                         double eps, int64_t act, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    TORCH_CHECK(act >= kNone && act <= kSilu, "fused batch norm: unknown activation ", act);
    TORCH_CHECK(orchard_fused_train_available(), "fused batch norm: this CPU lacks AVX2 or FMA");
    // No learnt scale: a scale of ones that nothing trains (an undefined input has no device for autograd).
    at::Tensor w = weight == nullptr ? at::ones({x->size(1)}, x->options()) : *weight;
    *out = new at::Tensor(BnAct::apply(*x, w, *bias, *running_mean, *running_var, keep, unbiased != 0, eps, act));
  });
}
}
