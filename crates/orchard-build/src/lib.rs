//! Called from the build script of every crate whose binaries or tests link libtorch.
//!
//! torch-sys finds libtorch inside the Python wheel (`LIBTORCH_USE_PYTORCH=1`) but bakes no rpath into
//! what it links, and with `--as-needed` the linker drops `libtorch.so` and `libtorch_cuda.so`, since no
//! symbol is referenced from them directly, so CUDA would never load. `cargo:rustc-link-arg` reaches
//! only the crate that prints it, hence one call per linking crate. The crate must depend on `torch-sys`
//! directly, which is what passes torch-sys's `libtorch_lib` to its build script as
//! `DEP_TCH_LIBTORCH_LIB`.

/// Emits the link arguments: an rpath to libtorch's folder, and `libtorch` linked even if unreferenced.
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("DEP_TCH_LIBTORCH_LIB is unset: the crate calling orchard_build::link_libtorch must depend on torch-sys directly");
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{lib}");
    println!("cargo:rustc-link-arg=-ltorch");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}
