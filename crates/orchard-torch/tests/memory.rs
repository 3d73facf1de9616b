//! The CPU's byte counter sees a tensor come and go. A test binary of its own: tests running beside it in
//! one process would allocate too.

use orchard_torch::memory::allocated;
use tch::{Device, Kind, Tensor};

#[test]
fn a_cpu_tensor_shows_in_the_heap_and_goes_when_dropped() {
    let mib = 1024.0 * 1024.0;
    let before = allocated(Device::Cpu).unwrap().current as f64;
    let t = Tensor::zeros([16, 1024, 1024], (Kind::Float, Device::Cpu)); // 64 MiB
    let during = allocated(Device::Cpu).unwrap();
    let grew = (during.current as f64 - before) / mib;
    drop(t);
    let after = allocated(Device::Cpu).unwrap().current as f64;
    assert!((grew - 64.0).abs() < 0.5, "grew by {grew} MiB");
    assert!((after - before).abs() / mib < 0.5, "{before} then {after}");
    assert_eq!(during.peak, None, "the CPU has no peak counter");
}
