//! glibc's allocator set up for libtorch's CPU tensors: freed blocks are kept and reused, not handed back.
//!
//! libtorch allocates every CPU tensor with `posix_memalign`. glibc serves blocks above its mmap threshold
//! (32 MiB at most) with a fresh `mmap` each and unmaps them when freed, so every large activation and gradient
//! of every training step is page-faulted in and zeroed by the kernel anew: a third of an EfficientNet-B0
//! training step on two cores went to `clear_page_erms`, `exc_page_fault` and their kin (`perf`). Served from
//! the heap and never trimmed, the blocks of one step are reused by the next, as PyTorch's caching allocator
//! reuses GPU memory. The price: the process keeps the memory of its peak (EfficientNet-B0 training at 224,
//! batch 16: peak 2277 MiB, was 2008), which `orchard_torch::memory`'s counters do not see (they count the
//! bytes handed out).

/// Serves large blocks from the heap and keeps freed memory (`mallopt`: no mmap, no trimming), unless the
/// user set glibc's malloc variables, which then stand.
pub fn reuse_freed_memory() {
    const USER_SETTINGS: [&str; 4] =
        ["GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"];
    if USER_SETTINGS.iter().any(|name| std::env::var_os(name).is_some()) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters; glibc applies them under its own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // -1: never trim (mallopt(3)).
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn a_large_tensor_comes_from_the_heap_not_from_mmap() {
        super::reuse_freed_memory();
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
        let before = mapped();
        // 40 MiB: above glibc's largest mmap threshold, within the 64 MiB heaps of the arena a test thread gets.
        let block = tch::Tensor::zeros([40 << 20], (tch::Kind::Uint8, tch::Device::Cpu));
        assert!(mapped() < before + (40 << 20), "the tensor was mmapped");
        drop(block);
    }
}
