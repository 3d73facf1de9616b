//! Opening a file a user named, the one way Orchard does it: only a regular file is read (after following
//! symlinks), and never more than a size bound for its kind, so that a FIFO named like an image cannot hang
//! a command, a symlink to `/dev/zero` cannot make one read until memory runs out, and a mistaken 40 GB file
//! is refused with a message naming the limit rather than read.
//!
//! The file is opened without blocking (`O_NONBLOCK`: opening a FIFO would otherwise wait for a writer) and
//! its kind and size are taken from the open file itself, so nothing can be swapped in between the check and
//! the read. Errors are [`std::io::Error`]s whose text says what is wrong without the path, as every reader
//! already names the file beside its I/O errors.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;

/// What kind of file is being read and how large it may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// What the file is, for the message ("an image").
    pub what: &'static str,
    /// The largest size accepted, in bytes.
    pub bytes: u64,
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Images (JPEG, PNG): a 16384×16384 photo is well under it.
pub const IMAGE: Bound = Bound { what: "an image", bytes: 256 * MIB };
/// CSV tables: labels, folds, predictions, soft targets, submissions.
pub const TABLE: Bound = Bound { what: "a CSV table", bytes: GIB };
/// Configuration and summary text: TOML, JSON, JSON lines, token files.
pub const TEXT: Bound = Bound { what: "a configuration or text file", bytes: 64 * MIB };
/// Weight files and checkpoints (`.pth`, `.h5`, `.safetensors`, `.ckpt`): EfficientNet-B7 with its
/// optimizer state is about 1 GB.
pub const WEIGHTS: Bound = Bound { what: "a weight file", bytes: 16 * GIB };

/// Opens `path` for reading when it is (or links to) a regular file no larger than `bound`.
pub fn open(path: &Path, bound: Bound) -> io::Result<File> {
    let file = open_nonblocking(path)?;
    check_metadata(&file.metadata()?, bound)?;
    Ok(file)
}

/// Reads the whole of `path` (see [`open`]); stops at the bound should the file grow meanwhile.
pub fn read(path: &Path, bound: Bound) -> io::Result<Vec<u8>> {
    let file = open(path, bound)?;
    let len = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(bound.bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > bound.bytes {
        return Err(too_large(bytes.len() as u64, bound));
    }
    Ok(bytes)
}

/// Reads the whole of `path` as UTF-8 text (see [`open`]).
pub fn read_to_string(path: &Path, bound: Bound) -> io::Result<String> {
    String::from_utf8(read(path, bound)?).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
    })
}

/// Checks `path` as [`open`] does, for readers that open the file by name themselves (libhdf5, libtorch);
/// returns its size.
pub fn check(path: &Path, bound: Bound) -> io::Result<u64> {
    let file = open(path, bound)?;
    Ok(file.metadata()?.len())
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(not_regular(&metadata));
    }
    File::open(path)
}

fn check_metadata(metadata: &Metadata, bound: Bound) -> io::Result<()> {
    if !metadata.is_file() {
        return Err(not_regular(metadata));
    }
    if metadata.len() > bound.bytes {
        return Err(too_large(metadata.len(), bound));
    }
    Ok(())
}

/// Why a file that is not regular is refused, naming what it is.
fn not_regular(metadata: &Metadata) -> io::Error {
    let kind = kind(metadata);
    io::Error::new(io::ErrorKind::InvalidInput, format!("not a regular file ({kind}): only regular files are read"))
}

fn kind(metadata: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = metadata.file_type();
        if t.is_fifo() {
            return "a named pipe";
        } else if t.is_char_device() {
            return "a character device";
        } else if t.is_block_device() {
            return "a block device";
        } else if t.is_socket() {
            return "a socket";
        }
    }
    if metadata.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

fn too_large(len: u64, bound: Bound) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is larger than the limit for {} ({}); refused unread", human(len), bound.what, human(bound.bytes)),
    )
}

/// A byte count in binary units, exact at whole units ("256 MiB", "1.5 GiB", "12 bytes").
pub fn human(bytes: u64) -> String {
    let units = [(GIB, "GiB"), (MIB, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in units {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if bytes.is_multiple_of(size) {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Bound = Bound { what: "a test file", bytes: 10 };

    #[test]
    fn a_regular_file_within_its_bound_is_read_and_a_larger_one_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read(&path, SMALL).unwrap(), b"0123456789");
        assert_eq!(read_to_string(&path, SMALL).unwrap(), "0123456789");
        std::fs::write(&path, "0123456789x").unwrap();
        let e = read(&path, SMALL).unwrap_err();
        assert_eq!(e.to_string(), "11 bytes is larger than the limit for a test file (10 bytes); refused unread");
        assert_eq!(check(&path, Bound { bytes: 11, ..SMALL }).unwrap(), 11);
        std::fs::write(&path, b"\xff").unwrap();
        assert!(read_to_string(&path, SMALL).unwrap_err().to_string().contains("not UTF-8"));
    }

    #[cfg(unix)]
    #[test]
    fn fifos_devices_folders_and_symlink_loops_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.jpg");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let e = read(&fifo, IMAGE).unwrap_err();
        assert!(e.to_string().contains("not a regular file (a named pipe)"), "{e}");
        let zero = dir.path().join("zero.pth");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read(&zero, WEIGHTS).unwrap_err();
        assert!(e.to_string().contains("(a character device)"), "{e}");
        assert!(read(dir.path(), TEXT).unwrap_err().to_string().contains("(a folder)"));
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert_eq!(read(&a, TEXT).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        // A symlink to a regular file is followed.
        let target = dir.path().join("t.txt");
        std::fs::write(&target, "x").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read(&link, TEXT).unwrap(), b"x");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human(12), "12 bytes");
        assert_eq!(human(256 << 20), "256 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}
