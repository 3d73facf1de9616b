// See README.md: an opaque gloo::Context; setTimeout is named by an inline function that is never called.
#pragma once
#include <chrono>

namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
}  // namespace gloo
