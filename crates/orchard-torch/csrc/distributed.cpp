// libtorch's collectives (c10d) for data-parallel training, which tch does not bind: a process group
// rendezvousing through a TCP store, with the Gloo backend on the CPU; broadcast, all-gather and barrier; and
// DDP's own Reducer, which all-reduces (averages) gradient buckets while the backward pass is still running.
// The functions never throw (`shim.h`).
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include "shim.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using orchard::guarded;
using orchard::list;

// DDP warns when a gradient's strides differ from its parameter's. A depthwise convolution's weight
// (out × 1 × k × k) in channels-last gets a gradient whose strides differ only in the dimension of size 1, the
// same memory order: the reducer copies it as it would any other, and the warning would be noise on every
// run. Other warnings go to the handler that was in place.
class QuietGradStrides : public c10::WarningHandler {
 public:
  explicit QuietGradStrides(c10::WarningHandler* next) : next_(next) {}
  void process(const c10::Warning& warning) override {
    if (warning.msg().find("Grad strides do not match bucket view strides") == std::string::npos) {
      next_->process(warning);
    }
  }

 private:
  c10::WarningHandler* next_;
};

void quiet_grad_strides() {
  static QuietGradStrides handler(c10::WarningUtils::get_warning_handler());
  if (c10::WarningUtils::get_warning_handler() != &handler) c10::WarningUtils::set_warning_handler(&handler);
}

}  // namespace

namespace {

// A thread that counts up "orchard/beat/<rank>" in the store twice a second over its own connection: a rank
// whose count stands still is stopped or gone, however far it got.
class Heartbeat {
 public:
  Heartbeat(c10::intrusive_ptr<c10d::Store> store, int rank)
      : thread_([this, store, key = "orchard/beat/" + std::to_string(rank)] {
          std::unique_lock<std::mutex> lock(mutex_);
          while (!stop_) {
            try {
              store->add(key, 1);
            } catch (...) {
              return;  // the store is gone: so is the job
            }
            wake_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_; });
          }
        }) {}

  ~Heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;  // last: started once the members it uses exist
};

}  // namespace

struct OrchardGroup {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  // The rendezvous store, which also keeps each rank's progress (under "orchard/progress/<rank>").
  c10::intrusive_ptr<c10d::Store> store;
  // Synchronisation points this rank has reached: the loss sums and gradient buckets it handed over.
  std::atomic<int64_t> reached{0};
  std::unique_ptr<Heartbeat> heartbeat;

  // Counts one more synchronisation point reached and records it in the store, where the other ranks read
  // it when a collective fails: the ranks behind are the ones that hang or died.
  void advance() {
    auto value = std::to_string(++reached);
    store->set("orchard/progress/" + std::to_string(pg->getRank()), std::vector<uint8_t>(value.begin(), value.end()));
  }
};

namespace {

// DDP's default averaging of a gradient bucket (divide by the world size, all-reduce), after recording that
// this rank has handed the bucket over: a rank that hangs in its backward pass hands over fewer.
class RecordingAllReduce : public c10d::CppCommHookInterface<OrchardGroup*> {
 public:
  using c10d::CppCommHookInterface<OrchardGroup*>::CppCommHookInterface;

  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket& bucket) override {
    state_->advance();
    auto& buffer = bucket.getBufferRef();
    buffer.div_(state_->pg->getSize());
    std::vector<at::Tensor> tensors{buffer};
    return state_->pg->allreduce(tensors)->getFuture();
  }
};

}  // namespace

namespace {

// Sums a copy of `xs` over the ranks in place.
at::Tensor summed(OrchardGroup* group, const at::Tensor& xs) {
  std::vector<at::Tensor> t{xs.contiguous().clone()};
  group->pg->allreduce(t)->wait();
  return t[0];
}

// The sum over the ranks as an autograd function: every rank's output is the sum of every rank's input, so
// the gradient of an input is the sum of the outputs' gradients over the ranks (synchronised batch norm).
struct ReplicaSum : public torch::autograd::Function<ReplicaSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& xs, int64_t group) {
    ctx->saved_data["group"] = group;
    return summed(reinterpret_cast<OrchardGroup*>(group), xs);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto group = reinterpret_cast<OrchardGroup*>(ctx->saved_data["group"].toInt());
    return {summed(group, grads[0]), at::Tensor()};
  }
};

}  // namespace

struct OrchardReducer {
  std::unique_ptr<c10d::Reducer> reducer;
};

namespace {

// The NCCL plugin's ProcessGroupNCCL (csrc/nccl.cpp), found in the global scope once
// `orchard_torch::cuda_libs::load_nccl` has loaded it.
c10::intrusive_ptr<c10d::Backend> nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                               std::chrono::milliseconds timeout) {
  using Factory = c10d::Backend* (*)(const c10::intrusive_ptr<c10d::Store>*, int, int, int64_t);
  auto factory = reinterpret_cast<Factory>(dlsym(RTLD_DEFAULT, "orchard_nccl_backend"));
  if (factory == nullptr) throw std::runtime_error("the NCCL plugin is not loaded");
  return c10::intrusive_ptr<c10d::Backend>::reclaim(factory(&store, rank, world, timeout.count()));
}

}  // namespace

extern "C" {

// Joins `world` ranks through rank 0's TCP store at `host`:`port`. Gloo carries CPU tensors and listens on
// `bind` (this host's address towards the others), or where GLOO_SOCKET_IFNAME or the hostname say when `bind`
// is empty; CUDA tensors go through NCCL when `nccl` is set, else through Gloo too.
int orchard_group_new(const char* host, int port, int rank, int world, int64_t timeout_ms, const char* bind,
                      int nccl, OrchardGroup** out, char* err, size_t len) {
  return guarded(err, len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = rank == 0;
    options.numWorkers = static_cast<size_t>(world);
    options.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create_default(timeout);
    if (bind[0] != 0) gloo_options->devices = {c10d::ProcessGroupGloo::createDeviceForHostname(bind)};
    // Each backend keeps its keys under its own prefix of the store, as PyTorch's process groups do.
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo/", store),
                                                           rank, world, gloo_options);
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world);
    pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    if (nccl != 0) {
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("nccl/", store);
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL,
                     nccl_backend(prefixed, rank, world, timeout));
    } else {
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, gloo);
    }
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    auto group = new OrchardGroup{pg, store};
    c10d::TCPStoreOptions beat_options = options;
    beat_options.isServer = false;
    auto beat_store = c10::make_intrusive<c10d::TCPStore>(std::string(host), beat_options);
    group->heartbeat = std::make_unique<Heartbeat>(beat_store, rank);
    *out = group;
  });
}

void orchard_group_free(OrchardGroup* group) { delete group; }

// Copies `tensors` of rank `root` into every rank's, in buckets of up to 250 MiB.
int orchard_group_broadcast(OrchardGroup* group, at::Tensor* const* tensors, size_t n, int root, char* err,
                            size_t len) {
  return guarded(err, len, [&] {
    at::AutoGradMode no_grad(false);
    auto t = list(tensors, n);
    c10d::broadcast_coalesced(group->pg, t, 250 * 1024 * 1024, root);
  });
}

// Every rank's `input` stacked in rank order into `output` (world × input's shape).
int orchard_group_allgather(OrchardGroup* group, at::Tensor* input, at::Tensor* output, char* err, size_t len) {
  return guarded(err, len, [&] {
    at::AutoGradMode no_grad(false);
    std::vector<at::Tensor> outputs;
    for (int64_t r = 0; r < output->size(0); r++) outputs.push_back(output->select(0, r));
    std::vector<std::vector<at::Tensor>> output_lists = {outputs};
    std::vector<at::Tensor> inputs = {*input};
    group->pg->allgather(output_lists, inputs)->wait();
  });
}

// Sums `tensor` over the ranks, in place.
int orchard_group_allreduce_sum(OrchardGroup* group, at::Tensor* tensor, char* err, size_t len) {
  return guarded(err, len, [&] {
    at::AutoGradMode no_grad(false);
    std::vector<at::Tensor> tensors = {*tensor};
    group->pg->allreduce(tensors)->wait();
  });
}

// `*out` ← the sum of `input` over the ranks, differentiable (see ReplicaSum); the group must outlive the
// backward pass.
int orchard_group_sum_differentiable(OrchardGroup* group, at::Tensor* input, at::Tensor** out, char* err,
                                     size_t len) {
  return guarded(err, len, [&] {
    *out = new at::Tensor(ReplicaSum::apply(*input, reinterpret_cast<int64_t>(group)));
  });
}

// Counts and records one more synchronisation point reached (see OrchardGroup::advance).
int orchard_group_advance(OrchardGroup* group, char* err, size_t len) {
  return guarded(err, len, [&] { group->advance(); });
}

// `steps[r]` <- the synchronisation points rank r last recorded (-1: none), and `silent[r]` <- whether its
// heartbeat stood still over `listen_ms`; the store must answer within `timeout_ms` (it is served by rank 0,
// which may be the process that hangs).
int orchard_group_progress_get(OrchardGroup* group, int64_t timeout_ms, int64_t listen_ms, int64_t* steps,
                               int* silent, char* err, size_t len) {
  return guarded(err, len, [&] {
    c10d::StoreTimeoutGuard guard(*group->store, std::chrono::milliseconds(timeout_ms));
    int world = group->pg->getSize();
    auto beats = [&] {
      std::vector<int64_t> out;
      for (int rank = 0; rank < world; rank++) out.push_back(group->store->add("orchard/beat/" + std::to_string(rank), 0));
      return out;
    };
    auto before = beats();
    for (int rank = 0; rank < world; rank++) {
      auto key = "orchard/progress/" + std::to_string(rank);
      steps[rank] = -1;
      if (group->store->check({key})) {
        auto value = group->store->get(key);
        steps[rank] = std::stoll(std::string(value.begin(), value.end()));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(listen_ms));
    auto after = beats();
    for (int rank = 0; rank < world; rank++) silent[rank] = before[rank] == after[rank] ? 1 : 0;
  });
}

// Waits for every rank, at most `timeout_ms` (the group's timeout when 0).
int orchard_group_barrier(OrchardGroup* group, int64_t timeout_ms, char* err, size_t len) {
  return guarded(err, len, [&] {
    c10d::BarrierOptions options;
    if (timeout_ms > 0) options.timeout = std::chrono::milliseconds(timeout_ms);
    group->pg->barrier(options)->wait();
  });
}

// DDP's Reducer over `params` (all requiring gradients): autograd hooks on them all-reduce gradient buckets of
// up to `bucket_bytes` (after a first iteration in one bucket, rebuilt in the order gradients arrive) and
// average them, overlapping the rest of the backward pass; the gradients are complete when backward returns.
int orchard_reducer_new(OrchardGroup* group, at::Tensor* const* params, size_t n, int64_t bucket_bytes,
                        OrchardReducer** out, char* err, size_t len) {
  return guarded(err, len, [&] {
    quiet_grad_strides();
    auto tensors = list(params, n);
    std::vector<bool> sparse(n, false);
    auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
        tensors, {static_cast<size_t>(std::numeric_limits<int64_t>::max())}, sparse);
    (void)limits;
    std::reverse(buckets.begin(), buckets.end());
    auto reducer = std::make_unique<c10d::Reducer>(tensors, buckets, group->pg, sparse, bucket_bytes,
                                                   /*find_unused_parameters=*/false,
                                                   /*gradient_as_bucket_view=*/false,
                                                   std::unordered_map<size_t, std::string>{},
                                                   c10d::kDefaultFirstBucketBytes,
                                                   /*skip_all_reduce_unused_params=*/false,
                                                   /*use_python_reducer=*/false, std::vector<int64_t>{});
    reducer->register_comm_hook(std::make_unique<RecordingAllReduce>(group));
    *out = new OrchardReducer{std::move(reducer)};
  });
}

void orchard_reducer_free(OrchardReducer* reducer) { delete reducer; }

// Before every forward pass: rebuilds the buckets once the first iteration has shown the order gradients
// arrive in, and counts the iteration.
int orchard_reducer_before_forward(OrchardReducer* r, char* err, size_t len) {
  return guarded(err, len, [&] {
    r->reducer->rebuild_buckets();
    r->reducer->prepare_for_forward();
  });
}

// Before the backward pass whose gradients are to be averaged over the ranks (the last micro-batch of a
// step); backward passes without it accumulate gradients locally.
int orchard_reducer_before_backward(OrchardReducer* r, char* err, size_t len) {
  return guarded(err, len, [&] { r->reducer->prepare_for_backward(std::vector<at::Tensor>{}); });
}

}  // extern "C"
