//! Evaluation preprocessing of single images as torchvision evaluates ImageNet models: the shorter side
//! resized to `size / 0.875` (256 for 224) with the antialiased bilinear filter, then the centre `size`
//! crop, then the architecture's normalisation. `orchard classify` prepares its images this way; a library
//! user classifying a photo with reference ImageNet weights wants the same.

use std::path::Path;

use orchard_data::decode::{self, DecodeError, DecodeOptions};
use orchard_data::image::RgbImage;
use orchard_data::loader::Batch;
use orchard_data::resize::{self, Filter};
use orchard_torch::{Layout, MeanStd};
use tch::{Device, Tensor};

/// Ratio of the centre crop to the resized image in torchvision's evaluation transform (224 of 256).
pub const CROP_FRACTION: f64 = 0.875;

/// torchvision's evaluation crop of the image at `path`, `width` × `height` pixels.
pub fn eval_crop(path: &Path, (width, height): (usize, usize)) -> Result<RgbImage, DecodeError> {
    let info = decode::probe_file(path)?;
    let short = (width.max(height) as f64 / CROP_FRACTION) as usize;
    let (w, h) = (info.width, info.height);
    // torchvision's Resize(int): the shorter side becomes `short`, the longer one is truncated.
    let (rw, rh) = if w <= h {
        (short, (short as f64 * h as f64 / w as f64) as usize)
    } else {
        ((short as f64 * w as f64 / h as f64) as usize, short)
    };
    let (rw, rh) = (rw.max(width), rh.max(height));
    let decoded = decode::decode_file(path, &DecodeOptions { min_size: Some((rw, rh)), ..Default::default() })?;
    let resized = resize::resize(&decoded, rw, rh, Filter::Bilinear);
    // Python's round, as torchvision's CenterCrop uses it: halves to even.
    let centre = |extra: usize| (extra as f64 / 2.0).round_ties_even() as usize;
    let (left, top) = (centre(rw - width), centre(rh - height));
    let mut data = Vec::with_capacity(width * height * 3);
    for row in top..top + height {
        let start = (row * rw + left) * 3;
        data.extend_from_slice(&resized.data[start..start + width * 3]);
    }
    Ok(RgbImage::from_raw(width, height, data))
}

/// One image as a normalised 1×3×H×W f32 tensor on `device`, as a batch of one would be.
pub fn to_tensor(image: &RgbImage, mean_std: MeanStd, device: Device) -> Tensor {
    let batch = Batch {
        indices: vec![0],
        pixels: image.data.clone(),
        width: image.width,
        height: image.height,
        targets: Vec::new(),
        classes: 0,
    };
    orchard_torch::images(&batch, mean_std, device, Layout::Contiguous)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a `w`×`h` RGB PNG whose pixel at (x, y) is `f(x, y)`.
    fn png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
        let mut encoder = png::Encoder::new(std::fs::File::create(path).unwrap(), w, h);
        encoder.set_color(png::ColorType::Rgb);
        let f = &f;
        let data: Vec<u8> = (0..h).flat_map(|y| (0..w).flat_map(move |x| f(x, y))).collect();
        encoder.write_header().unwrap().write_image_data(&data).unwrap();
    }

    #[test]
    fn the_crop_is_centred_after_resizing_the_shorter_side() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        // 64×32, white in columns 16..48 and black outside. 14 / 0.875 = 16 on the short side makes it 32×16,
        // whose centre 14 columns (9..23) come from original columns 18..46: all white. A crop off centre would
        // reach the black.
        png(&path, 64, 32, |x, _| if (16..48).contains(&x) { [255; 3] } else { [0; 3] });
        let crop = eval_crop(&path, (14, 14)).unwrap();
        assert_eq!((crop.width, crop.height), (14, 14));
        assert!(crop.data.iter().all(|&v| v > 240), "{:?}", &crop.data[..42]);
        png(&path, 64, 32, |x, _| if (16..48).contains(&x) { [0; 3] } else { [255; 3] });
        assert!(eval_crop(&path, (14, 14)).unwrap().data.iter().all(|&v| v < 15));
        let t = to_tensor(&crop, ([10.0, 20.0, 30.0], [2.0; 3]), Device::Cpu);
        assert_eq!(t.size(), [1, 3, 14, 14]);
        assert_eq!(t.double_value(&[0, 2, 5, 5]), (f64::from(crop.data[(5 * 14 + 5) * 3 + 2]) - 30.0) / 2.0);
    }
}
