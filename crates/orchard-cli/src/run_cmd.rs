//! `orchard run EXPERIMENT.toml`: train every (member, fold) unit that is not complete (resuming partial
//! ones), then predict, ensemble and write the submission and summary. `--only MEMBER/FOLD` trains one
//! unit (for separate processes or machines), `--gather` does only the last part, `--status` lists the
//! units. The work is in `orchard-experiment`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use orchard_experiment::config::Experiment;
use orchard_experiment::gather;
use orchard_experiment::units::{self, Trained};
use orchard_train::progress::{Console, Progress, Silent};

use crate::args::DataArg;

/// Run an experiment: members × folds, predictions with TTA, ensemble, submission.
#[derive(Args)]
pub struct RunArgs {
    /// The experiment file (TOML; see examples/synth-experiment.toml).
    pub experiment: PathBuf,
    /// Train only this unit, MEMBER/FOLD (e.g. b0/2), and stop.
    #[arg(long, conflicts_with_all = ["gather", "status"])]
    pub only: Option<String>,
    /// Only predict, ensemble and write the submission (every unit must be complete).
    #[arg(long, conflicts_with = "status")]
    pub gather: bool,
    /// Print every unit's status and stop.
    #[arg(long)]
    pub status: bool,
    /// Instead of the file's `data`.
    #[command(flatten)]
    pub data: DataArg,
    /// Experiment directory, instead of the file's `out`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print only errors and the final summary.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: RunArgs) -> Result<()> {
    let mut experiment = Experiment::read(&args.experiment)?;
    if let Some(data) = args.data.data {
        experiment.set_data(data);
    }
    if let Some(out) = args.out {
        experiment.out = out;
    }
    for member in &mut experiment.members {
        member.config.quiet |= args.quiet;
    }
    if args.status {
        for unit in experiment.units() {
            println!("{}: {}", experiment.unit_name(unit), experiment.status(unit)?);
        }
        return Ok(());
    }
    if !args.gather {
        units::prepare(&experiment)?;
        let todo = match &args.only {
            Some(name) => vec![experiment.find_unit(name)?],
            None => experiment.units(),
        };
        for unit in todo {
            let mut progress: Box<dyn Progress> = if args.quiet { Box::new(Silent) } else { Box::new(Console::new()) };
            let name = experiment.unit_name(unit);
            if !args.quiet {
                eprintln!("unit {name}: {} in {}", experiment.status(unit)?, experiment.unit_dir(unit).display());
            }
            match units::train(&experiment, unit, progress.as_mut())? {
                Trained::AlreadyComplete => {}
                Trained::Trained { resumed_from, epochs_done } if !args.quiet => {
                    eprintln!("unit {name}: trained epochs {resumed_from}..{epochs_done}");
                }
                Trained::Trained { .. } => {}
            }
        }
        if args.only.is_some() {
            return Ok(());
        }
    }
    let summary = gather::gather(&experiment)?;
    print!("{summary}");
    println!("wrote {}", experiment.out.join("summary.json").display());
    Ok(())
}
