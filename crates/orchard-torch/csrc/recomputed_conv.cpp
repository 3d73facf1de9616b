// Convolutions whose input autograd does not keep: the node keeps what made the input, a cheap pass away,
// and makes the input again in the backward. EfficientNet's blocks keep five tensors of the expanded width
// per block when each operation is its own node; two of them only feed a convolution's weight gradient:
// - the depthwise convolution's input, act(batch_norm(e)) of the expand convolution's output e, which the
//   batch norm's node keeps anyway (`BnActConv`);
// - the projection's input x · s, squeeze-excitation's gated activation, whose x the gate's backward
//   needs anyway (`ScaledConv`).
// Each recomputation is one pass over the tensor: B7's training step (600, batch 2) peaks at 4835 MiB
// instead of 6891 and takes ~2.5% longer.
//
// Channels-last f32 CPU tensors on CPUs with AVX2 and FMA, outside autocast; the convolution is libtorch's
// (oneDNN), forward and backward.
#include "bn_act.h"
#include "channel_scale.h"
#include "shim.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <array>
#include <vector>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A convolution's stride, zero padding (top, bottom, left, right; TF's "same" may put more after than
// before) and groups; no dilation, no bias.
struct Geometry {
  int64_t stride;
  std::array<int64_t, 4> pads;
  int64_t groups;

  bool symmetric() const { return pads[0] == pads[1] && pads[2] == pads[3]; }
  // The padding libtorch's convolution applies: all of it when symmetric, else none (the input is padded).
  std::vector<int64_t> inner() const {
    return symmetric() ? std::vector<int64_t>{pads[0], pads[2]} : std::vector<int64_t>{0, 0};
  }
  at::Tensor outer(const at::Tensor& x) const {
    if (symmetric()) return x;
    return at::constant_pad_nd(x, {pads[2], pads[3], pads[0], pads[1]}).contiguous(at::MemoryFormat::ChannelsLast);
  }

  static Geometry from(const std::vector<int64_t>& v) { return {v[0], {v[1], v[2], v[3], v[4]}, v[5]}; }
};

at::Tensor convolve(const at::Tensor& x, const at::Tensor& w, const Geometry& geo) {
  return at::convolution(geo.outer(x), w, std::nullopt, {geo.stride, geo.stride}, geo.inner(), {1, 1}, false,
                         {0, 0}, geo.groups);
}

// The gradients of the convolution's input and weight at input x.
std::pair<at::Tensor, at::Tensor> convolve_backward(const at::Tensor& grad, const at::Tensor& x,
                                                    const at::Tensor& w, const Geometry& geo) {
  auto [gx, gw, _] = at::convolution_backward(grad, geo.outer(x), w, std::nullopt, {geo.stride, geo.stride},
                                              geo.inner(), {1, 1}, false, {0, 0}, geo.groups, {true, true, false});
  if (!geo.symmetric())
    gx = gx.narrow(2, geo.pads[0], x.size(2)).narrow(3, geo.pads[2], x.size(3));
  return {gx.contiguous(at::MemoryFormat::ChannelsLast), gw};
}

// conv(act(batch_norm(x)), w): the batch norm's input kept, its output made again in the backward.
struct BnActConv : public torch::autograd::Function<BnActConv> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var, double keep,
                            bool unbiased, double eps, int64_t act, const at::Tensor& conv_weight,
                            std::vector<int64_t> geometry) {
    auto bn = orchard::bn_act_forward(x, weight, bias, running_mean, running_var, keep, unbiased, eps, act);
    at::Tensor out = convolve(bn.y, conv_weight, Geometry::from(geometry));
    ctx->save_for_backward({x, weight, bias, conv_weight});
    ctx->saved_data["mean"] = bn.mean;
    ctx->saved_data["invstd"] = bn.invstd;
    ctx->saved_data["act"] = act;
    ctx->saved_data["geometry"] = geometry;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &bias = saved[2], &conv_weight = saved[3];
    at::Tensor mean = ctx->saved_data["mean"].toTensor(), invstd = ctx->saved_data["invstd"].toTensor();
    int64_t act = ctx->saved_data["act"].toInt();
    auto geometry = Geometry::from(ctx->saved_data["geometry"].toIntVector());
    at::Tensor gy, gw;
    {
      at::Tensor y = orchard::bn_act_apply(x, weight, bias, mean, invstd, act);
      std::tie(gy, gw) = convolve_backward(grads[0], y, conv_weight, geometry);
    }  // y freed before the batch norm's backward allocates
    auto g = orchard::bn_act_backward(x, gy, weight, bias, mean, invstd, act);
    at::Tensor none;
    return {g.x, g.weight, g.bias, none, none, none, none, none, none, gw, none};
  }
};

// conv(x · s, w) for a 1×1 convolution w, s one gate per sample and channel: x kept (the gate's backward needs
// it), x · s made again in the backward. (Both passes as matrix products over x itself, each sample's gate
// folded into its copy of the weight, stored nothing and made nothing again, but ran EfficientNet-B0's and
// B7's training steps 10% slower than oneDNN's convolutions of the product.)
struct ScaledConv : public torch::autograd::Function<ScaledConv> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& s,
                            const at::Tensor& conv_weight) {
    const Geometry geo{1, {0, 0, 0, 0}, 1};
    at::Tensor out = convolve(at::mul(x, s), conv_weight, geo);
    ctx->save_for_backward({x, s, conv_weight});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &s = saved[1], &conv_weight = saved[2];
    const Geometry geo{1, {0, 0, 0, 0}, 1};
    at::Tensor gy, gw;
    {
      at::Tensor y = at::mul(x, s);
      std::tie(gy, gw) = convolve_backward(grads[0], y, conv_weight, geo);
    }
    auto [gx, gs] = orchard::channel_scale_backward(x, s, gy);
    return {gx, gs, gw};
  }
};

void check(const at::Tensor& x, const at::Tensor& conv_weight) {
  TORCH_CHECK(orchard_fused_train_available(), "recomputed convolution: this CPU lacks AVX2 or FMA");
  TORCH_CHECK(!at::autocast::is_autocast_enabled(at::kCPU), "recomputed convolution: not under CPU autocast");
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu() &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "recomputed convolution: a channels-last 4-D f32 CPU tensor expected");
  TORCH_CHECK(conv_weight.dim() == 4 && conv_weight.scalar_type() == at::kFloat && conv_weight.device().is_cpu(),
              "recomputed convolution: a 4-D f32 CPU weight expected");
}

}  // namespace

extern "C" {

// conv(act(batch_norm(x))) in training, one autograd node; the batch norm as orchard_bn_act_train's (weight may
// be null), the convolution's `geometry` six values: stride, padding top, bottom, left, right, groups.
int orchard_bn_act_conv_train(at::Tensor** out, const at::Tensor* x, const at::Tensor* weight,
                              const at::Tensor* bias, const at::Tensor* running_mean,
                              const at::Tensor* running_var, double keep, int unbiased, double eps, int64_t act,
                              const at::Tensor* conv_weight, const int64_t* geometry, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    check(*x, *conv_weight);
    TORCH_CHECK(geometry[0] >= 1 && geometry[5] >= 1, "recomputed convolution: stride and groups from 1");
    for (int i = 1; i <= 4; i++) TORCH_CHECK(geometry[i] >= 0, "recomputed convolution: negative padding");
    TORCH_CHECK(act >= 0 && act <= 3, "recomputed convolution: unknown activation ", act);
    at::Tensor w = weight == nullptr ? at::ones({x->size(1)}, x->options()) : *weight;
    std::vector<int64_t> geo(geometry, geometry + 6);
    *out = new at::Tensor(BnActConv::apply(*x, w, *bias, *running_mean, *running_var, keep, unbiased != 0, eps,
                                           act, *conv_weight, geo));
  });
}

// conv(x · s) in training for a 1×1 convolution without bias (K×C×1×1), one autograd node; s N×C×1×1.
int orchard_scaled_conv_train(at::Tensor** out, const at::Tensor* x, const at::Tensor* s,
                              const at::Tensor* conv_weight, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    check(*x, *conv_weight);
    TORCH_CHECK(s->scalar_type() == at::kFloat && s->sizes() == at::IntArrayRef({x->size(0), x->size(1), 1, 1}),
                "recomputed convolution: gates of shape N×C×1×1 expected");
    TORCH_CHECK(conv_weight->size(1) == x->size(1) && conv_weight->size(2) == 1 && conv_weight->size(3) == 1,
                "recomputed convolution: a 1×1 weight over the input's ", x->size(1), " channels expected, got ",
                conv_weight->sizes());
    *out = new at::Tensor(ScaledConv::apply(*x, *s, *conv_weight));
  });
}
}
