//! An uploaded image made into every member's input, on tokio's blocking pool: the header read first and an
//! image larger than the limit refused before any pixel is decoded, then each member's evaluation pipeline
//! (the test split's: the same decode, resize and crop).

use std::path::Path;

use orchard_data::decode::{self, DecodeError};
use orchard_data::image::RgbImage;
use orchard_data::pipeline::Pipeline;

/// Why an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{width}x{height} image: more than the {limit}-pixel limit")]
    TooLarge { width: usize, height: usize, limit: usize },
    #[error("cannot decode the image: {0}")]
    Decode(DecodeError),
}

/// The image in `bytes` as each pipeline makes it (one per member, in order).
pub fn prepare(bytes: &[u8], pipelines: &[Pipeline], max_pixels: usize) -> Result<Vec<RgbImage>, ImageError> {
    let name = Path::new("upload");
    if let Some((width, height)) = png_size(bytes) {
        if width.saturating_mul(height) > max_pixels {
            return Err(ImageError::TooLarge { width, height, limit: max_pixels });
        }
    }
    let info = decode::probe_bytes(bytes, name).map_err(|e| too_large(e, max_pixels))?;
    if info.width.saturating_mul(info.height) > max_pixels {
        return Err(ImageError::TooLarge { width: info.width, height: info.height, limit: max_pixels });
    }
    pipelines.iter().map(|p| p.sample_bytes(bytes, name, 0, 0, false).map_err(|e| too_large(e, max_pixels))).collect()
}

/// A PNG's dimensions straight from its IHDR chunk (always first): the `png` crate reads on to the first
/// image data before it tells, which a forged header alone does not have.
fn png_size(bytes: &[u8]) -> Option<(usize, usize)> {
    if decode::sniff(bytes) != Some(decode::Format::Png) || bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes")) as usize;
    Some((be(16), be(20)))
}

/// The decoder's own size limit reads as ours.
fn too_large(e: DecodeError, limit: usize) -> ImageError {
    match e {
        DecodeError::TooLarge { width, height, .. } => ImageError::TooLarge { width, height, limit },
        e => ImageError::Decode(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchard_data::pipeline::{PipelineConfig, Source};
    use std::sync::Arc;

    fn pipeline() -> Pipeline {
        Pipeline::new(PipelineConfig { size: (8, 6), ..Default::default() }, Source::Files(Arc::new(Vec::new())))
    }

    fn png(w: u32, h: u32, data: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        if let Some(data) = data {
            writer.write_image_data(data).unwrap();
        }
        drop(writer);
        out
    }

    #[test]
    fn images_become_the_pipeline_size_and_huge_headers_are_refused_before_decoding() {
        let image = prepare(&png(16, 12, Some(&[128; 16 * 12 * 3])), &[pipeline()], 1000).unwrap();
        assert_eq!((image[0].width, image[0].height), (8, 6));
        assert!(image[0].data.iter().all(|&v| v == 128));
        // Only a header: decoding would fail, so a refusal naming the size proves it came first.
        let err = prepare(&png(65000, 65000, None), &[pipeline()], 40_000_000).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { width: 65000, height: 65000, .. }), "{err}");
        let err = prepare(&png(300, 200, None), &[pipeline()], 1000).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { width: 300, height: 200, limit: 1000 }), "{err}");
        let err = prepare(&png(30, 20, None), &[pipeline()], 1000).unwrap_err();
        assert!(matches!(err, ImageError::Decode(_)), "{err}");
        let err = prepare(b"not an image", &[pipeline()], 1000).unwrap_err();
        assert!(err.to_string().contains("not a JPEG or PNG"), "{err}");
    }
}
