//! Setting a run up: the run directory (or the run there resumed), the dataset and its loaders, the network
//! with its starting weights, the optimizer, the EMA and the loss. Every setting, the data (every image
//! decoded) and the starting weights are checked before the run directory is made. In a data-parallel run
//! every replica sets itself up the same way, takes its shards of the loaders, and starts from rank 0's
//! weights; rank 0 alone writes files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orchard_data::cache::Cache;
use orchard_data::dataset::{self, Dataset, ImageCheck, LoadOptions, Split, Task};
use orchard_data::loader::{Loader, LoaderConfig};
use orchard_data::pipeline::{Pipeline, PipelineConfig, Source};
use orchard_files::atomic;
use orchard_files::config::{ConfigError, HeadInit, LossKind, Precision, TrainConfig};
use orchard_files::folds;
use orchard_files::lock::DirLock;
use orchard_files::state::{LossScaler, RunState, FORMAT, LAST};
use orchard_models::init::Initializer;
use orchard_models::weights::checkpoint;
use orchard_models::ModelSpec;
use orchard_torch::Layout;
use tch::{Device, Tensor};

use super::{epoch_seed, Run, TrainError};
use crate::ema::Ema;
use crate::loss::Loss;
use crate::network::Network;
use crate::optim::Optimizer;
use crate::replicas::{Replicas, CACHE_TIMEOUT};
use crate::targets;

/// The loaders of a run: shuffled, augmented training batches and (with a fold) the validation batches.
struct Data {
    dataset: Dataset,
    softmax: bool,
    train_loader: Loader,
    /// Over this replica's share of the validation images.
    val_loader: Option<Loader>,
    /// Every validation image.
    val_samples: Vec<usize>,
}

impl Run {
    pub(super) fn new(
        config: TrainConfig,
        out: &Path,
        resume: bool,
        replicas: Option<Replicas>,
        loaded: Option<super::Loaded>,
    ) -> Result<Self, TrainError> {
        let writer = replicas.as_ref().is_none_or(|r| r.rank() == 0);
        let spec = orchard_models::spec(&config.model.arch)?;
        let size = config.data.size.unwrap_or((spec.default_size.0 as usize, spec.default_size.1 as usize));
        spec.check_input(size.0 as i64, size.1 as i64)?;
        let device = orchard_torch::device(config.device);
        if config.precision == Precision::Bf16 && device == Device::Cpu && !cpu_has_bf16() {
            let message = "bf16 needs a CPU with AVX-512 BF16 or AMX; this one has neither".into();
            return Err(ConfigError { field: "precision", message }.into());
        }
        // The data (every image decoded) and the starting weights are read before the directory is made.
        let read = read_data(&config, loaded)?;
        let (network, head) = network(&config, &spec, read.dataset.classes.len(), device)?;
        std::fs::create_dir_all(out).map_err(io_error(out))?;
        // Locked before anything is written (or a killed writer's temporaries cleared): a second writer
        // stops here.
        let lock = writer.then(|| DirLock::acquire(out)).transpose()?;
        if writer {
            atomic::remove_stale(out);
            dataset::write_skipped(&out.join(dataset::SKIPPED), &read.report)?;
        }
        let saved = saved_run(&config, out, resume)?;

        let data = load_data(&config, read, out, size, replicas.as_ref())?;
        let groups = network.model.layer_groups();
        let optimizer =
            Optimizer::new(config.optimizer.clone(), network.params(|name| lr_multiplier(&config, &groups, name)));
        let ema = config.ema.map(|d| Ema::new(d, &network.variables));
        let class_weights = config
            .loss
            .class_weights
            .as_ref()
            .map(|w| Tensor::from_slice(&w.iter().map(|&x| x as f32).collect::<Vec<_>>()).to_device(device));
        let loss = Loss { softmax: data.softmax, label_smoothing: config.loss.label_smoothing, class_weights };
        let config_schedule = config.schedule.for_replicas(replicas.as_ref().map_or(1, Replicas::world));
        let state = RunState {
            format: FORMAT,
            arch: config.model.arch.clone(),
            classes: data.dataset.classes.clone(),
            size,
            softmax: data.softmax,
            epochs_done: 0,
            step: 0,
            best: None,
            best_epoch: None,
            epochs_since_best: 0,
            stopped_early: false,
            history: Vec::new(),
            optimizer_steps: BTreeMap::new(),
            loss_scaler: (config.precision == Precision::F16).then(LossScaler::default),
            replicas: replicas.as_ref().map_or(1, Replicas::world),
            config: config.clone(),
        };
        let mut run = Run {
            dir: out.to_path_buf(),
            config,
            dataset: data.dataset,
            train_loader: data.train_loader,
            val_loader: data.val_loader,
            val_samples: data.val_samples,
            network,
            head,
            optimizer,
            ema,
            loss,
            schedule: config_schedule,
            replicas,
            state,
            _lock: lock,
        };
        if let (true, Some(r)) = (run.config.sync_batch_norm, &run.replicas) {
            run.network.model.set_batch_norm_sync(Some(r.batch_norm_sync()));
        }
        if let Some(saved) = saved {
            run.restore(saved)?;
        }
        run.check_replicas_agree()?;
        run.align_replicas(true)?;
        if writer {
            let mut text = String::new();
            if let Some(r) = &run.replicas {
                let (world, batch) = (r.world(), run.config.batch);
                text = format!("# trained by {world} data-parallel replicas: global batch {world} × {batch}\n");
            }
            text.push_str(&run.config.to_toml());
            let config_file = out.join("config.toml");
            atomic::write(&config_file, text.as_bytes()).map_err(io_error(&config_file))?;
        }
        Ok(run)
    }
}

impl Run {
    /// Every replica must continue from the same point: a run directory that is not shared between machines
    /// would give the other nodes no `last.ckpt` to resume from.
    fn check_replicas_agree(&self) -> Result<(), TrainError> {
        let Some(r) = &self.replicas else { return Ok(()) };
        let here = [f64::from(self.state.epochs_done), self.state.step as f64];
        match r.first_disagreeing(&here).map_err(|message| r.error(message))? {
            None => Ok(()),
            Some(rank) => Err(r.error(format!(
                "rank {rank} starts from another point of the run than rank 0 (this rank: epoch {}, step {}); \
                 every rank must see the same run directory ({}): share it between the machines",
                here[0],
                here[1],
                self.dir.display()
            ))),
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// The checkpoint of the run in `out` to continue, when asked to resume one; an error when `out` holds a run
/// and resuming was not asked for, or when the run there is another one.
fn saved_run(
    config: &TrainConfig,
    out: &Path,
    resume: bool,
) -> Result<Option<checkpoint::Loaded<RunState>>, TrainError> {
    let last = out.join(LAST);
    if !last.exists() {
        return Ok(None);
    }
    if !resume {
        return Err(TrainError::RunExists { path: out.to_path_buf() });
    }
    let saved: checkpoint::Loaded<RunState> = checkpoint::load(&last)?;
    config
        .check_resumable(&saved.state.config)
        .map_err(|message| TrainError::ResumeMismatch { path: out.to_path_buf(), message })?;
    Ok(Some(saved))
}

/// What a run reads of its data before it creates anything: the dataset (every image decoded; the rows
/// `data.skip_bad` dropped in `report`), the loss it implies, the fold split and the training targets.
struct ReadData {
    dataset: Dataset,
    report: dataset::Report,
    softmax: bool,
    train_samples: Vec<usize>,
    val_samples: Vec<usize>,
    train_targets: Vec<Vec<f32>>,
}

/// Reads and checks the run's data (the training split itself unless `loaded` already holds it); see
/// [`ReadData`].
fn read_data(config: &TrainConfig, loaded: Option<super::Loaded>) -> Result<ReadData, TrainError> {
    let options = LoadOptions { skip_bad: config.data.skip_bad, images: ImageCheck::Decode };
    let (dataset, report) = match loaded {
        Some(loaded) => loaded,
        None => dataset::load(&config.data.dir, Split::Train, &options)?,
    };
    let softmax = match config.loss.kind {
        LossKind::Softmax => true,
        LossKind::Sigmoid => false,
        LossKind::Auto => dataset.task == Task::MultiClass,
    };
    let classes = dataset.classes.len();
    if let Some(w) = &config.loss.class_weights {
        if w.len() != classes {
            let message =
                format!("loss.class_weights has {} values for {classes} classes ({:?})", w.len(), dataset.classes);
            return Err(TrainError::Input(message));
        }
    }
    // A folds file may list rows `skip_bad` dropped (one written before the image went bad, or without
    // `--skip-bad`): they get no fold, as they get no training.
    let (train_samples, val_samples) =
        folds::split(&config.data, config.seed, &dataset.targets(), &report.skipped_ids())?;
    let mut train_targets: Vec<Vec<f32>> = dataset.samples.iter().map(|s| s.target.clone()).collect();
    if let Some(path) = &config.data.soft_targets {
        targets::apply_soft_targets(path, &dataset, &mut train_targets).map_err(TrainError::Input)?;
    }
    Ok(ReadData { dataset, report, softmax, train_samples, val_samples, train_targets })
}

/// The loaders over the data read (this replica's shards of them); `size` is (height, width).
fn load_data(
    config: &TrainConfig,
    read: ReadData,
    out: &Path,
    size: (usize, usize),
    replicas: Option<&Replicas>,
) -> Result<Data, TrainError> {
    let ReadData { dataset, softmax, train_samples, val_samples, train_targets, .. } = read;

    let paths: Arc<Vec<PathBuf>> = Arc::new(dataset.samples.iter().map(|s| s.path.clone()).collect());
    // The pipeline takes (width, height); `size` is (height, width).
    let pipeline_config = PipelineConfig {
        size: (size.1, size.0),
        augment: config.augment.clone(),
        seed: config.seed,
        ..Default::default()
    };
    let source = if config.data.cache {
        // Rank 0 builds the cache file while the other replicas wait, then they open it.
        let file = out.join(format!("cache-{}x{}.bin", size.0, size.1));
        let (rank, _) = shard(replicas);
        let open = || Cache::open_or_build(&file, &paths, pipeline_config.size, pipeline_config.filter);
        let built = if rank == 0 { Some(open()) } else { None };
        if let Some(replicas) = replicas {
            replicas.barrier(Some(CACHE_TIMEOUT)).map_err(|message| replicas.error(message))?;
        }
        let (cache, _) = built.unwrap_or_else(open)?;
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
        LoaderConfig {
            batch_size: config.batch,
            shuffle: true,
            drop_last: false,
            workers,
            train: true,
            shard: shard(replicas),
            ..Default::default()
        },
    );
    let true_targets = Arc::new(dataset.samples.iter().map(|s| s.target.clone()).collect::<Vec<_>>());
    let val_loader = (!val_samples.is_empty()).then(|| {
        let batch_size = config.eval_batch.unwrap_or(config.batch);
        Loader::new(
            pipeline,
            replicas.map_or_else(|| val_samples.clone(), |r| r.share(&val_samples)),
            true_targets,
            LoaderConfig { batch_size, workers, ..Default::default() },
        )
    });
    Ok(Data { dataset, softmax, train_loader, val_loader, val_samples })
}

/// This replica's (rank, world): (0, 1) on its own.
fn shard(replicas: Option<&Replicas>) -> (usize, usize) {
    replicas.map_or((0, 1), |r| (r.rank(), r.world()))
}

/// The network of a run configured by `config` with a head of `classes` outputs on `device`, with its
/// starting weights (the backbone from `model.weights` when set, the head drawn afresh), and the var-store
/// names of its head's variables. Seeds libtorch's generator (from `config.seed`) to draw them.
pub fn network(
    config: &TrainConfig,
    spec: &ModelSpec,
    classes: usize,
    device: Device,
) -> Result<(Network, Vec<String>), TrainError> {
    tch::manual_seed(epoch_seed(config.seed, u32::MAX));
    let layout = if config.channels_last { Layout::ChannelsLast } else { Layout::Contiguous };
    let mut network = Network::new(&config.model.arch, classes as i64, device, layout)?;
    let model = &mut network.model;
    model.set_regularization(config.model.dropout, config.model.drop_path)?;
    model.set_batch_norm_momentum(config.batch_norm_momentum);
    // The new head starts as a new dense layer of the chosen framework, PyTorch's `nn.Linear` (the default) or
    // Keras' `Dense` (the reference notebook's): an architecture's own top initialiser is scaled for 1000
    // classes, and for a handful gives logits an order of magnitude too large.
    model.reset_head(head_initializer(config.model.head_init));
    let head_group = model.layer_groups().pop().expect("a classifier with a head has a head group");
    if let Some(weights) = &config.model.weights {
        crate::pretrained::load_backbone(&network.vs, spec, &head_group, weights).map_err(TrainError::Input)?;
    }
    let head = network.variables.iter().map(|(n, _)| n.clone()).filter(|n| head_group.contains(n)).collect();
    Ok((network, head))
}

/// The initialiser a new head's dense layer is drawn with.
pub fn head_initializer(init: HeadInit) -> Initializer {
    match init {
        HeadInit::Glorot => Initializer::GLOROT_UNIFORM,
        HeadInit::Torch => Initializer::PyTorchDefault,
    }
}

/// The learning-rate multiplier of the variable `name`: its layer group's `group_lr` times `layer_decay`
/// raised to its group's distance below the head.
fn lr_multiplier(config: &TrainConfig, groups: &[orchard_models::LayerGroup], name: &str) -> f64 {
    let last = groups.len().saturating_sub(1);
    let index = groups.iter().position(|g| g.contains(name)).unwrap_or(last);
    let mut mult = config.optimizer.group_lr.get(&groups[index].name).copied().unwrap_or(1.0);
    if let Some(decay) = config.optimizer.layer_decay {
        mult *= decay.powi((last - index) as i32);
    }
    mult
}

/// Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX), without which bf16 autocast is slower than
/// f32.
fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains(" avx512_bf16") || c.contains(" amx_bf16"))
}
