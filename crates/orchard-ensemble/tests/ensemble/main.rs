//! Integration tests of orchard-ensemble: one binary, one file per topic.
//!
//! - `combiners`: every combiner against numpy/scipy on random cases with ties and zeros; rank averaging on
//!   cases whose answer is known.
//! - `search`: weight searches on constructed cases whose best answer is known, and the cross-validated
//!   estimate against the in-sample one.
//! - `sklearn`: the stacking meta-model and the per-label thresholds against scikit-learn, the summary's
//!   correlation against numpy.
//! - `stacking`: the meta-model, held out, on a case where it must beat every member.
//!
//! The reference computations run through the Python named by `ORCHARD_PYTHON` (numpy, scipy,
//! scikit-learn), with the scripts in `tests/fixtures/`.

mod combiners;
mod search;
mod sklearn;
mod stacking;

use std::path::PathBuf;
use std::process::Command;

/// Runs `tests/fixtures/<script>` with the Python in `ORCHARD_PYTHON` on a JSON file holding `input`, and
/// returns the JSON it prints. Panics (never skips) when the variable is unset or the script fails.
pub fn run_python(script: &str, input: &serde_json::Value) -> serde_json::Value {
    let python = std::env::var_os("ORCHARD_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        panic!("ORCHARD_PYTHON is not set: these tests compare with numpy/scipy/scikit-learn and need a Python that has them")
    });
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(script);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(input).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(&fixture)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the fixture prints JSON")
}

/// A `rows × cols` matrix as a list of rows, for the fixtures.
pub fn as_rows(flat: &[f64], cols: usize) -> Vec<Vec<f64>> {
    flat.chunks(cols).map(<[f64]>::to_vec).collect()
}

/// A flat matrix from the fixtures' list of rows.
pub fn from_rows(value: &serde_json::Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect()
}
