//! Data-parallel training's collectives, through libtorch's own c10d (`csrc/distributed.cpp`): a process
//! group that rendezvouses through a TCP store, with the Gloo backend on the CPU; and DDP's `Reducer`, which
//! averages gradients over the processes in buckets while the backward pass is still running.
//!
//! [`Rendezvous::from_env`] reads where a process stands the way torchrun and Slurm say it, so the same
//! binary runs under `orchard launch`, torchrun-style launchers, `srun`, or a Kubernetes Job.

use std::ffi::{c_char, c_int, CStr, CString};
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use tch::Tensor;
use torch_sys::C_tensor;

#[repr(C)]
struct OrchardGroup {
    _private: [u8; 0],
}

#[repr(C)]
struct OrchardReducer {
    _private: [u8; 0],
}

extern "C" {
    fn orchard_group_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        bind: *const c_char,
        nccl: c_int,
        out: *mut *mut OrchardGroup,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_group_free(group: *mut OrchardGroup);
    fn orchard_group_broadcast(
        group: *mut OrchardGroup,
        tensors: *const *mut C_tensor,
        n: usize,
        root: c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_group_allgather(
        group: *mut OrchardGroup,
        input: *mut C_tensor,
        output: *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_group_allreduce_sum(
        group: *mut OrchardGroup,
        tensor: *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_group_sum_differentiable(
        group: *mut OrchardGroup,
        input: *mut C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_group_advance(group: *mut OrchardGroup, err: *mut c_char, len: usize) -> c_int;
    fn orchard_group_progress_get(
        group: *mut OrchardGroup,
        timeout_ms: i64,
        listen_ms: i64,
        steps: *mut i64,
        silent: *mut c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_group_barrier(group: *mut OrchardGroup, timeout_ms: i64, err: *mut c_char, len: usize) -> c_int;
    fn orchard_reducer_new(
        group: *mut OrchardGroup,
        params: *const *mut C_tensor,
        n: usize,
        bucket_bytes: i64,
        out: *mut *mut OrchardReducer,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn orchard_reducer_free(reducer: *mut OrchardReducer);
    fn orchard_reducer_before_forward(reducer: *mut OrchardReducer, err: *mut c_char, len: usize) -> c_int;
    fn orchard_reducer_before_backward(reducer: *mut OrchardReducer, err: *mut c_char, len: usize) -> c_int;
}

/// Runs one bridge call with an error buffer and turns its status into a `Result`.
fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut err = [0 as c_char; 2048];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        Ok(())
    } else {
        // SAFETY: the bridge writes a NUL-terminated message that fits the buffer.
        Err(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned())
    }
}

fn handle(t: &Tensor) -> *mut C_tensor {
    t.as_ptr() as *mut C_tensor
}

/// Where this process stands among the processes of one data-parallel job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendezvous {
    /// This process's rank, 0..world.
    pub rank: usize,
    /// The number of processes.
    pub world: usize,
    /// This process's index on its machine (which GPU it takes).
    pub local_rank: usize,
    /// The number of processes on this machine.
    pub local_world: usize,
    /// The host of rank 0, which serves the TCP store.
    pub master_addr: String,
    pub master_port: u16,
}

/// The port rank 0 listens on when nothing says which (torchrun's default).
pub const DEFAULT_PORT: u16 = 29500;

impl Rendezvous {
    /// The job this process belongs to, from torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
    /// `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) or else Slurm's (`SLURM_PROCID`, `SLURM_NTASKS`,
    /// `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE`, `SLURM_NODELIST`, and a port derived from `SLURM_JOB_ID`
    /// when `MASTER_PORT` is unset). `None` for a process on its own (no variables, or a world of one).
    pub fn from_env() -> Result<Option<Rendezvous>, String> {
        Rendezvous::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Rendezvous::from_env`] over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Rendezvous>, String> {
        let number = |name: &str| -> Result<Option<usize>, String> {
            var(name).map(|v| v.trim().parse().map_err(|_| format!("{name}={v:?} is not a number"))).transpose()
        };
        let port = |slurm_job: Option<usize>| -> Result<u16, String> {
            match var("MASTER_PORT") {
                Some(p) => p.trim().parse().map_err(|_| format!("MASTER_PORT={p:?} is not a port")),
                // Slurm gives no port: one derived from the job id keeps concurrent jobs apart.
                None => Ok(slurm_job.map_or(DEFAULT_PORT, |id| (20000 + id % 40000) as u16)),
            }
        };
        let r = if let Some(world) = number("WORLD_SIZE")? {
            let rank = number("RANK")?.ok_or("WORLD_SIZE is set but RANK is not")?;
            Rendezvous {
                rank,
                world,
                local_rank: number("LOCAL_RANK")?.unwrap_or(rank),
                local_world: number("LOCAL_WORLD_SIZE")?.unwrap_or(world),
                master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
                master_port: port(None)?,
            }
        } else if let Some(world) = number("SLURM_NTASKS")? {
            let rank = number("SLURM_PROCID")?.ok_or("SLURM_NTASKS is set but SLURM_PROCID is not")?;
            let nodes = var("SLURM_NODELIST").or_else(|| var("SLURM_JOB_NODELIST")).unwrap_or_default();
            let first = first_host(&nodes).unwrap_or_else(|| "127.0.0.1".into());
            let per_node = var("SLURM_NTASKS_PER_NODE").and_then(|v| v.split(['(', ',']).next()?.trim().parse().ok());
            Rendezvous {
                rank,
                world,
                local_rank: number("SLURM_LOCALID")?.unwrap_or(0),
                local_world: per_node.unwrap_or(world),
                master_addr: var("MASTER_ADDR").unwrap_or(first),
                master_port: port(number("SLURM_JOB_ID")?)?,
            }
        } else {
            return Ok(None);
        };
        if r.world == 0 || r.rank >= r.world || r.local_rank >= r.local_world.max(1) {
            return Err(format!(
                "rank {} of a world of {} (local rank {} of {}) does not fit",
                r.rank, r.world, r.local_rank, r.local_world
            ));
        }
        Ok((r.world > 1).then_some(r))
    }
}

/// The first host of a Slurm node list: `node7`, `node[3-5,9]` → `node3`, `a[01-02],b1` → `a01`.
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    if list.is_empty() {
        return None;
    }
    let (prefix, rest) = match list.find(['[', ',']) {
        Some(i) if list.as_bytes()[i] == b'[' => (&list[..i], &list[i + 1..]),
        Some(i) => return Some(list[..i].to_string()),
        None => return Some(list.to_string()),
    };
    let first = rest.split([',', '-', ']']).next()?;
    Some(format!("{prefix}{first}"))
}

/// This host's address on the route to `host`: where Gloo listens so that the other hosts reach it. (The
/// address the hostname resolves to may belong to another interface, or be a loopback one; PyTorch then
/// needs `GLOO_SOCKET_IFNAME`.) A UDP socket's connect only picks the route: nothing is sent.
pub fn address_towards(host: &str, port: u16) -> Option<String> {
    let target = (host, port).to_socket_addrs().ok()?.next()?;
    let any: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

/// How far a rank got, as the job's store knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The synchronisation points it has reached ([`ProcessGroup::advance`]); `None` before the first.
    pub reached: Option<u64>,
    /// Whether its heartbeat (a thread of every rank) stood still: the process is stopped or gone.
    pub silent: bool,
}

/// Which backend carries a job's CUDA tensors (CPU tensors always go through Gloo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaBackend {
    /// NCCL, GPU to GPU: what data-parallel training on GPUs uses.
    Nccl,
    /// Gloo, through host memory: for jobs without CUDA tensors.
    Gloo,
}

/// The processes of one job, joined: collectives over Gloo, and NCCL for CUDA tensors.
pub struct ProcessGroup {
    ptr: *mut OrchardGroup,
    rank: usize,
    world: usize,
}

// SAFETY: c10d's process group is thread-safe: collectives from several threads (the training loop, autograd's
// backward pass) are queued in call order.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl ProcessGroup {
    /// Joins the job `rendezvous` describes; rank 0 serves the TCP store. Every collective (the rendezvous
    /// included) fails after `timeout` instead of hanging when a process is gone. NCCL needs a GPU and a
    /// build that has it.
    pub fn join(rendezvous: &Rendezvous, timeout: Duration, cuda: CudaBackend) -> Result<ProcessGroup, String> {
        let host = CString::new(rendezvous.master_addr.as_str()).map_err(|_| "the master address holds a NUL")?;
        if cuda == CudaBackend::Nccl {
            crate::cuda_libs::load_nccl()?;
        }
        let mut ptr = std::ptr::null_mut();
        let (rank, world) = (rendezvous.rank as c_int, rendezvous.world as c_int);
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let bind = match std::env::var_os("GLOO_SOCKET_IFNAME") {
            Some(_) => String::new(), // the interfaces the user named, as PyTorch takes them
            None => address_towards(&rendezvous.master_addr, rendezvous.master_port).unwrap_or_default(),
        };
        let bind = CString::new(bind).expect("an IP address holds no NUL");
        call(|err, len| unsafe {
            orchard_group_new(
                host.as_ptr(),
                c_int::from(rendezvous.master_port),
                rank,
                world,
                timeout_ms,
                bind.as_ptr(),
                c_int::from(cuda == CudaBackend::Nccl),
                &mut ptr,
                err,
                len,
            )
        })
        .map_err(|e| {
            format!(
                "joining {} ranks at {}:{} as rank {rank}: {e}",
                world, rendezvous.master_addr, rendezvous.master_port
            )
        })?;
        Ok(ProcessGroup { ptr, rank: rendezvous.rank, world: rendezvous.world })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// Copies rank `root`'s `tensors` into every rank's, in place.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<(), String> {
        let h: Vec<*mut C_tensor> = tensors.iter().map(handle).collect();
        // SAFETY: `h` holds live tensor handles for the duration of the call.
        call(|err, len| unsafe { orchard_group_broadcast(self.ptr, h.as_ptr(), h.len(), root as c_int, err, len) })
    }

    /// Every rank's `input` (the same shape on every rank), stacked in rank order: world × input's shape.
    pub fn all_gather(&self, input: &Tensor) -> Result<Tensor, String> {
        let mut shape = vec![self.world as i64];
        shape.extend(input.size());
        let output = Tensor::zeros(shape.as_slice(), (input.kind(), input.device()));
        let input = input.contiguous();
        // SAFETY: both handles are live for the duration of the call.
        call(|err, len| unsafe { orchard_group_allgather(self.ptr, handle(&input), handle(&output), err, len) })?;
        Ok(output)
    }

    /// Sums `tensor` over the ranks, in place.
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<(), String> {
        // SAFETY: the handle is live for the duration of the call.
        call(|err, len| unsafe { orchard_group_allreduce_sum(self.ptr, handle(tensor), err, len) })
    }

    /// The sum of `input` over the ranks, as a tensor autograd differentiates: the gradient of each rank's
    /// input is the sum of the ranks' output gradients, the backward pass running the same collective.
    pub fn sum_differentiable(&self, input: &Tensor) -> Result<Tensor, String> {
        let mut out = std::ptr::null_mut();
        // SAFETY: the handle is live for the call; `out` receives a new tensor handle that tch takes over.
        call(|err, len| unsafe { orchard_group_sum_differentiable(self.ptr, handle(input), &mut out, err, len) })?;
        // SAFETY: `out` is a tensor allocated as tch allocates its own.
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// Counts one more synchronisation point this rank has reached and records the count in the job's store
    /// (a [`Reducer`] does so for every gradient bucket it hands over): the same sequence on every rank.
    pub fn advance(&self) -> Result<(), String> {
        // SAFETY: the group is live.
        call(|err, len| unsafe { orchard_group_advance(self.ptr, err, len) })
    }

    /// Every rank's progress, read within `timeout`: after a failed collective, the ranks behind, or silent
    /// while this one listened for `listen`, are the ones that hang or died.
    pub fn progress(&self, timeout: Duration, listen: Duration) -> Result<Vec<Progress>, String> {
        let mut steps = vec![-1i64; self.world];
        let mut silent = vec![0 as c_int; self.world];
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
        let (timeout, listen) = (ms(timeout), ms(listen));
        // SAFETY: `steps` and `silent` hold one slot per rank for the duration of the call.
        call(|err, len| unsafe {
            orchard_group_progress_get(self.ptr, timeout, listen, steps.as_mut_ptr(), silent.as_mut_ptr(), err, len)
        })?;
        Ok(steps
            .into_iter()
            .zip(silent)
            .map(|(step, silent)| Progress { reached: u64::try_from(step).ok(), silent: silent != 0 })
            .collect())
    }

    /// Waits until every rank has reached this point, at most `timeout` (else the group's timeout).
    pub fn barrier(&self, timeout: Option<Duration>) -> Result<(), String> {
        let ms = timeout.map_or(0, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX).max(1));
        // SAFETY: the group is live.
        call(|err, len| unsafe { orchard_group_barrier(self.ptr, ms, err, len) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by `orchard_group_new` and freed once; reducers keep their own reference.
        unsafe { orchard_group_free(self.ptr) }
    }
}

/// DDP's gradient reducer over a set of parameters (see the module documentation).
pub struct Reducer {
    ptr: *mut OrchardReducer,
}

// SAFETY: used from the training loop's thread; its hooks run on libtorch's autograd threads by design.
unsafe impl Send for Reducer {}

/// DDP's default bucket size.
pub const BUCKET_BYTES: usize = 25 * 1024 * 1024;

impl Reducer {
    /// A reducer averaging the gradients of `params` (all requiring gradients, in the same order on every
    /// rank) over `group`, in buckets of up to `bucket_bytes`.
    pub fn new(group: &ProcessGroup, params: &[Tensor], bucket_bytes: usize) -> Result<Reducer, String> {
        let h: Vec<*mut C_tensor> = params.iter().map(handle).collect();
        let mut ptr = std::ptr::null_mut();
        let bytes = i64::try_from(bucket_bytes).unwrap_or(i64::MAX);
        // SAFETY: `h` holds live tensor handles for the duration of the call; the reducer keeps its own.
        call(|err, len| unsafe { orchard_reducer_new(group.ptr, h.as_ptr(), h.len(), bytes, &mut ptr, err, len) })?;
        Ok(Reducer { ptr })
    }

    /// Before every forward pass.
    pub fn before_forward(&mut self) -> Result<(), String> {
        // SAFETY: the reducer is live.
        call(|err, len| unsafe { orchard_reducer_before_forward(self.ptr, err, len) })
    }

    /// Before a backward pass whose gradients are to be averaged over the ranks; a backward pass without it
    /// accumulates gradients locally (the micro-batches of a step before its last).
    pub fn before_backward(&mut self) -> Result<(), String> {
        // SAFETY: the reducer is live.
        call(|err, len| unsafe { orchard_reducer_before_backward(self.ptr, err, len) })
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: created by `orchard_reducer_new` and freed once.
        unsafe { orchard_reducer_free(self.ptr) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn torchrun_and_slurm_variables_place_a_process() {
        let env = vars(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "n1"),
            ("MASTER_PORT", "1234"),
        ]);
        let r = Rendezvous::from_vars(|k| env.get(k).cloned()).unwrap().unwrap();
        assert_eq!(
            r,
            Rendezvous {
                rank: 3,
                world: 4,
                local_rank: 1,
                local_world: 2,
                master_addr: "n1".into(),
                master_port: 1234
            }
        );
        let env = vars(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS_PER_NODE", "4(x2)"),
            ("SLURM_NODELIST", "gpu[07-08]"),
            ("SLURM_JOB_ID", "12345"),
        ]);
        let r = Rendezvous::from_vars(|k| env.get(k).cloned()).unwrap().unwrap();
        assert_eq!((r.rank, r.world, r.local_rank, r.local_world), (5, 8, 1, 4));
        assert_eq!((r.master_addr.as_str(), r.master_port), ("gpu07", 20000 + 12345));
        assert_eq!(Rendezvous::from_vars(|_| None).unwrap(), None, "no variables: a process on its own");
        let one = vars(&[("RANK", "0"), ("WORLD_SIZE", "1")]);
        assert_eq!(Rendezvous::from_vars(|k| one.get(k).cloned()).unwrap(), None, "a world of one");
        let bad = vars(&[("RANK", "2"), ("WORLD_SIZE", "2")]);
        assert!(Rendezvous::from_vars(|k| bad.get(k).cloned()).unwrap_err().contains("does not fit"));
        let bad = vars(&[("WORLD_SIZE", "two")]);
        assert!(Rendezvous::from_vars(|k| bad.get(k).cloned()).unwrap_err().contains("WORLD_SIZE=\"two\""));
    }

    #[test]
    fn the_address_towards_a_host_is_on_the_route_to_it() {
        assert_eq!(address_towards("127.0.0.1", 29500).as_deref(), Some("127.0.0.1"));
        assert_eq!(
            address_towards("localhost", 29500).as_deref().map(|a| a.starts_with("127.") || a == "::1"),
            Some(true)
        );
        assert_eq!(address_towards("no-such-host.invalid", 29500), None);
    }

    #[test]
    fn slurm_node_lists_give_their_first_host() {
        for (list, first) in [("node7", "node7"), ("node[3-5,9]", "node3"), ("a[01-02],b1", "a01"), ("x1,x2", "x1")] {
            assert_eq!(first_host(list).as_deref(), Some(first), "{list}");
        }
        assert_eq!(first_host(""), None);
    }

    /// A job of one process on this host, on a port above `base` that no other test process uses.
    fn alone(base: u16) -> Rendezvous {
        let port = base + (std::process::id() % 1000) as u16;
        Rendezvous {
            rank: 0,
            world: 1,
            local_rank: 0,
            local_world: 1,
            master_addr: "127.0.0.1".into(),
            master_port: port,
        }
    }

    #[test]
    fn a_group_of_one_broadcasts_gathers_and_reduces() {
        let group = ProcessGroup::join(&alone(29000), Duration::from_secs(20), CudaBackend::Gloo).unwrap();
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        group.broadcast(&[t.shallow_clone()], 0).unwrap();
        assert_eq!(group.all_gather(&t).unwrap().size(), [1, 2]);
        group.all_reduce_sum(&t).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [1.0, 2.0]);
        group.barrier(None).unwrap();
        let listen = Duration::from_millis(1200);
        assert_eq!(
            group.progress(Duration::from_secs(5), listen).unwrap(),
            [Progress { reached: None, silent: false }]
        );
        group.advance().unwrap();
        group.advance().unwrap();
        assert_eq!(group.progress(Duration::from_secs(5), listen).unwrap()[0].reached, Some(2));
    }

    #[test]
    fn nccl_carries_cuda_tensors_where_there_is_a_gpu_and_says_why_not_elsewhere() {
        let joined = ProcessGroup::join(&alone(28000), Duration::from_secs(20), CudaBackend::Nccl);
        if crate::cuda_libs::available() {
            let group = joined.unwrap();
            let t = Tensor::from_slice(&[1.0f32, 2.0]).to_device(tch::Device::Cuda(0));
            group.all_reduce_sum(&t).unwrap();
            assert_eq!(Vec::<f32>::try_from(&t.to_device(tch::Device::Cpu)).unwrap(), [1.0, 2.0]);
        } else {
            let err = joined.err().expect("NCCL without a GPU");
            assert!(err.contains("GPU"), "{err}");
        }
    }
}
