//! The run state of a training checkpoint (`best.ckpt`, `last.ckpt`), read as `--resume`, `orchard run`
//! and every report read it: from the file, without its tensors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchard_files::RunState;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write("state.ckpt", data);
    let _ = RunState::read(&path);
});
