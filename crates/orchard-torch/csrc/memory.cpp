// The CUDA caching allocator's byte counters (what `torch.cuda.max_memory_allocated` reads), through the
// device-generic allocator interface, so no CUDA header is needed. C functions that never throw.
#include "shim.h"

#include <c10/core/CachingDeviceAllocator.h>

extern "C" {

// Bytes allocated on CUDA device `device` now and at the peak since the last reset; with `reset`, the peak
// is reset to the current value first.
int orchard_cuda_memory(int device, int reset, int64_t* current, int64_t* peak, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    auto* allocator = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    const auto index = static_cast<c10::DeviceIndex>(device);
    if (reset) allocator->resetPeakStats(index);
    const auto stats = allocator->getDeviceStats(index);
    const auto& bytes = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
    *current = bytes.current;
    *peak = bytes.peak;
  });
}

}  // extern "C"
