//! The restricted pickle machine on arbitrary bytes: errors, never a panic, a call or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchard_weightfile::pickle;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = pickle::read(data, 0) {
        assert!(p.end <= data.len());
    }
});
