//! Whole-file writes that never leave a half-written file behind: a temporary file in the target's folder,
//! flushed and synced, then renamed over the target (a rename within one file system is atomic).

use std::io::Write;
use std::path::Path;

use crate::{EnsembleError, Result};

/// Writes `contents` to `path` atomically.
pub fn write(path: &Path, contents: &[u8]) -> Result<()> {
    let err = |source: std::io::Error| EnsembleError::Write { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(contents).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// A probability as CSV text: the shortest decimal that reads back as the same `f64`, in exponent form
/// for tiny values (Rust's plain `{}` would spell 1e-300 with 300 zeros).
pub fn format_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-4 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}
