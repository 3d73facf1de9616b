//! Decoding JPEG and PNG files into [`RgbImage`]s, ready for untrusted input.
//!
//! JPEG goes through libjpeg-turbo (SIMD, baseline and progressive). When the caller says how large the
//! result needs to be, a large JPEG is decoded at 1/2, 1/4 or 1/8 scale inside the inverse DCT, the biggest
//! single saving of the input pipeline: a 2048×1365 photo bound for 224×224 decodes at 512×342. The EXIF
//! orientation is applied after decoding. PNG goes through the `png` crate: 1–16-bit gray, gray+alpha, RGB,
//! RGBA and palette images become 8-bit RGB (16-bit rounds to nearest, gray is broadcast, alpha is dropped
//! as `PIL.Image.convert("RGB")` and `tf.io.decode_png(channels=3)` drop it).
//!
//! Every size is checked against [`MAX_PIXELS`] from the header, before anything is allocated.

use std::cell::RefCell;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use orchard_files::input;

use crate::image::{Dihedral, RgbImage};

/// The largest image accepted (width × height), checked before decoding: 2^28, e.g. 16384 × 16384.
pub const MAX_PIXELS: usize = 1 << 28;

/// What went wrong reading an image; every variant names the file when there is one.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a JPEG or PNG file")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: empty file (0 bytes)")]
    Empty { path: PathBuf },
    #[error("{path}: corrupt or unsupported {format}: {message}")]
    Corrupt { path: PathBuf, format: Format, message: String },
    #[error("{path}: {width}x{height} is larger than the {MAX_PIXELS}-pixel limit")]
    TooLarge { path: PathBuf, width: usize, height: usize },
}

/// The container formats Orchard reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
        })
    }
}

/// What a header says, without decoding pixels (dimensions are after the EXIF orientation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: Format,
    pub width: usize,
    pub height: usize,
}

/// How to decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The smallest width and height the caller needs (after orientation); a JPEG at least twice as large
    /// in both is decoded at the smallest DCT scale that still covers it. `None` decodes at full size.
    pub min_size: Option<(usize, usize)>,
    /// Ignore the EXIF orientation tag (keep the stored pixel order).
    pub ignore_orientation: bool,
}

/// Detects the format from the first bytes.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else {
        None
    }
}

/// Reads and decodes an image file.
pub fn decode_file(path: &Path, options: &DecodeOptions) -> Result<RgbImage, DecodeError> {
    let bytes = read_file(path)?;
    decode_bytes(&bytes, path, options)
}

/// Reads an image file's bytes: a regular file no larger than [`input::IMAGE`] (a FIFO or a device named like
/// an image is refused, not read).
pub fn read_file(path: &Path) -> Result<Vec<u8>, DecodeError> {
    input::read(path, input::IMAGE).map_err(|source| DecodeError::Io { path: path.into(), source })
}

/// Decodes an encoded image held in memory; `path` only names it in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, options: &DecodeOptions) -> Result<RgbImage, DecodeError> {
    match sniff(bytes) {
        Some(Format::Jpeg) => decode_jpeg(bytes, path, options),
        Some(Format::Png) => decode_png(bytes, path),
        None => Err(unknown_format(bytes, path)),
    }
}

/// Reads only as much of a file as its header needs.
pub fn probe_file(path: &Path) -> Result<ImageInfo, DecodeError> {
    let bytes = read_file(path)?;
    probe_bytes(&bytes, path)
}

/// Reads an in-memory image's header.
pub fn probe_bytes(bytes: &[u8], path: &Path) -> Result<ImageInfo, DecodeError> {
    match sniff(bytes) {
        Some(Format::Jpeg) => {
            let header = with_jpeg(|d| d.read_header(bytes).map_err(|e| corrupt(path, Format::Jpeg, e)))?;
            let (mut width, mut height) = (header.width, header.height);
            check_size(path, width, height)?;
            if jpeg_orientation(bytes).is_some_and(|t| t.transpose) {
                std::mem::swap(&mut width, &mut height);
            }
            Ok(ImageInfo { format: Format::Jpeg, width, height })
        }
        Some(Format::Png) => {
            let decoder = png::Decoder::new(Cursor::new(bytes));
            let reader = decoder.read_info().map_err(|e| corrupt(path, Format::Png, e))?;
            let info = reader.info();
            let (width, height) = (info.width as usize, info.height as usize);
            check_size(path, width, height)?;
            Ok(ImageInfo { format: Format::Png, width, height })
        }
        None => Err(unknown_format(bytes, path)),
    }
}

/// Reads and fully decodes an image file without keeping its pixels (see [`verify_bytes`]).
pub fn verify_file(path: &Path) -> Result<ImageInfo, DecodeError> {
    let bytes = read_file(path)?;
    verify_bytes(&bytes, path)
}

/// Decodes a whole image without keeping its pixels, to learn up front whether training will be able to:
/// a JPEG at its smallest DCT scale (every coefficient is still entropy-decoded, so a cut or corrupt stream
/// fails as it would at full size, in 1/64 of the memory), a PNG row by row (one row in memory). The size
/// limit applies as when decoding. Returns the header.
pub fn verify_bytes(bytes: &[u8], path: &Path) -> Result<ImageInfo, DecodeError> {
    let info = probe_bytes(bytes, path)?;
    match info.format {
        Format::Jpeg => {
            let options = DecodeOptions { min_size: Some((1, 1)), ignore_orientation: true };
            decode_jpeg(bytes, path, &options)?;
        }
        Format::Png => {
            let err = |e: png::DecodingError| corrupt(path, Format::Png, e);
            let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), png_limits());
            decoder.set_transformations(png::Transformations::EXPAND);
            let mut reader = decoder.read_info().map_err(err)?;
            while reader.next_row().map_err(err)?.is_some() {}
        }
    }
    Ok(info)
}

/// Encodes RGB pixels as a baseline JPEG with 4:2:0 chroma subsampling (what cameras write).
pub fn encode_jpeg(image: &RgbImage, quality: i32) -> Result<Vec<u8>, DecodeError> {
    encode_jpeg_with(image, quality, false)
}

/// Encodes RGB pixels as JPEG, progressive when asked.
pub fn encode_jpeg_with(image: &RgbImage, quality: i32, progressive: bool) -> Result<Vec<u8>, DecodeError> {
    let err = |e: turbojpeg::Error| corrupt(Path::new("<encoder>"), Format::Jpeg, e);
    let mut compressor = turbojpeg::Compressor::new().map_err(err)?;
    compressor.set_quality(quality).map_err(err)?;
    compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2).map_err(err)?;
    compressor.set_progressive(progressive).map_err(err)?;
    let view = turbojpeg::Image {
        pixels: image.data.as_slice(),
        width: image.width,
        pitch: image.width * 3,
        height: image.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    compressor.compress_to_vec(view).map_err(err)
}

thread_local! {
    /// One libjpeg-turbo handle per thread, reused across images.
    static JPEG: RefCell<turbojpeg::Decompressor> = RefCell::new(new_decompressor());
}

fn new_decompressor() -> turbojpeg::Decompressor {
    turbojpeg::Decompressor::new().expect("libjpeg-turbo cannot allocate a decompressor")
}

/// Runs `f` with this thread's decompressor. A handle that failed on a corrupt file can stay in a bad
/// state and fail the next, valid file, so after any error it is replaced by a fresh one.
fn with_jpeg<T>(f: impl FnOnce(&mut turbojpeg::Decompressor) -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    JPEG.with(|cell| {
        let mut d = cell.borrow_mut();
        let result = f(&mut d);
        if result.is_err() {
            *d = new_decompressor();
        }
        result
    })
}

/// Why bytes that are neither JPEG nor PNG are refused.
fn unknown_format(bytes: &[u8], path: &Path) -> DecodeError {
    match bytes.is_empty() {
        true => DecodeError::Empty { path: path.into() },
        false => DecodeError::UnknownFormat { path: path.into() },
    }
}

fn corrupt(path: &Path, format: Format, e: impl std::fmt::Display) -> DecodeError {
    DecodeError::Corrupt { path: path.into(), format, message: e.to_string() }
}

fn check_size(path: &Path, width: usize, height: usize) -> Result<(), DecodeError> {
    if width == 0 || height == 0 || width.saturating_mul(height) > MAX_PIXELS {
        return Err(DecodeError::TooLarge { path: path.into(), width, height });
    }
    Ok(())
}

/// The smallest of 1/8, 1/4, 1/2 (or 1) whose result still covers `min` in both dimensions, when the
/// source is at least twice the target.
pub fn dct_scale(width: usize, height: usize, min: (usize, usize)) -> usize {
    let mut denom = 1;
    for d in [2, 4, 8] {
        // libjpeg-turbo rounds scaled sizes up.
        if width.div_ceil(d) >= min.0 && height.div_ceil(d) >= min.1 {
            denom = d;
        }
    }
    denom
}

fn decode_jpeg(bytes: &[u8], path: &Path, options: &DecodeOptions) -> Result<RgbImage, DecodeError> {
    let orientation = if options.ignore_orientation { None } else { jpeg_orientation(bytes) };
    with_jpeg(|d| {
        let err = |e: turbojpeg::Error| corrupt(path, Format::Jpeg, e);
        let header = d.read_header(bytes).map_err(err)?;
        check_size(path, header.width, header.height)?;
        let denom = match options.min_size {
            Some((w, h)) => {
                // The caller's size is after orientation; the DCT works on stored pixels.
                let (w, h) = if orientation.is_some_and(|t| t.transpose) { (h, w) } else { (w, h) };
                dct_scale(header.width, header.height, (w, h))
            }
            None => 1,
        };
        let factor = turbojpeg::ScalingFactor::new(1, denom);
        d.set_scaling_factor(factor).map_err(err)?;
        let scaled = header.scaled(factor);
        let cmyk = header.colorspace == turbojpeg::Colorspace::CMYK || header.colorspace == turbojpeg::Colorspace::YCCK;
        let (format, channels) =
            if cmyk { (turbojpeg::PixelFormat::CMYK, 4) } else { (turbojpeg::PixelFormat::RGB, 3) };
        let mut pixels = vec![0u8; scaled.width * scaled.height * channels];
        let view = turbojpeg::Image {
            pixels: pixels.as_mut_slice(),
            width: scaled.width,
            pitch: scaled.width * channels,
            height: scaled.height,
            format,
        };
        d.decompress(bytes, view).map_err(err)?;
        if cmyk {
            pixels = cmyk_to_rgb(&pixels);
        }
        let image = RgbImage::from_raw(scaled.width, scaled.height, pixels);
        Ok(match orientation {
            Some(t) => image.transformed(t),
            None => image,
        })
    })
}

/// libjpeg stores Adobe CMYK inverted; black is 0.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    cmyk.chunks_exact(4)
        .flat_map(|p| {
            let k = p[3] as u32;
            [(p[0] as u32 * k / 255) as u8, (p[1] as u32 * k / 255) as u8, (p[2] as u32 * k / 255) as u8]
        })
        .collect()
}

/// The EXIF orientation of a JPEG, from its APP1 segment, when present and not the identity.
fn jpeg_orientation(bytes: &[u8]) -> Option<Dihedral> {
    let exif = jpeg_exif_payload(bytes)?;
    let data = exif::Reader::new().read_raw(exif.to_vec()).ok()?;
    let field = data.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    let tag = field.value.get_uint(0)?;
    Dihedral::from_exif_orientation(tag).filter(|t| *t != Dihedral::IDENTITY)
}

/// The TIFF payload of the first `Exif\0\0` APP1 segment, scanning markers up to the first scan.
fn jpeg_exif_payload(bytes: &[u8]) -> Option<&[u8]> {
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None; // start of scan or end of image: no EXIF before the pixels
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        let body = bytes.get(i + 4..i + 2 + len)?;
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            return Some(&body[6..]);
        }
        i += 2 + len;
    }
    None
}

/// What the PNG decoder may allocate: the largest image accepted, at 16 bits and four channels.
fn png_limits() -> png::Limits {
    png::Limits { bytes: MAX_PIXELS * 8 }
}

fn decode_png(bytes: &[u8], path: &Path) -> Result<RgbImage, DecodeError> {
    let err = |e: png::DecodingError| corrupt(path, Format::Png, e);
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), png_limits());
    // Palette → RGB(A), tRNS → alpha, 1/2/4-bit → 8-bit; 16-bit stays 16-bit and is rounded below.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(err)?;
    let (width, height) = (reader.info().width as usize, reader.info().height as usize);
    check_size(path, width, height)?;
    let mut buf = vec![
        0;
        reader.output_buffer_size().ok_or_else(|| corrupt(
            path,
            Format::Png,
            format!("image too large (the limit is {MAX_PIXELS} pixels)")
        ))?
    ];
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    let buf = &buf[..frame.buffer_size()];
    let channels = frame.color_type.samples();
    let samples: Vec<u8> = match frame.bit_depth {
        png::BitDepth::Sixteen => {
            // Nearest 8-bit value: round(v * 255 / 65535) = (v + 128) / 257 (exact for all 16-bit v).
            buf.chunks_exact(2).map(|b| ((u16::from_be_bytes([b[0], b[1]]) as u32 + 128) / 257) as u8).collect()
        }
        png::BitDepth::Eight => buf.to_vec(),
        other => return Err(corrupt(path, Format::Png, format!("unexpected bit depth {other:?} after expansion"))),
    };
    let rgb: Vec<u8> = match channels {
        1 => samples.iter().flat_map(|&g| [g, g, g]).collect(),
        2 => samples.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        3 => samples,
        4 => samples.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        n => return Err(corrupt(path, Format::Png, format!("{n} channels"))),
    };
    if rgb.len() != width * height * 3 {
        return Err(corrupt(path, Format::Png, "truncated image data"));
    }
    Ok(RgbImage::from_raw(width, height, rgb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> RgbImage {
        let data =
            (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x * 255 / w) as u8, (y * 255 / h) as u8, 128])).collect();
        RgbImage::from_raw(w, h, data)
    }

    #[test]
    fn dct_scale_picks_the_smallest_scale_covering_the_target() {
        assert_eq!(dct_scale(2048, 1365, (224, 224)), 4);
        assert_eq!(dct_scale(2048, 1365, (768, 512)), 2);
        assert_eq!(dct_scale(2048, 1365, (1100, 700)), 1);
        assert_eq!(dct_scale(2048, 1365, (128, 128)), 8);
        assert_eq!(dct_scale(300, 300, (224, 224)), 1);
    }

    #[test]
    fn scaled_jpeg_decoding_stays_close_to_the_full_decode_downsampled() {
        let img = gradient(640, 480);
        let jpeg = encode_jpeg(&img, 95).unwrap();
        let full = decode_bytes(&jpeg, Path::new("g.jpg"), &DecodeOptions::default()).unwrap();
        assert_eq!((full.width, full.height), (640, 480));
        let quarter = decode_bytes(
            &jpeg,
            Path::new("g.jpg"),
            &DecodeOptions { min_size: Some((150, 100)), ..Default::default() },
        )
        .unwrap();
        assert_eq!((quarter.width, quarter.height), (160, 120));
        // Each quarter-scale pixel is the mean of a 4×4 block of the full image, within JPEG error.
        let mut worst = 0i32;
        for y in 0..120 {
            for x in 0..160 {
                for c in 0..3 {
                    let mean: i32 =
                        (0..16).map(|k| full.pixel(x * 4 + k % 4, y * 4 + k / 4)[c] as i32).sum::<i32>() / 16;
                    worst = worst.max((mean - quarter.pixel(x, y)[c] as i32).abs());
                }
            }
        }
        assert!(worst <= 6, "worst difference {worst}");
    }

    #[test]
    fn bad_bytes_are_reported_with_the_file_name() {
        let e = decode_bytes(b"hello", Path::new("x/y.jpg"), &DecodeOptions::default()).unwrap_err();
        assert!(e.to_string().contains("x/y.jpg"), "{e}");
        let mut jpeg = encode_jpeg(&gradient(64, 64), 90).unwrap();
        jpeg.truncate(40);
        let e = decode_bytes(&jpeg, Path::new("cut.jpg"), &DecodeOptions::default()).unwrap_err();
        assert!(matches!(e, DecodeError::Corrupt { format: Format::Jpeg, .. }), "{e}");
        assert!(e.to_string().contains("cut.jpg"));
    }

    #[test]
    fn verifying_decodes_the_whole_image_where_the_header_alone_passes() {
        let jpeg = encode_jpeg(&gradient(256, 192), 90).unwrap();
        assert_eq!(verify_bytes(&jpeg, Path::new("g.jpg")).unwrap(), probe_bytes(&jpeg, Path::new("g.jpg")).unwrap());
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        probe_bytes(cut, Path::new("cut.jpg")).unwrap();
        let e = verify_bytes(cut, Path::new("cut.jpg")).unwrap_err();
        assert!(matches!(e, DecodeError::Corrupt { format: Format::Jpeg, .. }), "{e}");
        let mut png_bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut png_bytes, 64, 48);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[7u8; 64 * 48 * 3]).unwrap();
        writer.finish().unwrap();
        verify_bytes(&png_bytes, Path::new("p.png")).unwrap();
        let e = verify_bytes(&png_bytes[..png_bytes.len() - 30], Path::new("p.png")).unwrap_err();
        assert!(matches!(e, DecodeError::Corrupt { format: Format::Png, .. }), "{e}");
        assert!(matches!(verify_bytes(b"", Path::new("e.png")), Err(DecodeError::Empty { .. })));
    }

    #[test]
    fn a_corrupt_file_does_not_spoil_the_next_decode_on_the_same_thread() {
        let good = encode_jpeg(&gradient(64, 48), 90).unwrap();
        for bad in [&b"\xFF\xD8\xFFnot really"[..], &good[..300]] {
            assert!(decode_bytes(bad, Path::new("bad.jpg"), &DecodeOptions::default()).is_err());
            decode_bytes(&good, Path::new("good.jpg"), &DecodeOptions::default()).unwrap();
            probe_bytes(&good, Path::new("good.jpg")).unwrap();
        }
    }
}
