//! `orchard`: train, evaluate, combine and serve ensembles of CNN image classifiers.
//!
//! This binary is thin: it parses arguments (`cli`), turns them into the libraries' configurations and
//! calls them (`data_cmd`, `bench_cmd`, `schedule_cmd`). Exit codes: 0 success, 1 failure, 2 bad input data or usage.

mod bench_cmd;
mod classify_cmd;
mod cli;
mod data_cmd;
mod models_cmd;
mod schedule_cmd;
mod weights_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Data(cmd) => data_cmd::run(cmd),
        cli::Command::Bench(cmd) => bench_cmd::run(cmd),
        cli::Command::Models(cmd) => models_cmd::run(cmd),
        cli::Command::Schedule(args) => schedule_cmd::run(args),
        cli::Command::Weights(cmd) => weights_cmd::run(cmd),
        cli::Command::Classify(args) => classify_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// 2 when the user's data (or arguments) are at fault, 1 otherwise.
fn exit_code(err: &anyhow::Error) -> u8 {
    use orchard_data::{dataset::DatasetError, decode::DecodeError, elpv::ElpvError, folds::FoldError};
    use orchard_models::weights::WeightsError;
    let bad_data = err.chain().any(|e| {
        e.is::<DatasetError>() || e.is::<DecodeError>() || e.is::<FoldError>() || e.is::<ElpvError>() || e.is::<cli::UsageError>()
            || e.is::<WeightsError>()
    });
    if bad_data {
        2
    } else {
        1
    }
}
