//! `orchard train`: one ensemble member on one fold. Options come from `--config FILE` (TOML, the layout of
//! `orchard_train::TrainConfig`) and from flags, flags winning; the resolved configuration is saved in the
//! run directory.
//!
//! Started by `orchard launch` (or torchrun, or `srun`), each process finds its place in the job in the
//! environment and joins the others as a data-parallel replica: every replica trains on its share of each
//! step's batches, rank 0 writes the run directory, and the default schedule's LR_MAX is scaled by the
//! number of replicas as the notebook's is (`schedule.per_replica`), unless the learning rate is given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use orchard_files::config::{BatchNormMode, HeadInit, LossKind, Monitor, OptimizerKind, TrainConfig};
use orchard_metrics::schedule::{OneCycle, Reference, Schedule, WarmupCosine};
use orchard_torch::distributed::Rendezvous;
use orchard_torch::Layout;
use orchard_train::progress::{Console, Progress, Silent};
use orchard_train::replicas::{replica_device, Replicas, DEFAULT_TIMEOUT};

use crate::args::{number, AugmentArg, DataArg, DeviceArg, LayoutArg, PrecisionArg, Size};
use crate::usage::UsageError;

/// Train one backbone on one fold (or on all the data).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// TOML configuration; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArg,
    /// Architecture (`orchard models list`).
    #[arg(long)]
    pub arch: Option<String>,
    /// Input size, N or WxH (default: the architecture's).
    #[arg(long)]
    pub size: Option<Size>,
    #[arg(long, value_parser = number::at_least::<1, usize>)]
    pub batch: Option<usize>,
    #[arg(long, value_parser = number::at_least::<1, u32>)]
    pub epochs: Option<u32>,
    /// Pretrained weights; the head is re-initialised for the dataset's classes.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Number of folds K (none: train on everything, no validation).
    #[arg(long, value_parser = number::at_least::<2, usize>)]
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
    /// Continue the run in --out from its last checkpoint, with the configuration saved there (flags may
    /// change only epochs, patience, device, workers and quiet).
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub device: DeviceArg,
    /// The optimizer.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    #[arg(long, value_parser = number::non_negative)]
    pub weight_decay: Option<f64>,
    /// Adam's and AdamW's ε (default 1e-7, Keras'; PyTorch's is 1e-8).
    #[arg(long, value_parser = number::positive)]
    pub adam_eps: Option<f64>,
    /// The learning-rate schedule.
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Peak learning rate of the schedule (the reference's LR_MAX; default 1e-4 × replicas).
    #[arg(long, value_parser = number::non_negative)]
    pub lr: Option<f64>,
    /// Replicas the reference schedule scales LR_MAX by (default: the processes of the job, at run time).
    #[arg(long, value_parser = number::at_least::<1, u32>)]
    pub replicas: Option<u32>,
    /// Seconds a data-parallel replica waits for the others before the job fails.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs(), value_parser = number::at_least::<1, u64>)]
    pub replica_timeout: u64,
    /// Warm-up epochs of the cosine schedule.
    #[arg(long, value_parser = number::non_negative)]
    pub warmup: Option<f64>,
    /// Evaluate the schedule at every step instead of every epoch.
    #[arg(long)]
    pub per_step: bool,
    /// Training-time augmentation.
    #[arg(long, value_enum)]
    pub augment: Option<AugmentArg>,
    /// Label smoothing ε.
    #[arg(long, value_parser = number::fraction)]
    pub label_smoothing: Option<f64>,
    /// The loss.
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Soft targets CSV (`orchard distill`) replacing the training labels.
    #[arg(long)]
    pub soft_targets: Option<PathBuf>,
    /// Weight EMA decay, e.g. 0.999.
    #[arg(long, value_parser = number::fraction)]
    pub ema: Option<f64>,
    /// Dropout before the head (default: the architecture's, e.g. 0.2 for B0).
    #[arg(long, value_parser = number::fraction)]
    pub dropout: Option<f64>,
    /// How the new head's dense layer starts (default: torch).
    #[arg(long, value_enum)]
    pub head_init: Option<HeadInitArg>,
    /// Stochastic-depth rate of the last block, EfficientNet families (default: the architecture's, 0.2).
    #[arg(long, value_parser = number::fraction)]
    pub drop_path: Option<f64>,
    /// Train only the head for the first N epochs.
    #[arg(long)]
    pub freeze_epochs: Option<u32>,
    /// Batch-norm statistics.
    #[arg(long, value_enum)]
    pub batch_norm: Option<BatchNormArg>,
    /// In data-parallel training, batch-norm statistics of the global batch (pooled over the replicas).
    #[arg(long)]
    pub sync_bn: bool,
    /// Momentum of batch-norm running statistics in training (Keras convention; 0.9 for short runs from scratch).
    #[arg(long, value_parser = number::fraction)]
    pub bn_momentum: Option<f64>,
    /// Sum the gradients of N micro-batches per step.
    #[arg(long, value_parser = number::at_least::<1, usize>)]
    pub accumulate: Option<usize>,
    /// Global-norm gradient clipping.
    #[arg(long, value_parser = number::positive)]
    pub clip_norm: Option<f64>,
    /// The metric that picks the best epoch and drives early stopping.
    #[arg(long, value_enum)]
    pub monitor: Option<MonitorArg>,
    /// Stop after N epochs without improvement.
    #[arg(long)]
    pub patience: Option<u32>,
    /// Memory layout of images and convolution weights (default channels-last, faster).
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Arithmetic (default f32, the reference).
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    /// Decode each image once into a memory-mapped cache in the run directory.
    #[arg(long)]
    pub cache: bool,
    /// Drop the rows whose image does not decode (listed in the run's skipped.csv) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Decode worker threads.
    #[arg(long, value_parser = number::at_least::<1, usize>)]
    pub workers: Option<usize>,
    /// Print only errors.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let rendezvous =
        Rendezvous::from_env().map_err(|e| UsageError(format!("the data-parallel job's variables: {e}")))?;
    let timeout = Duration::from_secs(args.replica_timeout);
    let (mut config, resume) = resolve(args)?;
    let out =
        config.out.clone().ok_or_else(|| UsageError("--out (or `out` in the configuration) is required".into()))?;
    if let Some(r) = &rendezvous {
        config.device = replica_device(config.device, r.local_rank);
    }
    let device = orchard_torch::device(config.device);
    let replicas =
        rendezvous.map(|r| Replicas::join(&r, timeout, device)).transpose().map_err(|e| anyhow::anyhow!(e))?;
    let mut progress: Box<dyn Progress> = if config.quiet { Box::new(Silent) } else { Box::new(Console::new()) };
    let writer = replicas.as_ref().is_none_or(|r| r.rank() == 0);
    if let Some(r) = replicas.as_ref().filter(|_| writer && !config.quiet) {
        let (world, batch) = (r.world(), config.batch);
        eprintln!("data-parallel training over {world} replicas: global batch {world} × {batch}");
    }
    let summary = orchard_train::train_with(config, &out, resume, progress.as_mut(), replicas)?;
    if !writer {
        return Ok(());
    }
    if let (Some(best), Some(epoch)) = (summary.best, summary.best_epoch) {
        outln!("best epoch {epoch}: {best:.6}; run in {}", summary.dir.display())?;
    } else {
        outln!("trained {} epochs; run in {}", summary.epochs_done, summary.dir.display())?;
    }
    Ok(())
}

/// The configuration file (or the defaults) with every given flag applied.
pub fn resolve(mut a: TrainArgs) -> Result<(TrainConfig, bool)> {
    let mut c = match &a.config {
        Some(_) if a.resume => {
            let message = "--resume continues a run with the configuration saved in it: --config cannot be given too";
            return Err(UsageError(message.into()).into());
        }
        None if a.resume => saved_config(a.out.as_deref())?,
        Some(path) => {
            let text = orchard_files::input::read_to_string(path, orchard_files::input::TEXT)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            let file = TrainConfig::from_toml(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            // The file's own numbers first, so that its mistakes name it (the flags were checked as parsed).
            file.validate().map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            file
        }
        None => TrainConfig::default(),
    };
    // What a resumed run was saved with, to refuse flags that would make it another run.
    let saved = a.resume.then(|| c.clone());
    // `set!` overrides a setting when its flag was given; `set_some!` does so for optional settings.
    macro_rules! set {
        ($($field:expr => $value:expr),* $(,)?) => { $( if let Some(v) = $value { $field = v; } )* };
    }
    macro_rules! set_some {
        ($($field:expr => $value:expr),* $(,)?) => { $( if let Some(v) = $value { $field = Some(v); } )* };
    }
    set!(c.data.dir => a.data.data.take(), c.model.arch => a.arch.take(), c.batch => a.batch, c.epochs => a.epochs, c.data.fold => a.fold,
         c.seed => a.seed, c.device => a.device.device, c.optimizer.weight_decay => a.weight_decay,
         c.optimizer.eps => a.adam_eps, c.model.head_init => a.head_init.map(HeadInit::from),
         c.loss.label_smoothing => a.label_smoothing, c.freeze_epochs => a.freeze_epochs, c.accumulate => a.accumulate,
         c.optimizer.kind => a.optimizer.map(OptimizerKind::from), c.loss.kind => a.loss.map(LossKind::from),
         c.batch_norm => a.batch_norm.map(BatchNormMode::from), c.monitor => a.monitor.map(Monitor::from),
         c.precision => a.precision.map(Into::into), c.augment => a.augment.map(Into::into));
    set_some!(c.data.size => a.size.map(Size::hw), c.model.weights => a.weights.take(), c.data.folds => a.folds,
              c.data.folds_csv => a.folds_csv.take(), c.data.soft_targets => a.soft_targets.take(), c.out => a.out.take(),
              c.ema => a.ema, c.model.dropout => a.dropout, c.model.drop_path => a.drop_path, c.clip_norm => a.clip_norm,
              c.batch_norm_momentum => a.bn_momentum, c.patience => a.patience, c.workers => a.workers);
    set!(c.channels_last => a.layout.map(|l| Layout::from(l) == Layout::ChannelsLast));
    c.data.cache |= a.cache;
    c.data.skip_bad |= a.skip_bad;
    c.sync_batch_norm |= a.sync_bn;
    c.quiet |= a.quiet;
    c.schedule.per_step |= a.per_step;
    if a.schedule.is_some() || a.lr.is_some() || a.replicas.is_some() || a.warmup.is_some() {
        c.schedule.function = schedule(&a, &c)?;
        // Rates given are the run's, whatever its number of replicas, unless the configuration says otherwise.
        c.schedule.per_replica.get_or_insert(false);
    }
    c.absolutize();
    if let Some(saved) = saved {
        c.check_resumable(&saved).map_err(|m| UsageError(format!("cannot resume {}: {m}", run_dir(&c))))?;
    }
    c.validate().map_err(|e| UsageError(e.to_string()))?;
    if let Some(problem) = orchard_torch::unavailable(c.device) {
        return Err(UsageError(format!("invalid training configuration: device: {problem}")).into());
    }
    Ok((c, a.resume))
}

/// The configuration saved in the run directory `out` (`--resume --out DIR`), pointed at `out` as given
/// (the directory may have moved) with its quiet setting left to this command line. Nothing is created when
/// there is no run to read.
fn saved_config(out: Option<&Path>) -> Result<TrainConfig> {
    let out = out.ok_or_else(|| UsageError("--resume needs --out DIR, the run to continue".into()))?;
    let path = out.join("config.toml");
    let cannot = |why: String| UsageError(format!("cannot resume {}: {why}", out.display()));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !out.is_dir() => {
            return Err(cannot("no such directory".into()).into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(cannot(format!("{} is missing: not a run directory", path.display())).into())
        }
        Err(e) => return Err(cannot(format!("{}: {e}", path.display())).into()),
    };
    let mut config = TrainConfig::from_toml(&text).map_err(|e| cannot(format!("{}: {e}", path.display())))?;
    config.out = Some(out.to_path_buf());
    config.quiet = false;
    Ok(config)
}

/// The run directory a resolved configuration names, for messages.
fn run_dir(c: &TrainConfig) -> String {
    c.out.as_deref().map_or_else(String::new, |p| p.display().to_string())
}

/// The schedule the flags describe, starting from the configured one's kind.
fn schedule(a: &TrainArgs, c: &TrainConfig) -> Result<Schedule> {
    let kind = a.schedule.unwrap_or(match c.schedule.function {
        Schedule::Reference(_) => ScheduleArg::Reference,
        Schedule::WarmupCosine(_) => ScheduleArg::Cosine,
        Schedule::OneCycle(_) => ScheduleArg::Onecycle,
        Schedule::Constant { .. } => ScheduleArg::Constant,
    });
    let epochs = f64::from(c.epochs);
    Ok(match kind {
        ScheduleArg::Reference => {
            let mut r = Reference::keras_notebook(a.replicas.unwrap_or(1));
            if let Some(lr) = a.lr {
                r.max = lr;
            }
            Schedule::Reference(r)
        }
        ScheduleArg::Cosine => {
            let max = a.lr.unwrap_or(1e-3);
            Schedule::WarmupCosine(WarmupCosine {
                warmup: a.warmup.unwrap_or(1.0),
                total: epochs,
                max,
                min: max * 1e-2,
            })
        }
        ScheduleArg::Onecycle => Schedule::OneCycle(OneCycle::new(epochs, a.lr.unwrap_or(1e-3))),
        ScheduleArg::Constant => Schedule::Constant { lr: a.lr.unwrap_or(1e-3) },
    })
}

/// `--optimizer`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum OptimizerArg {
    /// Adam as Keras computes it (ε 1e-7): the reference.
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
    /// Stochastic gradient descent with momentum.
    Sgd,
}

impl From<OptimizerArg> for OptimizerKind {
    fn from(o: OptimizerArg) -> Self {
        match o {
            OptimizerArg::Adam => OptimizerKind::Adam,
            OptimizerArg::Adamw => OptimizerKind::AdamW,
            OptimizerArg::Sgd => OptimizerKind::Sgd,
        }
    }
}

/// `--schedule`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ScheduleArg {
    /// The reference notebook's warm-up, sustain and exponential decay.
    Reference,
    /// Linear warm-up, then cosine decay.
    Cosine,
    /// One-cycle (torch's `OneCycleLR`).
    Onecycle,
    /// A constant rate.
    Constant,
}

/// `--loss`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LossArg {
    /// Softmax for multi-class data, sigmoid for multi-label.
    Auto,
    /// Softmax cross-entropy.
    Softmax,
    /// Sigmoid binary cross-entropy per class.
    Sigmoid,
}

impl From<LossArg> for LossKind {
    fn from(l: LossArg) -> Self {
        match l {
            LossArg::Auto => LossKind::Auto,
            LossArg::Softmax => LossKind::Softmax,
            LossArg::Sigmoid => LossKind::Sigmoid,
        }
    }
}

/// `--batch-norm`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BatchNormArg {
    /// Batch statistics, moving averages updated.
    Train,
    /// The backbone in inference mode (Keras' fine-tuning recipe).
    Frozen,
}

impl From<BatchNormArg> for BatchNormMode {
    fn from(b: BatchNormArg) -> Self {
        match b {
            BatchNormArg::Train => BatchNormMode::Train,
            BatchNormArg::Frozen => BatchNormMode::Frozen,
        }
    }
}

/// `--head-init`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum HeadInitArg {
    /// Keras' `Dense` default: Glorot-uniform kernel, zero bias.
    Glorot,
    /// PyTorch's `nn.Linear` default: kernel and bias uniform on ±1/√fan_in.
    Torch,
}

impl From<HeadInitArg> for HeadInit {
    fn from(h: HeadInitArg) -> Self {
        match h {
            HeadInitArg::Glorot => HeadInit::Glorot,
            HeadInitArg::Torch => HeadInit::Torch,
        }
    }
}

/// `--monitor`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum MonitorArg {
    /// Mean column-wise ROC AUC.
    #[value(name = "val_auc")]
    Auc,
    /// Validation cross-entropy.
    #[value(name = "val_loss")]
    Loss,
    /// Validation accuracy.
    #[value(name = "val_accuracy")]
    Accuracy,
}

impl From<MonitorArg> for Monitor {
    fn from(m: MonitorArg) -> Self {
        match m {
            MonitorArg::Auc => Monitor::ValAuc,
            MonitorArg::Loss => Monitor::ValLoss,
            MonitorArg::Accuracy => Monitor::ValAccuracy,
        }
    }
}
