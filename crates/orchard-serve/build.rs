fn main() {
    orchard_build::link_libtorch()
}
