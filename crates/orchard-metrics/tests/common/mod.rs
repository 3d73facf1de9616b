//! Running the reference Python (scikit-learn, torch) named by `ORCHARD_PYTHON` on a JSON file.

use std::path::PathBuf;
use std::process::Command;

/// Runs `script` with the Python in `ORCHARD_PYTHON`, giving it the path of a JSON file holding `input`;
/// returns the JSON the script prints. Panics (never skips) when the variable is unset or the script fails.
pub fn run_python(script: &str, input: &serde_json::Value) -> serde_json::Value {
    let python = std::env::var_os("ORCHARD_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "ORCHARD_PYTHON is not set: this test compares with scikit-learn/torch and needs a Python that has them, \
             e.g. ORCHARD_PYTHON=/root/.cache/orchard/venv-torch-2.13.0/bin/python"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(input).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ORCHARD_PYTHON={}: {e}", python.display()));
    assert!(out.status.success(), "reference script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("reference script prints JSON")
}
