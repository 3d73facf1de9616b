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
