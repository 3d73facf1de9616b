//! `orchard bench input`: the input pipeline's images/second (decode + resize + augmentation, converted to
//! normalised tensors as training would), from the files and from the decode-once cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use orchard_data::augment::AugmentConfig;
use orchard_data::cache::Cache;
use orchard_data::dataset::{self, LoadOptions, Split};
use orchard_data::loader::{Loader, LoaderConfig};
use orchard_data::pipeline::{Pipeline, PipelineConfig, Source};
use orchard_models::Normalization;
use orchard_torch::Layout;
use tch::Device;

use super::{peak_memory, reset_peak_memory};
use crate::args::{self, AugmentArg, Size};
use crate::usage::UsageError;

#[derive(Args)]
pub struct BenchInputArgs {
    /// Dataset folder.
    pub dir: PathBuf,
    /// Output size, N or WxH.
    #[arg(long, default_value = "224")]
    pub size: Size,
    /// Also build the decode-once cache and time epochs read from it.
    #[arg(long)]
    pub cache: bool,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Decode threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Epochs to time (each pass over the images).
    #[arg(long, default_value_t = 2)]
    pub epochs: u64,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Augmentation.
    #[arg(long, value_enum, default_value_t = AugmentArg::Flips)]
    pub augment: AugmentArg,
    /// Cache file (default: DIR/.orchard-cache/bench-WxH.cache).
    #[arg(long)]
    pub cache_file: Option<PathBuf>,
}

pub fn run(args: BenchInputArgs) -> Result<()> {
    let size = args.size.wh();
    let augment = AugmentConfig::from(args.augment);
    if args.batch == 0 {
        return Err(UsageError("--batch must be at least 1".into()).into());
    }
    let (data, _) = dataset::load(&args.dir, Split::Train, &LoadOptions::default())?;
    let n = args.limit.unwrap_or(data.len()).min(data.len());
    if n == 0 {
        return Err(UsageError(format!("--limit {n}: nothing to time")).into());
    }
    let paths: Arc<Vec<PathBuf>> = Arc::new(data.samples[..n].iter().map(|s| s.path.clone()).collect());
    let targets: Arc<Vec<Vec<f32>>> = Arc::new(data.samples[..n].iter().map(|s| s.target.clone()).collect());
    let config = PipelineConfig { size, augment, ..Default::default() };
    let mut loader_config = LoaderConfig { batch_size: args.batch, shuffle: true, train: true, ..Default::default() };
    if let Some(w) = args.workers {
        loader_config.workers = w.max(1);
    }
    outln!(
        "input bench: {n} images from {}, output {}x{}, batch {}, {} workers, augment {}",
        args.dir.display(),
        size.0,
        size.1,
        args.batch,
        loader_config.workers,
        args::name(args.augment)
    )?;

    let files = Pipeline::new(config.clone(), Source::Files(paths.clone()));
    time_epochs("files (decode + resize + flips)", &files, &targets, &loader_config, args.epochs)?;

    if args.cache {
        let file = args
            .cache_file
            .unwrap_or_else(|| args.dir.join(".orchard-cache").join(format!("bench-{}x{}.cache", size.0, size.1)));
        reset_peak_memory();
        let start = Instant::now();
        let (cache, state) = Cache::open_or_build(&file, &paths, size, config.filter)?;
        let secs = start.elapsed().as_secs_f64();
        outln!(
            "cache {:?} in {secs:.2} s ({:.1} images/s) at {}; peak memory {}",
            state,
            n as f64 / secs,
            file.display(),
            peak_memory()
        )?;
        let cached = Pipeline::new(config, Source::Cache(Arc::new(cache)));
        time_epochs("cache (copy + flips)", &cached, &targets, &loader_config, args.epochs)?;
    }
    Ok(())
}

/// Runs `epochs` epochs, converting each batch to a normalised f32 tensor as training would.
fn time_epochs(
    label: &str,
    pipeline: &Pipeline,
    targets: &Arc<Vec<Vec<f32>>>,
    config: &LoaderConfig,
    epochs: u64,
) -> Result<()> {
    let loader =
        Loader::new(Arc::new(pipeline.clone()), (0..pipeline.source.len()).collect(), targets.clone(), config.clone());
    reset_peak_memory();
    let imagenet = Normalization::ImageNet.mean_std();
    for epoch in 0..epochs {
        let start = Instant::now();
        let mut images = 0usize;
        let mut checksum = 0.0;
        for batch in loader.epoch(epoch) {
            let batch = batch?;
            let x = orchard_torch::images(&batch, imagenet, Device::Cpu, Layout::ChannelsLast);
            checksum += x.double_value(&[0, 0, 0, 0]);
            images += batch.len();
        }
        let secs = start.elapsed().as_secs_f64();
        outln!(
            "{label}: epoch {epoch}: {images} images in {secs:.2} s = {:.1} images/s (checksum {checksum:.1})",
            images as f64 / secs
        )?;
    }
    outln!("{label}: peak memory {}", peak_memory())?;
    Ok(())
}
