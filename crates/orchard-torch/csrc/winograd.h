// Winograd's convolutions (winograd.cpp) for the other shims: the inference kernels, and the training node
// (winograd_train.cpp) that runs its forward and input gradient through them. CPUs with AVX-512F only; the
// caller checks. Arguments as winograd.cpp's C functions describe them.
#pragma once

#include <ATen/ATen.h>

namespace orchard {

// act(conv(x) + bias) by F(4×4, 3×3): u 36 × C × Kp, zero padding `top`, `left` (≤ 2) before the image.
at::Tensor winograd_square(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias, int64_t outputs,
                           int64_t top, int64_t left, int64_t out_h, int64_t out_w, bool relu);

// act(conv(x) + bias) by F(m, r) along the rows (an r×1 kernel) or the columns (1×r): u α × C × Kp.
at::Tensor winograd_line(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias, const at::Tensor& bt,
                         const at::Tensor& at, int64_t outputs, bool rows, int64_t before, int64_t out_h,
                         int64_t out_w, bool relu);

// The weight gradient's terms dU (36 × K × C) of a 3×3 stride-1 convolution of x padded by `top`, `left`
// whose output gradient is dy: the weight's gradient is Σ_ξ (G ⊗ G)[ξ] dU[ξ] (the caller's one product).
at::Tensor winograd_square_weight_grad(const at::Tensor& x, const at::Tensor& dy, int64_t top, int64_t left);

// The same for F(m, r) along the rows or columns: dU α × K × C, the weight's gradient Σ_ξ G[ξ] dU[ξ].
at::Tensor winograd_line_weight_grad(const at::Tensor& x, const at::Tensor& dy, const at::Tensor& bt,
                                     const at::Tensor& at, bool rows, int64_t before);

}  // namespace orchard
