//! The bridge between Orchard and libtorch: a configured device as libtorch's, a batch of 8-bit NHWC pixels
//! turned into a normalised f32 NCHW tensor on the target device, the memory layouts, and C++ shims for what
//! tch does not bind (autocast, multi-tensor optimizer kernels, oneDNN's fused convolutions, the allocators' byte
//! counters).
//!
//! On the CPU the pixels are normalised in one pass straight into the tensor's memory; for a GPU they are
//! wrapped where they lie, moved as bytes (a quarter of the traffic of f32), and normalised there. The
//! result keeps the NHWC memory order underneath its NCHW shape, which is exactly PyTorch's channels-last
//! format; `Layout::Contiguous` asks for the classic NCHW order instead.

pub mod autocast;
pub mod cuda_libs;
pub mod distributed;
pub mod failure;
pub mod foreach;
pub mod fused_conv;
pub mod fused_train;
pub mod memory;
pub mod pooled_depthwise;
pub mod recomputed_conv;
pub mod scaled_pointwise;
pub mod stem_conv;
pub mod winograd;
pub mod winograd_train;

use orchard_data::loader::Batch;
use tch::{Device, Kind, Tensor};

/// Per-channel `(mean, std)` of an architecture's input normalisation on the 0–255 scale, so that
/// `normalised = (x - mean) / std`: what `orchard_models::Normalization::mean_std` gives for a spec's preset.
pub type MeanStd = ([f32; 3], [f32; 3]);

/// The memory order of image tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// NCHW, contiguous: libtorch's default.
    Contiguous,
    /// NHWC underneath an NCHW shape (`torch.channels_last`): faster convolutions on CPUs and tensor cores.
    ChannelsLast,
}

/// Runs `f` with the thread-local `flag` set, restoring its value afterwards (even when `f` panics): the
/// switches tests use to compare Orchard's nodes with libtorch's operations.
pub(crate) fn with_flag<T>(flag: &'static std::thread::LocalKey<std::cell::Cell<bool>>, f: impl FnOnce() -> T) -> T {
    struct Restore(&'static std::thread::LocalKey<std::cell::Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            self.0.with(|v| v.set(self.1));
        }
    }
    let _restore = Restore(flag, flag.with(|v| v.replace(true)));
    f()
}

/// The same values in NHWC memory order under the NCHW shape (PyTorch's `channels_last`).
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether `t` is 4-D and dense in channels-last order (NHWC in memory): what [`channels_last`] makes.
pub fn is_channels_last_dense(t: &Tensor) -> bool {
    let Ok([_, c, h, w]) = <[i64; 4]>::try_from(t.size()) else { return false };
    let expected = [h * w * c, 1, w * c, c];
    // Strides of dimensions of size 1 do not matter to the layout.
    t.stride().iter().zip(expected).zip(t.size()).all(|((&s, e), n)| n == 1 || s == e)
}

/// Puts every 4-D variable (convolution kernels) in channels-last memory order, in place, so that libtorch
/// picks its NHWC convolution kernels; other variables are left as they are.
pub fn convolutions_to_channels_last<'a>(variables: impl IntoIterator<Item = &'a mut Tensor>) {
    for t in variables {
        if t.dim() == 4 {
            tch::no_grad(|| t.set_data(&channels_last(t)));
        }
    }
}

/// libtorch's device for a configured one; `auto` is CUDA device 0 when one is available, else the CPU.
/// libtorch_cuda is loaded first where the machine has a driver ([`cuda_libs`]).
pub fn device(device: orchard_files::config::Device) -> Device {
    use orchard_files::config::Device as Named;
    match device {
        Named::Auto if cuda_libs::available() => Device::Cuda(0),
        Named::Auto => Device::Cpu,
        Named::Cpu => Device::Cpu,
        Named::Cuda(n) => {
            // Failing to load is reported where devices are checked ([`unavailable`]); libtorch names it here.
            let _ = cuda_libs::load();
            Device::Cuda(n)
        }
    }
}

/// Why `device` cannot be used on this machine, if it cannot: a CUDA device libtorch does not see. Checked
/// before anything is created, as libtorch panics on the first tensor put on a missing device.
pub fn unavailable(device: orchard_files::config::Device) -> Option<String> {
    let orchard_files::config::Device::Cuda(index) = device else { return None };
    if let Err(e) = cuda_libs::load() {
        return Some(format!("device {device}, but libtorch's CUDA libraries did not load: {e}"));
    }
    let count = if cuda_libs::available() { tch::Cuda::device_count() as usize } else { 0 };
    (index >= count).then(|| match count {
        0 => format!("device {device}, but this machine has no CUDA device (use cpu or auto)"),
        n => format!("device {device}, but this machine has {n} CUDA device(s), cuda:0 to cuda:{}", n - 1),
    })
}

/// The batch's pixels as an f32 tensor of shape N×3×H×W on `device`, normalised as `(x - mean) / std` per
/// channel with `mean_std` on the 0–255 scale (a spec's `normalization.mean_std()`).
pub fn images(batch: &Batch, mean_std: MeanStd, device: Device, layout: Layout) -> Tensor {
    let shape = [batch.len() as i64, batch.height as i64, batch.width as i64, 3];
    assert_eq!(batch.pixels.len(), shape.iter().product::<i64>() as usize, "batch pixels do not match its shape");
    let nhwc = match device {
        Device::Cpu => normalize_on_cpu(&batch.pixels, &shape, mean_std),
        _ => normalize_on_device(&batch.pixels, &shape, mean_std, device),
    };
    let x = nhwc.permute([0, 3, 1, 2]);
    match layout {
        Layout::ChannelsLast => x,
        Layout::Contiguous => x.contiguous(),
    }
}

/// One pass through a 3×256 lookup table, written straight into the tensor's memory: several times faster
/// than libtorch's conversion followed by two broadcasting operations.
fn normalize_on_cpu(pixels: &[u8], shape: &[i64; 4], (mean, std): MeanStd) -> Tensor {
    let lut: [[f32; 256]; 3] = std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 - mean[c]) / std[c]));
    let out = Tensor::empty(shape.as_slice(), (Kind::Float, Device::Cpu));
    // SAFETY: `out` is a new contiguous f32 tensor of exactly `pixels.len()` elements that nothing else
    // references yet.
    let dst = unsafe { std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, pixels.len()) };
    for (d, s) in dst.chunks_exact_mut(3).zip(pixels.chunks_exact(3)) {
        d[0] = lut[0][s[0] as usize];
        d[1] = lut[1][s[1] as usize];
        d[2] = lut[2][s[2] as usize];
    }
    out
}

/// Moves the bytes (a quarter of the f32 traffic) and converts on the device.
fn normalize_on_device(pixels: &[u8], shape: &[i64; 4], (mean, std): MeanStd, device: Device) -> Tensor {
    // SAFETY: `pixels` outlives this call and the wrapper is dropped before returning; `to_device` to a
    // non-CPU device copies, so nothing returned refers to the blob.
    let wrapped = unsafe { Tensor::from_blob(pixels.as_ptr(), shape, &[], Kind::Uint8, Device::Cpu) };
    let mean = Tensor::from_slice(&mean).to_device(device);
    let inv_std = Tensor::from_slice(&std.map(|s| 1.0 / s)).to_device(device);
    (wrapped.to_device(device).to_kind(Kind::Float) - mean) * inv_std
}

/// The batch's targets as an f32 tensor of shape N×C on `device`.
pub fn targets(batch: &Batch, device: Device) -> Tensor {
    Tensor::from_slice(&batch.targets).view([batch.len() as i64, batch.classes as i64]).to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        // Two 3×2 images with distinct values everywhere.
        let pixels: Vec<u8> = (0..2 * 2 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
        Batch { indices: vec![4, 9], pixels, width: 3, height: 2, targets: vec![1.0, 0.0, 0.0, 1.0], classes: 2 }
    }

    /// ImageNet's per-channel mean and standard deviation on the 0–255 scale (`Normalization::ImageNet`).
    const IMAGENET: MeanStd =
        ([0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0], [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0]);
    /// No scaling (`Normalization::Raw`).
    const RAW: MeanStd = ([0.0; 3], [1.0; 3]);

    #[test]
    fn pixels_land_in_nchw_order_normalised_per_channel() {
        let b = batch();
        let (mean, std) = IMAGENET;
        for layout in [Layout::Contiguous, Layout::ChannelsLast] {
            let t = images(&b, IMAGENET, Device::Cpu, layout);
            assert_eq!(t.size(), [2, 3, 2, 3]);
            for n in 0..2 {
                for y in 0..2 {
                    for x in 0..3 {
                        let base = ((n * 2 + y) * 3 + x) * 3;
                        for c in 0..3 {
                            let want = (b.pixels[base + c] as f32 - mean[c]) / std[c];
                            let got = t.double_value(&[n as i64, c as i64, y as i64, x as i64]) as f32;
                            assert!((got - want).abs() < 1e-5, "n{n} c{c} y{y} x{x}: {got} vs {want}");
                        }
                    }
                }
            }
        }
        let cl = images(&b, RAW, Device::Cpu, Layout::ChannelsLast);
        assert_eq!(cl.stride(), [18, 1, 9, 3], "channels-last strides");
        assert!(images(&b, RAW, Device::Cpu, Layout::Contiguous).is_contiguous());
        assert_eq!(cl.double_value(&[1, 2, 1, 2]), f64::from(b.pixels[b.pixels.len() - 1]), "raw pixels unscaled");
    }

    #[test]
    fn targets_keep_their_rows_and_devices_parse() {
        let t = targets(&batch(), Device::Cpu);
        assert_eq!(t.size(), [2, 2]);
        assert_eq!(Vec::<f32>::try_from(t.flatten(0, 1)).unwrap(), vec![1.0, 0.0, 0.0, 1.0]);
        use orchard_files::config::Device as Named;
        assert_eq!(device(Named::Cuda(1)), Device::Cuda(1));
        assert_eq!(device(Named::Cpu), Device::Cpu);
        assert_eq!(device(Named::Auto), if cuda_libs::available() { Device::Cuda(0) } else { Device::Cpu });
    }

    #[test]
    fn a_missing_cuda_device_is_named_and_the_cpu_always_passes() {
        use orchard_files::config::Device as Named;
        assert_eq!(unavailable(Named::Cpu), None);
        assert_eq!(unavailable(Named::Auto), None);
        if !cuda_libs::available() {
            assert!(unavailable(Named::Cuda(0)).unwrap().contains("cuda:0, but this machine has no CUDA device"));
        }
        assert!(unavailable(Named::Cuda(999)).unwrap().contains("cuda:999"));
    }
}
