//! Files for unit tests to read.

use std::path::PathBuf;

/// `text` written to `name` in the folder `dir`.
pub fn file(dir: &tempfile::TempDir, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}
