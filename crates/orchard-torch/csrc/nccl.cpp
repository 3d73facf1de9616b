// NCCL for the CUDA tensors of a data-parallel job. libtorch's CUDA wheels contain ProcessGroupNCCL, but its
// header needs NCCL's and the CUDA runtime's headers, which build.rs finds among the wheel's companion
// packages (nvidia-nccl, nvidia-cuda-runtime, -crt, -cccl); without them it compiles this file without
// ORCHARD_NCCL and asking for NCCL is an error.
#include "nccl_backend.h"

#include <stdexcept>

#ifdef ORCHARD_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace orchard {

c10::intrusive_ptr<c10d::Backend> nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                               std::chrono::milliseconds timeout) {
#ifdef ORCHARD_NCCL
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
#else
  (void)store, (void)rank, (void)world, (void)timeout;
  throw std::runtime_error(
      "this build of Orchard has no NCCL: libtorch's NCCL and CUDA headers were not found when it was built "
      "(a CPU-only torch wheel?)");
#endif
}

}  // namespace orchard
