//! Whole-file writes that never leave a half-written file under the real name: the contents go to a
//! temporary file in the target's folder, which is synced and then renamed over the target (a rename within
//! one file system is atomic). A reader sees the old file or the new one, never a mixture, even when the
//! writer is killed or the disk fills up.
//!
//! Every Orchard temporary is named `.orchard-*.tmp`, so [`remove_stale`] can clear what a killed writer left.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The start of every temporary file's name.
pub const TEMPORARY_PREFIX: &str = ".orchard-";
/// The end of every temporary file's name.
pub const TEMPORARY_SUFFIX: &str = ".tmp";

/// A file being written: a temporary beside the target until [`PendingFile::commit`] renames it into place.
/// Dropped without committing, it is deleted and the target is left as it was.
#[derive(Debug)]
pub struct PendingFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl PendingFile {
    /// Creates the temporary file in `target`'s folder.
    pub fn new(target: &Path) -> io::Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix(TEMPORARY_PREFIX)
            .suffix(TEMPORARY_SUFFIX)
            .tempfile_in(folder_of(target))?;
        Ok(PendingFile { tmp, target: target.to_path_buf() })
    }

    /// The open temporary file, to write the contents to.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// The temporary's path, for writers that open a file by name themselves (libtorch's safetensors writer).
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Syncs the contents to disk and renames the temporary over the target.
    pub fn commit(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        let folder = folder_of(&self.target).to_path_buf();
        self.tmp.persist(&self.target).map_err(|e| e.error)?;
        // The rename itself is durable once the folder is synced. Some file systems refuse to sync a
        // folder; the file is in place all the same, so that is not an error.
        let _ = File::open(folder).and_then(|f| f.sync_all());
        Ok(())
    }
}

/// Writes `contents` to `path` atomically.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut pending = PendingFile::new(path)?;
    pending.file().write_all(contents)?;
    pending.commit()
}

/// Deletes the temporaries that writers killed in `folder` left behind. Best effort: a file that cannot be
/// removed is left alone.
pub fn remove_stale(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMPORARY_PREFIX) && name.ends_with(TEMPORARY_SUFFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The folder a file named `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn writes_replace_the_target_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, "old").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(names(dir.path()), ["a.csv"]);
    }

    #[test]
    fn an_uncommitted_write_changes_nothing_and_stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, "old").unwrap();
        {
            let mut pending = PendingFile::new(&path).unwrap();
            pending.file().write_all(b"half").unwrap();
            assert!(pending.path().starts_with(dir.path()));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names(dir.path()), ["a.csv"], "a dropped pending file deletes its temporary");

        std::fs::write(dir.path().join(".orchard-x1.tmp"), "killed").unwrap();
        std::fs::write(dir.path().join(".orchard-keep"), "not a temporary").unwrap();
        remove_stale(dir.path());
        assert_eq!(names(dir.path()), [".orchard-keep", "a.csv"]);
    }

    #[test]
    fn a_missing_folder_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("no/such/folder/a.csv"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
