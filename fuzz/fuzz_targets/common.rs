//! What several targets share: a scratch file per process for the readers that take a path.
#![allow(dead_code)]

use std::path::PathBuf;

/// A file (or folder, under `name`) in the temporary directory, private to this process.
pub fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("orchard-fuzz-{}-{name}", std::process::id()))
}

/// Writes `data` to the scratch file `name` and returns its path.
pub fn write(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, data).expect("the scratch file is writable");
    path
}
