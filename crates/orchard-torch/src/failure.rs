//! libtorch's failures caught as errors. tch's infallible calls report them by panicking, with libtorch's
//! C++ stack in the message, so that running out of memory in a training or prediction step ended the
//! process with a panic (exit code 101). [`catch`] runs a step, turns such a panic into a [`Failure`] that
//! holds libtorch's one-line message, and keeps the panic's long report off the terminal.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// What a failed libtorch call said, reduced to its first line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
}

impl Failure {
    /// Whether a device (or the host) ran out of memory, the failure a smaller batch or input size cures.
    pub fn out_of_memory(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        ["out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory"]
            .iter()
            .any(|needle| m.contains(needle))
    }
}

impl fmt::Display for Failure {
    /// libtorch's message, with "out of memory" said once whether or not libtorch says it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.out_of_memory() && !self.message.to_ascii_lowercase().contains("out of memory") {
            write!(f, "out of memory ({})", self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

thread_local! {
    /// Set while [`catch`] runs on this thread: its panics are caught and reported as errors.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `step`; a panic in it (libtorch's errors, out of memory first) comes back as a [`Failure`]. The
/// process-wide panic hook stays silent for the panics caught here and reports all others as before.
pub fn catch<T>(step: impl FnOnce() -> T) -> Result<T, Failure> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = CATCHING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(step));
    CATCHING.with(|c| c.set(outer));
    result.map_err(|payload| Failure { message: message(&*payload) })
}

/// The first line of libtorch's message in a panic's payload, without tch's wrapping (`called
/// Result::unwrap() on an Err value: Torch("...")`), libtorch's `[enforce fail at FILE] COND.` prefix or
/// its C++ stack.
pub fn message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("libtorch failed");
    let text = text.split_once("Torch(\"").map_or(text, |(_, inner)| inner);
    // The stack follows the first line, as a real line break or as one Debug escaped.
    let text = text.lines().next().unwrap_or(text);
    let text = text.split("\\n").next().unwrap_or(text).trim_end_matches("\")");
    let text = match text.strip_prefix("[enforce fail at ").and_then(|t| t.split_once("] ")) {
        Some((_, rest)) => rest.split_once(". ").filter(|(cond, _)| cond.contains("==")).map_or(rest, |(_, r)| r),
        None => text,
    };
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: &str =
        "called `Result::unwrap()` on an `Err` value: Torch(\"[enforce fail at alloc_cpu.cpp:127] err == \
        0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 134217728 bytes. Error code 12 (Cannot \
        allocate memory)\\nframe #0: c10::ThrowEnforceNotMet(char const*, int, char const*) + 0x6a\\nframe #1: ...\")";

    #[test]
    fn libtorchs_first_line_is_kept_and_out_of_memory_said_once() {
        let failure = Failure { message: message(&CPU.to_string()) };
        assert_eq!(
            failure.message,
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 134217728 bytes. Error code 12 \
             (Cannot allocate memory)"
        );
        assert!(failure.out_of_memory());
        assert_eq!(failure.to_string(), format!("out of memory ({})", failure.message));
        let cuda = Failure { message: message(&"Torch(\"CUDA out of memory. Tried to allocate 2.00 GiB\\nframe\")") };
        assert_eq!(cuda.to_string(), "CUDA out of memory. Tried to allocate 2.00 GiB");
        let other = Failure { message: message(&"index out of range\nstack") };
        assert!(!other.out_of_memory());
        assert_eq!(other.to_string(), "index out of range");
    }

    #[test]
    fn a_panic_in_a_step_comes_back_as_an_error_even_a_real_allocation_failure() {
        let failure = catch(|| -> u8 { panic!("{}", CPU) }).unwrap_err();
        assert!(failure.out_of_memory(), "{failure}");
        assert_eq!(catch(|| 7), Ok(7));
        assert!(!CATCHING.with(Cell::get), "the flag is cleared after a caught panic");
        // A real libtorch error: a tensor too large for any machine.
        let failure = catch(|| tch::Tensor::zeros([1 << 40, 1 << 20], (tch::Kind::Float, tch::Device::Cpu)));
        let failure = failure.unwrap_err();
        assert!(failure.out_of_memory() && !failure.message.contains("frame #"), "{failure}");
    }
}
