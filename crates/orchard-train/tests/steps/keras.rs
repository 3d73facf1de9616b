//! Against Keras 3.15 (TensorFlow 2.21): the reference notebook's three families, EfficientNet, ResNetV2 and
//! InceptionResNetV2, with a new dense head, trained as Keras' `fit` trains (`train_on_batch`: Keras' Adam,
//! categorical cross-entropy on logits). Keras' side (`tests/fixtures/keras_steps.py`, run by `ORCHARD_PYTHON`)
//! builds the backbone without top, gives it random weights whose batch-norm statistics matter (no registry
//! ships Keras' ImageNet files), saves them as a Keras 3 weight file, adds a `Dense` head, draws the batches
//! (0–255 pixels, through the family's `preprocess_input`) and trains. Orchard loads that weight file as
//! `--weights`, takes Keras' initial head and trains on the same pixels, normalised as the model's spec says.
//!
//! Settings that differ by default are set equal: Keras' batch norms are given momentum 0.9 (`--bn-momentum
//! 0.9`; the applications' default is 0.99); Orchard's `adam` is Keras' formula, with Keras' ε 1e-7. Keras'
//! batch norm moves its moving variance by the batch's biased variance, PyTorch's by the unbiased: the Keras
//! families in Orchard follow Keras, and this test shows it over a run. Keras' TensorFlow backend takes Python
//! numbers through f32 before casting them to a variable's f64 (`ops.cast(0.999, "float64")` is 0.99900001287):
//! the learning rate and betas here are exact in f32, so that Keras' f64 run computes its own formula.
//!
//! ResNet50V2 runs at 64×64. At 32×32 its last stage is 1×1, the batch norms there normalise 8 numbers each,
//! and the run is chaotic: the first gradients agree to 1e-12, the losses differ by 3e-11 after one step and the
//! difference grows about threefold a step, to 5e-5 at step 18; at 64×64 (2×2) every step's loss agrees to
//! 1e-9. EfficientNetB0's run at 32×32, 1×1 at its last stage too, agrees to 3e-9.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use orchard_files::config::{HeadInit, ModelConfig, OptimizerConfig, OptimizerKind, TrainConfig};
use orchard_models::weights::keras;
use tch::{Device, Kind, Tensor};

use crate::{assert_run_matches, python, serial, snapshot, train, BATCH, BATCHES, CLASSES, KIND, LR, STEPS};

const EPS: f64 = 1e-7;
/// Adam's betas, near the usual 0.9 and 0.999 and exact in f32 (see the module's doc): Keras' bias correction
/// takes them through f32, its moment updates do not, and with 0.9 and 0.999 its f64 steps are 6.4e-6 shorter
/// than its own formula's in exact arithmetic.
const BETAS: (f64, f64) = (0.875, 0.9990234375);

/// Runs Keras' side into `dir` (see the fixture's doc) and returns its arrays.
fn keras_run(keras_model: &str, size: i64, dir: &Path) -> HashMap<String, Tensor> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_steps.py");
    let dtype = if KIND == Kind::Double { "float64" } else { "float32" };
    let numbers = [size, STEPS, BATCHES, BATCH, CLASSES].map(|n| n.to_string());
    let run = Command::new(python())
        .arg(script)
        .args([keras_model, &numbers[0], dtype])
        .args(&numbers[1..])
        .args([LR, BETAS.0, BETAS.1, 0.9].map(|x| x.to_string()))
        .arg(dir)
        .output()
        .unwrap();
    assert!(run.status.success(), "keras_steps.py failed:\n{}", String::from_utf8_lossy(&run.stderr));
    print!("{}", String::from_utf8_lossy(&run.stdout));
    Tensor::read_npz(dir.join("steps.npz")).unwrap().into_iter().collect()
}

fn assert_steps_match_keras(arch: &str, keras_model: &str, size: i64) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let arrays = keras_run(keras_model, size, dir.path());

    let efficientnet = arch.starts_with("efficientnet");
    let mut config = TrainConfig { batch_norm_momentum: Some(0.9), channels_last: false, ..Default::default() };
    config.model = ModelConfig {
        arch: arch.into(),
        weights: Some(dir.path().join("backbone.weights.h5")),
        dropout: Some(0.0),
        drop_path: efficientnet.then_some(0.0),
        head_init: HeadInit::Glorot,
    };
    config.optimizer = OptimizerConfig {
        kind: OptimizerKind::Adam,
        eps: EPS,
        beta1: BETAS.0,
        beta2: BETAS.1,
        weight_decay: 0.0,
        ..Default::default()
    };
    let spec = orchard_models::spec(arch).unwrap();
    let (mut network, head) = orchard_train::trainer::network(&config, &spec, CLASSES as usize, Device::Cpu).unwrap();
    network.vs.set_kind(KIND);

    // A Keras path's Orchard variable and the tensor in Orchard's layout; the head's by its weight's kind.
    let variables = network.vs.variables();
    let in_orchard = |path: &str, tensor: &Tensor| -> (String, Tensor) {
        let name = match path.strip_prefix("head/") {
            Some(leaf) => {
                let suffix = if leaf == "kernel" { ".weight" } else { ".bias" };
                head.iter()
                    .find(|n| n.ends_with(suffix))
                    .unwrap_or_else(|| panic!("no head {suffix} in {head:?}"))
                    .clone()
            }
            None => keras::orchard_name(path).unwrap_or_else(|| panic!("Orchard has no name for Keras' {path}")),
        };
        let target = variables.get(&name).unwrap_or_else(|| panic!("Keras' {path} is {name}, not a variable")).size();
        let tensor = keras::to_orchard_layout(path, tensor, &target).to_kind(KIND);
        (name, tensor)
    };
    tch::no_grad(|| {
        for (key, tensor) in arrays.iter().filter(|(k, _)| k.starts_with("head/")) {
            let (name, tensor) = in_orchard(key, tensor);
            variables[&name].shallow_clone().copy_(&tensor);
        }
    });
    let initial = snapshot(&network);

    let (mean, std) = spec.normalization.mean_std();
    let per_channel = |v: [f32; 3]| Tensor::from_slice(&v).to_kind(Kind::Double).view([1, 1, 3, 1, 1]);
    let pixels = arrays["pixels"].to_kind(Kind::Double).permute([0, 1, 4, 2, 3]);
    let xs = (pixels - per_channel(mean)) / per_channel(std);
    let losses = train(&network, &config.optimizer, &xs, &arrays["labels"]);

    let expected: Vec<f64> = Vec::try_from(&arrays["losses"]).unwrap();
    let reference = arrays.iter().filter_map(|(k, t)| Some(in_orchard(k.strip_prefix("final/")?, t))).collect();
    assert_run_matches(&format!("{arch} vs Keras {keras_model}"), &losses, &expected, &network, &initial, &reference);
}

/// EfficientNetB0 at 32×32 (the seed's EfficientNetB7 and B6 at their smallest): the input `Normalization`,
/// depthwise convolutions with Keras' asymmetric "same" padding, squeeze-and-excitation, swish.
#[test]
fn efficientnet_b0_training_steps_equal_keras() {
    assert_steps_match_keras("efficientnet_b0", "EfficientNetB0", 32);
}

/// ResNet50V2 at 64×64 (the seed's ResNet152V2's family): pre-activation blocks, the explicit zero paddings,
/// convolution biases.
#[test]
fn resnet50_v2_training_steps_equal_keras() {
    assert_steps_match_keras("resnet50_v2", "ResNet50V2", 64);
}

/// InceptionResNetV2 at Keras' smallest 75×75 (the seed's fourth model): its branches, concatenations and
/// scaled residuals with convolution biases.
#[test]
fn inception_resnet_v2_training_steps_equal_keras() {
    assert_steps_match_keras("inception_resnet_v2", "InceptionResNetV2", 75);
}
