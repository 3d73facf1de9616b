//! Standard output that its reader may close early (`orchard weights inspect F | head -1`). Rust ignores
//! SIGPIPE, and libtorch and Gloo rely on that, so a write to a closed pipe fails with `BrokenPipe`, on which
//! `println!` panics. Commands print through [`out!`] and [`outln!`] instead, which return the failure:
//! a closed pipe comes back as [`StdoutError::Closed`], which ends the command quietly with exit code 0
//! (main asks [`closed`]): the reader has all it wanted.

use std::fmt;
use std::io::{self, Write};

/// Writing to standard output failed.
#[derive(Debug, thiserror::Error)]
pub enum StdoutError {
    /// The reader has gone: a clean stop, not a failure.
    #[error("standard output was closed")]
    Closed,
    #[error("writing to standard output")]
    Failed(#[source] io::Error),
}

impl From<io::Error> for StdoutError {
    fn from(err: io::Error) -> StdoutError {
        match err.kind() {
            io::ErrorKind::BrokenPipe => StdoutError::Closed,
            _ => StdoutError::Failed(err),
        }
    }
}

/// Writes `args` to standard output.
pub fn print(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    Ok(io::stdout().lock().write_fmt(args)?)
}

/// Writes `bytes` to standard output and flushes it.
pub fn write_all(bytes: &[u8]) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    Ok(out.flush()?)
}

/// Whether `err` is standard output's reader having gone, which ends a command with exit code 0.
pub fn closed(err: &anyhow::Error) -> bool {
    err.chain().any(|e| matches!(e.downcast_ref::<StdoutError>(), Some(StdoutError::Closed)))
}

/// `print!` that returns a [`StdoutError`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::print(format_args!($($arg)*)) };
}

/// `println!` that returns a [`StdoutError`] instead of panicking.
macro_rules! outln {
    () => { $crate::out::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::print(format_args!("{}\n", format_args!($($arg)*))) };
}
