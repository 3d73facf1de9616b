//! A run's cost measured before it starts (`orchard_train::estimate`), in a test binary of its own: the CPU's
//! activation bytes come from the process's heap, which tests running beside it would share.

use orchard_files::config::{DataConfig, Device, ModelConfig, OptimizerConfig, OptimizerKind, TrainConfig};
use orchard_train::estimate::measure;

fn config(size: usize, optimizer: OptimizerKind) -> TrainConfig {
    TrainConfig {
        device: Device::Cpu,
        batch: 16,
        data: DataConfig { size: Some((size, size)), ..Default::default() },
        model: ModelConfig { arch: "mobilenet_v2".into(), ..Default::default() },
        optimizer: OptimizerConfig { kind: optimizer, momentum: 0.0, ..Default::default() },
        ..Default::default()
    }
}

#[test]
fn state_is_counted_and_activations_grow_with_the_pixels() {
    let small = measure(&config(64, OptimizerKind::Adam), 4, &[]).unwrap();
    // MobileNetV2 without its top (2,257,984 numbers, batch-norm statistics included) and a head of 1280 × 4 + 4.
    assert_eq!(small.numbers, 2_257_984 + 1280 * 4 + 4);
    // The batch-norm statistics (2 × 17,056) don't train.
    assert_eq!(small.numbers - small.trainable, 2 * 17_056);
    // Adam: weights, gradients and two moments, 4 bytes each.
    assert_eq!(small.state_bytes, 4 * (small.numbers + 3 * small.trainable));
    assert_eq!(small.activation_bytes, small.activation_fixed + 16 * small.activation_per_image);
    // The stem's output alone, 32 channels at 32×32 in f32, is 128 KiB an image; autograd keeps dozens such.
    assert!(small.activation_per_image > 2 << 20 && small.activation_per_image < 64 << 20, "{small:?}");
    // Both step times were measured (their sizes are timings on a shared machine: no order between them is
    // asserted, as a test of speed would be noise).
    let (train, eval) = (small.train_seconds.at(16, 16), small.eval_seconds.at(16, 16));
    assert!(train.is_finite() && train > 0.0 && eval.is_finite() && eval > 0.0, "{small:?}");

    // Four times the pixels, four times the activations an image; plain SGD keeps no moments.
    let large = measure(&config(128, OptimizerKind::Sgd), 4, &[]).unwrap();
    let ratio = large.activation_per_image as f64 / small.activation_per_image as f64;
    assert!((3.6..4.4).contains(&ratio), "activations per image {small:?} → {large:?}: ×{ratio}");
    assert_eq!(large.state_bytes, 4 * (large.numbers + large.trainable));
}
