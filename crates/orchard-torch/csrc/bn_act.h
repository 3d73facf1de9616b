// Batch norm in training followed by an activation, as passes over a channels-last f32 CPU tensor
// (bn_act.cpp), for the autograd nodes that run it: bn_act.cpp's own and recomputed_conv.cpp's, which keeps
// only the batch norm's input and makes its output again in the backward. `act`: 0 none, 1 relu, 2 relu6,
// 3 silu. The caller checks the CPU has AVX2 and FMA (`orchard_fused_train_available`).
#pragma once

#include <ATen/ATen.h>

// 1 when this CPU runs the fused training kernels (AVX2 and FMA).
extern "C" int orchard_fused_train_available();

namespace orchard {

struct BnActOut {
  at::Tensor y;       // act((x - mean) · weight · invstd + bias)
  at::Tensor mean;    // the batch's, per channel
  at::Tensor invstd;  // 1 / sqrt(biased variance + eps), per channel
};

struct BnActGrads {
  at::Tensor x, weight, bias;
};

// Normalises by the batch's statistics and moves the running ones: keep · running + (1 - keep) · batch, the
// variance unbiased when `unbiased`. Checks the shapes.
BnActOut bn_act_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                        at::Tensor running_mean, at::Tensor running_var, double keep, bool unbiased, double eps,
                        int64_t act);

// The forward's output again, from its statistics: one pass.
at::Tensor bn_act_apply(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                        const at::Tensor& mean, const at::Tensor& invstd, int64_t act);

// The gradients of x, weight and bias from the output's gradient: two passes.
BnActGrads bn_act_backward(const at::Tensor& x, const at::Tensor& grad, const at::Tensor& weight,
                           const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& invstd, int64_t act);

}  // namespace orchard
