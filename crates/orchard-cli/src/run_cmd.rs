//! `orchard run EXPERIMENT.toml`: train every (member, fold) unit that is not complete (resuming partial
//! ones), then predict, ensemble and write the submission and summary. `--only MEMBER/FOLD` trains one
//! unit (for separate processes or machines), `--gather` does only the last part, `--status` lists the
//! units, `--dry-run` checks everything and estimates each unit's memory and time without training or
//! writing anything. `--jobs N` or `--devices LIST` train several units at once, each in its own process
//! (`parallel_units`); the units' overall progress is `run_progress`'s. Under `orchard launch` (or
//! torchrun, or `srun`) every process is a data-parallel replica of each unit in turn, and rank 0 gathers.
//! The work is in `orchard-experiment`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use orchard_experiment::config::Experiment;
use orchard_experiment::gather;
use orchard_experiment::units::{self, Status, Trained};
use orchard_files::config::Device;
use orchard_torch::distributed::{ProcessGroup, Rendezvous};
use orchard_train::progress::{Console, Progress, Silent};
use orchard_train::replicas::{backend_for, replica_device, Replicas, DEFAULT_TIMEOUT};

use crate::args::{available_device, DataArg};
use crate::run_progress::Overall;
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
    /// Check everything (paths, dataset, folds, architectures, sizes, devices, weight files against their
    /// architectures) and print the units with each one's estimated memory and time per epoch, measured on
    /// a few training steps on the device each member would use; train nothing, write nothing.
    #[arg(long, conflicts_with_all = ["only", "gather", "status", "jobs", "devices"])]
    pub dry_run: bool,
    /// Train N units at once, each in its own process on the default device (on a CPU, the cores shared).
    #[arg(long, conflicts_with_all = ["only", "devices", "gather", "status"])]
    pub jobs: Option<usize>,
    /// Train one unit at a time on each of these devices, e.g. cuda:0,cuda:1 (list one twice for two units).
    #[arg(long, value_delimiter = ',', value_parser = available_device, conflicts_with_all = ["only", "gather", "status"])]
    pub devices: Option<Vec<Device>>,
    /// Every member on this device (cpu, cuda, cuda:N or auto), instead of each member's own (`device` in
    /// `[defaults]` or the member, `auto` when unset).
    #[arg(long, value_parser = available_device)]
    pub device: Option<Device>,
    /// Instead of the file's `data`.
    #[command(flatten)]
    pub data: DataArg,
    /// Experiment directory, instead of the file's `out`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Drop the training rows whose image does not decode (listed in OUT/skipped.csv) instead of failing,
    /// as `skip_bad = true` in the file does.
    #[arg(long)]
    pub skip_bad: bool,
    /// Print only errors and the final summary.
    #[arg(long)]
    pub quiet: bool,
    /// Seconds a data-parallel replica waits for the others before the job fails (under a launcher).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs())]
    pub replica_timeout: u64,
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
    if args.skip_bad {
        overrides.push("--skip-bad".into());
        experiment.set_skip_bad();
    }
    for member in &mut experiment.members {
        member.config.quiet |= args.quiet;
        if let Some(device) = args.device {
            member.config.device = device;
        }
    }
    if args.dry_run {
        out!("{}", orchard_experiment::dry_run::dry_run(&experiment)?)?;
        return Ok(());
    }
    if !args.status {
        // Every member about to train (none when gathering) is checked before anything is created.
        let members: Vec<usize> = match (&args.only, args.gather) {
            (_, true) => vec![],
            (Some(name), false) => vec![experiment.find_unit(name)?.member],
            (None, false) => (0..experiment.members.len()).collect(),
        };
        orchard_experiment::check::check_members(&experiment, &members)?;
    }
    // Checked with the paths as written (messages name them so, as do the last lines); trained with them
    // absolute, so that every unit's saved configuration names the same files from wherever it is resumed.
    let shown = experiment.out.clone();
    experiment.absolutize();
    let rendezvous =
        Rendezvous::from_env().map_err(|e| UsageError(format!("the data-parallel job's variables: {e}")))?;
    if let Some(r) = &rendezvous {
        if args.jobs.is_some() || args.devices.is_some() {
            return Err(
                UsageError("--jobs and --devices start processes of their own: not under a launcher".into()).into()
            );
        }
        as_replicas(&mut experiment, r);
    }
    let slots = match (args.jobs, args.devices) {
        (Some(0), _) => return Err(UsageError("--jobs must be at least 1".into()).into()),
        (Some(jobs), _) => Some(vec![args.device; jobs]),
        (None, Some(devices)) if devices.is_empty() => return Err(UsageError("--devices lists none".into()).into()),
        (None, devices) => devices.map(|d| d.into_iter().map(Some).collect()),
    };
    let group = match &rendezvous {
        Some(r) => {
            let backend = if experiment.members.iter().any(|m| orchard_torch::device(m.config.device).is_cuda()) {
                backend_for(tch::Device::Cuda(r.local_rank))
            } else {
                backend_for(tch::Device::Cpu)
            };
            let timeout = Duration::from_secs(args.replica_timeout);
            Some(Arc::new(ProcessGroup::join(r, timeout, backend).map_err(anyhow::Error::msg)?))
        }
        None => None,
    };
    let writer = group.as_ref().is_none_or(|g| g.rank() == 0);
    if args.status {
        for unit in experiment.units().into_iter().filter(|_| writer) {
            outln!("{}: {}", experiment.unit_name(unit), experiment.status(unit)?)?;
        }
        return Ok(());
    }
    // Every image is decoded before anything is created; then the whole experiment's writer locks its
    // directory (a unit's own process, `--only`, locks the unit's).
    let checked = if args.gather { None } else { Some(units::check(&experiment)?) };
    let _lock = match (writer, &args.only) {
        (true, None) => Some(units::lock(&experiment)?),
        _ => None,
    };
    if let (Some(slots), Some(checked)) = (&slots, &checked) {
        units::prepare(&experiment, checked)?;
        crate::parallel_units::train(&experiment, slots, &overrides, args.quiet)?;
    } else if let Some(checked) = &checked {
        // Rank 0 writes the fold assignment; the other replicas then check it.
        if writer {
            units::prepare(&experiment, checked)?;
        }
        if let Some(group) = &group {
            group.barrier(None).map_err(anyhow::Error::msg)?;
            if !writer {
                units::prepare(&experiment, checked)?;
            }
        }
        let todo = match &args.only {
            Some(name) => vec![experiment.find_unit(name)?],
            None => experiment.units(),
        };
        let quiet = args.quiet || !writer;
        let mut overall = match (quiet, &args.only) {
            (false, None) => Some(Overall::new(todo.len(), todo.len() - units::incomplete(&experiment)?.len(), 1)),
            _ => None,
        };
        for unit in todo {
            let mut progress: Box<dyn Progress> = match (&overall, args.quiet) {
                (_, true) => Box::new(Silent),
                (Some(o), false) => Box::new(o.console()),
                (None, false) => Box::new(Console::new()),
            };
            let name = experiment.unit_name(unit);
            let status = experiment.status(unit)?;
            let line = format!("unit {name}: {status} in {}", experiment.unit_dir(unit).display());
            match &overall {
                Some(o) if !matches!(status, Status::Complete { .. }) => o.note(&line),
                Some(_) => {}
                None if !quiet => eprintln!("{line}"),
                None => {}
            }
            let replicas = group.as_ref().map(|g| Replicas::over(g.clone()));
            let started = Instant::now();
            match units::train(&experiment, checked, unit, progress.as_mut(), replicas)? {
                Trained::AlreadyComplete => {}
                Trained::Trained { resumed_from, epochs_done } => match &mut overall {
                    Some(o) => {
                        let detail = format!(": epochs {resumed_from}..{epochs_done}");
                        o.unit_done(&name, &detail, started.elapsed().as_secs_f64());
                    }
                    None if !quiet => eprintln!("unit {name}: trained epochs {resumed_from}..{epochs_done}"),
                    None => {}
                },
            }
        }
        if let Some(o) = &overall {
            o.finish();
        }
        if args.only.is_some() {
            return Ok(());
        }
    }
    if !writer {
        return Ok(()); // rank 0 gathers
    }
    let summary = gather::gather(&experiment)?;
    out!("{summary}")?;
    outln!("wrote {}", shown.join("summary.json").display())?;
    let report = crate::report_cmd::write(&shown, None, Some(experiment.data.clone()), orchard_report::GALLERY);
    // The last lines: the results, then where they are.
    out!("\n{}", summary.recap())?;
    if let Some((file, rows)) = &summary.submission {
        outln!("submission: {} ({rows} rows, checked)", shown.join(file).display())?;
    }
    match report {
        Ok(path) => outln!("report: {}", path.display())?,
        Err(e) => eprintln!("warning: no report: {}", crate::message(&e)),
    }
    Ok(())
}

/// Makes every member of `experiment` a replica of the job `rendezvous` describes: the GPU of the local rank
/// where the member's device is `auto` (the schedule follows the number of replicas in the trainer).
fn as_replicas(experiment: &mut Experiment, rendezvous: &Rendezvous) {
    for member in &mut experiment.members {
        member.config.device = replica_device(member.config.device, rendezvous.local_rank);
    }
}
