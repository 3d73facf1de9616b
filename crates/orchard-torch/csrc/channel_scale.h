// The backward of x · s, s one gate per sample and channel (squeeze-excitation), over a channels-last f32
// CPU tensor in one pass (channel_scale.cpp), for the autograd nodes that scale: channel_scale.cpp's own and
// recomputed_conv.cpp's. The caller checks the CPU has AVX2 and FMA (`orchard_fused_train_available`).
#pragma once

#include <ATen/ATen.h>

#include <utility>

namespace orchard {

// (g · s, Σ over each sample's positions of g · x), the gradients of x (N×C×H×W) and s (N×C×1×1).
std::pair<at::Tensor, at::Tensor> channel_scale_backward(const at::Tensor& x, const at::Tensor& s,
                                                         const at::Tensor& grad);

}  // namespace orchard
