//! An experiment's units as jobs for a cluster's scheduler, which then runs them where it has room: a Slurm
//! job array (one array index per unit) or a Kubernetes Indexed Job (one completion index per unit). Each
//! task runs `orchard run EXPERIMENT --only MEMBER/FOLD` (through `orchard launch` when a unit has several
//! GPUs) on the shared experiment directory, where a finished unit is a no-op and a partial one resumes, so
//! a plan can be submitted again after failures. `orchard run EXPERIMENT --gather` afterwards predicts,
//! ensembles and writes the submission.

use std::path::{Path, PathBuf};

use orchard_files::config::Device;
use serde_json::json;

use crate::config::Experiment;
use crate::{ExperimentError, Result};

/// What every unit asks of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Resources {
    /// GPUs per unit; more than one trains the unit data-parallel over them.
    pub gpus: usize,
    pub cpus: usize,
    /// Memory, in the scheduler's notation (`16G`); the scheduler's default when `None`.
    pub memory: Option<String>,
}

impl Resources {
    /// One GPU per unit when a member names a CUDA device, none otherwise; the members' most decode workers
    /// (4 when none says) as CPUs.
    pub fn of(experiment: &Experiment) -> Resources {
        let gpus = usize::from(experiment.members.iter().any(|m| matches!(m.config.device, Device::Cuda(_))));
        let cpus = experiment.members.iter().filter_map(|m| m.config.workers).max().unwrap_or(4).max(1);
        Resources { gpus, cpus, memory: None }
    }
}

/// The command a task runs for the unit named in the shell variable `$unit`: the experiment's units, one
/// process per GPU when the unit has several. `orchard` is the binary to call, `port` the shell expression
/// of the rendezvous port of a multi-GPU unit.
fn unit_command(orchard: &str, experiment: &Path, gpus: usize, port: &str) -> String {
    let run = format!("run {} --only \"$unit\"", quote(&experiment.display().to_string()));
    match gpus {
        0 | 1 => format!("exec {orchard} {run}"),
        n => format!("exec {orchard} launch --nproc-per-node {n} --master-port \"{port}\" -- {run}"),
    }
}

/// Settings of a Slurm job array.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slurm {
    pub partition: Option<String>,
    /// Wall-clock limit per unit, `HH:MM:SS` or any form `sbatch --time` takes.
    pub time: Option<String>,
}

/// A `sbatch` script of one array task per unit, logs in `OUT/slurm/`. `orchard` and `experiment_file` are
/// the binary and the experiment file as every node sees them (a shared filesystem), `workdir` the folder the
/// experiment's relative paths start from.
pub fn slurm_script(
    experiment: &Experiment,
    experiment_file: &Path,
    workdir: &Path,
    orchard: &Path,
    resources: &Resources,
    slurm: &Slurm,
) -> String {
    let units: Vec<String> = experiment.units().into_iter().map(|u| experiment.unit_name(u)).collect();
    let logs = experiment.out.join("slurm");
    let mut s = String::from("#!/bin/bash\n");
    s += &format!("# The {} units of {}, one array task each.\n", units.len(), experiment_file.display());
    s += &format!("#SBATCH --job-name=orchard-{}\n", job_name(experiment_file));
    s += &format!("#SBATCH --array=0-{}\n", units.len() - 1);
    s += &format!("#SBATCH --ntasks=1\n#SBATCH --cpus-per-task={}\n", resources.cpus);
    if resources.gpus > 0 {
        s += &format!("#SBATCH --gres=gpu:{}\n", resources.gpus);
    }
    if let Some(memory) = &resources.memory {
        s += &format!("#SBATCH --mem={memory}\n");
    }
    if let Some(partition) = &slurm.partition {
        s += &format!("#SBATCH --partition={partition}\n");
    }
    if let Some(time) = &slurm.time {
        s += &format!("#SBATCH --time={time}\n");
    }
    s += &format!("#SBATCH --output={}\n", logs.join("%A_%a.log").display());
    s += "set -euo pipefail\n";
    s += &format!("cd {}  # where relative paths of the experiment start\n", quote(&workdir.display().to_string()));
    s += &format!("units=({})\n", units.join(" "));
    s += "unit=${units[$SLURM_ARRAY_TASK_ID]}\n";
    // Array tasks have job ids of their own: a port from it keeps multi-GPU units on one node apart.
    let port = "$((20000 + SLURM_JOB_ID % 40000))";
    s += &unit_command(&quote(&orchard.display().to_string()), experiment_file, resources.gpus, port);
    s.push('\n');
    s
}

/// Settings of a Kubernetes Indexed Job.
#[derive(Clone, Debug, PartialEq)]
pub struct Kubernetes {
    /// The container image, with `orchard` on its `PATH`.
    pub image: String,
    /// The PersistentVolumeClaim of the shared volume holding the data, the experiment file and its directory.
    pub claim: String,
    /// Where the volume is mounted in the container; every path of the experiment must lie under it.
    pub mount: PathBuf,
    /// Units running at once (all when `None`).
    pub parallelism: Option<usize>,
}

/// A `batch/v1` Job with `completionMode: Indexed`: completion index i trains unit i. Refuses an experiment
/// whose file, data or directory is not under the volume's mount path, which the pods could not see.
pub fn kubernetes_job(
    experiment: &Experiment,
    experiment_file: &Path,
    resources: &Resources,
    k8s: &Kubernetes,
) -> Result<serde_json::Value> {
    for (what, path) in [("experiment file", experiment_file), ("data", &experiment.data), ("out", &experiment.out)] {
        if !path.starts_with(&k8s.mount) {
            return Err(ExperimentError::File {
                path: experiment_file.to_path_buf(),
                message: format!(
                    "the {what} {} is not under the volume's mount path {}: the pods would not see it",
                    path.display(),
                    k8s.mount.display()
                ),
            });
        }
    }
    let units: Vec<String> = experiment.units().into_iter().map(|u| experiment.unit_name(u)).collect();
    let script = format!(
        "set -eu\nset -- {}\nshift \"$JOB_COMPLETION_INDEX\"\nunit=\"$1\"\n{}\n",
        units.join(" "),
        unit_command("orchard", experiment_file, resources.gpus, "29500")
    );
    let mut limits = serde_json::Map::new();
    if resources.gpus > 0 {
        limits.insert("nvidia.com/gpu".into(), json!(resources.gpus.to_string()));
    }
    let mut requests = serde_json::Map::new();
    requests.insert("cpu".into(), json!(resources.cpus.to_string()));
    if let Some(memory) = &resources.memory {
        requests.insert("memory".into(), json!(memory));
    }
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": format!("orchard-{}", job_name(experiment_file)) },
        "spec": {
            "completionMode": "Indexed",
            "completions": units.len(),
            "parallelism": k8s.parallelism.unwrap_or(units.len()),
            // A failed unit is retried from its checkpoint, each index on its own.
            "backoffLimitPerIndex": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "unit",
                        "image": k8s.image,
                        "command": ["/bin/sh", "-c", script],
                        "resources": { "requests": requests, "limits": limits },
                        "volumeMounts": [{ "name": "runs", "mountPath": k8s.mount.display().to_string() }],
                    }],
                    "volumes": [{ "name": "runs", "persistentVolumeClaim": { "claimName": k8s.claim } }],
                }
            }
        }
    }))
}

/// A name for the job from the experiment file's stem, in the letters both schedulers accept.
fn job_name(experiment_file: &Path) -> String {
    let stem = experiment_file.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "experiment".into()
    } else {
        name.chars().take(40).collect()
    }
}

/// `word` quoted for a POSIX shell.
fn quote(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| format!("'{word}'"), |q| q.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(text: &str) -> Experiment {
        let head = "data = \"/runs/data\"\nout = \"/runs/exp\"\nfolds = 2\n";
        Experiment::parse(&format!("{head}{text}"), Path::new("/runs/My Exp.toml")).unwrap()
    }

    const MEMBERS: &str = "[[member]]\nname = \"b0\"\narch = \"efficientnet_b0\"\ndevice = \"cuda\"\n\
                           [[member]]\nname = \"r50\"\narch = \"resnet50_v2\"\nworkers = 6\n";

    #[test]
    fn a_slurm_array_has_one_task_per_unit_and_asks_for_the_members_resources() {
        let e = experiment(MEMBERS);
        let resources = Resources::of(&e);
        assert_eq!(resources, Resources { gpus: 1, cpus: 6, memory: None });
        let slurm = Slurm { partition: Some("gpu".into()), time: Some("12:00:00".into()) };
        let file = Path::new("/runs/My Exp.toml");
        let script = slurm_script(&e, file, Path::new("/runs"), Path::new("/opt/orchard"), &resources, &slurm);
        for line in [
            "#SBATCH --job-name=orchard-my-exp",
            "#SBATCH --array=0-3",
            "#SBATCH --cpus-per-task=6",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=12:00:00",
            "#SBATCH --output=/runs/exp/slurm/%A_%a.log",
            "cd /runs  # where relative paths of the experiment start",
            "units=(b0/0 b0/1 r50/0 r50/1)",
            "exec /opt/orchard run '/runs/My Exp.toml' --only \"$unit\"",
        ] {
            assert!(script.lines().any(|l| l == line), "{line} missing from\n{script}");
        }
        let four = Resources { gpus: 4, ..resources };
        let script = slurm_script(&e, file, Path::new("/runs"), Path::new("/opt/orchard"), &four, &slurm);
        assert!(script.contains("exec /opt/orchard launch --nproc-per-node 4 --master-port \"$((20000 + SLURM_JOB_ID % 40000))\" -- run"), "{script}");
    }

    #[test]
    fn an_indexed_job_has_one_completion_per_unit_and_refuses_paths_off_the_volume() {
        let e = experiment(MEMBERS);
        let k8s =
            Kubernetes { image: "orchard:1".into(), claim: "runs".into(), mount: "/runs".into(), parallelism: Some(2) };
        let job = kubernetes_job(&e, Path::new("/runs/My Exp.toml"), &Resources::of(&e), &k8s).unwrap();
        assert_eq!(job["spec"]["completionMode"], "Indexed");
        assert_eq!(job["spec"]["completions"], 4);
        assert_eq!(job["spec"]["parallelism"], 2);
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(container["volumeMounts"][0]["mountPath"], "/runs");
        let script = container["command"][2].as_str().unwrap();
        assert!(script.contains("set -- b0/0 b0/1 r50/0 r50/1\nshift \"$JOB_COMPLETION_INDEX\""), "{script}");
        let elsewhere = Kubernetes { mount: "/data".into(), ..k8s };
        let err = kubernetes_job(&e, Path::new("/runs/My Exp.toml"), &Resources::of(&e), &elsewhere).unwrap_err();
        assert!(err.to_string().contains("is not under the volume's mount path /data"), "{err}");
    }
}
