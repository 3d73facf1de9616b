//! `orchard launch`: one node's share of a data-parallel job, as `torchrun` starts it: N processes of an
//! `orchard` command, each told its place by torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), which `orchard train` joins into one process group.
//!
//! The launcher waits for all of them. When one fails the others are stopped and the launcher exits with the
//! failed one's code, naming its rank: a job never hangs on a dead replica, and no replica outlives the
//! launcher (each dies with it, by `PR_SET_PDEATHSIG`).

use std::ffi::OsString;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use orchard_torch::distributed::DEFAULT_PORT;

use crate::children::{describe, die_with_parent, openmp_threads};
use crate::usage::UsageError;

/// Start N processes of an orchard command on this node as one data-parallel job, and wait for them.
#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// Processes on this node: one per GPU, or (on CPUs) each with its share of the cores.
    #[arg(long, default_value_t = 1)]
    pub nproc_per_node: usize,
    /// Nodes in the job, each running `orchard launch` with the same flags but its own --node-rank.
    #[arg(long, default_value_t = 1)]
    pub nnodes: usize,
    /// This node's place among the nodes, 0 ≤ R < --nnodes; node 0 hosts the rendezvous.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// Address of node 0, reachable from every node.
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// Port node 0's rank 0 listens on for the rendezvous.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub master_port: u16,
    /// The orchard command every process runs, after `--`: e.g. `-- train --config member.toml`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// A process of the job that failed; the launcher exits with its code.
#[derive(Debug, thiserror::Error)]
#[error("rank {rank} {how}; stopped the other ranks")]
pub struct RankFailed {
    pub rank: usize,
    how: String,
    /// Its exit code (none when a signal ended it).
    pub code: Option<i32>,
}

pub fn run(args: LaunchArgs) -> Result<()> {
    if args.nproc_per_node == 0 || args.nnodes == 0 {
        return Err(UsageError("--nproc-per-node and --nnodes must be at least 1".into()).into());
    }
    if args.node_rank >= args.nnodes {
        let message = format!("--node-rank {} is not below --nnodes {}", args.node_rank, args.nnodes);
        return Err(UsageError(message).into());
    }
    let exe = std::env::current_exe()?;
    let world = args.nproc_per_node * args.nnodes;
    let threads = openmp_threads(args.nproc_per_node);
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(args.nproc_per_node);
    for local in 0..args.nproc_per_node {
        let rank = args.node_rank * args.nproc_per_node + local;
        let mut command = Command::new(&exe);
        command
            .args(&args.command)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("LOCAL_WORLD_SIZE", args.nproc_per_node.to_string())
            .env("GROUP_RANK", args.node_rank.to_string())
            .env("MASTER_ADDR", &args.master_addr)
            .env("MASTER_PORT", args.master_port.to_string());
        if let Some(threads) = threads {
            command.env("OMP_NUM_THREADS", threads.to_string());
        }
        die_with_parent(&mut command);
        match command.spawn() {
            Ok(child) => children.push((rank, child)),
            Err(e) => {
                stop(&mut children);
                return Err(anyhow::anyhow!("starting rank {rank} ({}): {e}", exe.display()));
            }
        }
    }
    wait_all(children)
}

/// Waits until every process has succeeded, or one has failed (then stops the rest).
fn wait_all(mut children: Vec<(usize, Child)>) -> Result<()> {
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            let (rank, child) = &mut children[i];
            match child.try_wait()? {
                Some(status) if status.success() => {
                    children.swap_remove(i);
                }
                Some(status) => {
                    let failed = RankFailed { rank: *rank, how: describe(status), code: status.code() };
                    children.swap_remove(i);
                    stop(&mut children);
                    return Err(failed.into());
                }
                None => i += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Kills and reaps `children`.
fn stop(children: &mut Vec<(usize, Child)>) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
    }
    for (_, mut child) in children.drain(..) {
        let _ = child.wait();
    }
}
