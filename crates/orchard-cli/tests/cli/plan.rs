//! `orchard plan` against the real schedulers' formats: a single-node Slurm cluster (Debian's slurmctld,
//! slurmd and munged, started as root on private ports and sockets) runs the planned job array, and the
//! Kubernetes Indexed Job validates against the Job schema (PyPI's `kubernetes-validate`) while its pods'
//! script, run here once per completion index, trains every unit. Both end in a gathered, checked submission.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use orchard_files::RunState;

use crate::common::{check_submission, ok, s, synth, text};

/// A tiny experiment in `dir`: one member × three folds, one epoch at 32 px.
fn experiment(dir: &Path) -> PathBuf {
    let data = synth(&dir.join("data"), 24, 6, "48", 21);
    let file = dir.join("experiment.toml");
    let text = format!(
        "data = {data:?}\nout = {:?}\nfolds = 3\nseed = 1\n[defaults]\nepochs = 1\nbatch = 8\nworkers = 1\n\
         [[member]]\nname = \"mnv2\"\narch = \"mobilenet_v2\"\nsize = 32\n",
        dir.join("exp")
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// Every unit of the tiny experiment finished its epoch; gathering it gives a submission that passes.
fn assert_trained_and_gathered(dir: &Path, experiment: &Path) {
    for fold in 0..3 {
        let last = dir.join(format!("exp/members/mnv2/fold{fold}/last.ckpt"));
        assert_eq!(RunState::read(&last).unwrap_or_else(|e| panic!("fold {fold}: {e}")).epochs_done, 1);
    }
    ok(&["run", s(experiment), "--gather", "--quiet"]);
    check_submission(&dir.join("data"), &dir.join("exp/submission.csv"), "multi-class");
}

fn run(program: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup.sh installs it)"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A one-node Slurm cluster of this machine, stopped when dropped.
struct SlurmCluster {
    dir: PathBuf,
}

impl SlurmCluster {
    fn start(dir: &Path) -> SlurmCluster {
        let dir = dir.to_path_buf();
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut key = vec![0u8; 1024];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut key).unwrap();
        std::fs::write(dir.join("munge/key"), key).unwrap();
        Command::new("chmod").args(["700", s(&dir.join("munge"))]).status().unwrap();
        Command::new("chmod").args(["600", s(&dir.join("munge/key"))]).status().unwrap();
        let munge = |file: &str| dir.join("munge").join(file);
        let out = run(
            "munged",
            &[
                "--force",
                &format!("--socket={}", s(&munge("sock"))),
                &format!("--key-file={}", s(&munge("key"))),
                &format!("--log-file={}", s(&munge("log"))),
                &format!("--pid-file={}", s(&munge("pid"))),
                &format!("--seed-file={}", s(&munge("seed"))),
            ],
            &[],
        );
        assert!(out.status.success(), "munged: {} (this test needs root)", text(&out));
        let host = String::from_utf8(run("hostname", &[], &[]).stdout).unwrap().trim().to_string();
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let conf = format!(
            "ClusterName=orchard\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser=root\nSlurmdUser=root\n\
             SlurmctldPort={}\nSlurmdPort={}\nAuthType=auth/munge\nAuthInfo=socket={}\nCredType=cred/munge\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\nSlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\nReturnToService=2\nMpiDefault=none\nSwitchType=switch/none\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
             PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            s(&munge("sock")),
            d = s(&dir),
        );
        std::fs::write(dir.join("slurm.conf"), conf).unwrap();
        let cluster = SlurmCluster { dir };
        for daemon in ["slurmctld", "slurmd"] {
            let out = run(daemon, &["-f", s(&cluster.conf())], &[]);
            assert!(out.status.success(), "{daemon}: {}", text(&out));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = cluster.command("sinfo", &["--noheader", "--format=%t"]);
            if String::from_utf8_lossy(&state.stdout).trim() == "idle" {
                return cluster;
            }
            assert!(Instant::now() < deadline, "the node never became idle: {}", text(&state));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// A Slurm client command against this cluster.
    fn command(&self, program: &str, args: &[&str]) -> Output {
        run(program, args, &[("SLURM_CONF", &self.conf())])
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        let _ = self.command("scontrol", &["shutdown"]);
        let _ = run("munged", &["--stop", &format!("--socket={}", s(&self.dir.join("munge/sock")))], &[]);
    }
}

#[test]
fn a_slurm_cluster_runs_the_planned_job_array_and_the_units_gather_into_a_submission() {
    let tmp = tempfile::tempdir().unwrap();
    let experiment = experiment(tmp.path());
    let script = tmp.path().join("units.sh");
    ok(&["plan", s(&experiment), "--emit", "slurm", "--cpus-per-unit", "1", "--time", "10:00", "--output", s(&script)]);
    let cluster = SlurmCluster::start(&tmp.path().join("slurm"));
    // --wait: sbatch returns when every array task has ended, with the array's exit code.
    let out = cluster.command("sbatch", &["--wait", "--parsable", s(&script)]);
    let logs: Vec<String> = std::fs::read_dir(tmp.path().join("exp/slurm"))
        .map(|d| d.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect())
        .unwrap_or_default();
    assert!(out.status.success(), "sbatch: {}\ntask logs:\n{}", text(&out), logs.join("\n---\n"));
    assert_eq!(logs.len(), 3, "one log per array task");
    assert_trained_and_gathered(tmp.path(), &experiment);
}

#[test]
fn the_kubernetes_indexed_job_validates_and_its_pod_script_trains_each_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let experiment = experiment(tmp.path());
    let manifest = tmp.path().join("job.json");
    let mount = s(tmp.path());
    ok(&[
        "plan",
        s(&experiment),
        "--emit",
        "k8s",
        "--image",
        "orchard:test",
        "--claim",
        "runs",
        "--mount",
        mount,
        "--output",
        s(&manifest),
    ]);
    let python = std::env::var("ORCHARD_PYTHON").expect("ORCHARD_PYTHON names the Python environment");
    let validator = Path::new(&python).with_file_name("kubernetes-validate");
    let validate = |file: &Path| run(s(&validator), &["--strict", s(file)], &[]);
    let out = validate(&manifest);
    assert!(out.status.success() && text(&out).contains("passed"), "{}", text(&out));
    // The validator is no rubber stamp: a completion mode the Job schema lacks is refused.
    let job: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let mut broken = job.clone();
    broken["spec"]["completions"] = serde_json::json!("three");
    std::fs::write(tmp.path().join("broken.json"), broken.to_string()).unwrap();
    assert!(!validate(&tmp.path().join("broken.json")).status.success());

    assert_eq!(job["spec"]["completions"], 3);
    let script = job["spec"]["template"]["spec"]["containers"][0]["command"][2].as_str().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_orchard")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for index in 0..3 {
        let out = Command::new("/bin/sh")
            .args(["-c", script])
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "completion index {index}: {}", text(&out));
    }
    assert_trained_and_gathered(tmp.path(), &experiment);
}
