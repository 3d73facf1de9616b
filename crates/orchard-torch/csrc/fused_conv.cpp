// oneDNN's fused convolutions: convolution + bias + activation (and + a residual) in one kernel, over weights
// reordered once into oneDNN's blocked format. libtorch registers them as `mkldnn::_convolution_pointwise`
// (+ `.binary`) and `mkldnn::_reorder_convolution_weight`, the ops inductor calls on the CPU when it freezes a
// model; tch binds neither, so they are looked up in the dispatcher by schema and called boxed. The functions
// never throw (`shim.h`).
#include "shim.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>

#include <optional>
#include <string>

namespace {

using c10::IValue;

// The operator `name.overload`, or none when this libtorch lacks it (a build without oneDNN).
std::optional<c10::OperatorHandle> find(const char* name, const char* overload) {
  return c10::Dispatcher::singleton().findSchema({name, overload});
}

const std::optional<c10::OperatorHandle>& pointwise() {
  static const auto op = find("mkldnn::_convolution_pointwise", "");
  return op;
}

const std::optional<c10::OperatorHandle>& pointwise_binary() {
  static const auto op = find("mkldnn::_convolution_pointwise", "binary");
  return op;
}

// The same, writing into the residual's storage: oneDNN's sum post-op, which reads the residual where it
// writes the result instead of streaming a second tensor in (IRv2's 384→1088 residual convolution 19.3 →
// 18.3 ms a batch of 16).
const std::optional<c10::OperatorHandle>& pointwise_binary_inplace() {
  static const auto op = find("mkldnn::_convolution_pointwise_", "binary");
  return op;
}

const std::optional<c10::OperatorHandle>& reorder_weight() {
  static const auto op = find("mkldnn::_reorder_convolution_weight", "");
  return op;
}

std::vector<int64_t> ints(const int64_t* values, size_t n) { return std::vector<int64_t>(values, values + n); }

IValue optional_tensor(const at::Tensor* t) { return t == nullptr ? IValue() : IValue(*t); }

IValue optional_string(const char* s) { return s == nullptr ? IValue() : IValue(std::string(s)); }

// The activation's scalars (hardtanh's bounds) as the schema's `Scalar?[]`.
IValue scalars(const double* values, size_t n) {
  c10::List<std::optional<at::Scalar>> list;
  for (size_t i = 0; i < n; i++) list.push_back(at::Scalar(values[i]));
  return IValue(list);
}

// Runs `op` on `stack` without autograd and hands its one output to the caller as a new tch handle.
void call(const c10::OperatorHandle& op, std::vector<IValue>& stack, at::Tensor** out) {
  at::AutoGradMode no_grad(false);
  op.callBoxed(stack);
  *out = new at::Tensor(stack.back().toTensor());
}

void require(const std::optional<c10::OperatorHandle>& op, const char* name) {
  if (!op) throw std::runtime_error(std::string("this libtorch has no ") + name);
}

}  // namespace

extern "C" {

// 1 when libtorch was built with oneDNN, the CPU supports it, and the three operators are registered.
int orchard_fused_conv_available() {
  try {
    return at::hasMKLDNN() && pointwise() && pointwise_binary() && pointwise_binary_inplace() && reorder_weight()
               ? 1
               : 0;
  } catch (...) {
    return 0;
  }
}

// `weight` (OIHW) reordered into oneDNN's preferred format for inputs of `input_size` (N, C, H, W).
int orchard_fused_conv_reorder(at::Tensor** out, const at::Tensor* weight, const int64_t* padding,
                               const int64_t* stride, int64_t groups, const int64_t* input_size, char* err,
                               size_t len) {
  return orchard::guarded(err, len, [&] {
    require(reorder_weight(), "mkldnn::_reorder_convolution_weight");
    std::vector<IValue> stack{*weight,        ints(padding, 2), ints(stride, 2), std::vector<int64_t>{1, 1},
                              IValue(groups), ints(input_size, 4)};
    call(*reorder_weight(), stack, out);
  });
}

// unary(conv(x, weight) + bias); `attr` is oneDNN's post-op name ("none", "relu", "swish", "sigmoid",
// "hardtanh" with scalars min, max, ...); `bias` may be null.
int orchard_fused_conv(at::Tensor** out, const at::Tensor* x, const at::Tensor* weight, const at::Tensor* bias,
                       const int64_t* padding, const int64_t* stride, int64_t groups, const char* attr,
                       const double* attr_scalars, size_t n_scalars, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    require(pointwise(), "mkldnn::_convolution_pointwise");
    std::vector<IValue> stack{*x,
                              *weight,
                              optional_tensor(bias),
                              ints(padding, 2),
                              ints(stride, 2),
                              std::vector<int64_t>{1, 1},
                              IValue(groups),
                              std::string(attr),
                              scalars(attr_scalars, n_scalars),
                              IValue()};
    call(*pointwise(), stack, out);
  });
}

// unary(conv(x, weight) + bias + other); `unary` null for none, else "relu", ...; `other` has the output's
// shape. With `into` nonzero the result is written into `other` (channels-last dense, read by no one after)
// and `out` is `other`.
int orchard_fused_conv_add(at::Tensor** out, const at::Tensor* x, const at::Tensor* other, const at::Tensor* weight,
                           const at::Tensor* bias, const int64_t* padding, const int64_t* stride, int64_t groups,
                           const char* unary, int into, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    if (into) require(pointwise_binary_inplace(), "mkldnn::_convolution_pointwise_.binary");
    else require(pointwise_binary(), "mkldnn::_convolution_pointwise.binary");
    std::vector<IValue> stack{into ? *other : *x,
                              into ? *x : *other,
                              *weight,
                              optional_tensor(bias),
                              ints(padding, 2),
                              ints(stride, 2),
                              std::vector<int64_t>{1, 1},
                              IValue(groups),
                              std::string("add"),
                              IValue(),
                              optional_string(unary),
                              c10::List<std::optional<at::Scalar>>(),
                              IValue()};
    call(into ? *pointwise_binary_inplace() : *pointwise_binary(), stack, out);
  });
}
}
