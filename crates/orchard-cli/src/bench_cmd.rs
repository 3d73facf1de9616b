//! `orchard bench …`: images/second and peak memory, printed, never asserted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use orchard_data::augment::AugmentConfig;
use orchard_data::cache::Cache;
use orchard_data::dataset::{self, LoadOptions, Split};
use orchard_data::loader::{Loader, LoaderConfig};
use orchard_data::normalize::Normalization;
use orchard_data::pipeline::{Pipeline, PipelineConfig, Source};
use orchard_torch::Layout;
use tch::Device;

use crate::cli::{parse_size, BenchCommand, BenchInputArgs, UsageError};

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Input(args) => bench_input(args),
        BenchCommand::Model(args) => crate::bench_model::run(args),
    }
}

fn bench_input(args: BenchInputArgs) -> Result<()> {
    let size = parse_size(&args.size)?;
    let augment = match args.augment.as_str() {
        "flips" => AugmentConfig::reference(),
        "none" => AugmentConfig::default(),
        other => return Err(UsageError(format!("augment {other:?}: expected flips or none")).into()),
    };
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
    println!(
        "input bench: {n} images from {}, output {}x{}, batch {}, {} workers, augment {}",
        args.dir.display(), size.0, size.1, args.batch, loader_config.workers, args.augment
    );

    let files = Pipeline::new(config.clone(), Source::Files(paths.clone()));
    time_epochs("files (decode + resize + flips)", &files, &targets, &loader_config, args.epochs)?;

    if args.cache {
        let file = args.cache_file.unwrap_or_else(|| args.dir.join(".orchard-cache").join(format!("bench-{}x{}.cache", size.0, size.1)));
        reset_peak_memory();
        let start = Instant::now();
        let (cache, state) = Cache::open_or_build(&file, &paths, size, config.filter)?;
        let secs = start.elapsed().as_secs_f64();
        println!("cache {:?} in {secs:.2} s ({:.1} images/s) at {}; peak memory {}", state, n as f64 / secs, file.display(), peak_memory());
        let cached = Pipeline::new(config, Source::Cache(Arc::new(cache)));
        time_epochs("cache (copy + flips)", &cached, &targets, &loader_config, args.epochs)?;
    }
    Ok(())
}

/// Runs `epochs` epochs, converting each batch to a normalised f32 tensor as training would.
fn time_epochs(label: &str, pipeline: &Pipeline, targets: &Arc<Vec<Vec<f32>>>, config: &LoaderConfig, epochs: u64) -> Result<()> {
    let loader = Loader::new(Arc::new(pipeline.clone()), (0..pipeline.source.len()).collect(), targets.clone(), config.clone());
    reset_peak_memory();
    for epoch in 0..epochs {
        let start = Instant::now();
        let mut images = 0usize;
        let mut checksum = 0.0;
        for batch in loader.epoch(epoch) {
            let batch = batch?;
            let x = orchard_torch::images(&batch, Normalization::ImageNet, Device::Cpu, Layout::ChannelsLast);
            checksum += x.double_value(&[0, 0, 0, 0]);
            images += batch.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{label}: epoch {epoch}: {images} images in {secs:.2} s = {:.1} images/s (checksum {checksum:.1})", images as f64 / secs);
    }
    println!("{label}: peak memory {}", peak_memory());
    Ok(())
}

/// Resets the kernel's peak-RSS counter (Linux ≥ 4.0), so each phase reports its own peak.
pub fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory (VmHWM), human-readable.
pub fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or_else(|| "unknown".to_string(), |kib| format!("{:.0} MiB", kib / 1024.0))
}
