// Convolutions by Winograd's minimal filtering in training: one autograd node whose forward, input gradient
// and weight gradient run winograd.cpp's kernels. For a stride-1 convolution the input gradient is itself a
// stride-1 convolution, of the output gradient with the kernel flipped and its channels swapped, padded by
// k − 1 − p before: the same kernels run it. The weight gradient is Σ over the tiles of the products of the
// input's tile transforms and the output gradient's (the adjoint of the output transform), one sum per
// term, taken back to the taps by one matrix product with the weight transform. Each pass transforms the
// weights it needs (one matrix product over the taps: 0.8 ms for 256 × 256 channels) — the weights change
// every step, so nothing is kept between steps.
//
// What it saves: 3×3 layers run 1.1–2.8× faster forward than oneDNN's direct kernel (ResNet's 64 → 64 at
// 56², batch 16: 16.5 → 7.3 ms; IRv2's 80 → 192 at 71²: 117.2 → 57.9 ms), the input gradient alike, the
// weight gradient 1.1–2.4× (ResNet's 128 → 128 at 28²: 18.0 → 7.9 ms; IRv2's 7×1 160 → 192 at 17²: 12.8 →
// 7.7). Channels-last f32 CPU tensors on CPUs with AVX-512F, outside autocast; symmetric padding, stride 1,
// no groups, no bias (the callers' batch norm follows).
#include "shim.h"
#include "winograd.h"

#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <vector>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The kernels' weights, terms × C × Kp, of a K×C×kh×kw weight `w` (output channels first): one matrix
// product of `t` (terms × taps: G ⊗ G for a 3×3 kernel, G for a 1×r or r×1 one) with the weight's taps as
// rows of C·K (libtorch's batched product of G with each row's taps in turn took 4× longer at 512²). Kp: K
// padded with zeros to 16.
at::Tensor transform(const at::Tensor& w, const at::Tensor& t) {
  const int64_t K = w.size(0), C = w.size(1), taps = w.size(2) * w.size(3);
  const at::Tensor u = at::mm(t, w.permute({2, 3, 1, 0}).reshape({taps, C * K})).view({t.size(0), C, K});
  const int64_t Kp = (K + 15) / 16 * 16;
  return Kp == K ? u : at::constant_pad_nd(u, {0, Kp - K});
}

// The convolution of channels-last x by the kernels, zero-padded by `before` (top, left), `out` (h, w).
at::Tensor convolve(const at::Tensor& x, const at::Tensor& w, const at::Tensor& g, const at::Tensor& bt,
                    const at::Tensor& at_, std::array<int64_t, 2> before, std::array<int64_t, 2> out) {
  const at::Tensor u = transform(w, g);
  const int64_t K = w.size(0);
  const at::Tensor zero = at::zeros({K}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (w.size(2) == 3 && w.size(3) == 3)
    return orchard::winograd_square(x, u, zero, K, before[0], before[1], out[0], out[1], false);
  const bool rows = w.size(3) == 1;
  return orchard::winograd_line(x, u, zero, bt, at_, K, rows, rows ? before[0] : before[1], out[0], out[1], false);
}

// conv(x, w) padded symmetrically by `padding` (rows, columns), stride 1.
struct WinogradConv : public torch::autograd::Function<WinogradConv> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& g,
                            const at::Tensor& bt, const at::Tensor& at_, std::vector<int64_t> padding) {
    const int64_t oh = x.size(2) + 2 * padding[0] - w.size(2) + 1, ow = x.size(3) + 2 * padding[1] - w.size(3) + 1;
    at::Tensor y = convolve(x, w, g, bt, at_, {padding[0], padding[1]}, {oh, ow});
    ctx->save_for_backward({x, w, g, bt, at_});
    ctx->saved_data["padding"] = padding;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &g = saved[2], &bt = saved[3], &at_ = saved[4];
    const auto padding = ctx->saved_data["padding"].toIntVector();
    const at::Tensor grad = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t kh = w.size(2), kw = w.size(3);
    at::Tensor gx, gw;
    if (ctx->needs_input_grad(0)) {
      const at::Tensor flipped = w.flip({2, 3}).transpose(0, 1);
      gx = convolve(grad, flipped, g, bt, at_, {kh - 1 - padding[0], kw - 1 - padding[1]}, {x.size(2), x.size(3)});
    }
    if (ctx->needs_input_grad(1)) {
      const bool rows = kw == 1;
      const at::Tensor du = kh == 3 && kw == 3
                                ? orchard::winograd_square_weight_grad(x, grad, padding[0], padding[1])
                                : orchard::winograd_line_weight_grad(x, grad, bt, at_, rows, padding[rows ? 0 : 1]);
      const int64_t K = w.size(0), C = w.size(1);
      gw = at::mm(g.t(), du.view({du.size(0), K * C}))
               .view({kh, kw, K, C})
               .permute({2, 3, 0, 1})
               .contiguous(w.suggest_memory_format());
    }
    at::Tensor none;
    return {gx, gw, none, none, none, none};
  }
};

}  // namespace

extern "C" {

// Whether autograd records operations on this thread now (libtorch's grad mode).
int orchard_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }

// conv(x, w) in training by Winograd's kernels, one autograd node (differentiable in x and w). x: N×C×H×W
// channels-last f32 on the CPU; w: K×C×kh×kw f32, 3×3 or 1×r / r×1; padding: rows, columns (symmetric, less
// than the kernel along its axis, none across a one-axis kernel); g: the scheme's weight transform (G, α × r; for the
// 3×3 kernel of winograd.cpp's F(4×4, 3×3), as G ⊗ G: 36 × 9); bt, at: a one-axis scheme's Bᵀ and Aᵀ (ignored for 3×3).
int orchard_winograd_conv_train(at::Tensor** out, const at::Tensor* x, const at::Tensor* w, const at::Tensor* g,
                                const at::Tensor* bt, const at::Tensor* at, const int64_t* padding, char* err,
                                size_t len) {
  return orchard::guarded(err, len, [&] {
    TORCH_CHECK(!at::autocast::is_autocast_enabled(at::kCPU), "Winograd training: not under CPU autocast");
    TORCH_CHECK(x->dim() == 4 && x->scalar_type() == at::kFloat && x->device().is_cpu() &&
                    x->is_contiguous(at::MemoryFormat::ChannelsLast),
                "Winograd training: a channels-last 4-D f32 CPU input expected");
    TORCH_CHECK(w->dim() == 4 && w->scalar_type() == at::kFloat && w->device().is_cpu() && w->size(1) == x->size(1),
                "Winograd training: a K×C×kh×kw f32 CPU weight over the input's channels expected");
    const int64_t kh = w->size(2), kw = w->size(3), ph = padding[0], pw = padding[1];
    const bool square = kh == 3 && kw == 3, line = (kh == 1) != (kw == 1);
    TORCH_CHECK(square || line, "Winograd training: a 3×3, 1×r or r×1 kernel expected, got ", kh, "×", kw);
    const bool fits = square ? ph < 3 && pw < 3 : kh == 1 ? ph == 0 && pw < kw : pw == 0 && ph < kh;
    TORCH_CHECK(ph >= 0 && pw >= 0 && fits, "Winograd training: padding less than the kernel along its axis, none across");
    TORCH_CHECK(g->dim() == 2 && g->size(1) == kh * kw && g->scalar_type() == at::kFloat &&
                    (!square || g->size(0) == 36),
                "Winograd training: the weight transform must be terms × taps f32 (36 × 9 for 3×3)");
    TORCH_CHECK(x->size(2) + 2 * ph >= kh && x->size(3) + 2 * pw >= kw, "Winograd training: the kernel exceeds the input");
    std::vector<int64_t> pads{ph, pw};
    *out = new at::Tensor(WinogradConv::apply(*x, *w, g->contiguous(), *bt, *at, pads));
  });
}
}
