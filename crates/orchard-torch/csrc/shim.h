// What every C++ shim shares: C functions that never throw. `guarded` runs a body, and on an exception
// copies its message into `err` (`len` bytes) and returns -1; 0 on success.
#pragma once

#include <ATen/ATen.h>

#include <cstring>
#include <exception>
#include <vector>

namespace orchard {

// The tensors behind `n` tch handles.
inline std::vector<at::Tensor> list(at::Tensor* const* tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; i++) out.push_back(*tensors[i]);
  return out;
}

inline int fail(const char* what, char* err, size_t len) {
  if (len > 0) {
    std::strncpy(err, what, len - 1);
    err[len - 1] = 0;
  }
  return -1;
}

template <typename F>
int guarded(char* err, size_t len, F body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace(), err, len);  // the message, not libtorch's C++ stack
  } catch (const std::exception& e) {
    return fail(e.what(), err, len);
  } catch (...) {
    return fail("unknown C++ exception", err, len);
  }
}

}  // namespace orchard
