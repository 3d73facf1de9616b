//! One writer per directory: a run, an experiment or a unit of one is locked by the process that writes it,
//! before it writes anything, so two processes given the same `--out` never mix their files.
//!
//! The lock is the kernel's advisory lock (`flock`, through [`File::try_lock`]) on `DIR/.orchard.lock`: the
//! kernel drops it when its holder ends, however it ends (SIGKILL and out-of-memory kills included), so a
//! lock never outlives its process on the same machine and a killed run is simply started again. The file
//! also names its holder (pid, host, since when, command line), written once the lock is held and cleared
//! when it is released, so that a refused writer can say who is writing.
//!
//! Other machines: on NFS the kernel lock is forwarded to the server and holds across clients, but a mount
//! with local locks only (`nolock`, `local_lock=flock`) would let two machines lock the same file. So a lock
//! file naming a holder on another host is refused even when the kernel lock was free: that holder's
//! process cannot be checked from here. The message names the file to delete once that process is known to
//! have ended. A holder on this host whose kernel lock is free has ended (killed, or its machine rebooted)
//! and its lock is taken over.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the directory it locks.
pub const LOCK_FILE: &str = ".orchard.lock";

/// A directory locked by this process; released (the holder text cleared, then the kernel lock dropped with
/// the file) when dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

/// Who holds (or held) a lock, as its lock file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// When the lock was taken, RFC 3339 in UTC.
    pub since: String,
    /// The holder's command line, shortened.
    pub command: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on host {} since {}", self.pid, self.host, self.since)?;
        if !self.command.is_empty() {
            write!(f, " ({})", self.command)?;
        }
        Ok(())
    }
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{} is being written by another process: {}; one writer at a time: wait for it to end or choose \
         another directory",
        .dir.display(),
        .holder.as_ref().map_or_else(|| "one that is starting".to_string(), |h| h.to_string())
    )]
    Held { dir: PathBuf, holder: Option<Box<Holder>> },
    /// The lock file names a process on another host, which cannot be checked from here.
    #[error(
        "{} is locked by {holder}, on another host whose processes cannot be checked from here; if that \
         process has ended, delete {} and start again",
        .dir.display(),
        .file.display()
    )]
    OtherHost { dir: PathBuf, file: PathBuf, holder: Box<Holder> },
    /// The lock file could not be opened, locked or written.
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl DirLock {
    /// Locks `dir`, which must exist, for this process: at once, or an error naming the holder.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let kernel_lock = match file.try_lock() {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file).ok().flatten().map(Box::new);
                return Err(LockError::Held { dir: dir.to_path_buf(), holder });
            }
            // A file system without locks: the holder text alone decides.
            Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => false,
            Err(TryLockError::Error(e)) => return Err(io(e)),
        };
        if let Some(holder) = read_holder(&mut file).map_err(io)? {
            let here = host();
            if holder.host != here {
                return Err(LockError::OtherHost { dir: dir.to_path_buf(), file: path, holder: Box::new(holder) });
            }
            if !kernel_lock && holder.pid != std::process::id() && alive(holder.pid) {
                return Err(LockError::Held { dir: dir.to_path_buf(), holder: Some(Box::new(holder)) });
            }
            // Same host and the kernel lock was free: its holder ended without releasing it.
        }
        let me = Holder { pid: std::process::id(), host: host(), since: now(), command: command_line() };
        write_holder(&mut file, &me).map_err(io)?;
        Ok(DirLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // An empty file is a free lock; the kernel lock goes with the file.
        let _ = self.file.set_len(0).and_then(|()| self.file.sync_data());
    }
}

/// The holder a lock file names, `None` when it names none (a free lock, or text that is not a holder's).
fn read_holder(file: &mut File) -> io::Result<Option<Holder>> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    if file.read_to_string(&mut text).is_err() {
        return Ok(None);
    }
    let mut holder = Holder::default();
    let mut pid = None;
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "pid" => pid = value.parse().ok(),
            "host" => holder.host = value.to_string(),
            "since" => holder.since = value.to_string(),
            "command" => holder.command = value.to_string(),
            _ => {}
        }
    }
    Ok(pid.filter(|_| !holder.host.is_empty()).map(|pid| Holder { pid, ..holder }))
}

fn write_holder(file: &mut File, holder: &Holder) -> io::Result<()> {
    let text =
        format!("pid {}\nhost {}\nsince {}\ncommand {}\n", holder.pid, holder.host, holder.since, holder.command);
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// This machine's name (the kernel's), as lock files record it.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Now, RFC 3339 in UTC to the second.
fn now() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// This process's command line on one line, shortened to 200 characters.
fn command_line() -> String {
    let line: Vec<String> = std::env::args().map(|a| a.replace('\n', " ")).collect();
    let line = line.join(" ");
    match line.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line,
    }
}

/// Whether a process `pid` runs on this machine (used only where the kernel lock is unavailable).
fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_a_released_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert!(text.starts_with(&format!("pid {}\nhost {}\nsince ", std::process::id(), host())), "{text}");
        // flock locks belong to open files, so a second open in this very process is refused as another's.
        let err = DirLock::acquire(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, LockError::Held { holder: Some(_), .. }), "{message}");
        assert!(message.contains(&format!("pid {} on host {}", std::process::id(), host())), "{message}");
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        drop(first);
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(), "");
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_dead_holder_on_this_host_is_taken_over_and_one_on_another_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(LOCK_FILE);
        let dead = format!("pid 4000000\nhost {}\nsince 2026-01-01T00:00:00Z\ncommand orchard train\n", host());
        std::fs::write(&file, dead).unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        assert!(std::fs::read_to_string(&file).unwrap().starts_with(&format!("pid {}\n", std::process::id())));
        drop(lock);

        std::fs::write(&file, "pid 12\nhost elsewhere-node-7\nsince 2026-01-01T00:00:00Z\ncommand orchard run\n")
            .unwrap();
        let message = DirLock::acquire(dir.path()).unwrap_err().to_string();
        for part in ["pid 12 on host elsewhere-node-7 since 2026-01-01T00:00:00Z", "another host", "delete"] {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
        assert!(message.contains(&file.display().to_string()), "{message}");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = DirLock::acquire(&dir.path().join("none")).unwrap_err();
        assert!(err.to_string().contains("none/.orchard.lock"), "{err}");
    }
}
