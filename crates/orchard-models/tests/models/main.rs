//! Integration tests of orchard-models: one binary, one file per topic.
//!
//! - `sweep`: every registered model against REFERENCE.md's parameter counts, and a forward and backward pass.
//! - `keras_parity`: the same random weights and input through Keras and Orchard, in evaluation and training
//!   mode. It runs the reference framework at test time through the Python named by `ORCHARD_PYTHON`.
//! - `weight_files`: every weight-file reader against the reference framework's own reading, and the loader.

mod keras_parity;
mod sweep;
mod weight_files;

/// Whether every element of `t` is finite.
fn all_finite(t: &tch::Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) == 1
}

/// Runs the Python named by `ORCHARD_PYTHON` with `args` and returns what it printed; fails the test with its
/// error output when it fails.
fn python(args: &[&str]) -> String {
    let python =
        std::env::var("ORCHARD_PYTHON").expect("ORCHARD_PYTHON names the Python with the reference frameworks");
    let out =
        std::process::Command::new(&python).args(args).output().unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{python} {args:?} failed ({}):\n{stderr}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
