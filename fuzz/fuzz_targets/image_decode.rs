//! Orchard's image decode path (JPEG through libjpeg-turbo, PNG through the `png` crate, EXIF orientation,
//! DCT-scaled decoding) on arbitrary bytes. The header is probed first; headers over 2^22 pixels are
//! decoded no further here: the decoder allocates width × height × 3 bytes up front, bounded by
//! `decode::MAX_PIXELS` (2^28), which is the limit, not a bug, and too slow to hit on every input. A PNG's size
//! is also taken from its IHDR chunk, as `orchard serve` does before decoding an upload: the probe can
//! refuse a file that the decoder then goes on to allocate for (a 63-byte PNG declaring 16777218×2 got a
//! 134 MB buffer, within MAX_PIXELS, before its data ran out).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use orchard_data::decode::{decode_bytes, probe_bytes, DecodeOptions};

/// The largest image decoded in full here.
const FUZZ_PIXELS: usize = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.img");
    if ihdr_pixels(data) > FUZZ_PIXELS {
        return;
    }
    let Ok(info) = probe_bytes(data, path) else {
        let _ = decode_bytes(data, path, &DecodeOptions::default());
        return;
    };
    if info.width.saturating_mul(info.height) > FUZZ_PIXELS {
        return;
    }
    for options in [
        DecodeOptions::default(),
        DecodeOptions { min_size: Some((info.width / 4 + 1, info.height / 4 + 1)), ignore_orientation: false },
        DecodeOptions { min_size: None, ignore_orientation: true },
    ] {
        if let Ok(image) = decode_bytes(data, path, &options) {
            assert_eq!(image.data.len(), image.width * image.height * 3);
        }
    }
});

/// Width × height from a PNG's IHDR chunk; 0 for anything else.
fn ihdr_pixels(data: &[u8]) -> usize {
    if !data.starts_with(b"\x89PNG\r\n\x1a\n") || data.len() < 24 {
        return 0;
    }
    let be = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    be(16).saturating_mul(be(20))
}
