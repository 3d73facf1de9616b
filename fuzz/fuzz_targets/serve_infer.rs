//! The body of an OIP v2 `infer` request (JSON, base64 `BYTES` images), parsed by `orchard serve`'s own
//! code: crates/orchard-serve/src/request.rs, compiled here without the rest of that crate.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/orchard-serve/src/request.rs"]
mod request;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, images)) = request::infer_images(data) {
        assert!(!images.is_empty());
        assert!(images.iter().map(|(_, b)| b.len()).sum::<usize>() <= data.len());
    }
});
