// How many threads the shims' at::parallel_for loops run on. at::parallel_for is inline in libtorch's headers
// and parallel only where the including file is compiled with OpenMP (build.rs: -fopenmp, libtorch's own
// libgomp); compiled without it, every loop of the fused kernels ran on one thread, silently.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

extern "C" {

// The highest thread number that ran a task of a parallel_for over `n` items with grain 1, plus one.
int orchard_parallel_threads(int64_t n) {
  std::atomic<int> most{0};
  at::parallel_for(0, n, 1, [&](int64_t, int64_t) {
    int id = at::get_thread_num() + 1;
    int seen = most.load();
    while (id > seen && !most.compare_exchange_weak(seen, id)) {
    }
  });
  return most.load();
}

}  // extern "C"
