//! Mixed precision: libtorch's autocast on the CPU (bf16, fast where the CPU has AVX-512 bf16 or AMX) and
//! on CUDA (bf16 or f16), through a small C++ shim, since tch only switches the deprecated CUDA-only flag.
//!
//! Inside an [`Autocast`] region, matrix products and convolutions run in the reduced type while the weights
//! stay f32 (autocast casts per operation); reductions and losses stay f32.

use std::ffi::c_int;

use orchard_files::config::Precision;
use tch::{Device, Kind};

extern "C" {
    fn orchard_autocast_set(device: c_int, enabled: c_int, dtype: c_int) -> c_int;
    fn orchard_autocast_is_enabled(device: c_int) -> c_int;
    fn orchard_autocast_increment_nesting() -> c_int;
    fn orchard_autocast_decrement_nesting() -> c_int;
}

/// The reduced type of an autocast region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfType {
    BFloat16,
    Float16,
}

/// The reduced type a configured precision computes in; `None` for f32 (no autocast).
pub fn half_type(precision: Precision) -> Option<HalfType> {
    match precision {
        Precision::F32 => None,
        Precision::Bf16 => Some(HalfType::BFloat16),
        Precision::F16 => Some(HalfType::Float16),
    }
}

/// The tensor kind a model's inference form keeps its weights in for `precision` on `device` (an inference
/// form casts once instead of autocasting every operation). f16 is refused on the CPU, where neither oneDNN
/// nor libtorch has fast f16 convolutions.
pub fn inference_kind(precision: Precision, device: Device) -> Result<Kind, String> {
    match precision {
        Precision::F32 => Ok(Kind::Float),
        Precision::Bf16 => Ok(Kind::BFloat16),
        Precision::F16 if device == Device::Cpu => {
            Err("--precision f16 runs on CUDA only; on a CPU use bf16 (fast with AVX-512 BF16 or AMX)".into())
        }
        Precision::F16 => Ok(Kind::Half),
    }
}

fn device_code(device: Device) -> c_int {
    if device == Device::Cpu {
        0
    } else {
        1
    }
}

/// An autocast region for one device type: on while the value lives, restored to off when dropped.
#[must_use = "autocast is on only while the guard lives"]
pub struct Autocast {
    device: Device,
}

impl Autocast {
    /// Turns autocast on for `device`'s type in `dtype`.
    pub fn new(device: Device, dtype: HalfType) -> Result<Self, String> {
        let code = device_code(device);
        let d = if dtype == HalfType::BFloat16 { 0 } else { 1 };
        // SAFETY: plain C functions over libtorch's thread-local autocast state; they catch every exception.
        unsafe {
            if orchard_autocast_set(code, 1, d) != 0 || orchard_autocast_increment_nesting() < 0 {
                return Err(format!("libtorch refused autocast in {dtype:?} on {device:?}"));
            }
        }
        Ok(Autocast { device })
    }

    /// Whether autocast is on for `device`'s type on this thread.
    pub fn is_enabled(device: Device) -> bool {
        // SAFETY: see `new`.
        unsafe { orchard_autocast_is_enabled(device_code(device)) == 1 }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: see `new`.
        unsafe {
            orchard_autocast_decrement_nesting();
            orchard_autocast_set(device_code(self.device), 0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn matrix_products_run_in_bf16_inside_the_region_only() {
        let a = Tensor::randn([8, 8], (Kind::Float, Device::Cpu));
        {
            let _guard = Autocast::new(Device::Cpu, HalfType::BFloat16).unwrap();
            assert!(Autocast::is_enabled(Device::Cpu));
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
            assert_eq!(a.sum(Kind::Float).kind(), Kind::Float);
        }
        assert!(!Autocast::is_enabled(Device::Cpu));
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
    }
}
