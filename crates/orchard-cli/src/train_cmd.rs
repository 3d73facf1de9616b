//! `orchard train`: one ensemble member on one fold. Options come from `--config FILE` (TOML, the layout of
//! `orchard_train::TrainConfig`) and from flags, flags winning; the resolved configuration is saved in the
//! run directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use orchard_data::augment::AugmentConfig;
use orchard_metrics::schedule::{OneCycle, Reference, Schedule, WarmupCosine};
use orchard_train::config::{BatchNormMode, LossKind, Monitor, OptimizerKind, Precision, TrainConfig};
use orchard_train::progress::{Console, Progress, Silent};

use crate::cli::{parse_size, UsageError};

/// Train one backbone on one fold (or on all the data).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// TOML configuration; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset folder.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Architecture (`orchard models list`).
    #[arg(long)]
    pub arch: Option<String>,
    /// Input size, N or WxH (default: the architecture's).
    #[arg(long)]
    pub size: Option<String>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Pretrained weights; the head is re-initialised for the dataset's classes.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Number of folds K (none: train on everything, no validation).
    #[arg(long)]
    pub folds: Option<usize>,
    /// Validation fold, 0 ≤ I < K.
    #[arg(long)]
    pub fold: Option<usize>,
    /// Fold assignment from `orchard data folds` instead of assigning with the seed.
    #[arg(long)]
    pub folds_csv: Option<PathBuf>,
    /// Run directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
    /// adam (Keras' formula, ε 1e-7), adamw or sgd.
    #[arg(long, value_parser = ["adam", "adamw", "sgd"])]
    pub optimizer: Option<String>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// reference (the notebook's function), cosine (warm-up + cosine), onecycle or constant.
    #[arg(long, value_parser = ["reference", "cosine", "onecycle", "constant"])]
    pub schedule: Option<String>,
    /// Peak learning rate of the schedule (the reference's LR_MAX; default 1e-4 × replicas).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Replicas the reference schedule scales LR_MAX by.
    #[arg(long)]
    pub replicas: Option<u32>,
    /// Warm-up epochs of the cosine schedule.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Evaluate the schedule at every step instead of every epoch.
    #[arg(long)]
    pub per_step: bool,
    /// flips (the reference), dihedral or none.
    #[arg(long, value_parser = ["flips", "dihedral", "none"])]
    pub augment: Option<String>,
    /// Label smoothing ε.
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// softmax, sigmoid or auto.
    #[arg(long, value_parser = ["auto", "softmax", "sigmoid"])]
    pub loss: Option<String>,
    /// Soft targets CSV (`orchard distill`) replacing the training labels.
    #[arg(long)]
    pub soft_targets: Option<PathBuf>,
    /// Weight EMA decay, e.g. 0.999.
    #[arg(long)]
    pub ema: Option<f64>,
    /// Dropout before the head (default: the architecture's, e.g. 0.2 for B0).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Stochastic-depth rate of the last block, EfficientNet families (default: the architecture's, 0.2).
    #[arg(long)]
    pub drop_path: Option<f64>,
    /// Train only the head for the first N epochs.
    #[arg(long)]
    pub freeze_epochs: Option<u32>,
    /// Batch-norm statistics: train or frozen.
    #[arg(long, value_parser = ["train", "frozen"])]
    pub batch_norm: Option<String>,
    /// Momentum of batch-norm running statistics in training (Keras convention; 0.9 for short runs from scratch).
    #[arg(long)]
    pub bn_momentum: Option<f64>,
    /// Sum the gradients of N micro-batches per step.
    #[arg(long)]
    pub accumulate: Option<usize>,
    /// Global-norm gradient clipping.
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// val_auc, val_loss or val_accuracy: picks the best epoch and drives early stopping.
    #[arg(long, value_parser = ["val_auc", "val_loss", "val_accuracy"])]
    pub monitor: Option<String>,
    /// Stop after N epochs without improvement.
    #[arg(long)]
    pub patience: Option<u32>,
    /// Memory layout of images and convolution weights: channels-last (default, faster) or contiguous.
    #[arg(long, value_parser = ["channels-last", "contiguous"])]
    pub layout: Option<String>,
    /// f32 (reference), bf16 or f16.
    #[arg(long, value_parser = ["f32", "bf16", "f16"])]
    pub precision: Option<String>,
    /// Decode each image once into a memory-mapped cache in the run directory.
    #[arg(long)]
    pub cache: bool,
    /// Decode worker threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Print only errors.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let (config, resume) = resolve(args)?;
    let out = config.out.clone().ok_or_else(|| UsageError("--out (or `out` in the configuration) is required".into()))?;
    let mut progress: Box<dyn Progress> = if config.quiet { Box::new(Silent) } else { Box::new(Console::new()) };
    let summary = orchard_train::train(config, &out, resume, progress.as_mut())?;
    if let (Some(best), Some(epoch)) = (summary.best, summary.best_epoch) {
        println!("best epoch {epoch}: {best:.6}; run in {}", summary.dir.display());
    } else {
        println!("trained {} epochs; run in {}", summary.epochs_done, summary.dir.display());
    }
    Ok(())
}

/// The configuration file (or the defaults) with every given flag applied.
pub fn resolve(mut a: TrainArgs) -> Result<(TrainConfig, bool)> {
    let mut c = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            TrainConfig::from_toml(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?
        }
        None => TrainConfig::default(),
    };
    macro_rules! set {
        ($($field:expr => $value:expr),* $(,)?) => { $( if let Some(v) = $value { $field = v; } )* };
    }
    set!(c.data.dir => a.data.take(), c.model.arch => a.arch.take(), c.batch => a.batch, c.epochs => a.epochs, c.data.fold => a.fold,
         c.seed => a.seed, c.device => a.device.take(), c.optimizer.weight_decay => a.weight_decay,
         c.loss.label_smoothing => a.label_smoothing, c.freeze_epochs => a.freeze_epochs, c.accumulate => a.accumulate);
    if a.size.is_some() {
        c.data.size = a.size.as_deref().map(parse_size).transpose()?.map(|(w, h)| (h, w));
    }
    c.model.weights = a.weights.take().or(c.model.weights);
    c.data.folds = a.folds.or(c.data.folds);
    c.data.folds_csv = a.folds_csv.take().or(c.data.folds_csv);
    c.data.soft_targets = a.soft_targets.take().or(c.data.soft_targets);
    c.out = a.out.take().or(c.out);
    c.ema = a.ema.or(c.ema);
    c.model.dropout = a.dropout.or(c.model.dropout);
    c.model.drop_path = a.drop_path.or(c.model.drop_path);
    c.clip_norm = a.clip_norm.or(c.clip_norm);
    c.batch_norm_momentum = a.bn_momentum.or(c.batch_norm_momentum);
    c.patience = a.patience.or(c.patience);
    c.workers = a.workers.or(c.workers);
    if let Some(layout) = a.layout.as_deref() {
        c.channels_last = layout == "channels-last";
    }
    c.data.cache |= a.cache;
    c.quiet |= a.quiet;
    c.schedule.per_step |= a.per_step;
    if let Some(kind) = a.optimizer.as_deref() {
        c.optimizer.kind = match kind {
            "adam" => OptimizerKind::Adam,
            "adamw" => OptimizerKind::AdamW,
            _ => OptimizerKind::Sgd,
        };
    }
    if let Some(kind) = a.loss.as_deref() {
        c.loss.kind = match kind {
            "softmax" => LossKind::Softmax,
            "sigmoid" => LossKind::Sigmoid,
            _ => LossKind::Auto,
        };
    }
    if let Some(mode) = a.batch_norm.as_deref() {
        c.batch_norm = if mode == "frozen" { BatchNormMode::Frozen } else { BatchNormMode::Train };
    }
    if let Some(m) = a.monitor.as_deref() {
        c.monitor = match m {
            "val_loss" => Monitor::ValLoss,
            "val_accuracy" => Monitor::ValAccuracy,
            _ => Monitor::ValAuc,
        };
    }
    if let Some(p) = a.precision.as_deref() {
        c.precision = match p {
            "bf16" => Precision::Bf16,
            "f16" => Precision::F16,
            _ => Precision::F32,
        };
    }
    if let Some(aug) = a.augment.as_deref() {
        c.augment = match aug {
            "flips" => AugmentConfig::reference(),
            "dihedral" => AugmentConfig { dihedral: true, ..Default::default() },
            _ => AugmentConfig::default(),
        };
    }
    if a.schedule.is_some() || a.lr.is_some() || a.replicas.is_some() || a.warmup.is_some() {
        c.schedule.function = schedule(&a, &c)?;
    }
    c.validate().map_err(|e| UsageError(e.to_string()))?;
    Ok((c, a.resume))
}

/// The schedule the flags describe, starting from the configured one's kind.
fn schedule(a: &TrainArgs, c: &TrainConfig) -> Result<Schedule> {
    let kind = a.schedule.clone().unwrap_or_else(|| match c.schedule.function {
        Schedule::Reference(_) => "reference".into(),
        Schedule::WarmupCosine(_) => "cosine".into(),
        Schedule::OneCycle(_) => "onecycle".into(),
        Schedule::Constant { .. } => "constant".into(),
    });
    let epochs = f64::from(c.epochs);
    Ok(match kind.as_str() {
        "reference" => {
            let mut r = Reference::keras_notebook(a.replicas.unwrap_or(1));
            if let Some(lr) = a.lr {
                r.max = lr;
            }
            Schedule::Reference(r)
        }
        "cosine" => {
            let max = a.lr.unwrap_or(1e-3);
            Schedule::WarmupCosine(WarmupCosine { warmup: a.warmup.unwrap_or(1.0), total: epochs, max, min: max * 1e-2 })
        }
        "onecycle" => Schedule::OneCycle(OneCycle::new(epochs, a.lr.unwrap_or(1e-3))),
        "constant" => Schedule::Constant { lr: a.lr.unwrap_or(1e-3) },
        other => return Err(UsageError(format!("unknown schedule {other:?}")).into()),
    })
}
