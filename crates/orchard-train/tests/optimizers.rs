//! Orchard's optimizers against the reference implementations on the same gradients and learning rates, in
//! f64: Keras 3's Adam (the reference notebook's), PyTorch's AdamW and SGD (momentum, Nesterov, weight decay).
//! The fixture script runs in the Python named by `ORCHARD_PYTHON` (scripts/test.sh sets it).

use std::path::Path;
use std::process::Command;

use orchard_files::config::{OptimizerConfig, OptimizerKind};
use orchard_train::optim::{Optimizer, Param};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

const STEPS: usize = 12;
const SIZE: usize = 7;

fn reference(spec: &Value) -> Value {
    let python = std::env::var("ORCHARD_PYTHON")
        .expect("ORCHARD_PYTHON must name the Python with keras and torch (scripts/test.sh sets it)");
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.json"), dir.path().join("out.json"));
    std::fs::write(&input, spec.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optimizers.py");
    let run = Command::new(python).arg(script).arg(&input).arg(&output).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice(&std::fs::read(output).unwrap()).unwrap()
}

fn ours(config: OptimizerConfig, init: &[f64], grads: &[Vec<f64>], lrs: &[f64]) -> Vec<Vec<f64>> {
    let w = Tensor::from_slice(init).set_requires_grad(true);
    let mut opt = Optimizer::new(config, vec![Param { name: "w".into(), tensor: w.shallow_clone(), lr_mult: 1.0 }]);
    let mut trace = Vec::new();
    for (g, &lr) in grads.iter().zip(lrs) {
        opt.zero_grad();
        // A loss whose gradient is exactly `g`.
        (&w * Tensor::from_slice(g)).sum(Kind::Double).backward();
        opt.step(lr);
        trace.push(Vec::<f64>::try_from(w.detach()).unwrap());
    }
    trace
}

#[test]
fn optimizers_match_keras_adam_and_torch_adamw_and_sgd() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let init: Vec<f64> = (0..SIZE).map(|_| rng.random_range(-1.0..1.0)).collect();
    // Gradients of mixed scales and signs, one exactly zero, and a changing learning rate.
    let grads: Vec<Vec<f64>> = (0..STEPS)
        .map(|s| {
            (0..SIZE)
                .map(|i| {
                    if i == 3 {
                        0.0
                    } else {
                        rng.random_range(-1.0..1.0) * 10f64.powi(i as i32 % 3 - 1) * (1.0 + s as f64)
                    }
                })
                .collect()
        })
        .collect();
    let lrs: Vec<f64> = (0..STEPS).map(|s| 1e-2 / (1.0 + s as f64)).collect();
    let cases = [
        // Keras holds β1 and β2 in float32 when it raises them to the step: betas exact in float32 keep the
        // comparison at f64 precision.
        (
            "keras_adam",
            OptimizerConfig {
                kind: OptimizerKind::Adam,
                beta1: 0.875,
                beta2: 1.0 - 1.0 / 1024.0,
                eps: 1e-7,
                ..Default::default()
            },
        ),
        (
            "torch_adamw",
            OptimizerConfig {
                kind: OptimizerKind::AdamW,
                beta1: 0.8,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.05,
                ..Default::default()
            },
        ),
        (
            "torch_sgd",
            OptimizerConfig {
                kind: OptimizerKind::Sgd,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 1e-3,
                ..Default::default()
            },
        ),
        (
            "torch_sgd_nesterov",
            OptimizerConfig {
                kind: OptimizerKind::Sgd,
                momentum: 0.8,
                nesterov: true,
                weight_decay: 0.0,
                ..Default::default()
            },
        ),
    ];
    let spec = json!({
        "init": init, "grads": grads, "lrs": lrs,
        "cases": cases.iter().map(|(name, c)| json!({
            "name": name,
            "kind": if name.starts_with("torch_sgd") { "torch_sgd" } else { name },
            "beta1": c.beta1, "beta2": c.beta2, "eps": c.eps, "weight_decay": c.weight_decay,
            "momentum": c.momentum, "nesterov": c.nesterov,
        })).collect::<Vec<_>>(),
    });
    for (name, config) in cases {
        // One process per case: TensorFlow and torch do not share a process peacefully.
        let one = json!({ "init": spec["init"], "grads": spec["grads"], "lrs": spec["lrs"],
            "cases": spec["cases"].as_array().unwrap().iter().filter(|c| c["name"] == name).collect::<Vec<_>>() });
        let expected = reference(&one);
        // Keras keeps the learning rate in a float32 variable: feed ours the same rounded values.
        let lrs: Vec<f64> =
            if name == "keras_adam" { lrs.iter().map(|&lr| f64::from(lr as f32)).collect() } else { lrs.clone() };
        let got = ours(config, &init, &grads, &lrs);
        let want: Vec<Vec<f64>> = serde_json::from_value(expected[name].clone()).unwrap();
        for (step, (g, w)) in got.iter().zip(&want).enumerate() {
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{name} step {step}: ours {g:?}, reference {w:?}");
            }
        }
        let moved = got.last().unwrap().iter().zip(&init).any(|(a, b)| (a - b).abs() > 1e-3);
        assert!(moved, "{name}: the parameters hardly moved, the comparison would be vacuous");
    }
}
