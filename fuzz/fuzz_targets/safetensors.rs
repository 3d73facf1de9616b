//! Safetensors files and Orchard's native checkpoints (safetensors with an `orchard` header), as the weights
//! reader takes them; the header, when present, must be JSON that is read without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchard_weightfile::safetensors;

fuzz_target!(|data: &[u8]| {
    let _ = safetensors::is_safetensors(data);
    if let Ok(file) = safetensors::read(data) {
        for t in &file.tensors {
            let numel: i64 = t.shape.iter().product();
            assert_eq!(t.data.len() as i64, numel * t.dtype.size() as i64, "{}", t.name);
        }
        if let Some(header) = file.metadata.get("orchard") {
            let _ = serde_json::from_str::<serde_json::Value>(header);
        }
    }
});
