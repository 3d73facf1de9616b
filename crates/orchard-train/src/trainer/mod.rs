//! The training loop of one ensemble member on one fold: data, model, optimizer, schedule, loss, EMA,
//! validation metrics, checkpoints, resumption and early stopping.
//!
//! - [`setup`](self): the run directory, the data and loaders, the network and optimizer, or the run resumed
//!   from `last.ckpt`;
//! - `epoch`: one pass over the training images, micro-batches accumulated into optimizer steps, the
//!   gradients of a data-parallel run averaged over its replicas before the step (see [`crate::replicas`]);
//! - `evaluate`: validation predictions (through `orchard-infer`'s predictor) and their metrics;
//! - `checkpoints`: `best.ckpt`, `last.ckpt` and restoring a run from the latter;
//! - this module: the epoch loop that ties them together, with early stopping.
//!
//! Reproducibility: the data order and augmentations are functions of (seed, epoch, image) and libtorch's
//! generator is re-seeded from (seed, epoch) at the start of every epoch, so an epoch's result depends only on
//! the state at its start. Checkpoints are taken at epoch ends, hence a run stopped after epoch k and resumed
//! reaches the same weights as an uninterrupted one (bit for bit on a CPU in f32).
//!
//! The run directory holds `config.toml` (the resolved configuration), `metrics.csv`, `metrics.jsonl`,
//! `last.ckpt` (everything needed to resume), `best.ckpt` (the best epoch's model, EMA weights when enabled)
//! and `oof.csv` (the best epoch's validation predictions).

mod checkpoints;
mod epoch;
mod evaluate;
mod setup;

pub use setup::network;

use std::path::{Path, PathBuf};
use std::time::Instant;

use orchard_data::dataset::{self, Dataset};
use orchard_data::loader::Loader;
use orchard_files::config::{ConfigError, Monitor, TrainConfig};
use orchard_files::folds::FoldError;
use orchard_files::history::{self, EpochRecord};
use orchard_files::lock::{DirLock, LockError};
use orchard_files::{FileError, RunState};
use orchard_metrics::schedule::Schedule;
use orchard_models::weights::checkpoint::CheckpointError;
use orchard_torch::failure::Failure;

use crate::ema::Ema;
use crate::loss::Loss;
use crate::network::Network;
use crate::optim::Optimizer;
use crate::progress::{Progress, Silent};
use crate::replicas::Replicas;

/// Why a run could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dataset(#[from] orchard_data::dataset::DatasetError),
    #[error(transparent)]
    Folds(#[from] FoldError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Decode(#[from] orchard_data::decode::DecodeError),
    #[error(transparent)]
    Cache(#[from] orchard_data::cache::CacheError),
    #[error(transparent)]
    Model(#[from] orchard_models::ModelError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Another process writes the run directory.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// User input that does not fit the run (soft targets, weights, classes).
    #[error("{0}")]
    Input(String),
    #[error("{path} already holds a run (last.ckpt); pass --resume to continue it or choose another --out")]
    RunExists { path: PathBuf },
    #[error("cannot resume {path}: {message}")]
    ResumeMismatch { path: PathBuf, message: String },
    #[error(
        "the training loss became {loss} at epoch {epoch}, step {step}; stopped. The last good checkpoint \
         (after epoch {last_good}) is kept; lower the learning rate or enable clip_norm"
    )]
    NonFiniteLoss { epoch: u32, step: usize, loss: f64, last_good: String },
    /// The other replicas could not be reached (one died or hangs), or a collective failed.
    #[error("data-parallel training, rank {rank} of {world}: {message}")]
    Replicas { rank: usize, world: usize, message: String },
    /// libtorch failed in a training or validation pass (out of memory first), which tch reports as a panic.
    #[error("{stage} failed: {failure}{}", memory_hint(failure))]
    Step { stage: String, failure: Failure },
}

/// What cures running out of memory, for a failure that did.
fn memory_hint(failure: &Failure) -> &'static str {
    match failure.out_of_memory() {
        true => "; lower the batch (accumulate keeps the global batch) or the input size, or use precision bf16",
        false => "",
    }
}

/// The outcome of [`train`].
#[derive(Clone, Debug)]
pub struct Summary {
    pub dir: PathBuf,
    pub epochs_done: u32,
    pub best: Option<f64>,
    pub best_epoch: Option<u32>,
    pub stopped_early: bool,
    pub history: Vec<EpochRecord>,
}

/// Trains per `config` into `out`, or continues the run there when `resume` is set.
pub fn train(
    config: TrainConfig,
    out: &Path,
    resume: bool,
    progress: &mut dyn Progress,
) -> Result<Summary, TrainError> {
    train_with(config, out, resume, progress, None)
}

/// [`train`] as one of several data-parallel `replicas` (see [`crate::replicas`]): every replica calls it
/// with the same configuration; rank 0 reports progress and writes the run directory.
pub fn train_with(
    config: TrainConfig,
    out: &Path,
    resume: bool,
    progress: &mut dyn Progress,
    replicas: Option<Replicas>,
) -> Result<Summary, TrainError> {
    train_on(config, out, resume, progress, replicas, None)
}

/// The training split as [`orchard_data::dataset::load`] returned it for a run's `data` settings (its
/// folder, `skip_bad`, every image decoded): a caller that has already loaded it (an experiment, whose
/// units share one dataset) hands it over, so the images are not decoded for validation again.
pub type Loaded = (Dataset, dataset::Report);

/// [`train_with`] on a training split already loaded with the configuration's `data.dir` and
/// `data.skip_bad` (every image decoded); `None` loads it.
pub fn train_on(
    config: TrainConfig,
    out: &Path,
    resume: bool,
    progress: &mut dyn Progress,
    replicas: Option<Replicas>,
    loaded: Option<Loaded>,
) -> Result<Summary, TrainError> {
    let config = with_fold_count(config)?;
    config.validate()?;
    let writer = replicas.as_ref().is_none_or(|r| r.rank() == 0);
    let mut run = Run::new(config, out, resume, replicas, loaded)?;
    let mut silent = Silent;
    run.fit(if writer { progress } else { &mut silent })
}

/// `config` with `data.folds` taken from `data.folds_csv` when only the file is given, so that the run
/// validates on `data.fold` instead of training on every row (and the saved configuration says how many).
fn with_fold_count(mut config: TrainConfig) -> Result<TrainConfig, TrainError> {
    if let (None, Some(path)) = (config.data.folds, &config.data.folds_csv) {
        let k = orchard_files::folds::count_csv(path)?;
        if config.data.fold >= k {
            let message = format!("{} is not below the {k} folds of {}", config.data.fold, path.display());
            return Err(ConfigError { field: "data.fold", message }.into());
        }
        config.data.folds = Some(k);
    }
    Ok(config)
}

/// A run being trained.
struct Run {
    dir: PathBuf,
    config: TrainConfig,
    dataset: Dataset,
    train_loader: Loader,
    val_loader: Option<Loader>,
    /// Dataset indices of the validation images, in prediction order.
    val_samples: Vec<usize>,
    network: Network,
    /// Var-store names of the head's variables, which train even while the backbone is frozen.
    head: Vec<String>,
    optimizer: Optimizer,
    ema: Option<Ema>,
    loss: Loss,
    /// The other processes of a data-parallel run; `None` for a run on its own.
    replicas: Option<Replicas>,
    /// The learning-rate schedule for this number of replicas.
    schedule: Schedule,
    state: RunState,
    /// The run directory's lock, held by the writer (rank 0) while the run lives.
    _lock: Option<DirLock>,
}

/// The seed of libtorch's generator for `epoch`: a fixed mix of the run's seed and the epoch.
fn epoch_seed(seed: u64, epoch: u32) -> i64 {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(epoch).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (mixed >> 1) as i64
}

impl Run {
    /// Whether this process writes the run directory: rank 0, or the only process.
    fn is_writer(&self) -> bool {
        self.replicas.as_ref().is_none_or(|r| r.rank() == 0)
    }

    /// A collective's failure as this run's error, naming the rank.
    fn replica_error(&self, message: String) -> TrainError {
        match &self.replicas {
            Some(replicas) => replicas.error(message),
            None => TrainError::Replicas { rank: 0, world: 1, message },
        }
    }

    /// How a failure names what failed: `what` (training, validating), the epoch and what sizes its memory.
    fn stage(&self, what: &str, epoch: u32) -> String {
        let (h, w) = self.state.size;
        let device = match self.network.device {
            tch::Device::Cuda(n) => format!("cuda:{n}"),
            _ => "cpu".to_string(),
        };
        format!("{what} epoch {epoch} (batches of {} at {w}x{h} on {device})", self.config.batch)
    }

    /// Runs `f`, a libtorch failure in it (a panic from tch) becoming [`TrainError::Step`] named `stage`.
    fn guarded<T>(
        &mut self,
        stage: String,
        f: impl FnOnce(&mut Run) -> Result<T, TrainError>,
    ) -> Result<T, TrainError> {
        orchard_torch::failure::catch(|| f(self)).unwrap_or_else(|failure| Err(TrainError::Step { stage, failure }))
    }

    /// Trains epoch after epoch until the budget is spent or early stopping ends the run; saves
    /// `best.ckpt` whenever the monitored metric improves and `last.ckpt` after every epoch.
    fn fit(&mut self, progress: &mut dyn Progress) -> Result<Summary, TrainError> {
        let steps_per_epoch = self.train_loader.batches_per_epoch().div_ceil(self.config.accumulate) as u64;
        while self.state.epochs_done < self.config.epochs && !self.state.stopped_early {
            let epoch = self.state.epochs_done;
            tch::manual_seed(epoch_seed(self.config.seed, epoch));
            let frozen = epoch < self.config.freeze_epochs;
            self.set_backbone_trainable(!frozen)?;
            let lr = self.schedule.lr(f64::from(epoch));

            let start = Instant::now();
            let training = self.stage("training", epoch);
            let (train_loss, images) =
                self.guarded(training, |run| run.train_epoch(epoch, lr, steps_per_epoch, frozen, progress))?;
            let train_seconds = start.elapsed().as_secs_f64();

            self.align_replicas(false)?;
            let start = Instant::now();
            let evaluation = self.guarded(self.stage("validating", epoch), Run::evaluate)?;
            let val_seconds = start.elapsed().as_secs_f64();
            let record = EpochRecord {
                epoch,
                lr,
                train_loss,
                val_loss: evaluation.as_ref().map(|e| e.loss),
                val_accuracy: evaluation.as_ref().map(|e| e.accuracy),
                val_auc: evaluation.as_ref().and_then(|e| e.auc.mean),
                val_auc_per_class: evaluation.as_ref().map(|e| e.auc.per_class.clone()).unwrap_or_default(),
                train_seconds,
                val_seconds,
                images_per_second: images as f64 / train_seconds.max(1e-9),
            };
            self.state.history.push(record.clone());
            self.state.epochs_done = epoch + 1;

            let monitored = evaluation.as_ref().and_then(|e| match self.config.monitor {
                Monitor::ValAuc => e.auc.mean,
                Monitor::ValLoss => Some(e.loss),
                Monitor::ValAccuracy => Some(e.accuracy),
            });
            let improved = match monitored {
                Some(value) => self.config.monitor.improves(value, self.state.best),
                None => evaluation.is_none(), // without validation the latest model is the best one
            };
            if improved {
                self.state.best = monitored;
                self.state.best_epoch = Some(epoch);
                self.state.epochs_since_best = 0;
                self.save_best(evaluation.as_ref())?;
            } else {
                self.state.epochs_since_best += 1;
            }
            if let Some(patience) = self.config.patience {
                if self.state.epochs_since_best >= patience && evaluation.is_some() {
                    self.state.stopped_early = true;
                }
            }
            if self.is_writer() {
                history::write(&self.dir, &self.state.history, &self.dataset.classes)?;
            }
            self.save_last()?;
            progress.epoch_end(&record, self.config.monitor.name(), self.state.best, self.state.stopped_early);
        }
        Ok(Summary {
            dir: self.dir.clone(),
            epochs_done: self.state.epochs_done,
            best: self.state.best,
            best_epoch: self.state.best_epoch,
            stopped_early: self.state.stopped_early,
            history: self.state.history.clone(),
        })
    }
}

impl TrainError {
    /// Whether the user's data, files or settings are at fault (exit code 2) rather than the run.
    pub fn is_bad_input(&self) -> bool {
        if let TrainError::File(e) = self {
            return e.is_bad_input();
        }
        matches!(
            self,
            TrainError::Config(_)
                | TrainError::Dataset(_)
                | TrainError::Folds(_)
                | TrainError::Decode(_)
                | TrainError::Model(_)
                | TrainError::Input(_)
                | TrainError::RunExists { .. }
                | TrainError::ResumeMismatch { .. }
                | TrainError::Locked(LockError::Held { .. } | LockError::OtherHost { .. })
        )
    }
}
