//! The training loop of one ensemble member on one fold: data, model, optimizer, schedule, loss, EMA,
//! validation metrics, checkpoints, resumption and early stopping.
//!
//! Reproducibility: the data order and augmentations are functions of (seed, epoch, image) and libtorch's
//! generator is re-seeded from (seed, epoch) at the start of every epoch, so an epoch's result depends only on
//! the state at its start. Checkpoints are taken at epoch ends, hence a run stopped after epoch k and resumed
//! reaches the same weights as an uninterrupted one (bit for bit on a CPU in f32).
//!
//! The run directory holds `config.toml` (the resolved configuration), `metrics.csv`, `metrics.jsonl`,
//! `last.ckpt` (everything needed to resume), `best.ckpt` (the best epoch's model, EMA weights when enabled)
//! and `oof.csv` (the best epoch's validation predictions).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use orchard_data::cache::Cache;
use orchard_data::dataset::{self, Dataset, LoadOptions, Split, Task};
use orchard_data::loader::{Loader, LoaderConfig};
use orchard_data::normalize::Normalization;
use orchard_data::pipeline::{Pipeline, PipelineConfig, Source};
use orchard_models::Classifier;
use orchard_torch::autocast::{Autocast, HalfType};
use orchard_torch::Layout;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::amp::LossScaler;
use crate::checkpoint::{self, CheckpointError};
use crate::config::{BatchNormMode, ConfigError, LossKind, Precision, TrainConfig};
use crate::ema::Ema;
use crate::history::{self, EpochRecord};
use crate::loss::Loss;
use crate::optim::{Optimizer, Param};
use crate::progress::Progress;
use crate::targets;

/// Why a run could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    #[error(transparent)]
    Folds(#[from] orchard_data::folds::FoldError),
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
}

/// What is saved in checkpoints besides tensors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    /// Checkpoint format version.
    pub format: u32,
    pub arch: String,
    pub classes: Vec<String>,
    /// Input size (height, width).
    pub size: (usize, usize),
    pub normalization: Normalization,
    /// Whether outputs are softmax rows (multi-class) or independent sigmoids (multi-label).
    pub softmax: bool,
    /// Epochs completed; the next epoch to run.
    pub epochs_done: u32,
    /// Optimizer steps taken.
    pub step: u64,
    pub best: Option<f64>,
    pub best_epoch: Option<u32>,
    pub epochs_since_best: u32,
    /// Set when early stopping ended the run.
    pub stopped_early: bool,
    pub history: Vec<EpochRecord>,
    pub optimizer_steps: BTreeMap<String, u64>,
    /// The f16 loss scaler's state.
    pub loss_scaler: Option<LossScaler>,
    pub config: TrainConfig,
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

const FORMAT: u32 = 1;

/// Trains per `config` into `out`, or continues the run there when `resume` is set.
pub fn train(config: TrainConfig, out: &Path, resume: bool, progress: &mut dyn Progress) -> Result<Summary, TrainError> {
    config.validate()?;
    let mut run = Run::new(config, out, resume)?;
    run.fit(progress)
}

/// A run being trained.
struct Run {
    dir: PathBuf,
    config: TrainConfig,
    dataset: Dataset,
    device: Device,
    layout: Layout,
    train_loader: Loader,
    val_loader: Option<Loader>,
    /// Dataset indices of the validation images, in prediction order.
    val_samples: Vec<usize>,
    _vs: nn::VarStore,
    model: Classifier,
    /// Var-store names of the head's variables, which train even while the backbone is frozen.
    head: Vec<String>,
    variables: Vec<(String, Tensor)>,
    optimizer: Optimizer,
    ema: Option<Ema>,
    loss: Loss,
    state: RunState,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// The seed of libtorch's generator for `epoch`: a fixed mix of the run's seed and the epoch.
fn epoch_seed(seed: u64, epoch: u32) -> i64 {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(epoch).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (mixed >> 1) as i64
}

impl Run {
    fn new(config: TrainConfig, out: &Path, resume: bool) -> Result<Self, TrainError> {
        let last = out.join("last.ckpt");
        let saved: Option<checkpoint::Loaded<RunState>> = if resume && last.exists() {
            Some(checkpoint::load(&last)?)
        } else if last.exists() {
            return Err(TrainError::RunExists { path: out.to_path_buf() });
        } else {
            None
        };
        if let Some(saved) = &saved {
            check_resumable(&saved.state.config, &config).map_err(|message| TrainError::ResumeMismatch { path: out.to_path_buf(), message })?;
        }
        // Settings that need no data are checked before the run directory is made.
        let spec = orchard_models::spec(&config.model.arch)?;
        let size = config.data.size.unwrap_or((spec.default_size.0 as usize, spec.default_size.1 as usize));
        spec.check_input(size.0 as i64, size.1 as i64)?;
        std::fs::create_dir_all(out).map_err(io_error(out))?;
        remove_stale_temporaries(out);

        let (dataset, _) = dataset::load(&config.data.dir, Split::Train, &LoadOptions::default())?;
        let softmax = match config.loss.kind {
            LossKind::Softmax => true,
            LossKind::Sigmoid => false,
            LossKind::Auto => dataset.task == Task::MultiClass,
        };
        let classes = dataset.classes.len();
        if let Some(w) = &config.loss.class_weights {
            if w.len() != classes {
                return Err(TrainError::Input(format!("loss.class_weights has {} values for {classes} classes ({:?})", w.len(), dataset.classes)));
            }
        }
        let (train_samples, val_samples) = split(&config, &dataset)?;
        let mut train_targets: Vec<Vec<f32>> = dataset.samples.iter().map(|s| s.target.clone()).collect();
        if let Some(path) = &config.data.soft_targets {
            targets::apply_soft_targets(path, &dataset, &mut train_targets).map_err(TrainError::Input)?;
        }
        let device = orchard_torch::parse_device(&config.device).map_err(|m| ConfigError { field: "device", message: m })?;
        if config.precision == Precision::Bf16 && device == Device::Cpu && !cpu_has_bf16() {
            return Err(ConfigError { field: "precision", message: "bf16 needs a CPU with AVX-512 BF16 or AMX; this one has neither".into() }.into());
        }

        let paths: Arc<Vec<PathBuf>> = Arc::new(dataset.samples.iter().map(|s| s.path.clone()).collect());
        // The pipeline takes (width, height); `size` is (height, width).
        let pipeline_config = PipelineConfig { size: (size.1, size.0), augment: config.augment.clone(), seed: config.seed, ..Default::default() };
        let source = if config.data.cache {
            let file = out.join(format!("cache-{}x{}.bin", size.0, size.1));
            let (cache, _) = Cache::open_or_build(&file, &paths, pipeline_config.size, pipeline_config.filter)?;
            Source::Cache(Arc::new(cache))
        } else {
            Source::Files(paths)
        };
        let pipeline = Arc::new(Pipeline::new(pipeline_config, source));
        let workers = config.workers.unwrap_or_else(|| LoaderConfig::default().workers).max(1);
        let train_loader = Loader::new(
            pipeline.clone(),
            train_samples,
            Arc::new(train_targets),
            LoaderConfig { batch_size: config.batch, shuffle: true, drop_last: false, workers, train: true, ..Default::default() },
        );
        let true_targets = Arc::new(dataset.samples.iter().map(|s| s.target.clone()).collect::<Vec<_>>());
        let val_loader = (!val_samples.is_empty()).then(|| {
            Loader::new(
                pipeline.clone(),
                val_samples.clone(),
                true_targets,
                LoaderConfig { batch_size: config.eval_batch.unwrap_or(config.batch), workers, ..Default::default() },
            )
        });

        tch::manual_seed(epoch_seed(config.seed, u32::MAX));
        let vs = nn::VarStore::new(device);
        let mut model = orchard_models::build(&config.model.arch, &vs.root(), Some(classes as i64))?;
        model.set_regularization(config.model.dropout, config.model.drop_path)?;
        let head_group = model.layer_groups().pop().expect("a classifier with a head has a head group");
        reinit_head(&vs, &head_group);
        if let Some(weights) = &config.model.weights {
            crate::pretrained::load_backbone(&vs, &spec, &head_group, weights).map_err(TrainError::Input)?;
        }
        let layout = if config.channels_last { Layout::ChannelsLast } else { Layout::Contiguous };
        let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        if config.channels_last {
            orchard_torch::convolutions_to_channels_last(variables.iter_mut().map(|(_, t)| t));
        }
        let head: Vec<String> = variables.iter().map(|(n, _)| n.clone()).filter(|n| head_group.contains(n)).collect();
        let params = lr_multipliers(&config, &model, &variables);
        let optimizer = Optimizer::new(config.optimizer.clone(), params);
        let ema = config.ema.map(|d| Ema::new(d, &variables));
        let class_weights = config.loss.class_weights.as_ref().map(|w| Tensor::from_slice(&w.iter().map(|&x| x as f32).collect::<Vec<_>>()).to_device(device));
        let loss = Loss { softmax, label_smoothing: config.loss.label_smoothing, class_weights };
        let state = RunState {
            format: FORMAT,
            arch: config.model.arch.clone(),
            classes: dataset.classes.clone(),
            size,
            normalization: spec.normalization,
            softmax,
            epochs_done: 0,
            step: 0,
            best: None,
            best_epoch: None,
            epochs_since_best: 0,
            stopped_early: false,
            history: Vec::new(),
            optimizer_steps: BTreeMap::new(),
            loss_scaler: (config.precision == Precision::F16).then(LossScaler::default),
            config: config.clone(),
        };
        let mut run = Run {
            dir: out.to_path_buf(),
            config,
            dataset,
            device,
            layout,
            train_loader,
            val_loader,
            val_samples,
            _vs: vs,
            model,
            head,
            variables,
            optimizer,
            ema,
            loss,
            state,
        };
        if let Some(saved) = saved {
            run.restore(saved)?;
        }
        history::write_atomic(&out.join("config.toml"), run.config.to_toml().as_bytes()).map_err(io_error(out))?;
        Ok(run)
    }

    /// Puts a checkpoint's model, EMA, optimizer and loop state back.
    fn restore(&mut self, saved: checkpoint::Loaded<RunState>) -> Result<(), TrainError> {
        let mismatch = |message: String| TrainError::ResumeMismatch { path: self.dir.clone(), message };
        if saved.state.classes != self.dataset.classes || saved.state.arch != self.config.model.arch {
            return Err(mismatch(format!(
                "the checkpoint is {} on classes {:?}, the run {} on {:?}",
                saved.state.arch, saved.state.classes, self.config.model.arch, self.dataset.classes
            )));
        }
        let model = saved.group("model");
        for (name, t) in &self.variables {
            let value = model.get(name).ok_or_else(|| mismatch(format!("the checkpoint lacks {name}")))?;
            if value.size() != t.size() {
                return Err(mismatch(format!("{name} is {:?} in the checkpoint, {:?} in the model", value.size(), t.size())));
            }
            tch::no_grad(|| t.detach().copy_(value));
        }
        if let Some(ema) = &mut self.ema {
            ema.load(&saved.group("ema")).map_err(mismatch)?;
        }
        self.optimizer.load_state(&saved.group("optim"), &saved.state.optimizer_steps).map_err(mismatch)?;
        let config = self.config.clone();
        self.state = RunState { config, ..saved.state };
        Ok(())
    }

    fn fit(&mut self, progress: &mut dyn Progress) -> Result<Summary, TrainError> {
        let steps_per_epoch = self.train_loader.batches_per_epoch().div_ceil(self.config.accumulate) as u64;
        while self.state.epochs_done < self.config.epochs && !self.state.stopped_early {
            let epoch = self.state.epochs_done;
            tch::manual_seed(epoch_seed(self.config.seed, epoch));
            let frozen = epoch < self.config.freeze_epochs;
            self.set_backbone_trainable(!frozen);
            let lr = self.config.schedule.function.lr(f64::from(epoch));

            let start = Instant::now();
            let (train_loss, images) = self.train_epoch(epoch, lr, steps_per_epoch, frozen, progress)?;
            let train_seconds = start.elapsed().as_secs_f64();

            let start = Instant::now();
            let evaluation = self.evaluate()?;
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
                crate::config::Monitor::ValAuc => e.auc.mean,
                crate::config::Monitor::ValLoss => Some(e.loss),
                crate::config::Monitor::ValAccuracy => Some(e.accuracy),
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
            self.write_metrics()?;
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

    /// One pass over the training images; returns the mean loss and the number of images.
    fn train_epoch(&mut self, epoch: u32, lr: f64, steps_per_epoch: u64, frozen: bool, progress: &mut dyn Progress) -> Result<(f64, usize), TrainError> {
        let batches = self.train_loader.epoch(u64::from(epoch));
        let total = batches.total();
        progress.epoch_start(epoch, self.config.epochs, total);
        let backbone_train = !frozen && self.config.batch_norm == BatchNormMode::Train;
        orchard_models::set_batch_norm_momentum(self.config.batch_norm_momentum);
        let accumulate = self.config.accumulate;
        let spec = self.model.spec().clone();
        let (mut loss_sum, mut images) = (0.0, 0usize);
        self.optimizer.zero_grad();
        for (i, batch) in batches.enumerate() {
            let batch = batch?;
            let xs = orchard_torch::images(&batch, spec.normalization, self.device, self.layout);
            let ys = orchard_torch::targets(&batch, self.device);
            let loss = {
                let _autocast = self.autocast()?;
                let logits = self.model.forward_modes(&xs, backbone_train, true);
                self.loss.forward(&logits, &ys)
            };
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                let last_good = if epoch == 0 { "none: no epoch finished".to_string() } else { (epoch - 1).to_string() };
                return Err(TrainError::NonFiniteLoss { epoch, step: i, loss: value, last_good });
            }
            let scale = self.state.loss_scaler.as_ref().map_or(1.0, |s| s.scale);
            (loss * (scale / accumulate as f64)).backward();
            loss_sum += value * batch.len() as f64;
            images += batch.len();
            if (i + 1) % accumulate == 0 || i + 1 == total {
                let step_lr = if self.config.schedule.per_step {
                    self.config.schedule.function.lr_at_step(self.state.step, steps_per_epoch)
                } else {
                    lr
                };
                let finite = match &mut self.state.loss_scaler {
                    Some(scaler) => scaler.unscale_and_update(self.optimizer.params().iter().map(|p| &p.tensor)),
                    None => true,
                };
                if finite {
                    if let Some(max) = self.config.clip_norm {
                        self.optimizer.clip_grad_norm(max);
                    }
                    self.optimizer.step(step_lr);
                    if let Some(ema) = &mut self.ema {
                        ema.update();
                    }
                }
                self.optimizer.zero_grad();
                self.state.step += 1;
            }
            progress.batch(i + 1, batch.len(), value);
        }
        Ok((loss_sum / images.max(1) as f64, images))
    }

    /// An autocast region for the configured precision (none in f32).
    fn autocast(&self) -> Result<Option<Autocast>, TrainError> {
        let dtype = match self.config.precision {
            Precision::F32 => return Ok(None),
            Precision::Bf16 => HalfType::BFloat16,
            Precision::F16 => HalfType::Float16,
        };
        Autocast::new(self.device, dtype).map(Some).map_err(|message| ConfigError { field: "precision", message }.into())
    }

    /// Freezes (no gradient) or unfreezes every parameter outside the head.
    fn set_backbone_trainable(&mut self, trainable: bool) {
        for p in self.optimizer.params() {
            if !self.head.contains(&p.name) {
                let _ = p.tensor.shallow_clone().set_requires_grad(trainable);
            }
        }
    }

    /// Validation predictions (with the EMA weights when enabled) and their metrics; `None` without a fold.
    fn evaluate(&mut self) -> Result<Option<Evaluation>, TrainError> {
        let Some(loader) = &self.val_loader else { return Ok(None) };
        let saved = self.ema.as_ref().map(Ema::swap_in);
        let result = predict(&self.model, loader, &self.loss, self.model.spec().normalization, self.device, self.layout);
        if let (Some(ema), Some(saved)) = (&self.ema, saved) {
            ema.restore(saved);
        }
        let probs = result?;
        let c = self.dataset.classes.len();
        let truth: Vec<f64> = self.val_samples.iter().flat_map(|&i| self.dataset.samples[i].target.iter().map(|&t| f64::from(t))).collect();
        Ok(Some(Evaluation::new(&truth, probs, c, self.loss.softmax)))
    }

    /// `best.ckpt` (the model as evaluated) and `oof.csv`.
    fn save_best(&mut self, evaluation: Option<&Evaluation>) -> Result<(), TrainError> {
        let saved = self.ema.as_ref().map(Ema::swap_in);
        let model: Vec<(String, Tensor)> = self.variables.iter().map(|(n, t)| (n.clone(), t.detach().copy())).collect();
        if let (Some(ema), Some(saved)) = (&self.ema, saved) {
            ema.restore(saved);
        }
        checkpoint::save(&self.dir.join("best.ckpt"), &self.state, &[("model", model)])?;
        if let Some(e) = evaluation {
            let path = self.dir.join("oof.csv");
            let csv = predictions_csv(&self.dataset, &self.val_samples, &e.probs);
            history::write_atomic(&path, csv.as_bytes()).map_err(io_error(&path))?;
        }
        Ok(())
    }

    /// `last.ckpt`: everything needed to resume.
    fn save_last(&mut self) -> Result<(), TrainError> {
        let (optim, steps) = self.optimizer.state();
        self.state.optimizer_steps = steps;
        let model = self.variables.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        let ema = self.ema.as_ref().map(Ema::shadows).unwrap_or_default();
        checkpoint::save(&self.dir.join("last.ckpt"), &self.state, &[("model", model), ("ema", ema), ("optim", optim)])?;
        Ok(())
    }

    fn write_metrics(&self) -> Result<(), TrainError> {
        let csv = self.dir.join("metrics.csv");
        history::write_atomic(&csv, history::to_csv(&self.state.history, &self.dataset.classes).as_bytes()).map_err(io_error(&csv))?;
        let jsonl = self.dir.join("metrics.jsonl");
        history::write_atomic(&jsonl, history::to_jsonl(&self.state.history).as_bytes()).map_err(io_error(&jsonl))?;
        Ok(())
    }
}

/// Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX), without which bf16 autocast is slower than
/// f32.
fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains(" avx512_bf16") || c.contains(" amx_bf16"))
}

/// Deletes temporary files that a killed run left behind (their names start with `.ckpt-` or `.orchard-`).
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with(".ckpt-") || name.starts_with(".orchard-")) && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A resumed run must be the same run: only the epoch budget, patience and the machine-facing settings may
/// change.
fn check_resumable(saved: &TrainConfig, now: &TrainConfig) -> Result<(), String> {
    let normalise = |c: &TrainConfig| TrainConfig { out: None, epochs: 0, patience: None, quiet: false, workers: None, eval_batch: None, ..c.clone() };
    if normalise(saved) == normalise(now) {
        return Ok(());
    }
    let (a, b) = (toml::Value::try_from(normalise(saved)).unwrap(), toml::Value::try_from(normalise(now)).unwrap());
    let differing: Vec<String> = match (a, b) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect()
        }
        _ => vec![],
    };
    Err(format!("its configuration differs in {}; only epochs, patience, workers, eval_batch and quiet may change", differing.join(", ")))
}

/// Initialises the new head as the reference notebook's `Dense(classes)`: Glorot-uniform kernel, zero bias.
/// (An architecture's own top initialiser is scaled for 1000 classes; for a handful it gives logits an order
/// of magnitude too large.)
fn reinit_head(vs: &nn::VarStore, head: &orchard_models::LayerGroup) {
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if !head.contains(&name) {
                continue;
            }
            if t.dim() == 2 {
                let (fan_out, fan_in) = (t.size()[0] as f64, t.size()[1] as f64);
                let limit = (6.0 / (fan_in + fan_out)).sqrt();
                let _ = t.uniform_(-limit, limit);
            } else {
                let _ = t.zero_();
            }
        }
    });
}

/// Training and validation dataset indices per the fold settings (prediction reuses it to find a run's
/// validation fold again).
pub fn split(config: &TrainConfig, dataset: &Dataset) -> Result<(Vec<usize>, Vec<usize>), TrainError> {
    let Some(k) = config.data.folds else { return Ok(((0..dataset.len()).collect(), Vec::new())) };
    let folds = match &config.data.folds_csv {
        Some(path) => orchard_data::folds::read_csv(path, dataset)?,
        None => orchard_data::folds::assign(dataset, k, config.seed)?,
    };
    let found = folds.iter().max().map_or(0, |m| m + 1);
    if found != k {
        return Err(TrainError::Input(format!("the folds file has {found} folds, the configuration says data.folds = {k}")));
    }
    let (val, train): (Vec<usize>, Vec<usize>) = (0..dataset.len()).partition(|&i| folds[i] == config.data.fold);
    Ok((train, val))
}

/// Learning-rate multiplier of every parameter: its layer group's `group_lr` times `layer_decay` raised to
/// its group's distance below the head.
fn lr_multipliers(config: &TrainConfig, model: &Classifier, variables: &[(String, Tensor)]) -> Vec<Param> {
    let groups = model.layer_groups();
    let last = groups.len().saturating_sub(1);
    variables
        .iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(name, t)| {
            let index = groups.iter().position(|g| g.contains(name)).unwrap_or(last);
            let group = &groups[index].name;
            let mut mult = config.optimizer.group_lr.get(group).copied().unwrap_or(1.0);
            if let Some(decay) = config.optimizer.layer_decay {
                mult *= decay.powi((last - index) as i32);
            }
            Param { name: name.clone(), tensor: t.shallow_clone(), lr_mult: mult }
        })
        .collect()
}

/// Probabilities for every image `loader` yields, in its order, as a row-major N×C vector.
pub fn predict(
    model: &Classifier,
    loader: &Loader,
    loss: &Loss,
    normalization: Normalization,
    device: Device,
    layout: Layout,
) -> Result<Vec<f64>, TrainError> {
    let mut out = Vec::new();
    for batch in loader.epoch(0) {
        let batch = batch?;
        let xs = orchard_torch::images(&batch, normalization, device, layout);
        let probs = tch::no_grad(|| loss.probabilities(&model.forward_t(&xs, false)));
        let probs: Vec<f64> = Vec::try_from(probs.to_kind(Kind::Double).to_device(Device::Cpu).flatten(0, -1)).expect("f64 probabilities");
        out.extend(probs);
    }
    Ok(out)
}

/// Validation metrics of one epoch.
struct Evaluation {
    probs: Vec<f64>,
    loss: f64,
    accuracy: f64,
    auc: orchard_metrics::ColumnAuc,
}

impl Evaluation {
    fn new(truth: &[f64], probs: Vec<f64>, classes: usize, softmax: bool) -> Self {
        let (loss, accuracy) = if softmax {
            (
                orchard_metrics::log_loss(truth, &probs, classes).unwrap_or(f64::NAN),
                orchard_metrics::accuracy(truth, &probs, classes).unwrap_or(f64::NAN),
            )
        } else {
            multilabel_loss_and_accuracy(truth, &probs)
        };
        let auc = orchard_metrics::mean_column_auc(truth, &probs, classes)
            .unwrap_or(orchard_metrics::ColumnAuc { per_class: vec![None; classes], mean: None });
        Evaluation { probs, loss, accuracy, auc }
    }
}

/// Mean binary cross-entropy and element-wise accuracy at 0.5 of independent per-class probabilities.
fn multilabel_loss_and_accuracy(truth: &[f64], probs: &[f64]) -> (f64, f64) {
    let eps = f64::EPSILON;
    let n = truth.len().max(1) as f64;
    let loss = truth.iter().zip(probs).map(|(t, p)| -(t * p.clamp(eps, 1.0 - eps).ln() + (1.0 - t) * (1.0 - p.clamp(eps, 1.0 - eps)).ln())).sum::<f64>() / n;
    let correct = truth.iter().zip(probs).filter(|(t, p)| (**t >= 0.5) == (**p >= 0.5)).count();
    (loss, correct as f64 / n)
}

/// `image_id` then one column per class, for the images `samples` in order.
pub fn predictions_csv(dataset: &Dataset, samples: &[usize], probs: &[f64]) -> String {
    let c = dataset.classes.len();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header = std::iter::once("image_id").chain(dataset.classes.iter().map(String::as_str));
    writer.write_record(header).expect("writing to memory");
    for (row, &i) in samples.iter().enumerate() {
        let values = probs[row * c..(row + 1) * c].iter().map(|p| p.to_string());
        writer.write_record(std::iter::once(dataset.samples[i].id.clone()).chain(values)).expect("writing to memory");
    }
    String::from_utf8(writer.into_inner().expect("writing to memory")).expect("CSV of UTF-8 fields")
}

impl TrainError {
    /// Whether the user's data, files or settings are at fault (exit code 2) rather than the run.
    pub fn is_bad_input(&self) -> bool {
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
        )
    }
}
