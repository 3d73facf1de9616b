//! Parity with Keras: the same random weights and the same input through `keras.applications` and through
//! Orchard, in evaluation mode and (without a top) for one training-mode pass. Keras builds the model, draws
//! the weights and computes the expected outputs at test time (`tests/fixtures/keras_efficientnet.py`, run by
//! the Python in `ORCHARD_PYTHON`); Orchard loads the weights by their Keras names through
//! `orchard_models::keras`. The f32 cases hold Orchard to the bar; the f64 case (Keras with floatx
//! float64) shows that what remains in f32 is rounding, not a difference in the computation.

use std::collections::HashMap;

use orchard_models::efficientnet::{EfficientNet, Options, Variant};
use orchard_models::{build, keras, Classifier};
use tch::{nn, Device, Kind, Tensor};

use crate::{python_fixture, relative_error};

/// Largest accepted `max |orchard - keras| / max |keras|` in f32 (the bar).
const F32_TOLERANCE: f64 = 1e-4;
/// The same in f64, where only a difference in the computation itself could exceed it.
const F64_TOLERANCE: f64 = 1e-9;

/// Runs the fixture script for one case and returns its arrays.
fn keras_fixture(model: &str, top: &str, size: i64, kind: Kind) -> HashMap<String, Tensor> {
    let dtype = if kind == Kind::Double { "float64" } else { "float32" };
    python_fixture("keras_efficientnet.py", &["--dtype", dtype, "--case", model, top, &size.to_string(), "{out}"])
}

/// The fixture's weights under their Keras names, and the input as N×3×H×W.
fn weights_and_input(arrays: &HashMap<String, Tensor>) -> (Vec<(String, Tensor)>, Tensor) {
    let weights = arrays
        .iter()
        .filter_map(|(k, t)| k.strip_prefix("weights/").map(|k| (k.to_string(), t.shallow_clone())))
        .collect();
    (weights, arrays["input"].permute([0, 3, 1, 2]).contiguous())
}

/// A var store in `kind` holding the fixture's weights for the model `build` puts in it.
fn load_model<M>(
    arrays: &HashMap<String, Tensor>,
    kind: Kind,
    build: impl FnOnce(&nn::Path) -> M,
) -> (nn::VarStore, M, Tensor) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = build(&vs.root());
    if kind == Kind::Double {
        vs.double();
    }
    let (weights, xs) = weights_and_input(arrays);
    let loaded = keras::load(&vs, "", weights).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded, vs.variables().len());
    (vs, model, xs)
}

/// Loads the fixture's weights into `name`, runs its input in evaluation mode, and compares with Keras' output;
/// without a top, also one training-mode pass (stochastic depth off, as the fixture's dropout) and the moving
/// statistics it leaves.
fn assert_matches_keras(
    name: &str,
    keras_model: &str,
    num_classes: Option<i64>,
    size: i64,
    kind: Kind,
    tolerance: f64,
) {
    let top = if num_classes.is_some() { "top" } else { "avg" };
    let arrays = keras_fixture(keras_model, top, size, kind);
    let case = format!("{name} vs Keras {keras_model} ({top}, {size}×{size}, {kind:?})");

    let (_vs, model, xs) = load_model(&arrays, kind, |path| build(name, path, num_classes).unwrap());
    let error = relative_error(&tch::no_grad(|| model.forward_t(&xs, false)), &arrays["output"]);
    println!("{case}, evaluation: relative error {error:.3e}");
    assert!(error <= tolerance, "{case}, evaluation: relative error {error:.3e} above {tolerance:.0e}");

    if num_classes.is_none() {
        let variant = Variant::by_name(name).unwrap();
        let options = Options { drop_connect_rate: 0.0, ..Options::default() };
        let (vs, model, xs) = load_model(&arrays, kind, |path| {
            Classifier::new(Box::new(EfficientNet::new(path, variant, options)), path, None).unwrap()
        });
        let error = relative_error(&tch::no_grad(|| model.forward_t(&xs, true)), &arrays["train_output"]);
        let variables = vs.variables();
        let moved_error = arrays
            .iter()
            .filter_map(|(k, expected)| {
                let keras_name = k.strip_prefix("train_moved/")?;
                let actual = &variables[&keras::orchard_name(keras_name).unwrap()];
                Some(relative_error(actual, expected))
            })
            .fold(0.0, f64::max);
        println!("{case}, training: relative error {error:.3e}, of moved statistics {moved_error:.3e}");
        assert!(error <= tolerance, "{case}, training: relative error {error:.3e} above {tolerance:.0e}");
        assert!(moved_error <= tolerance, "{case}: moving statistics off by {moved_error:.3e}");
    }
}

/// B0 with its 1000-class top at the default 224: the logits.
#[test]
fn efficientnet_b0_logits_match_keras() {
    assert_matches_keras("efficientnet_b0", "EfficientNetB0", Some(1000), 224, Kind::Float, F32_TOLERANCE);
}

/// B3 without top, average-pooled, at 100×100: width and depth rounding, and Keras' `correct_pad` for odd
/// sizes (100 → 50 → 25 → 13 → 7 at the stride-2 blocks).
#[test]
fn efficientnet_b3_pooled_features_match_keras() {
    assert_matches_keras("efficientnet_b3", "EfficientNetB3", None, 100, Kind::Float, F32_TOLERANCE);
}

/// B3 as above in f64: agreement to rounding error, so any f32 difference is rounding, not architecture.
#[test]
fn efficientnet_b3_pooled_features_match_keras_in_f64() {
    assert_matches_keras("efficientnet_b3", "EfficientNetB3", None, 100, Kind::Double, F64_TOLERANCE);
}
