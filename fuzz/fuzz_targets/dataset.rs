//! A dataset folder whose `train.csv` (the labels table) and `dataset.toml` are the input, split at the
//! first NUL byte (no NUL: no manifest), loaded both strictly and with `--skip-bad`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchard_data::dataset::{load, ImageCheck, LoadOptions, Split};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let root = common::scratch("dataset");
    let _ = std::fs::create_dir_all(root.join("images"));
    let (table, manifest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    std::fs::write(root.join("train.csv"), table).unwrap();
    match manifest {
        Some(m) => std::fs::write(root.join("dataset.toml"), m).unwrap(),
        None => {
            let _ = std::fs::remove_file(root.join("dataset.toml"));
        }
    }
    for skip_bad in [false, true] {
        let _ = load(&root, Split::Train, &LoadOptions { skip_bad, images: ImageCheck::Exists });
    }
});
