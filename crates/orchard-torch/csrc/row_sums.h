// What the fused training nodes (bn_act.cpp, channel_scale.cpp) share: a channels-last activation is M rows of
// C floats; its per-channel sums run in f32 over blocks of rows and in f64 across blocks and threads.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

extern "C" int orchard_fused_train_available();

namespace orchard {

// Rows summed in f32 before their sums join the f64 totals.
constexpr int64_t kBlock = 64;

// Rows per task: at least about 32k values.
inline int64_t row_grain(int64_t C) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1)); }

// Runs `body(r0, r1, partial)` over the M rows in parallel, each task adding into its thread's `width` f64
// partials, and returns the partials summed over the threads.
template <typename F>
std::vector<double> parallel_sums(int64_t M, int64_t C, int64_t width, F body) {
  int64_t threads = at::get_num_threads();
  std::vector<double> partial(threads * width, 0.0);
  at::parallel_for(0, M, row_grain(C), [&](int64_t r0, int64_t r1) {
    body(r0, r1, partial.data() + at::get_thread_num() * width);
  });
  std::vector<double> total(width, 0.0);
  for (int64_t t = 0; t < threads; t++)
    for (int64_t i = 0; i < width; i++) total[i] += partial[t * width + i];
  return total;
}

}  // namespace orchard
