// NCCL for the CUDA tensors of a data-parallel job, built as a plugin of its own (liborchard_nccl.so, embedded
// in the binary and loaded by `orchard_torch::cuda_libs::load_nccl`): ProcessGroupNCCL lives in
// libtorch_cuda, which Orchard loads only on machines with an NVIDIA driver, so nothing linked into the binary
// may name it. build.rs compiles this file only where the wheel's companion packages provide NCCL's and the
// CUDA runtime's headers (nvidia-nccl, nvidia-cuda-runtime, -crt, -cccl).
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include <cstdint>

// A ProcessGroupNCCL over `store`, its reference handed to the caller (`intrusive_ptr::reclaim`). Throws
// when the machine has no GPU.
extern "C" c10d::Backend* orchard_nccl_backend(const c10::intrusive_ptr<c10d::Store>* store, int rank, int world,
                                               int64_t timeout_ms) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = std::chrono::milliseconds(timeout_ms);
  c10::intrusive_ptr<c10d::Backend> backend =
      c10::make_intrusive<c10d::ProcessGroupNCCL>(*store, rank, world, options);
  return backend.release();
}
