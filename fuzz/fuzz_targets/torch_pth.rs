//! PyTorch `.pth` files, zip and legacy, as the weights reader takes them: every tensor's bytes must match
//! its shape, and what is allocated stays within the reader's bound (MAX_EXPANSION times the file).
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchard_weightfile::{torch, RawTensor};

fn check(tensors: &[RawTensor]) {
    for t in tensors {
        let numel: i64 = t.shape.iter().product();
        assert_eq!(t.data.len() as i64, numel * t.dtype.size() as i64, "{}", t.name);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"PK\x03\x04") {
        if let Ok(t) = torch::read_zip(data) {
            check(&t);
        }
    } else if let Ok(t) = torch::read_legacy(data) {
        check(&t);
    }
});
