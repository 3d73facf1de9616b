//! Bytes a device holds, for estimating what a training step needs without running out of memory first.
//!
//! On a GPU, the CUDA caching allocator's own counters: bytes allocated to tensors now and at the peak since
//! the last reset (what `torch.cuda.max_memory_allocated` reports), not the larger pool it reserves. On the
//! CPU, libtorch allocates tensors with `posix_memalign`, so the bytes glibc's allocator has handed out and
//! not taken back (`mallinfo2`: arenas plus mapped chunks) are the tensors' bytes plus a small, steady
//! remainder; differences between two moments are exact to a few kilobytes. The CPU has no peak counter.

use std::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

use tch::Device;

/// How this process hands memory it has freed back to the system: its allocator's purge, which the binary
/// that chose the allocator sets ([`set_release_freed`]).
static RELEASE_FREED: OnceLock<fn()> = OnceLock::new();

/// Sets how [`release_freed`] returns freed memory (once per process; later calls are ignored). A binary
/// whose allocator keeps freed pages for reuse (Orchard's jemalloc, which a steady step needs) sets its purge
/// here.
pub fn set_release_freed(release: fn()) {
    let _ = RELEASE_FREED.set(release);
}

/// Returns the memory the allocator holds freed to the system, where the process said how; else nothing.
/// Called where a large, one-time release has just happened: an inference form's first pass, after which
/// the eager model it was made from and its weights' plain copies (oneDNN then holds packed ones) are gone.
pub fn release_freed() {
    if let Some(release) = RELEASE_FREED.get() {
        release();
    }
}

extern "C" {
    fn orchard_cuda_memory(
        device: c_int,
        reset: c_int,
        current: *mut i64,
        peak: *mut i64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// Bytes allocated on a device, now and at the peak since [`reset_peak`] (the GPU only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocated {
    pub current: u64,
    /// `None` on the CPU.
    pub peak: Option<u64>,
}

/// What `device` has allocated now (and its peak on a GPU).
pub fn allocated(device: Device) -> Result<Allocated, String> {
    cuda_or_cpu(device, false)
}

/// Resets a GPU's peak to its current allocation and returns it; on the CPU, only the current bytes.
pub fn reset_peak(device: Device) -> Result<Allocated, String> {
    cuda_or_cpu(device, true)
}

fn cuda_or_cpu(device: Device, reset: bool) -> Result<Allocated, String> {
    match device {
        Device::Cuda(index) => {
            let (mut current, mut peak) = (0i64, 0i64);
            let mut err = [0 as c_char; 1024];
            // SAFETY: plain C function writing two integers and at most `err.len()` bytes; it catches every
            // exception.
            let status = unsafe {
                orchard_cuda_memory(
                    index as c_int,
                    c_int::from(reset),
                    &mut current,
                    &mut peak,
                    err.as_mut_ptr(),
                    err.len(),
                )
            };
            if status != 0 {
                // SAFETY: the shim wrote a NUL-terminated message into `err`.
                return Err(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned());
            }
            Ok(Allocated { current: current.max(0) as u64, peak: Some(peak.max(0) as u64) })
        }
        _ => Ok(Allocated { current: heap_in_use(), peak: None }),
    }
}

/// Bytes glibc's allocator has handed out and not taken back, over every arena and mapped chunk.
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    fn other() {
        CALLS.fetch_add(100, Ordering::SeqCst);
    }

    /// The process's release runs each time it is asked for; the first one set stays.
    #[test]
    fn release_freed_runs_the_release_the_process_set_first() {
        super::set_release_freed(count);
        super::set_release_freed(other);
        super::release_freed();
        super::release_freed();
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    }
}
