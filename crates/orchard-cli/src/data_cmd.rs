//! `orchard data …`: synth, import-elpv, check, folds.

use anyhow::{Context, Result};
use orchard_data::dataset::{self, LoadOptions, Split};
use orchard_data::{elpv, folds, synth};

use crate::cli::{parse_size, DataCommand, UsageError};

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Synth(args) => {
            let (width, height) = parse_size(&args.size)?;
            let config = synth::SynthConfig { out: args.out, train: args.train, test: args.test, width, height, seed: args.seed, quality: args.quality };
            let summary = synth::generate(&config)?;
            println!("wrote {} training and {} test images ({width}x{height}) to {}", config.train, summary.test, config.out.display());
            for (name, n) in synth::CLASSES.iter().zip(summary.train_counts) {
                println!("  {name:<18} {n}");
            }
        }
        DataCommand::ImportElpv(args) => {
            let summary = elpv::import(&args.from, &args.out, args.test_fraction, args.seed)?;
            println!("{summary}");
            println!("wrote {}", args.out.display());
        }
        DataCommand::Check(args) => {
            let split = parse_split(&args.split)?;
            let options = LoadOptions { skip_bad: args.skip_bad, check_images: true };
            let (data, report) = dataset::load(&args.dir, split, &options)?;
            print_report(&report);
            println!("{}", dataset::describe(&data));
        }
        DataCommand::Folds(args) => {
            let options = LoadOptions { skip_bad: args.skip_bad, check_images: false };
            let (data, report) = dataset::load(&args.dir, Split::Train, &options)?;
            print_report(&report);
            let assignment = folds::assign(&data, args.k, args.seed)?;
            folds::write_csv(&args.out, &data, &assignment).with_context(|| format!("writing {}", args.out.display()))?;
            let counts = folds::class_counts(&data, &assignment, args.k);
            println!("{} samples in {} folds (seed {}) written to {}", data.len(), args.k, args.seed, args.out.display());
            println!("fold  {}", data.classes.join("  "));
            for (fold, row) in counts.iter().enumerate() {
                println!("{fold:>4}  {}", row.iter().zip(&data.classes).map(|(n, c)| format!("{n:>w$}", w = c.len())).collect::<Vec<_>>().join("  "));
            }
        }
    }
    Ok(())
}

fn parse_split(text: &str) -> Result<Split, UsageError> {
    match text {
        "train" => Ok(Split::Train),
        "test" => Ok(Split::Test),
        other => Err(UsageError(format!("split {other:?}: expected train or test"))),
    }
}

fn print_report(report: &dataset::Report) {
    if report.skipped_rows > 0 {
        eprintln!("skipped {} bad rows or images (--skip-bad):", report.skipped_rows);
        for problem in &report.skipped {
            eprintln!("  {problem}");
        }
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
}
