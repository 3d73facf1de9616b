//! `orchard data …`: synth, import-elpv, check, folds.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use orchard_data::dataset::{self, ImageCheck, LoadOptions, Split};
use orchard_demo::{elpv, synth};
use orchard_files::folds;

use crate::args::Size;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Write a procedural dataset in the Plant Pathology 2020 layout (leaves with rust and scab lesions).
    Synth(SynthArgs),
    /// Turn the installed `elpv-dataset` package into the one-hot layout (four defect classes).
    ImportElpv(ImportElpvArgs),
    /// Validate a dataset (every image decoded, in parallel) and print per-class counts and image sizes.
    Check(CheckArgs),
    /// Assign stratified k folds and write them as `image_id,fold`.
    Folds(FoldsArgs),
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of training images.
    #[arg(long, default_value_t = 400)]
    pub train: usize,
    /// Number of test images.
    #[arg(long, default_value_t = 100)]
    pub test: usize,
    /// Image size, WxH (e.g. 2048x1365) or N for square.
    #[arg(long, default_value = "512x341")]
    pub size: Size,
    /// Random seed: the same seed writes identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// JPEG quality (1-100).
    #[arg(long, default_value_t = 90)]
    pub quality: i32,
}

#[derive(Args)]
pub struct ImportElpvArgs {
    /// The package's data folder, holding labels.csv and images/ (e.g. site-packages/elpv_dataset/data).
    #[arg(long)]
    pub from: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Share of each class held out as the test split.
    #[arg(long, default_value_t = 0.25)]
    pub test_fraction: f64,
    /// Random seed of the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Dataset folder.
    pub dir: PathBuf,
    /// Which split to check.
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    pub split: SplitArg,
    /// Drop bad rows and images (and list them) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Read only each image's header (quick), instead of decoding every image as training would.
    #[arg(long)]
    pub headers_only: bool,
}

#[derive(Args)]
pub struct FoldsArgs {
    /// Dataset folder.
    pub dir: PathBuf,
    /// Number of folds.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Random seed of the assignment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output CSV (`image_id,fold`).
    #[arg(long)]
    pub out: PathBuf,
    /// Drop bad rows and images instead of failing: they get no fold, and are listed in OUT's
    /// `.skipped.csv` sibling (folds.csv → folds.skipped.csv).
    #[arg(long)]
    pub skip_bad: bool,
}

/// `--split` of `data check`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitArg {
    /// The labelled training table (or class folders).
    Train,
    /// The test table (or test folder).
    Test,
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Synth(args) => {
            let (width, height) = args.size.wh();
            let config = synth::SynthConfig {
                out: args.out,
                train: args.train,
                test: args.test,
                width,
                height,
                seed: args.seed,
                quality: args.quality,
            };
            let summary = synth::generate(&config)?;
            outln!(
                "wrote {} training and {} test images ({width}x{height}) to {}",
                config.train,
                summary.test,
                config.out.display()
            )?;
            for (name, n) in synth::CLASSES.iter().zip(summary.train_counts) {
                outln!("  {name:<18} {n}")?;
            }
        }
        DataCommand::ImportElpv(args) => {
            let summary = elpv::import(&args.from, &args.out, args.test_fraction, args.seed)?;
            outln!("{summary}")?;
            outln!("wrote {}", args.out.display())?;
        }
        DataCommand::Check(args) => {
            let split = match args.split {
                SplitArg::Train => Split::Train,
                SplitArg::Test => Split::Test,
            };
            let images = if args.headers_only { ImageCheck::Header } else { ImageCheck::Decode };
            let options = LoadOptions { skip_bad: args.skip_bad, images };
            let (data, report) = dataset::load(&args.dir, split, &options)?;
            print_report(&report);
            outln!("{}", dataset::describe(&data))?;
        }
        DataCommand::Folds(args) => {
            // Every image decoded, as training will: a fold assignment must not hold an image it cannot read.
            let options = LoadOptions { skip_bad: args.skip_bad, images: ImageCheck::Decode };
            let (data, report) = dataset::load(&args.dir, Split::Train, &options)?;
            print_report(&report);
            let assignment = folds::assign(&data.targets(), args.k, args.seed)?;
            let ids: Vec<&str> = data.samples.iter().map(|s| s.id.as_str()).collect();
            let skipped = args.out.with_extension("skipped.csv");
            dataset::write_skipped(&skipped, &report)?;
            folds::write_csv(&args.out, &ids, &assignment)
                .with_context(|| format!("writing {}", args.out.display()))?;
            if !report.skipped.is_empty() {
                outln!("{} rows without a fold are listed in {}", report.skipped.len(), skipped.display())?;
            }
            let counts = folds::class_counts(&data.targets(), &assignment, args.k);
            outln!(
                "{} samples in {} folds (seed {}) written to {}",
                data.len(),
                args.k,
                args.seed,
                args.out.display()
            )?;
            outln!("fold  {}", data.classes.join("  "))?;
            for (fold, row) in counts.iter().enumerate() {
                outln!(
                    "{fold:>4}  {}",
                    row.iter()
                        .zip(&data.classes)
                        .map(|(n, c)| format!("{n:>w$}", w = c.len()))
                        .collect::<Vec<_>>()
                        .join("  ")
                )?;
            }
        }
    }
    Ok(())
}

fn print_report(report: &dataset::Report) {
    if !report.skipped.is_empty() {
        eprintln!("skipped {} bad rows or images (--skip-bad):", report.skipped.len());
        for problem in report.skipped_problems() {
            eprintln!("  {problem}");
        }
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
}
