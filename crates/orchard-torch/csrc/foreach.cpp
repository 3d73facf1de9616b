// Multi-tensor ("foreach") updates over all parameters at once: a few fused kernel launches per step instead
// of a dozen per parameter, which on a GPU was half of a training step's time. tch generates no bindings
// for libtorch's list-mutating operations, so they are called here. The functions never throw (`shim.h`).
#include "shim.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

namespace {

using orchard::list;

// Every update runs outside autograd.
template <typename F>
int guarded(char* err, size_t len, F body) {
  return orchard::guarded(err, len, [&] {
    at::AutoGradMode no_grad(false);
    body();
  });
}

}  // namespace

// The constants of one fused Adam update (`FusedConstants` on the Rust side).
struct FusedAdamConstants {
  double step, lr, beta1, beta2, eps, weight_decay;
  int decoupled;
};

extern "C" {

// targets[i] ← targets[i] + weight · (ends[i] − targets[i])
int orchard_foreach_lerp(at::Tensor* const* targets, at::Tensor* const* ends, size_t n, double weight, char* err,
                         size_t len) {
  return guarded(err, len, [&] { at::_foreach_lerp_(list(targets, n), list(ends, n), weight); });
}

// Adam in the form shared by Keras' Adam and PyTorch's AdamW:
//   θ ← θ·(1 − decay);  g ← g + l2·θ;  m ← lerp(m, g, 1 − β1);  v ← lerp(v, g², 1 − β2);
//   θ ← θ − step · m / (√v · denom_scale + ε)
int orchard_foreach_adam(at::Tensor* const* params, at::Tensor* const* grads, at::Tensor* const* m,
                         at::Tensor* const* v, size_t n, double step, double beta1, double beta2, double eps, double l2,
                         double decay, double denom_scale, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto p = list(params, n), g = list(grads, n), ms = list(m, n), vs = list(v, n);
    if (decay != 0.0) at::_foreach_mul_(p, 1.0 - decay);
    if (l2 != 0.0) g = at::_foreach_add(g, p, l2);
    at::_foreach_lerp_(ms, g, 1.0 - beta1);
    at::_foreach_lerp_(vs, at::_foreach_mul(g, g), 1.0 - beta2);
    auto denom = at::_foreach_sqrt(vs);
    if (denom_scale != 1.0) at::_foreach_mul_(denom, denom_scale);
    at::_foreach_add_(denom, eps);
    at::_foreach_addcdiv_(p, ms, denom, -step);
  });
}

// libtorch's fused Adam: one pass over each parameter's memory for the moments, the bias corrections and the
// update (`_fused_adam_` / `_fused_adamw_`, PyTorch's `Adam(fused=True)`), where the multi-tensor form above
// makes seven, two of them into temporaries. It computes
//   g ← g + wd·θ (adam) or θ ← θ·(1 − lr·wd) (adamw);  m ← lerp(m, g, 1 − β1);  v ← β2·v + (1 − β2)·g²;
//   θ ← θ − lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + ε)
// at step `step` for every parameter. Its kernels walk the four tensors of a parameter as one flat array (and
// need one type and device), so it runs only when each parameter's gradient and moments have its strides and
// cover their memory densely: returns 1 without touching anything otherwise, 0 once done, -1 on an error.
// `lists` holds the parameters, gradients, first and second moments, `n` handles each.
int orchard_fused_adam(at::Tensor* const* const* lists, size_t n, const FusedAdamConstants* c, char* err, size_t len) {
  if (n == 0) return 0;
  auto p = list(lists[0], n), g = list(lists[1], n), ms = list(lists[2], n), vs = list(lists[3], n);
  // The same memory order as the parameter: equal strides wherever a dimension has more than one element (a
  // size-1 dimension's stride is arbitrary: a 1×1 convolution's gradient may differ from its weight there).
  auto same_order = [](const at::Tensor& a, const at::Tensor& b) {
    if (a.sizes() != b.sizes()) return false;
    for (int64_t d = 0; d < a.dim(); d++) {
      if (a.size(d) != 1 && a.stride(d) != b.stride(d)) return false;
    }
    return true;
  };
  for (size_t i = 0; i < n; i++) {
    for (const at::Tensor* t : {&p[i], &g[i], &ms[i], &vs[i]}) {
      if (!t->defined() || t->scalar_type() != p[0].scalar_type() || t->device() != p[0].device() ||
          !same_order(*t, p[i]) || !t->is_non_overlapping_and_dense()) {
        return 1;
      }
    }
  }
  return guarded(err, len, [&] {
    // The kernels read each parameter's step from a float tensor; they all share this step.
    auto t = at::full({}, c->step, p[0].options().dtype(at::kFloat));
    std::vector<at::Tensor> steps(n, t);
    if (c->decoupled) {
      at::_fused_adamw_(p, g, ms, vs, {}, steps, c->lr, c->beta1, c->beta2, c->weight_decay, c->eps, false, false);
    } else {
      at::_fused_adam_(p, g, ms, vs, {}, steps, c->lr, c->beta1, c->beta2, c->weight_decay, c->eps, false, false);
    }
  });
}

// SGD as PyTorch's: g ← g + l2·θ;  buf ← μ·buf + g;  d = g + μ·buf (Nesterov) or buf;  θ ← θ − lr·d.
// With μ = 0, `bufs` is not read and d = g.
int orchard_foreach_sgd(at::Tensor* const* params, at::Tensor* const* grads, at::Tensor* const* bufs, size_t n,
                        double lr, double momentum, int nesterov, double l2, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto p = list(params, n), g = list(grads, n);
    if (l2 != 0.0) g = at::_foreach_add(g, p, l2);
    auto d = g;
    if (momentum != 0.0) {
      auto b = list(bufs, n);
      at::_foreach_mul_(b, momentum);
      at::_foreach_add_(b, g);
      d = nesterov ? at::_foreach_add(g, b, momentum) : b;
    }
    at::_foreach_add_(p, d, -lr);
  });
}

// grads[i] ← grads[i] · inv_scale; found_inf becomes 1 where any value is not finite (GradScaler's kernel).
int orchard_foreach_unscale(at::Tensor* const* grads, size_t n, at::Tensor* found_inf, at::Tensor* inv_scale, char* err,
                            size_t len) {
  return guarded(err, len, [&] { at::_amp_foreach_non_finite_check_and_unscale_(list(grads, n), *found_inf, *inv_scale); });
}
}
