//! A training run's whole configuration: one serialisable struct with documented defaults, read from TOML,
//! overridden by command-line flags, and saved resolved in the run directory so the run can be replayed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use orchard_metrics::schedule::{Reference, Schedule};
use serde::{Deserialize, Serialize};

mod augment;
mod device;
mod resume;

pub use augment::{AugmentConfig, ColorJitter, Cutout, GaussianBlur, RandomResizedCrop, ShiftScaleRotate};
pub use device::Device;

/// Everything that determines a run. Sections mirror the TOML file: `[data]`, `[model]`, `[optimizer]`,
/// `[schedule]`, `[loss]`, `[augment]`, and the top-level loop settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Run directory (the `--out` flag may give it instead).
    pub out: Option<PathBuf>,
    /// Epochs to train (the run may stop earlier on early stopping).
    pub epochs: u32,
    /// Images per optimizer micro-batch.
    pub batch: usize,
    /// Micro-batches whose gradients are summed into one optimizer step (1: none).
    pub accumulate: usize,
    /// Seed of the data order, the augmentations, the fold split, the head's initialisation and dropout.
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available, else the CPU).
    pub device: Device,
    /// Arithmetic of the forward and backward passes.
    pub precision: Precision,
    /// Images and convolution weights in NHWC memory order (`torch.channels_last`). On by default: on a CPU,
    /// libtorch's depthwise convolutions train several times faster in it (EfficientNet-B0: about 7×).
    pub channels_last: bool,
    /// Decay of an exponential moving average of the weights, used for evaluation and saved models; none when
    /// absent. Typical: 0.999 per step.
    pub ema: Option<f64>,
    /// Epochs at the start during which only the head trains (the backbone's layer groups are frozen).
    pub freeze_epochs: u32,
    /// Batch-norm statistics: `train` (batch statistics, moving averages updated) or `frozen` (the backbone
    /// runs in inference mode, Keras' fine-tuning recipe `base_model(x, training=False)`).
    pub batch_norm: BatchNormMode,
    /// Momentum of the batch-norm running statistics while training (Keras' convention, the weight of the old
    /// value); the architecture's own (0.99 in Keras) when absent. 0.9 (PyTorch's default) suits short runs
    /// from scratch, whose statistics would otherwise stay near their initial values.
    pub batch_norm_momentum: Option<f64>,
    /// In data-parallel training, batch statistics of the global batch, pooled over the replicas (PyTorch's
    /// `SyncBatchNorm`), instead of each replica's: for small per-device batches.
    pub sync_batch_norm: bool,
    /// Metric that picks the best checkpoint and drives early stopping.
    pub monitor: Monitor,
    /// Stop after this many epochs without improvement of `monitor`; never when absent.
    pub patience: Option<u32>,
    /// Global L2-norm gradient clipping threshold; none when absent.
    pub clip_norm: Option<f64>,
    /// Images per batch at validation (default: `batch`).
    pub eval_batch: Option<usize>,
    /// Decode worker threads (default: the number of CPUs).
    pub workers: Option<usize>,
    /// Print nothing but errors.
    pub quiet: bool,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    pub loss: LossConfig,
    pub augment: AugmentConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            out: None,
            epochs: 10,
            batch: 16,
            accumulate: 1,
            seed: 0,
            device: Device::Auto,
            precision: Precision::F32,
            channels_last: true,
            ema: None,
            freeze_epochs: 0,
            batch_norm: BatchNormMode::Train,
            batch_norm_momentum: None,
            sync_batch_norm: false,
            monitor: Monitor::ValAuc,
            patience: None,
            clip_norm: None,
            eval_batch: None,
            workers: None,
            quiet: false,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            loss: LossConfig::default(),
            augment: AugmentConfig::reference(),
        }
    }
}

/// Where the images come from and which of them validate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset folder (any layout `orchard data check` reads).
    pub dir: PathBuf,
    /// Input size `(height, width)`; the architecture's default when absent.
    pub size: Option<(usize, usize)>,
    /// Number of folds K; no validation fold (train on everything) when absent.
    pub folds: Option<usize>,
    /// The validation fold, 0 ≤ fold < folds.
    pub fold: usize,
    /// A `image_id,fold` CSV (from `orchard data folds`) instead of assigning folds with `seed`.
    pub folds_csv: Option<PathBuf>,
    /// Decode each image once at the training size into a memory-mapped cache under the run directory.
    pub cache: bool,
    /// Soft targets (`image_id` + one column per class, rows of probabilities) replacing the labels of the
    /// training images, as written by self-distillation.
    pub soft_targets: Option<PathBuf>,
    /// Drop the rows whose image does not decode (or whose row is malformed) instead of refusing the
    /// dataset; the dropped ids and why are written to `skipped.csv` in the run directory.
    pub skip_bad: bool,
}

/// The architecture and its starting weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Registered architecture name (`orchard models list`).
    pub arch: String,
    /// Pretrained weights to start from; the head is always re-initialised for the dataset's classes.
    pub weights: Option<PathBuf>,
    /// Dropout rate before the head's dense layer; the architecture's (e.g. 0.2 for B0) when absent.
    pub dropout: Option<f64>,
    /// Stochastic-depth rate of the last block (EfficientNet, EfficientNet-Lite); the architecture's when
    /// absent. Short runs from scratch learn faster with 0 for both.
    pub drop_path: Option<f64>,
    /// How the new head's dense layer is drawn.
    pub head_init: HeadInit,
}

/// The distribution a new head's dense layer starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadInit {
    /// Keras' `Dense` default: `glorot_uniform` kernel, zero bias (the reference notebook's head).
    Glorot,
    /// PyTorch's `nn.Linear` default: kernel and bias uniform on `±1/√fan_in`. The default: fine-tuning
    /// trained better from it than from Glorot's 2.4× wider draw in both Orchard and PyTorch (GUIDE 3.13).
    #[default]
    Torch,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: "efficientnet_b0".into(),
            weights: None,
            dropout: None,
            drop_path: None,
            head_init: HeadInit::default(),
        }
    }
}

/// Which optimizer, and its hyper-parameters (the learning rate comes from the schedule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Adam/AdamW β1.
    pub beta1: f64,
    /// Adam/AdamW β2.
    pub beta2: f64,
    /// Adam/AdamW ε; 1e-7 as Keras (PyTorch uses 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (Adam, SGD) or decoupled decay (AdamW), per unit learning rate.
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD with Nesterov momentum.
    pub nesterov: bool,
    /// Learning-rate multipliers by layer group name (`stem`, `block3`, `head`, ...): discriminative rates.
    pub group_lr: BTreeMap<String, f64>,
    /// Multiplier applied once more per layer group below the head (layer-wise decay), e.g. 0.8.
    pub layer_decay: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Adam,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            weight_decay: 0.0,
            momentum: 0.9,
            nesterov: false,
            group_lr: BTreeMap::new(),
            layer_decay: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam as Keras computes it (the reference).
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    AdamW,
    /// Stochastic gradient descent with momentum.
    Sgd,
}

/// The learning-rate schedule and how often it is evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The function of the epoch.
    pub function: Schedule,
    /// Evaluate at every optimizer step (at the fractional epoch) instead of once per epoch as Keras'
    /// `LearningRateScheduler` does.
    pub per_step: bool,
    /// Whether the peak learning rate is one replica's, so that a data-parallel run of w replicas peaks at w
    /// times it, as the notebook's `LR_MAX × replicas`. Unset: only for the default function (the notebook's,
    /// LR_MAX 1e-4 a replica). Taken at run time, so a run resumed on another number of replicas keeps its
    /// configuration and follows the new number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_replica: Option<bool>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            function: Schedule::Reference(Reference::keras_notebook(1)),
            per_step: false,
            per_replica: None,
        }
    }
}

impl ScheduleConfig {
    /// The schedule a run of `replicas` data-parallel replicas follows.
    pub fn for_replicas(&self, replicas: usize) -> Schedule {
        let per_replica = self.per_replica.unwrap_or(self.function == ScheduleConfig::default().function);
        if per_replica {
            self.function.peak_scaled(replicas as f64)
        } else {
            self.function
        }
    }
}

/// The training loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// `auto` picks softmax cross-entropy for multi-class data and sigmoid binary cross-entropy for multi-label.
    pub kind: LossKind,
    /// Label smoothing ε: targets become `(1-ε)·t + ε/C` (softmax) or `(1-ε)·t + ε/2` (sigmoid).
    pub label_smoothing: f64,
    /// Weight per class (in the dataset's class order); all 1 when absent.
    pub class_weights: Option<Vec<f64>>,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig { kind: LossKind::Auto, label_smoothing: 0.0, class_weights: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    Auto,
    /// Softmax cross-entropy (multi-class; the reference's `categorical_crossentropy`).
    Softmax,
    /// Sigmoid binary cross-entropy per class (multi-label).
    Sigmoid,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f32 throughout: the reference, bit-reproducible on a CPU.
    #[default]
    F32,
    /// bf16 autocast (CPUs with AVX-512 bf16/AMX; CUDA).
    Bf16,
    /// f16 autocast with loss scaling (CUDA).
    F16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchNormMode {
    Train,
    Frozen,
}

/// A validation metric and the direction in which it improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Mean column-wise ROC AUC (higher is better); the competition metric.
    ValAuc,
    /// Validation cross-entropy (lower is better).
    ValLoss,
    /// Validation accuracy (higher is better).
    ValAccuracy,
}

impl Monitor {
    /// Whether `new` improves on `best`.
    pub fn improves(self, new: f64, best: Option<f64>) -> bool {
        match best {
            None => new.is_finite(),
            Some(best) => match self {
                Monitor::ValLoss => new < best,
                Monitor::ValAuc | Monitor::ValAccuracy => new > best,
            },
        }
    }

    /// The column name in `metrics.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValAuc => "val_auc",
            Monitor::ValLoss => "val_loss",
            Monitor::ValAccuracy => "val_accuracy",
        }
    }
}

/// The largest input side a run accepts, as `--size` does: beyond it a batch would not fit in any memory.
pub const MAX_SIZE: usize = 16384;

/// A configuration that cannot run, with the offending field.
#[derive(Debug, thiserror::Error)]
#[error("invalid training configuration: {field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { field, message: message.into() }
}

impl TrainConfig {
    /// Parses a TOML file's text; unknown keys are errors, so typos do not pass silently.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The configuration as TOML, as saved in the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a training configuration always serialises")
    }

    /// Checks every field that could otherwise fail deep inside a run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.epochs == 0 {
            return Err(invalid("epochs", "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(invalid("batch", "must be at least 1"));
        }
        if self.accumulate == 0 {
            return Err(invalid("accumulate", "must be at least 1"));
        }
        if self.eval_batch == Some(0) {
            return Err(invalid("eval_batch", "must be at least 1"));
        }
        if let Some(d) = self.ema {
            if !(0.0..1.0).contains(&d) {
                return Err(invalid("ema", format!("decay {d} must lie in [0, 1)")));
            }
        }
        for (field, rate) in [("model.dropout", self.model.dropout), ("model.drop_path", self.model.drop_path)] {
            if let Some(r) = rate.filter(|r| !(0.0..1.0).contains(r)) {
                return Err(invalid(field, format!("{r} must lie in [0, 1)")));
            }
        }
        if let Some(m) = self.batch_norm_momentum {
            if !(0.0..1.0).contains(&m) {
                return Err(invalid("batch_norm_momentum", format!("{m} must lie in [0, 1)")));
            }
        }
        if let Some(c) = self.clip_norm {
            if !c.is_finite() || c <= 0.0 {
                return Err(invalid("clip_norm", format!("{c} must be a finite number > 0")));
            }
        }
        if self.workers == Some(0) {
            return Err(invalid("workers", "must be at least 1"));
        }
        if let Some(k) = self.data.folds {
            if k < 2 {
                return Err(invalid("data.folds", format!("{k}: need at least 2 folds")));
            }
            if self.data.fold >= k {
                return Err(invalid("data.fold", format!("{} is not below data.folds = {k}", self.data.fold)));
            }
        }
        if let Some((h, w)) = self.data.size {
            if h < 8 || w < 8 {
                return Err(invalid("data.size", format!("{h}x{w} is too small")));
            }
            if h > MAX_SIZE || w > MAX_SIZE {
                return Err(invalid("data.size", format!("{h}x{w} is over the limit of {MAX_SIZE} pixels a side")));
            }
        }
        if !(0.0..1.0).contains(&self.loss.label_smoothing) {
            return Err(invalid("loss.label_smoothing", "must lie in [0, 1)"));
        }
        if let Some(w) = &self.loss.class_weights {
            if w.iter().any(|w| !w.is_finite() || *w < 0.0) {
                return Err(invalid("loss.class_weights", "must be finite and non-negative"));
            }
        }
        let o = &self.optimizer;
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return Err(invalid("optimizer.beta1/beta2", "must lie in [0, 1)"));
        }
        if !o.eps.is_finite() || o.eps <= 0.0 {
            return Err(invalid("optimizer.eps", format!("{} must be a finite number > 0", o.eps)));
        }
        if !o.weight_decay.is_finite() || o.weight_decay < 0.0 {
            return Err(invalid("optimizer.weight_decay", format!("{} must be a finite number >= 0", o.weight_decay)));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(invalid("optimizer.momentum", format!("{} must lie in [0, 1)", o.momentum)));
        }
        if o.group_lr.values().chain(o.layer_decay.iter()).any(|m| !m.is_finite() || *m < 0.0) {
            return Err(invalid("optimizer.group_lr/layer_decay", "multipliers must be finite and non-negative"));
        }
        self.schedule.function.validate().map_err(|e| invalid("schedule.function", e))?;
        self.augment.validate().map_err(|e| invalid("augment", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_peaks_per_replica_and_a_given_one_does_not_unless_asked() {
        let default = ScheduleConfig::default();
        assert_eq!(default.for_replicas(8), Schedule::Reference(Reference::keras_notebook(8)));
        let constant = ScheduleConfig { function: Schedule::Constant { lr: 0.01 }, ..default.clone() };
        assert_eq!(constant.for_replicas(4), Schedule::Constant { lr: 0.01 });
        let per_replica = ScheduleConfig { per_replica: Some(true), ..constant };
        assert_eq!(per_replica.for_replicas(4), Schedule::Constant { lr: 0.04 });
        let fixed = ScheduleConfig { per_replica: Some(false), ..default };
        assert_eq!(fixed.for_replicas(8), Schedule::Reference(Reference::keras_notebook(1)));
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let config = TrainConfig::default();
        assert_eq!(TrainConfig::from_toml(&config.to_toml()).unwrap(), config);
        config.validate().unwrap();
    }

    #[test]
    fn a_partial_file_keeps_defaults_and_typos_are_refused() {
        let c = TrainConfig::from_toml(
            "epochs = 3\n[model]\narch = \"efficientnet_b1\"\n[schedule.function]\nkind = \"constant\"\nlr = 0.01\n",
        )
        .unwrap();
        assert_eq!((c.epochs, c.model.arch.as_str(), c.batch), (3, "efficientnet_b1", 16));
        assert_eq!(c.schedule.function, Schedule::Constant { lr: 0.01 });
        let err = TrainConfig::from_toml("epohcs = 3\n").unwrap_err();
        assert!(err.to_string().contains("epohcs"), "{err}");
        let err = TrainConfig::from_toml("device = \"tpu\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown device \"tpu\""), "{err}");
        assert_eq!(TrainConfig::from_toml("device = \"cuda:1\"\n").unwrap().device, Device::Cuda(1));
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = TrainConfig { epochs: 0, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field, "epochs");
        c.epochs = 1;
        c.data.folds = Some(5);
        c.data.fold = 5;
        assert_eq!(c.validate().unwrap_err().field, "data.fold");
        c.data.fold = 0;
        c.model.drop_path = Some(1.0);
        assert_eq!(c.validate().unwrap_err().field, "model.drop_path");
        c.model.drop_path = Some(0.0);
        c.model.dropout = Some(-0.1);
        assert_eq!(c.validate().unwrap_err().field, "model.dropout");
        c.model.dropout = Some(0.0);
        c.validate().unwrap();
        let bad = [
            TrainConfig {
                schedule: ScheduleConfig { function: Schedule::Constant { lr: -1.0 }, ..Default::default() },
                ..c.clone()
            },
            TrainConfig { optimizer: OptimizerConfig { momentum: 1.5, ..Default::default() }, ..c.clone() },
            TrainConfig {
                optimizer: OptimizerConfig { weight_decay: f64::INFINITY, ..Default::default() },
                ..c.clone()
            },
            TrainConfig { clip_norm: Some(f64::INFINITY), ..c.clone() },
            TrainConfig { workers: Some(0), ..c.clone() },
        ];
        let fields: Vec<&str> = bad.iter().map(|b| b.validate().unwrap_err().field).collect();
        assert_eq!(
            fields,
            ["schedule.function", "optimizer.momentum", "optimizer.weight_decay", "clip_norm", "workers"]
        );
    }

    #[test]
    fn monitors_improve_in_their_direction() {
        assert!(Monitor::ValAuc.improves(0.9, Some(0.8)) && !Monitor::ValAuc.improves(0.8, Some(0.8)));
        assert!(Monitor::ValLoss.improves(0.1, Some(0.2)) && !Monitor::ValLoss.improves(0.3, Some(0.2)));
        assert!(Monitor::ValAuc.improves(0.5, None) && !Monitor::ValAuc.improves(f64::NAN, None));
    }
}
