//! libtorch's CUDA half, loaded at run time and only where it can run. The binary links libtorch's CPU
//! libraries alone: loading libtorch_cuda with cuBLAS, cuDNN and the rest costs every process about 390 MiB
//! of resident memory and 0.3 s before `main` (`orchard --version` measured 518 MiB against 121 MiB for
//! libtorch_cpu alone), which a CPU machine never gets back. Where an NVIDIA driver is present (or
//! `ORCHARD_CUDA=1` asks) [`load`] opens libtorch_cuda into the global scope, whose static initialisers
//! register CUDA with libtorch as linking it would have; `ORCHARD_CUDA=0` keeps a GPU machine on the CPU.
//!
//! NCCL's process group lives in libtorch_cuda, so Orchard's NCCL bridge is a plugin of its own
//! (`csrc/nccl.cpp`), embedded in the binary and loaded by [`load_nccl`] when a job asks for NCCL.

use std::ffi::{CStr, CString};
use std::path::Path;
use std::sync::OnceLock;

/// libtorch's folder, as it was linked (the wheel's `torch/lib`).
const LIBTORCH_LIB: &str = env!("ORCHARD_LIBTORCH_LIB");

#[cfg(orchard_nccl)]
static NCCL_PLUGIN: &[u8] = include_bytes!(env!("ORCHARD_NCCL_PLUGIN"));
#[cfg(not(orchard_nccl))]
static NCCL_PLUGIN: &[u8] = &[];

/// Whether CUDA should be loaded on this machine: `ORCHARD_CUDA` (0 or 1) when set, else whether the NVIDIA
/// driver is there.
fn wanted() -> bool {
    match std::env::var("ORCHARD_CUDA").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidiactl").exists(),
    }
}

/// Loads libtorch_cuda once, if [`wanted`] and the libtorch in use has it (a CPU-only build does not).
/// Returns whether it is loaded; the reason it is not when it was wanted.
pub fn load() -> Result<bool, String> {
    static LOADED: OnceLock<Result<bool, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = Path::new(LIBTORCH_LIB).join("libtorch_cuda.so");
            if !wanted() || !path.exists() {
                return Ok(false);
            }
            open(&path.to_string_lossy()).map(|_| true)
        })
        .clone()
}

/// Whether libtorch sees a CUDA device, libtorch_cuda loaded first where it is wanted.
pub fn available() -> bool {
    load().unwrap_or(false) && tch::Cuda::is_available()
}

/// Loads the NCCL plugin once (libtorch_cuda first); an error says why NCCL cannot run here.
pub fn load_nccl() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            if NCCL_PLUGIN.is_empty() {
                return Err("this build of Orchard has no NCCL: libtorch's NCCL and CUDA headers were not found \
                            when it was built (a CPU-only torch wheel?)"
                    .into());
            }
            match load() {
                Ok(true) => {}
                Ok(false) => return Err("NCCL needs a GPU, and this machine has no NVIDIA driver".into()),
                Err(e) => return Err(format!("NCCL needs libtorch_cuda, which did not load: {e}")),
            }
            // The plugin is in the binary: a memory file spares a temporary one on disk.
            // SAFETY: the name is a NUL-terminated literal; the flags are memfd_create's.
            let fd = unsafe { libc::memfd_create(c"orchard_nccl".as_ptr(), libc::MFD_CLOEXEC) };
            if fd < 0 {
                return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: `fd` was just created and is owned here alone.
            let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            std::io::Write::write_all(&mut file, NCCL_PLUGIN).map_err(|e| format!("writing the NCCL plugin: {e}"))?;
            // The handle stays open for the life of the process, as the plugin's code must.
            let opened = open(&format!("/proc/self/fd/{fd}"));
            drop(file);
            opened
        })
        .clone()
}

/// `dlopen` with every symbol bound now and put into the global scope.
fn open(path: &str) -> Result<(), String> {
    let name = CString::new(path).map_err(|_| format!("{path}: holds a NUL"))?;
    // SAFETY: `name` is NUL-terminated; dlopen runs the library's initialisers, which is the point.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a NUL-terminated message owned by the loader, or null.
        let message = unsafe { libc::dlerror() };
        let message = if message.is_null() {
            "unknown error".to_string()
        } else {
            unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
        };
        return Err(format!("loading {path}: {message}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Without a driver (these machines) nothing is loaded and libtorch sees no CUDA; the binary itself does
    /// not name libtorch_cuda.
    #[test]
    fn without_a_driver_libtorch_cuda_stays_unloaded() {
        if super::wanted() {
            return;
        }
        assert_eq!(super::load(), Ok(false));
        assert!(!super::available());
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(!maps.contains("libtorch_cuda"), "libtorch_cuda is mapped without a driver");
        let err = super::load_nccl().unwrap_err();
        assert!(err.contains("GPU") || err.contains("no NCCL"), "{err}");
    }
}
