//! Decoding against reference pixels: PNG exactly (every colour type and bit depth, written by the `png`
//! crate's encoder), JPEG within a small error of an independent decoder (zune-jpeg, pure Rust), and
//! files written by another encoder (PIL: progressive, EXIF-rotated, grayscale, CMYK) against PIL's own
//! decode.

use std::path::{Path, PathBuf};
use std::process::Command;

use orchard_data::decode::{decode_bytes, decode_file, encode_jpeg, encode_jpeg_with, probe_file, DecodeOptions};
use orchard_data::image::RgbImage;

fn png_bytes(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    palette: Option<(&[u8], Option<&[u8]>)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(color);
        enc.set_depth(depth);
        if let Some((plte, trns)) = palette {
            enc.set_palette(plte.to_vec());
            if let Some(t) = trns {
                enc.set_trns(t.to_vec());
            }
        }
        let mut w = enc.write_header().unwrap();
        w.write_image_data(data).unwrap();
    }
    out
}

fn decode(bytes: &[u8]) -> RgbImage {
    decode_bytes(bytes, Path::new("test.png"), &DecodeOptions::default()).unwrap()
}

/// Packs samples of `bits` bits (MSB first) into rows padded to whole bytes.
fn pack(samples: &[u16], width: usize, bits: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for row in samples.chunks(width) {
        let mut acc: u32 = 0;
        let mut n = 0;
        for &s in row {
            acc = (acc << bits) | s as u32;
            n += bits;
            if n == 8 {
                out.push(acc as u8);
                acc = 0;
                n = 0;
            }
        }
        if n > 0 {
            out.push((acc << (8 - n)) as u8);
        }
    }
    out
}

#[test]
fn png_gray_at_every_bit_depth_is_exact_and_broadcast() {
    let (w, h) = (7usize, 3usize);
    for bits in [1usize, 2, 4, 8, 16] {
        let max = (1u32 << bits) - 1;
        let samples: Vec<u16> = (0..w * h).map(|i| ((i as u32 * 37 + 5) % (max + 1)) as u16).collect();
        let data =
            if bits == 16 { samples.iter().flat_map(|s| s.to_be_bytes()).collect() } else { pack(&samples, w, bits) };
        let depth = png::BitDepth::from_u8(bits as u8).unwrap();
        let img = decode(&png_bytes(w as u32, h as u32, png::ColorType::Grayscale, depth, &data, None));
        assert_eq!((img.width, img.height), (w, h));
        for (i, &s) in samples.iter().enumerate() {
            let want = ((s as f64) * 255.0 / max as f64).round() as u8;
            assert_eq!(img.pixel(i % w, i / w), [want; 3], "{bits}-bit sample {s}");
        }
    }
}

#[test]
fn png_rgb_rgba_and_gray_alpha_drop_alpha_and_round_16_bit_exactly() {
    let (w, h) = (5usize, 4usize);
    let values8: Vec<u8> = (0..w * h * 4).map(|i| (i * 53 % 256) as u8).collect();
    let values16: Vec<u16> = (0..w * h * 4).map(|i| (i as u32 * 40503 % 65536) as u16).collect();
    let round16 = |v: u16| ((v as f64) * 255.0 / 65535.0).round() as u8;
    for (color, channels) in
        [(png::ColorType::Rgb, 3usize), (png::ColorType::Rgba, 4), (png::ColorType::GrayscaleAlpha, 2)]
    {
        let n = w * h * channels;
        let img8 = decode(&png_bytes(w as u32, h as u32, color, png::BitDepth::Eight, &values8[..n], None));
        let data16: Vec<u8> = values16[..n].iter().flat_map(|v| v.to_be_bytes()).collect();
        let img16 = decode(&png_bytes(w as u32, h as u32, color, png::BitDepth::Sixteen, &data16, None));
        for i in 0..w * h {
            let px8 = &values8[i * channels..(i + 1) * channels];
            let px16 = &values16[i * channels..(i + 1) * channels];
            let (want8, want16) = if channels == 2 {
                ([px8[0]; 3], [round16(px16[0]); 3])
            } else {
                ([px8[0], px8[1], px8[2]], [round16(px16[0]), round16(px16[1]), round16(px16[2])])
            };
            assert_eq!(img8.pixel(i % w, i / w), want8, "{color:?} 8-bit pixel {i}");
            assert_eq!(img16.pixel(i % w, i / w), want16, "{color:?} 16-bit pixel {i}");
        }
    }
}

#[test]
fn png_palette_with_transparency_expands_to_its_colours() {
    let palette = [10u8, 20, 30, 200, 100, 0, 0, 255, 0, 255, 255, 255];
    let indices: Vec<u16> = vec![0, 1, 2, 3, 3, 2, 1, 0];
    let data = pack(&indices, 4, 2);
    let img = decode(&png_bytes(
        4,
        2,
        png::ColorType::Indexed,
        png::BitDepth::Two,
        &data,
        Some((&palette, Some(&[255, 0, 128]))),
    ));
    for (i, &k) in indices.iter().enumerate() {
        let k = k as usize;
        assert_eq!(img.pixel(i % 4, i / 4), [palette[k * 3], palette[k * 3 + 1], palette[k * 3 + 2]]);
    }
}

/// A smooth picture with some texture: what JPEG is made for.
fn photo_like(w: usize, h: usize) -> RgbImage {
    let data = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                let r = 128.0 + 100.0 * (fx * 6.0).sin() * (fy * 3.0).cos();
                let g = 60.0 + 150.0 * fy + 20.0 * ((x / 8 + y / 8) % 2) as f32;
                let b = 200.0 * (1.0 - fx) * fy + 30.0;
                [r as u8, g.min(255.0) as u8, b as u8]
            })
        })
        .collect();
    RgbImage::from_raw(w, h, data)
}

fn zune(bytes: &[u8]) -> Vec<u8> {
    zune_jpeg::JpegDecoder::new(std::io::Cursor::new(bytes)).decode().unwrap()
}

fn errors(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len());
    let mean = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>() / a.len() as f64;
    let max = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y)).max().unwrap();
    (mean, max)
}

#[test]
fn jpeg_baseline_and_progressive_agree_with_an_independent_decoder() {
    let img = photo_like(301, 203); // odd sizes exercise partial MCUs
    for progressive in [false, true] {
        let bytes = encode_jpeg_with(&img, 92, progressive).unwrap();
        let ours = decode(&bytes);
        assert_eq!((ours.width, ours.height), (301, 203));
        let (mean, max) = errors(&ours.data, &zune(&bytes));
        // Decoders differ only in IDCT and chroma-upsampling rounding.
        assert!(mean < 1.0 && max <= 12, "progressive={progressive}: mean {mean}, max {max}");
        // And both are close to what was encoded.
        let (mean, _) = errors(&ours.data, &img.data);
        assert!(mean < 4.0, "progressive={progressive}: mean error to the source {mean}");
    }
}

fn python() -> PathBuf {
    PathBuf::from(std::env::var("ORCHARD_PYTHON").expect(
        "ORCHARD_PYTHON must name the Python of the test environment (scripts/test.sh sets it; or `source scripts/setup.sh`)",
    ))
}

/// Writes fixtures with PIL (another JPEG encoder) and PIL's decode of each as PNG.
fn pil_fixtures(dir: &Path) {
    let script = r#"
import sys, numpy as np
from PIL import Image, ImageOps
d = sys.argv[1]
h, w = 120, 160
y, x = np.mgrid[0:h, 0:w]
rgb = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 2) % 256], -1).astype(np.uint8)
img = Image.fromarray(rgb)
exif = Image.Exif(); exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
img.save(f"{d}/rotated.jpg", quality=95, exif=exif.tobytes(), progressive=True)
ImageOps.exif_transpose(Image.open(f"{d}/rotated.jpg")).convert("RGB").save(f"{d}/rotated.png")
img.convert("L").save(f"{d}/gray.jpg", quality=95)
Image.open(f"{d}/gray.jpg").convert("RGB").save(f"{d}/gray.png")
img.convert("CMYK").save(f"{d}/cmyk.jpg", quality=95)
Image.open(f"{d}/cmyk.jpg").convert("RGB").save(f"{d}/cmyk.png")
"#;
    let out = Command::new(python()).arg("-c").arg(script).arg(dir).output().expect("run Python");
    assert!(out.status.success(), "PIL fixtures: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn jpegs_from_another_encoder_match_its_decoder_with_exif_rotation_gray_and_cmyk() {
    let dir = tempfile::tempdir().unwrap();
    pil_fixtures(dir.path());
    for (name, tolerance) in [("rotated", 1.0), ("gray", 1.0), ("cmyk", 2.0)] {
        let jpg = dir.path().join(format!("{name}.jpg"));
        let ours = decode_file(&jpg, &DecodeOptions::default()).unwrap();
        let theirs = decode_file(&dir.path().join(format!("{name}.png")), &DecodeOptions::default()).unwrap();
        assert_eq!((ours.width, ours.height), (theirs.width, theirs.height), "{name}");
        let (mean, max) = errors(&ours.data, &theirs.data);
        assert!(mean < tolerance, "{name}: mean {mean}, max {max}");
        let info = probe_file(&jpg).unwrap();
        assert_eq!((info.width, info.height), (ours.width, ours.height), "{name}: the header reports the upright size");
    }
    // The rotated file is stored 160×120 and shown 120×160.
    let rotated = decode_file(&dir.path().join("rotated.jpg"), &DecodeOptions::default()).unwrap();
    assert_eq!((rotated.width, rotated.height), (120, 160));
    let stored =
        decode_file(&dir.path().join("rotated.jpg"), &DecodeOptions { ignore_orientation: true, ..Default::default() })
            .unwrap();
    assert_eq!((stored.width, stored.height), (160, 120));
    let gray = decode_file(&dir.path().join("gray.jpg"), &DecodeOptions::default()).unwrap();
    assert!(gray.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]), "grayscale is broadcast to RGB");
    // A DCT-scaled decode of the rotated file honours the upright target size.
    let small =
        decode_file(&dir.path().join("rotated.jpg"), &DecodeOptions { min_size: Some((60, 80)), ..Default::default() })
            .unwrap();
    assert_eq!((small.width, small.height), (60, 80));
}

#[test]
fn large_jpegs_decode_at_reduced_scale_only_when_the_target_is_half_or_less() {
    let bytes = encode_jpeg(&photo_like(2048, 1365), 85).unwrap();
    let at = |w, h| {
        let img =
            decode_bytes(&bytes, Path::new("big.jpg"), &DecodeOptions { min_size: Some((w, h)), ..Default::default() })
                .unwrap();
        (img.width, img.height)
    };
    assert_eq!(at(224, 224), (512, 342));
    assert_eq!(at(768, 512), (1024, 683));
    assert_eq!(at(1100, 700), (2048, 1365));
    assert_eq!(at(128, 128), (256, 171));
}

#[test]
fn corrupted_files_give_errors_never_panics() {
    // A cheap stand-in for a fuzzer, run on every test: thousands of mutated JPEG and PNG files (bytes
    // flipped, cut short, lengths garbled) must each decode or fail cleanly.
    let jpeg = encode_jpeg_with(&photo_like(64, 48), 80, true).unwrap();
    let png = png_bytes(16, 8, png::ColorType::Rgb, png::BitDepth::Eight, &photo_like(16, 8).data, None);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut failures = 0;
    for original in [&jpeg, &png] {
        for _ in 0..1500 {
            let mut bytes = original.clone();
            match next() % 3 {
                0 => bytes.truncate(3 + (next() as usize % bytes.len())),
                _ => {
                    for _ in 0..1 + next() % 4 {
                        let i = 3 + next() as usize % (bytes.len() - 3);
                        bytes[i] = next() as u8;
                    }
                }
            }
            let options = DecodeOptions { min_size: Some((8, 8)), ..Default::default() };
            if decode_bytes(&bytes, Path::new("fuzz"), &options).is_err() {
                failures += 1;
            }
            let _ = orchard_data::decode::probe_bytes(&bytes, Path::new("fuzz"));
        }
    }
    assert!(failures > 100, "mutations should break many files, broke {failures}");
}
