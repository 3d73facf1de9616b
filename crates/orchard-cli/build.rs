fn main() {
    orchard_build::link_libtorch();
    orchard_build::libtorch_version();
}
