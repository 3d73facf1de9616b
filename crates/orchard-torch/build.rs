//! Links libtorch (rpath) and compiles the small C++ shims in `csrc/` against libtorch's headers; the NCCL
//! bridge with NCCL where the wheel's companion packages provide its headers (see `csrc/nccl.cpp`).
use std::path::{Path, PathBuf};

fn main() {
    orchard_build::link_libtorch();
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("set by torch-sys"));
    let include = lib.parent().expect("torch/lib has a parent").join("include");
    println!("cargo:rerun-if-changed=csrc");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .files([
            "csrc/autocast.cpp",
            "csrc/foreach.cpp",
            "csrc/fused_conv.cpp",
            "csrc/distributed.cpp",
            "csrc/nccl.cpp",
            "csrc/memory.cpp",
        ])
        // Declarations of the gloo types libtorch's ProcessGroupGloo.hpp names (csrc/gloo/README.md).
        .include("csrc")
        .define("USE_C10D_GLOO", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false);
    let site_packages = include.parent().and_then(Path::parent).expect("torch/include is in site-packages");
    match nccl_includes(site_packages) {
        Some(dirs) => {
            build.define("USE_C10D_NCCL", None).define("ORCHARD_NCCL", None).includes(dirs);
        }
        None => println!("cargo:warning=orchard-torch: no NCCL and CUDA headers beside libtorch; built without NCCL"),
    }
    build.compile("orchard_torch_shims");
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
