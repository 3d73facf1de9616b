//! The bridge between Orchard's pixel batches and libtorch: device choice, and a batch of 8-bit NHWC pixels
//! turned into a normalised f32 NCHW tensor on the target device.
//!
//! On the CPU the pixels are normalised in one pass straight into the tensor's memory; for a GPU they are
//! wrapped where they lie, moved as bytes (a quarter of the traffic of f32), and normalised there. The
//! result keeps the NHWC memory order underneath its NCHW shape, which is exactly PyTorch's channels-last
//! format; `Layout::Contiguous` asks for the classic NCHW order instead.

pub mod autocast;
pub mod foreach;

use orchard_data::loader::Batch;
use orchard_data::normalize::Normalization;
use tch::{Device, Kind, Tensor};

/// The memory order of image tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// NCHW, contiguous: libtorch's default.
    Contiguous,
    /// NHWC underneath an NCHW shape (`torch.channels_last`): faster convolutions on CPUs and tensor cores.
    ChannelsLast,
}

/// The same values in NHWC memory order under the NCHW shape (PyTorch's `channels_last`).
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
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

/// Parses a device name: `cpu`, `cuda` (device 0), `cuda:N`, or `auto` (CUDA when available).
pub fn parse_device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" => Ok(Device::Cuda(0)),
        _ => name
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("unknown device {name:?}: expected cpu, cuda, cuda:N or auto")),
    }
}

/// The batch's pixels as a normalised f32 tensor of shape N×3×H×W on `device`.
pub fn images(batch: &Batch, normalization: Normalization, device: Device, layout: Layout) -> Tensor {
    let shape = [batch.len() as i64, batch.height as i64, batch.width as i64, 3];
    assert_eq!(batch.pixels.len(), shape.iter().product::<i64>() as usize, "batch pixels do not match its shape");
    let nhwc = match device {
        Device::Cpu => normalize_on_cpu(&batch.pixels, &shape, normalization),
        _ => normalize_on_device(&batch.pixels, &shape, normalization, device),
    };
    let x = nhwc.permute([0, 3, 1, 2]);
    match layout {
        Layout::ChannelsLast => x,
        Layout::Contiguous => x.contiguous(),
    }
}

/// One pass through a 3×256 lookup table, written straight into the tensor's memory: several times faster
/// than libtorch's conversion followed by two broadcasting operations.
fn normalize_on_cpu(pixels: &[u8], shape: &[i64; 4], normalization: Normalization) -> Tensor {
    let (mean, std) = normalization.mean_std();
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
fn normalize_on_device(pixels: &[u8], shape: &[i64; 4], normalization: Normalization, device: Device) -> Tensor {
    // SAFETY: `pixels` outlives this call and the wrapper is dropped before returning; `to_device` to a
    // non-CPU device copies, so nothing returned refers to the blob.
    let wrapped = unsafe { Tensor::from_blob(pixels.as_ptr(), shape, &[], Kind::Uint8, Device::Cpu) };
    let (mean, std) = normalization.mean_std();
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

    #[test]
    fn pixels_land_in_nchw_order_normalised_per_channel() {
        let b = batch();
        for layout in [Layout::Contiguous, Layout::ChannelsLast] {
            let t = images(&b, Normalization::ImageNet, Device::Cpu, layout);
            assert_eq!(t.size(), [2, 3, 2, 3]);
            for n in 0..2 {
                for y in 0..2 {
                    for x in 0..3 {
                        let base = ((n * 2 + y) * 3 + x) * 3;
                        let want = Normalization::ImageNet.apply([b.pixels[base], b.pixels[base + 1], b.pixels[base + 2]]);
                        for c in 0..3 {
                            let got = t.double_value(&[n as i64, c as i64, y as i64, x as i64]) as f32;
                            assert!((got - want[c]).abs() < 1e-5, "n{n} c{c} y{y} x{x}: {got} vs {}", want[c]);
                        }
                    }
                }
            }
        }
        let cl = images(&b, Normalization::Raw, Device::Cpu, Layout::ChannelsLast);
        assert_eq!(cl.stride(), [18, 1, 9, 3], "channels-last strides");
        assert!(images(&b, Normalization::Raw, Device::Cpu, Layout::Contiguous).is_contiguous());
    }

    #[test]
    fn targets_keep_their_rows_and_devices_parse() {
        let t = targets(&batch(), Device::Cpu);
        assert_eq!(t.size(), [2, 2]);
        assert_eq!(Vec::<f32>::try_from(t.flatten(0, 1)).unwrap(), vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(parse_device("cuda:1"), Ok(Device::Cuda(1)));
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert!(parse_device("tpu").unwrap_err().contains("tpu"));
    }
}
