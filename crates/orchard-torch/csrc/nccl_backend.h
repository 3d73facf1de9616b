// NCCL, the backend that carries CUDA tensors between GPUs, where this build has it (see nccl.cpp).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

namespace orchard {

// A ProcessGroupNCCL over `store`; throws when the build has no NCCL or the machine no GPU.
c10::intrusive_ptr<c10d::Backend> nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                               std::chrono::milliseconds timeout);

}  // namespace orchard
