//! `orchard plan EXPERIMENT.toml --emit slurm|k8s`: the experiment's units as a Slurm job array script or a
//! Kubernetes Indexed Job manifest (JSON, which `kubectl` reads as it reads YAML), for a cluster's scheduler
//! to run; `orchard run EXPERIMENT.toml --gather` afterwards. The jobs are in `orchard_experiment::plan`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use orchard_experiment::config::Experiment;
use orchard_experiment::plan::{self, Kubernetes, Resources, Slurm};
use orchard_files::atomic;

use crate::usage::UsageError;

/// Write the experiment's units as a Slurm job array or a Kubernetes Indexed Job.
#[derive(Args)]
pub struct PlanArgs {
    /// The experiment file.
    pub experiment: PathBuf,
    /// The scheduler.
    #[arg(long, value_enum)]
    pub emit: Emit,
    /// Where to write the script or manifest (default: standard output).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// GPUs per unit (default: 1 when a member names a CUDA device, else 0); more than one trains each unit
    /// data-parallel through `orchard launch`.
    #[arg(long)]
    pub gpus_per_unit: Option<usize>,
    /// CPUs per unit (default: the members' most decode workers, else 4).
    #[arg(long)]
    pub cpus_per_unit: Option<usize>,
    /// Memory per unit, e.g. 32G (default: the scheduler's).
    #[arg(long)]
    pub mem: Option<String>,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm time limit per unit, e.g. 24:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// Kubernetes: the container image, with `orchard` on its PATH.
    #[arg(long, required_if_eq("emit", "k8s"))]
    pub image: Option<String>,
    /// Kubernetes: the PersistentVolumeClaim of the shared volume.
    #[arg(long, required_if_eq("emit", "k8s"))]
    pub claim: Option<String>,
    /// Kubernetes: where the volume is mounted; the experiment's paths must lie under it.
    #[arg(long, default_value = "/runs")]
    pub mount: PathBuf,
    /// Kubernetes: units running at once (default: all).
    #[arg(long)]
    pub parallelism: Option<usize>,
}

/// `--emit`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// An `sbatch` script: one array task per unit.
    Slurm,
    /// A `batch/v1` Job with `completionMode: Indexed`: one completion per unit.
    K8s,
}

pub fn run(args: PlanArgs) -> Result<()> {
    let experiment_file = absolute(&args.experiment)?;
    let experiment = Experiment::read(&experiment_file)?;
    let mut resources = Resources::of(&experiment);
    if let Some(gpus) = args.gpus_per_unit {
        resources.gpus = gpus;
    }
    if let Some(cpus) = args.cpus_per_unit {
        if cpus == 0 {
            return Err(UsageError("--cpus-per-unit must be at least 1".into()).into());
        }
        resources.cpus = cpus;
    }
    resources.memory = args.mem;
    let text = match args.emit {
        Emit::Slurm => {
            let workdir = std::env::current_dir()?;
            let orchard = std::env::current_exe()?;
            let slurm = Slurm { partition: args.partition, time: args.time };
            let logs = absolute(&experiment.out)?.join("slurm");
            std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
            plan::slurm_script(&experiment, &experiment_file, &workdir, &orchard, &resources, &slurm)
        }
        Emit::K8s => {
            let k8s = Kubernetes {
                image: args.image.expect("required by clap"),
                claim: args.claim.expect("required by clap"),
                mount: args.mount,
                parallelism: args.parallelism,
            };
            let job = plan::kubernetes_job(&experiment, &experiment_file, &resources, &k8s)?;
            serde_json::to_string_pretty(&job)? + "\n"
        }
    };
    match &args.output {
        Some(path) => {
            atomic::write(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            let file = path.display();
            let experiment = experiment_file.display();
            match args.emit {
                Emit::Slurm => eprintln!(
                    "submit: job=$(sbatch --parsable {file}) && sbatch --dependency=afterok:$job --wrap \
                     \"orchard run {experiment} --gather\""
                ),
                Emit::K8s => {
                    eprintln!("submit: kubectl apply -f {file}; once it completes, orchard run {experiment} --gather")
                }
            }
        }
        None => crate::out::write_all(text.as_bytes())?,
    }
    Ok(())
}

/// `path` from the current directory, when relative (the scheduler's tasks start elsewhere).
fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) })
}
