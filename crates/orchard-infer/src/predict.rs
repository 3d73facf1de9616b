//! Per-image class probabilities from one or more runs, as a prediction CSV in memory.
//!
//! - [`Target::Test`]: the dataset's test split, in its order (`test.csv`'s); several runs — the fold models
//!   of one member — are averaged.
//! - [`Target::Oof`]: each run's own validation fold, found again from its recorded fold settings
//!   (`data.folds`, `data.fold`, `data.seed`/`data.folds_csv`); several runs' folds are concatenated into
//!   one out-of-fold file, which is how a member's folds become one OOF prediction (with TTA, if asked).
//!
//! The columns are the runs' classes in their order; every run must have the same classes in the same order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orchard_data::dataset::{self, Dataset, ImageCheck, LoadOptions, Split};
use orchard_data::loader::{Loader, LoaderConfig};
use orchard_data::pipeline::Source;
use orchard_files::config::Precision;
use orchard_files::state::BEST;
use orchard_files::{folds, Predictions, RunState};
use tch::Device;

use crate::model::RunModel;
use crate::tta::Tta;
use crate::{InferError, Result};

/// Which images to predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The dataset's test split; several runs are averaged.
    Test,
    /// Each run's validation fold; several runs are concatenated.
    Oof,
}

/// How to predict.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub target: Target,
    pub tta: Tta,
    /// Images per batch; the run's validation batch when absent (which reproduces its `oof.csv` exactly).
    pub batch: Option<usize>,
    pub device: Device,
    /// Decode threads; one per core when absent.
    pub workers: Option<usize>,
    /// The models' arithmetic (f32, the runs' own; bf16 on CPUs with AVX-512 BF16 or AMX, and CUDA).
    pub precision: Precision,
}

impl Options {
    /// No TTA, the run's batch size, the CPU, f32.
    pub fn new(target: Target) -> Options {
        Options { target, tta: Tta::None, batch: None, device: Device::Cpu, workers: None, precision: Precision::F32 }
    }
}

/// Predicts `target` of the dataset in `data` with the best models of `runs`.
pub fn predict(runs: &[PathBuf], data: &Path, options: &Options) -> Result<Predictions> {
    if runs.is_empty() {
        return Err(InferError::Config("no runs given".into()));
    }
    if options.batch == Some(0) || options.workers == Some(0) {
        return Err(InferError::Config("batch and workers must be at least 1".into()));
    }
    let split = match options.target {
        Target::Test => Split::Test,
        Target::Oof => Split::Train,
    };
    let (dataset, report) = dataset::load(data, split, &load_options(runs, options.target))?;
    let mut classes: Option<(PathBuf, Vec<String>)> = None;
    let mut ids: Vec<String> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    let mut validated_by: HashMap<usize, PathBuf> = HashMap::new();
    for dir in runs {
        let model = RunModel::load_in(dir, options.device, options.precision)?;
        match &classes {
            None => classes = Some((dir.clone(), model.classes().to_vec())),
            Some((first, c)) if c != model.classes() => {
                return Err(InferError::Run {
                    run: dir.clone(),
                    message: format!(
                        "its classes {:?} differ from those of {} ({c:?})",
                        model.classes(),
                        first.display()
                    ),
                })
            }
            Some(_) => {}
        }
        let samples = match options.target {
            Target::Test => (0..dataset.len()).collect(),
            Target::Oof => validation_fold(&model, &dataset, &report.skipped_ids(), &mut validated_by)?,
        };
        let probs = predict_samples(&model, &dataset, samples.clone(), options)?;
        match options.target {
            Target::Test if values.is_empty() => values = probs,
            Target::Test => values.iter_mut().zip(&probs).for_each(|(v, p)| *v += p),
            Target::Oof => {
                ids.extend(samples.iter().map(|&i| dataset.samples[i].id.clone()));
                values.extend(probs);
            }
        }
    }
    if options.target == Target::Test {
        ids = dataset.samples.iter().map(|s| s.id.clone()).collect();
        values.iter_mut().for_each(|v| *v /= runs.len() as f64);
    }
    let (_, classes) = classes.expect("at least one run");
    Ok(Predictions::new("image_id", classes, ids, values))
}

/// How to load the dataset: out-of-fold predictions of runs trained with `data.skip_bad` see the rows they
/// saw, the images that do not decode dropped again (the run's state says; an unreadable one is reported
/// when its model loads).
fn load_options(runs: &[PathBuf], target: Target) -> LoadOptions {
    let skip_bad = target == Target::Oof
        && runs.first().and_then(|r| RunState::read(&r.join(BEST)).ok()).is_some_and(|s| s.config.data.skip_bad);
    match skip_bad {
        true => LoadOptions { skip_bad, images: ImageCheck::Decode },
        false => LoadOptions::default(),
    }
}

/// The dataset indices of `model`'s validation fold (rows of `dropped` ids in its folds file passed over);
/// each image may be validated by one run only.
fn validation_fold(
    model: &RunModel,
    dataset: &Dataset,
    dropped: &[String],
    validated_by: &mut HashMap<usize, PathBuf>,
) -> Result<Vec<usize>> {
    let bad = |message: String| InferError::Run { run: model.dir.clone(), message };
    if dataset.classes != model.classes() {
        return Err(bad(format!(
            "it was trained on classes {:?}, the dataset has {:?}",
            model.classes(),
            dataset.classes
        )));
    }
    let config = &model.state.config;
    let (_, val) = folds::split(&config.data, config.seed, &dataset.targets(), dropped)?;
    if val.is_empty() {
        return Err(bad("it has no validation fold (trained on all the data): nothing to predict out of fold".into()));
    }
    for &i in &val {
        if let Some(other) = validated_by.insert(i, model.dir.clone()) {
            return Err(bad(format!(
                "image '{}' is also in the validation fold of {}: give the fold models of one member, each fold once",
                dataset.samples[i].id,
                other.display()
            )));
        }
    }
    Ok(val)
}

/// Probabilities for `samples` (dataset indices), in their order.
fn predict_samples(model: &RunModel, dataset: &Dataset, samples: Vec<usize>, options: &Options) -> Result<Vec<f64>> {
    let paths: Arc<Vec<PathBuf>> = Arc::new(dataset.samples.iter().map(|s| s.path.clone()).collect());
    let pipeline = Arc::new(model.pipeline(Source::Files(paths)));
    let config = &model.state.config;
    let batch_size = options.batch.unwrap_or(config.eval_batch.unwrap_or(config.batch));
    let workers = options.workers.unwrap_or_else(|| LoaderConfig::default().workers);
    let loader = Loader::new(
        pipeline,
        samples,
        Arc::new(Vec::new()),
        LoaderConfig { batch_size, workers, ..Default::default() },
    );
    let (h, w) = model.state.size;
    let stage = || format!("predicting with {} (batches of {batch_size} at {w}x{h})", model.dir.display());
    let predicted = orchard_torch::failure::catch(|| model.predict(&loader, options.tta));
    Ok(predicted.map_err(|failure| InferError::Step { stage: stage(), failure })??)
}
