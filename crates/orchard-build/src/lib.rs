//! Called from the build script of every crate whose binaries or tests link libtorch.
//!
//! torch-sys finds libtorch inside the Python wheel (`LIBTORCH_USE_PYTORCH=1`) but bakes no rpath into
//! what it links. With `--as-needed` the linker drops `libtorch.so` and `libtorch_cuda.so`, since no symbol
//! is referenced from them directly: wanted, as loading CUDA's half of libtorch costs every process about
//! 390 MiB and 0.3 s, so `orchard_torch::cuda_libs` loads it at run time on machines with an NVIDIA driver.
//! `cargo:rustc-link-arg` reaches only the crate that prints it, hence one call per linking crate. The crate must depend on `torch-sys`
//! directly, which is what passes torch-sys's `libtorch_lib` to its build script as
//! `DEP_TCH_LIBTORCH_LIB`.

/// Emits the link arguments: an rpath to libtorch's folder (which `dlopen` of libtorch_cuda searches too).
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("DEP_TCH_LIBTORCH_LIB is unset: the crate calling orchard_build::link_libtorch must depend on torch-sys directly");
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}

/// The name of the compile-time variable [`libtorch_version`] sets.
pub const LIBTORCH_VERSION_ENV: &str = "ORCHARD_LIBTORCH_VERSION";

/// Sets [`LIBTORCH_VERSION_ENV`] for the calling crate to the version of the libtorch it links (read from
/// the wheel's `torch/version.py`, or a standalone libtorch's `build-version`; `unknown` when neither is
/// there): neither tch nor torch-sys exports it, and a report should say which libtorch trained its models.
pub fn libtorch_version() {
    let version = std::env::var("DEP_TCH_LIBTORCH_LIB").ok().and_then(|lib| {
        let root = std::path::Path::new(&lib).parent()?.to_path_buf();
        println!("cargo:rerun-if-changed={}", root.join("version.py").display());
        let from_python = std::fs::read_to_string(root.join("version.py")).ok().and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("__version__"))?;
            Some(line.split(['\'', '"']).nth(1)?.to_string())
        });
        from_python.or_else(|| Some(std::fs::read_to_string(root.join("build-version")).ok()?.trim().to_string()))
    });
    println!("cargo:rustc-env={LIBTORCH_VERSION_ENV}={}", version.unwrap_or_else(|| "unknown".into()));
}
