//! Links libtorch (rpath) and compiles the small C++ shims in `csrc/` against libtorch's headers.
fn main() {
    orchard_build::link_libtorch();
    let lib = std::path::PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("set by torch-sys"));
    let include = lib.parent().expect("torch/lib has a parent").join("include");
    println!("cargo:rerun-if-changed=csrc");
    cc::Build::new()
        .cpp(true)
        .files(["csrc/autocast.cpp", "csrc/foreach.cpp", "csrc/distributed.cpp"])
        // Declarations of the gloo types libtorch's ProcessGroupGloo.hpp names (csrc/gloo/README.md).
        .include("csrc")
        .define("USE_C10D_GLOO", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .compile("orchard_torch_shims");
}
