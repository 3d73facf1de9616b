//! `orchard run EXPERIMENT.toml`: train every (member, fold) unit that is not complete (resuming partial
//! ones), then predict, ensemble and write the submission and summary. `--only MEMBER/FOLD` trains one
//! unit (for separate processes or machines), `--gather` does only the last part, `--status` lists the
//! units. `--jobs N` or `--devices LIST` train several units at once, each in its own process
//! (`parallel_units`). The work is in `orchard-experiment`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use orchard_experiment::config::Experiment;
use orchard_experiment::gather;
use orchard_experiment::units::{self, Trained};
use orchard_files::config::Device;
use orchard_train::progress::{Console, Progress, Silent};

use crate::args::{DataArg, DeviceArg};
use crate::usage::UsageError;

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
    /// Train N units at once, each in its own process on the default device (on a CPU, the cores shared).
    #[arg(long, conflicts_with_all = ["only", "devices", "gather", "status"])]
    pub jobs: Option<usize>,
    /// Train one unit at a time on each of these devices, e.g. cuda:0,cuda:1 (list one twice for two units).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["only", "gather", "status"])]
    pub devices: Option<Vec<Device>>,
    /// Every member on this device, instead of each member's.
    #[command(flatten)]
    pub device: DeviceArg,
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
    // What a unit's own process must be told to see the same experiment.
    let mut overrides: Vec<OsString> = Vec::new();
    if let Some(data) = args.data.data {
        overrides.extend(["--data".into(), data.clone().into()]);
        experiment.set_data(data);
    }
    if let Some(out) = args.out {
        overrides.extend(["--out".into(), out.clone().into()]);
        experiment.out = out;
    }
    for member in &mut experiment.members {
        member.config.quiet |= args.quiet;
        if let Some(device) = args.device.device {
            member.config.device = device;
        }
    }
    let slots = match (args.jobs, args.devices) {
        (Some(0), _) => return Err(UsageError("--jobs must be at least 1".into()).into()),
        (Some(jobs), _) => Some(vec![args.device.device; jobs]),
        (None, Some(devices)) if devices.is_empty() => return Err(UsageError("--devices lists none".into()).into()),
        (None, devices) => devices.map(|d| d.into_iter().map(Some).collect()),
    };
    if args.status {
        for unit in experiment.units() {
            println!("{}: {}", experiment.unit_name(unit), experiment.status(unit)?);
        }
        return Ok(());
    }
    if let (Some(slots), false) = (&slots, args.gather) {
        units::prepare(&experiment)?;
        crate::parallel_units::train(&experiment, slots, &overrides, args.quiet)?;
    } else if !args.gather {
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
