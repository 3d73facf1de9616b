// libtorch's autocast switches for any device type; tch exposes only the deprecated CUDA-only ones.
// C functions that never throw: errors come back as -1.
#include <ATen/autocast_mode.h>

extern "C" {

// device: 0 = CPU, 1 = CUDA; dtype: 0 = bfloat16, 1 = float16.
int orchard_autocast_set(int device, int enabled, int dtype) {
  try {
    const at::DeviceType type = device == 0 ? at::kCPU : at::kCUDA;
    at::autocast::set_autocast_dtype(type, dtype == 0 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(type, enabled != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

int orchard_autocast_is_enabled(int device) {
  try {
    return at::autocast::is_autocast_enabled(device == 0 ? at::kCPU : at::kCUDA) ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

int orchard_autocast_increment_nesting() {
  try {
    return at::autocast::increment_nesting();
  } catch (...) {
    return -1;
  }
}

// Clears the cast cache when the outermost autocast region ends.
int orchard_autocast_decrement_nesting() {
  try {
    const int depth = at::autocast::decrement_nesting();
    if (depth == 0) at::autocast::clear_cache();
    return depth;
  } catch (...) {
    return -1;
  }
}
}
