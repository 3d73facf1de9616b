//! What the commands that start `orchard` processes share (`launch`, `run --jobs`): children that die with
//! their parent, a fair share of the cores each, and how a child ended, in words.

use std::process::{Command, ExitStatus};

/// OpenMP threads per process when the caller set none: the cores shared evenly among `processes` (which
/// would otherwise each start one thread per core and fight over them).
pub fn openmp_threads(processes: usize) -> Option<usize> {
    if std::env::var_os("OMP_NUM_THREADS").is_some() || processes <= 1 {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Some((cores / processes).max(1))
}

/// Makes the child receive SIGTERM when this process dies, however it dies: no orphan keeps training.
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: `prctl` and `getppid` are async-signal-safe and touch only the child's own state.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the parent died while starting this process"));
            }
            Ok(())
        });
    }
}

/// "exited with code 2", "was killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended: {status}"),
    }
}
