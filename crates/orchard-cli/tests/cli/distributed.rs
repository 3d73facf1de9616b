//! Data-parallel training as a user runs it: `orchard launch` starting real `orchard train` processes that
//! rendezvous over TCP and average their gradients with libtorch's Gloo collectives and DDP's reducer: on
//! one host, and on two hosts (network namespaces joined by a veth pair, which needs root, as CI runs).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orchard_files::RunState;
use orchard_models::weights::checkpoint;
use tch::Tensor;

use crate::common::{cmd, synth, text};

/// A port no other test is listening on (the OS picks it; the listener is closed before the job binds it).
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// `orchard` with the words of `line`, one OpenMP thread per process so that both sides of a comparison sum
/// in the same order.
fn orchard_command(line: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchard"));
    command.args(line.split_whitespace()).env("OMP_NUM_THREADS", "1").env_remove("LD_LIBRARY_PATH");
    command
}

/// Runs `orchard_command(line)`, which must succeed; its output.
fn succeed(line: &str) -> String {
    let out = orchard_command(line).output().unwrap();
    assert!(out.status.success(), "orchard {line}: {}", text(&out));
    text(&out)
}

/// `orchard launch` of two local processes on a free port, up to its `--`.
fn launch_two() -> String {
    format!("launch --nproc-per-node 2 --master-port {} --", free_port())
}

/// The model's trained variables in a checkpoint: everything but batch-norm statistics, which each replica
/// accumulates from its own batches (rank 0's are kept, as DDP keeps them).
fn trained_weights(path: &Path) -> BTreeMap<String, Tensor> {
    let loaded = checkpoint::load::<RunState>(path).unwrap();
    loaded.group("model").into_iter().filter(|(name, _)| !name.contains("running_")).collect()
}

/// The trained weights of two checkpoints agree to 1e-5 relative, tensor by tensor.
fn assert_same_trained_weights(one: &Path, two: &Path) {
    let (a, b) = (trained_weights(one), trained_weights(two));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut compared = 0;
    for (name, x) in &a {
        let y = &b[name];
        let scale = x.abs().max().double_value(&[]).max(1e-6);
        let diff = (x - y).abs().max().double_value(&[]);
        assert!(diff / scale < 1e-5, "{name}: the replicas' weights differ by {diff} (scale {scale})");
        compared += usize::from(name.ends_with("weight"));
    }
    assert!(compared > 10, "only {compared} weights compared");
}

#[test]
fn two_replicas_take_the_same_steps_as_one_process_accumulating_their_batches() {
    let tmp = tempfile::tempdir().unwrap();
    // 25 images in 5 folds: 20 train in 4 batches of 5 (2 steps of 2 per epoch), 5 validate (shares of 3
    // and 2). The first epoch trains the head alone, the second everything: the reducer follows the change.
    let data = synth(&tmp.path().join("data"), 25, 0, "64x48", 4);
    let common = format!(
        "train --data {} --size 32 --batch 5 --epochs 2 --freeze-epochs 1 --folds 5 --fold 2 --dropout 0 \
         --drop-path 0 --ema 0.5 --schedule constant --lr 0.003 --workers 1 --quiet",
        data.display()
    );
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    succeed(&format!("{common} --accumulate 2 --out {}", one.display()));
    let log = succeed(&format!("{} {common} --out {}", launch_two(), two.display()));
    assert_eq!(log.matches("best epoch").count(), 1, "rank 0 alone reports: {log}");

    assert_same_trained_weights(&one.join("last.ckpt"), &two.join("last.ckpt"));
    // Every replica's images count in the loss of every step.
    let loss = |dir: &Path| -> Vec<f64> {
        let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        metrics.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().parse().unwrap()).collect()
    };
    let (la, lb) = (loss(&one), loss(&two));
    assert_eq!(la.len(), 2);
    for (x, y) in la.iter().zip(&lb) {
        assert!((x - y).abs() < 1e-6 * x.abs(), "training loss over every replica's images: {la:?} vs {lb:?}");
    }

    // The validation shares were gathered: the whole fold, in the single process's order.
    let ids = |dir: &Path| -> Vec<String> {
        let oof = std::fs::read_to_string(dir.join("oof.csv")).unwrap();
        oof.lines().map(|l| l.split(',').next().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&two), ids(&one));
    assert_eq!(ids(&two).len(), 1 + 5);
    let state = RunState::read(&two.join("last.ckpt")).unwrap();
    assert_eq!((state.replicas, state.epochs_done), (2, 2));
    let config = std::fs::read_to_string(two.join("config.toml")).unwrap();
    assert!(config.starts_with("# trained by 2 data-parallel replicas: global batch 2 × 5\n"), "{config}");
    assert!(two.join("best.ckpt").exists());
}

/// The relative L2 distance between two checkpoints' models, every variable (batch-norm statistics too).
fn model_distance(one: &Path, two: &Path) -> f64 {
    let (a, b) = (checkpoint::load::<RunState>(one).unwrap(), checkpoint::load::<RunState>(two).unwrap());
    let (a, b) = (a.group("model"), b.group("model"));
    let (mut norm, mut diff) = (0.0, 0.0);
    for (name, x) in a.iter().filter(|(_, x)| x.is_floating_point()) {
        let (x, y) = (x.to_kind(tch::Kind::Double), b[name].to_kind(tch::Kind::Double));
        norm += x.square().sum(tch::Kind::Double).double_value(&[]);
        diff += (&x - y).square().sum(tch::Kind::Double).double_value(&[]);
    }
    (diff / norm).sqrt()
}

#[test]
fn synchronised_batch_norm_replicas_train_as_one_process_on_their_global_batch() {
    let tmp = tempfile::tempdir().unwrap();
    // 20 images: two steps of a global batch of 10; at 64 px the deepest batch norms still pool 40 values.
    let data = synth(&tmp.path().join("data"), 20, 0, "96x72", 4);
    let common = format!(
        "train --data {} --size 64 --epochs 1 --dropout 0 --drop-path 0 --optimizer sgd --schedule constant          --lr 0.001 --workers 1 --quiet",
        data.display()
    );
    let run = |line: String, dir: &str| {
        succeed(&format!("{line} --out {}", tmp.path().join(dir).display()));
        tmp.path().join(dir).join("last.ckpt")
    };
    let one = run(format!("{common} --batch 10"), "one");
    let synced = run(format!("{} {common} --batch 5 --sync-bn", launch_two()), "synced");
    let local = run(format!("{} {common} --batch 5", launch_two()), "local");
    // Pooled statistics reach the single process's weights and running statistics (to summation order:
    // about 3e-7 here, as a second thread gives); each replica's own statistics do not (about 1e-3).
    let (synced, local) = (model_distance(&one, &synced), model_distance(&one, &local));
    assert!(synced < 1e-5, "synchronised batch norm is {synced} away from the global batch");
    assert!(local > 1e-4, "replicas' own statistics came within {local} of the global batch's");
}

#[test]
fn an_experiment_under_the_launcher_trains_every_unit_with_both_replicas_and_rank_0_gathers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 24, 6, "48", 13);
    // 3 folds of 24: 16 training images a unit, 4 batches of 4, two steps of two either way.
    let experiment = |out: &str, accumulate: usize| {
        let file = tmp.path().join(format!("{out}.toml"));
        let text = format!(
            "data = {data:?}\nout = {:?}\nfolds = 3\nseed = 1\n[defaults]\nepochs = 1\nbatch = 4\n\
             accumulate = {accumulate}\nworkers = 1\n[defaults.model]\ndropout = 0.0\n[defaults.schedule.function]\n\
             kind = \"constant\"\nlr = 0.003\n[[member]]\nname = \"mnv2\"\narch = \"mobilenet_v2\"\nsize = 32\n",
            tmp.path().join(out)
        );
        std::fs::write(&file, text).unwrap();
        file
    };
    let (one, two) = (experiment("one", 2), experiment("two", 1));
    succeed(&format!("run {} --quiet", one.display()));
    let log = succeed(&format!("{} run {}", launch_two(), two.display()));
    assert_eq!(log.matches("summary.json").count(), 1, "rank 0 alone gathers: {log}");
    assert_eq!(log.matches("report.html").count(), 1, "rank 0 alone writes the report: {log}");
    for fold in 0..3 {
        let unit = |out: &str| tmp.path().join(out).join(format!("members/mnv2/fold{fold}/last.ckpt"));
        assert_same_trained_weights(&unit("one"), &unit("two"));
        assert_eq!(RunState::read(&unit("two")).unwrap().replicas, 2);
    }
    crate::common::check_submission(&data, &tmp.path().join("two/submission.csv"), "multi-class");
}

/// The pid of rank `rank` among `launcher`'s children.
fn rank_pid(launcher: u32, rank: usize) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children")).ok()?;
    children.split_whitespace().filter_map(|p| p.parse().ok()).find(|pid: &u32| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == format!("RANK={rank}").as_bytes()))
    })
}

/// Starts two processes of `train` under `orchard launch`, sends `signal` to rank 1 once the run in `run` has
/// its first checkpoint, and waits at most a minute for the job to end: its status, its standard error, the
/// time it took after the signal, and rank 0's pid.
fn signal_rank_1(train: &str, run: &Path, signal: &str) -> (std::process::ExitStatus, String, Duration, u32) {
    let mut launcher = orchard_command(&format!("{} {train}", launch_two()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !run.join("last.ckpt").exists() {
        assert!(launcher.try_wait().unwrap().is_none(), "the job ended before its first checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (rank0, rank1) = (rank_pid(launcher.id(), 0).unwrap(), rank_pid(launcher.id(), 1).unwrap());
    let signalled = Instant::now();
    Command::new("kill").args([&format!("-{signal}"), &rank1.to_string()]).status().unwrap();
    let status = wait_with_deadline(&mut launcher, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the job outlived rank 1's SIG{signal}"));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut launcher.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr, signalled.elapsed(), rank0)
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_killed_replica_ends_the_job_at_once_a_hung_one_after_the_timeout_and_the_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 16, 0, "64x48", 5);
    let run = tmp.path().join("run");
    let epochs = 40;
    let train = format!(
        "train --data {} --size 32 --batch 4 --epochs {epochs} --folds 4 --fold 0 \
         --workers 1 --quiet --out {}",
        data.display(),
        run.display()
    );
    let (status, stderr, waited, rank0) = signal_rank_1(&train, &run, "KILL");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rank 1 was killed by signal 9"), "{stderr}");
    assert!(!Path::new(&format!("/proc/{rank0}")).exists(), "rank 0 outlived the job");
    eprintln!("the job ended {waited:?} after rank 1 was killed");

    let done = RunState::read(&run.join("last.ckpt")).unwrap().epochs_done;
    assert!(done < epochs, "the job finished before the kill");
    let port = free_port();
    let out = orchard_command(&format!("launch --nproc-per-node 2 --master-port {port} -- {train} --resume"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let state = RunState::read(&run.join("last.ckpt")).unwrap();
    assert_eq!(state.epochs_done, epochs);
    assert_eq!(state.history.len() as u32, epochs);
    // The default schedule is the notebook's for two replicas (LR_MAX 2e-4), before the kill and after.
    let reference = orchard_metrics::schedule::Reference::keras_notebook(2);
    for record in &state.history {
        assert!(
            (record.lr - reference.lr(f64::from(record.epoch))).abs() < 1e-15,
            "epoch {}: {}",
            record.epoch,
            record.lr
        );
    }

    // The all-reduce alone, timed over the job; outside a job it says how to start one.
    let out = cmd(&format!("launch --nproc-per-node 2 --master-port {port} -- bench allreduce --mib 1 --steps 2"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1.0 MiB of f32 (1 buckets of at most 25 MiB) over 2 ranks (Gloo): median"),
        "{}",
        text(&out)
    );
    let out = cmd("bench allreduce --mib 1");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("orchard launch --nproc-per-node 2 -- bench allreduce"), "{}", text(&out));

    // A rank that hangs (stopped) fails the job once the others' collective times out, named as behind them.
    let hung = tmp.path().join("hung");
    let train = format!(
        "train --data {} --size 32 --batch 4 --epochs {epochs} --workers 1 --quiet --replica-timeout 5 --out {}",
        data.display(),
        hung.display()
    );
    let (status, stderr, waited, rank0) = signal_rank_1(&train, &hung, "STOP");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rank 0 of 2")
            && stderr.contains("hung, dead or slow, as this rank waited at point")
            && stderr.contains("rank 1 (at synchronisation point")
            && stderr.contains("silent: stopped or gone"),
        "{stderr}"
    );
    assert!(stderr.contains("rank 0 exited with code 1; stopped the other ranks"), "{stderr}");
    assert!(waited >= Duration::from_secs(4), "ended after {waited:?}, before the 5 s timeout");
    assert!(!Path::new(&format!("/proc/{rank0}")).exists());

    // A rank's bad input is the job's: exit code 2, the culprit named.
    let out = cmd(&format!(
        "launch --nproc-per-node 2 --master-port {port} -- train --data /nonexistent/data --out {}",
        tmp.path().join("x").display()
    ));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent/data"), "{}", text(&out));
}

/// Two network namespaces joined by a veth pair: two hosts on one machine, each with its own network stack.
struct TwoHosts {
    names: [String; 2],
}

/// The addresses of the two hosts on their link.
const HOSTS: [&str; 2] = ["10.77.0.1", "10.77.0.2"];

fn ip(args: &str) {
    let out = Command::new("ip").args(args.split_whitespace()).output().expect("iproute2's `ip` runs");
    assert!(out.status.success(), "ip {args}: {} (this test makes network namespaces: it needs root)", text(&out));
}

impl TwoHosts {
    fn new() -> TwoHosts {
        let id = std::process::id();
        let names = [format!("orchard{id}a"), format!("orchard{id}b")];
        let hosts = TwoHosts { names: names.clone() };
        let veth = [format!("or{id}a"), format!("or{id}b")];
        for name in &names {
            ip(&format!("netns add {name}"));
        }
        ip(&format!("link add {} type veth peer name {}", veth[0], veth[1]));
        for i in 0..2 {
            ip(&format!("link set {} netns {}", veth[i], names[i]));
            ip(&format!("-n {} addr add {}/24 dev {}", names[i], HOSTS[i], veth[i]));
            ip(&format!("-n {} link set {} up", names[i], veth[i]));
            ip(&format!("-n {} link set lo up", names[i]));
        }
        hosts
    }

    /// `orchard` with the words of `line` on host `i`.
    fn orchard(&self, i: usize, line: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.names[i], env!("CARGO_BIN_EXE_orchard")])
            .args(line.split_whitespace())
            .env("OMP_NUM_THREADS", "1")
            .env_remove("LD_LIBRARY_PATH");
        command
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status(); // takes its end of the link along
        }
    }
}

#[test]
fn two_hosts_joined_by_a_network_link_train_one_member_together() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 25, 0, "64x48", 6);
    let common = format!(
        "train --data {} --size 32 --batch 5 --epochs 2 --folds 5 --fold 1 --dropout 0 --drop-path 0 \
         --schedule constant --lr 0.003 --workers 1 --quiet",
        data.display()
    );
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    succeed(&format!("{common} --accumulate 2 --out {}", one.display()));

    let hosts = TwoHosts::new();
    let nodes: Vec<Child> = (0..2)
        .map(|node| {
            let launch = format!("launch --nnodes 2 --node-rank {node} --nproc-per-node 1 --master-addr {}", HOSTS[0]);
            hosts
                .orchard(node, &format!("{launch} -- {common} --out {}", two.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (node, child) in nodes.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "node {node}: {}", text(&out));
    }
    assert_same_trained_weights(&one.join("last.ckpt"), &two.join("last.ckpt"));
    assert_eq!(RunState::read(&two.join("last.ckpt")).unwrap().replicas, 2);
}
