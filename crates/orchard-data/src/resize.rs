//! Antialiased resizing (and crop-then-resize) of [`RgbImage`]s, on `fast_image_resize`'s SIMD kernels.
//!
//! The filters are convolutions whose support widens with the reduction factor, as PIL's resize and
//! `tf.image.resize(antialias=True)` do, so a 4× reduction averages every source pixel instead of
//! sampling a few and aliasing.

use std::cell::RefCell;

use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use serde::{Deserialize, Serialize};

use crate::image::RgbImage;

/// The resampling filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Area average.
    Box,
    /// Triangle filter (PIL's `BILINEAR`): fast and smooth; the default.
    #[default]
    Bilinear,
    /// Catmull-Rom cubic (PIL's `BICUBIC`).
    Bicubic,
    /// Lanczos with three lobes: sharpest, slowest.
    Lanczos3,
}

impl Filter {
    fn algorithm(self) -> ResizeAlg {
        ResizeAlg::Convolution(match self {
            Filter::Box => FilterType::Box,
            Filter::Bilinear => FilterType::Bilinear,
            Filter::Bicubic => FilterType::CatmullRom,
            Filter::Lanczos3 => FilterType::Lanczos3,
        })
    }
}

/// A rectangle of the source, in pixels; fractional edges are honoured by the filter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crop {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl Crop {
    /// The whole of a `width` × `height` image.
    pub fn full(width: usize, height: usize) -> Crop {
        Crop { left: 0.0, top: 0.0, width: width as f64, height: height as f64 }
    }
}

thread_local! {
    /// Resizers keep scratch buffers: one per thread avoids reallocating them per image.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resizes the whole image to `width` × `height` (aspect ratio is not kept: the caller chooses).
pub fn resize(src: &RgbImage, width: usize, height: usize, filter: Filter) -> RgbImage {
    resize_crop(src, Crop::full(src.width, src.height), width, height, filter)
}

/// Resizes the `crop` region of `src` to `width` × `height`.
///
/// # Panics
/// If the crop is empty or leaves the image, or a size is zero: callers compute crops from the image.
pub fn resize_crop(src: &RgbImage, crop: Crop, width: usize, height: usize, filter: Filter) -> RgbImage {
    assert!(width > 0 && height > 0, "resize to an empty size {width}x{height}");
    if (src.width, src.height) == (width, height) && crop == Crop::full(width, height) {
        return src.clone();
    }
    let source =
        fast_image_resize::images::ImageRef::new(src.width as u32, src.height as u32, &src.data, PixelType::U8x3)
            .expect("RgbImage holds width*height*3 bytes");
    let mut dst = Image::new(width as u32, height as u32, PixelType::U8x3);
    let options =
        ResizeOptions::new().resize_alg(filter.algorithm()).crop(crop.left, crop.top, crop.width, crop.height);
    RESIZER
        .with(|r| r.borrow_mut().resize(&source, &mut dst, &options))
        .unwrap_or_else(|e| panic!("resize {crop:?} of {src:?}: {e}"));
    RgbImage::from_raw(width, height, dst.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_stays_flat_at_any_size() {
        let src = RgbImage::from_raw(97, 61, [10u8, 200, 77].repeat(97 * 61));
        for (w, h) in [(10, 10), (224, 224), (50, 120)] {
            let out = resize(&src, w, h, Filter::Bilinear);
            assert_eq!((out.width, out.height), (w, h));
            assert!(out.data.chunks(3).all(|p| p == [10, 200, 77]));
        }
    }

    #[test]
    fn reduction_is_antialiased() {
        // A one-pixel checkerboard must average to grey, not alias to black or white.
        let n = 256;
        let data = (0..n * n).flat_map(|i| if (i % n + i / n) % 2 == 0 { [255u8; 3] } else { [0u8; 3] }).collect();
        let out = resize(&RgbImage::from_raw(n, n, data), 32, 32, Filter::Bilinear);
        assert!(out.data.iter().all(|&v| (120..=135).contains(&v)), "{:?}", &out.data[..12]);
    }

    #[test]
    fn crop_then_resize_reads_only_the_crop() {
        // Left half red, right half blue: a crop of the right half is all blue.
        let (w, h) = (64, 32);
        let data = (0..w * h).flat_map(|i| if i % w < w / 2 { [255u8, 0, 0] } else { [0, 0, 255] }).collect();
        let src = RgbImage::from_raw(w, h, data);
        let out = resize_crop(&src, Crop { left: 40.0, top: 4.0, width: 20.0, height: 20.0 }, 8, 8, Filter::Bicubic);
        assert!(out.data.chunks(3).all(|p| p == [0, 0, 255]), "{:?}", &out.data[..12]);
    }
}
