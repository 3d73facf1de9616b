//! Links libtorch (rpath) and compiles the small C++ shims in `csrc/` against libtorch's headers; the NCCL
//! plugin, a shared library of its own linked against libtorch_cuda, where the wheel's companion packages
//! provide NCCL's headers (see `csrc/nccl.cpp` and `src/cuda_libs.rs`).
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    orchard_build::link_libtorch();
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("set by torch-sys"));
    let include = lib.parent().expect("torch/lib has a parent").join("include");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rustc-env=ORCHARD_LIBTORCH_LIB={}", lib.display());
    println!("cargo::rustc-check-cfg=cfg(orchard_nccl)");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .files([
            "csrc/autocast.cpp",
            "csrc/bn_act.cpp",
            "csrc/channel_scale.cpp",
            "csrc/depthwise.cpp",
            "csrc/foreach.cpp",
            "csrc/max_pool.cpp",
            "csrc/fused_conv.cpp",
            "csrc/distributed.cpp",
            "csrc/memory.cpp",
            "csrc/parallel.cpp",
            "csrc/pointwise.cpp",
            "csrc/recomputed_conv.cpp",
            "csrc/residual.cpp",
            "csrc/stem.cpp",
            "csrc/winograd.cpp",
            "csrc/winograd_train.cpp",
        ])
        // Declarations of the gloo types libtorch's ProcessGroupGloo.hpp names (csrc/gloo/README.md).
        .include("csrc")
        .define("USE_C10D_GLOO", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        // at::parallel_for is inline in libtorch's headers: without OpenMP here its loops run on one thread.
        .flag("-fopenmp")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false);
    link_libtorchs_openmp(&lib);
    let site_packages = include.parent().and_then(Path::parent).expect("torch/include is in site-packages");
    let nccl = nccl_includes(site_packages).filter(|_| lib.join("libtorch_cuda.so").exists());
    match nccl {
        Some(dirs) => nccl_plugin(&build, &lib, &dirs),
        None => println!("cargo:warning=orchard-torch: no NCCL and CUDA headers beside libtorch; built without NCCL"),
    }
    build.compile("orchard_torch_shims");
}

/// Links the OpenMP runtime libtorch itself loads (the wheel's `torch/lib/libgomp.so.1`), through a
/// `libgomp.so` link in OUT_DIR: one runtime, one thread pool, for libtorch's kernels and the shims'. A
/// libtorch without its own copy uses the system's, which is then the one it loads too (same soname).
fn link_libtorchs_openmp(lib: &Path) {
    let bundled = lib.join("libgomp.so.1");
    if bundled.exists() {
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let link = out.join("libgomp.so");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&bundled, &link).expect("a link to libtorch's libgomp in OUT_DIR");
        println!("cargo:rustc-link-search=native={}", out.display());
    }
    println!("cargo:rustc-link-lib=dylib=gomp");
}

/// Compiles `csrc/nccl.cpp` into `OUT_DIR/liborchard_nccl.so`, linked against libtorch_cuda (found through an
/// rpath to libtorch's folder), for `src/cuda_libs.rs` to embed and load on demand.
fn nccl_plugin(shims: &cc::Build, lib: &Path, includes: &[PathBuf]) {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("liborchard_nccl.so");
    let mut build = shims.clone();
    build.define("USE_C10D_NCCL", None).includes(includes).pic(true);
    let compiler = build.get_compiler();
    let mut command: Command = compiler.to_command();
    command
        .args(["-shared", "-o"])
        .arg(&out)
        .arg("csrc/nccl.cpp")
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-Wl,--no-as-needed", "-ltorch_cuda", "-ltorch_cpu", "-lc10_cuda", "-lc10"]);
    let status = command.status().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(status.success(), "building the NCCL plugin failed: {command:?}");
    println!("cargo:rustc-env=ORCHARD_NCCL_PLUGIN={}", out.display());
    println!("cargo:rustc-cfg=orchard_nccl");
}

/// The folders holding `nccl.h`, the CUDA runtime's headers with their `crt/` part, and libcu++'s `nv/target`,
/// from the NVIDIA packages of a CUDA wheel (`nvidia/nccl`, and `nvidia/cu13` or CUDA 12's per-package layout).
fn nccl_includes(site_packages: &Path) -> Option<Vec<PathBuf>> {
    let nvidia = site_packages.join("nvidia");
    let nccl = nvidia.join("nccl/include");
    let candidates =
        ["cu13/include", "cu13/include/cccl", "cuda_runtime/include", "cuda_nvcc/include", "cuda_cccl/include"];
    let dirs: Vec<PathBuf> = candidates.iter().map(|d| nvidia.join(d)).filter(|d| d.is_dir()).collect();
    let has = |file: &str| dirs.iter().any(|d| d.join(file).exists());
    let complete =
        nccl.join("nccl.h").exists() && has("cuda_runtime.h") && has("crt/host_config.h") && has("nv/target");
    complete.then(|| [vec![nccl], dirs].concat())
}
