//! `model.head_init` (`--head-init`): the new head starts from Keras' `Dense` or PyTorch's `nn.Linear`
//! distribution, through the trainer's own network setup, and nothing but the head depends on the choice.

use std::collections::HashMap;

use orchard_files::config::{HeadInit, ModelConfig, TrainConfig};
use tch::{Device, Kind, Tensor};

const CLASSES: i64 = 4;
const FEATURES: f64 = 1280.0;

/// The starting variables of a mobilenet_v2 run with `init` (same seed), and its head's names.
fn start(init: HeadInit) -> (HashMap<String, Tensor>, Vec<String>) {
    let config = TrainConfig {
        seed: 7,
        model: ModelConfig { arch: "mobilenet_v2".into(), head_init: init, ..Default::default() },
        ..Default::default()
    };
    let spec = orchard_models::spec("mobilenet_v2").unwrap();
    let (network, head) = orchard_train::trainer::network(&config, &spec, CLASSES as usize, Device::Cpu).unwrap();
    (network.variables.iter().map(|(n, t)| (n.clone(), t.copy())).collect(), head)
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

#[test]
fn the_head_init_changes_the_heads_distribution_and_nothing_else() {
    let (glorot, head) = start(HeadInit::Glorot);
    let (torch, torch_head) = start(HeadInit::Torch);
    assert_eq!(head, torch_head);
    let (weight, bias) = ("classifier.1.weight", "classifier.1.bias");
    assert!(head.contains(&weight.to_string()) && head.contains(&bias.to_string()), "{head:?}");
    assert_eq!(glorot.len(), torch.len());
    for (name, t) in &glorot {
        if !head.contains(name) {
            assert!(t.equal(&torch[name]), "{name} depends on the head's initialisation");
        }
    }

    // Keras: kernel uniform on ±√(6 / (fan_in + fan_out)), bias zero.
    let bound = (6.0 / (FEATURES + CLASSES as f64)).sqrt();
    let (w, b) = (&glorot[weight], &glorot[bias]);
    assert!(max_abs(w) <= bound && max_abs(w) > 0.98 * bound, "Glorot |w| ≤ {}, bound {bound}", max_abs(w));
    let variance = w.var(true).double_value(&[]);
    assert!((variance / (bound * bound / 3.0) - 1.0).abs() < 0.1, "Glorot variance {variance}");
    assert_eq!(max_abs(b), 0.0);

    // PyTorch: kernel and bias uniform on ±1/√fan_in, a bound under Glorot's (√3 · √(2/1284) ≈ 1.53×).
    let bound = 1.0 / FEATURES.sqrt();
    let (w, b) = (&torch[weight], &torch[bias]);
    assert!(max_abs(w) <= bound && max_abs(w) > 0.98 * bound, "torch |w| ≤ {}, bound {bound}", max_abs(w));
    let variance = w.var(true).double_value(&[]);
    assert!((variance / (bound * bound / 3.0) - 1.0).abs() < 0.1, "torch variance {variance}");
    assert!(max_abs(b) > 0.0 && max_abs(b) <= bound, "torch bias {b}");
    assert_eq!(b.kind(), Kind::Float);
}
