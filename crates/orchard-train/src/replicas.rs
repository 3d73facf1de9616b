//! Data-parallel training of one member: one process per device, each a replica of the model, all joined in
//! a libtorch process group (`orchard_torch::distributed`).
//!
//! - At the start every replica's model (and EMA) is overwritten with rank 0's.
//! - Each replica takes its share of every epoch's batches (the loader's shard: all replicas draw the same
//!   shuffled order and replica r of w takes batches r, r + w, …), so a step sees w local batches: a global
//!   batch of w × `batch`.
//! - The gradients are averaged over the replicas by DDP's own reducer, bucket by bucket while the backward
//!   pass runs; with gradient accumulation only the step's last micro-batch synchronises. This is the seam
//!   between the backward pass and the optimizer step: after it every replica holds the same gradients and
//!   takes the same step.
//! - With `sync_batch_norm`, every batch norm trains on the statistics of the global batch: its sums go
//!   through a differentiable all-reduce (forward and backward), as PyTorch's `SyncBatchNorm`.
//! - Every collective is a synchronisation point: before it each replica counts it in the job's store (the
//!   reducer does so for each gradient bucket), so when one fails, the replicas behind the failed one's
//!   count are named as the ones that hang or died.
//! - Validation is sharded too (replica r predicts images r, r + w, … of the fold) and the predictions are
//!   gathered, so every replica computes the same metrics over the whole fold and makes the same decisions
//!   (best epoch, early stopping); only rank 0 writes files.

use std::sync::Arc;
use std::time::Duration;

use orchard_models::ReplicaSum;
use orchard_torch::distributed::{CudaBackend, ProcessGroup, Reducer, Rendezvous, BUCKET_BYTES};
use tch::{Device, Kind, Tensor};

use crate::optim::Param;
use crate::trainer::TrainError;

/// This process's place among the replicas, and what they share.
pub struct Replicas {
    group: Arc<ProcessGroup>,
    /// The reducer over the parameters that train now, rebuilt when that set changes (a frozen backbone).
    reducer: Option<Reducer>,
    trainable: Vec<String>,
}

/// How long a collective may wait for the other replicas before the job fails: a replica that hangs is
/// caught by it; one that dies is noticed at once, as its connections close. The longest wait in a healthy
/// run is rank 0 writing the checkpoints at an epoch's end.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the replicas wait for rank 0 to build the decoded-image cache (minutes for a real dataset).
pub const CACHE_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

impl Replicas {
    /// Joins the job `rendezvous` describes, as replicas training on `device` (NCCL between GPUs).
    pub fn join(rendezvous: &Rendezvous, timeout: Duration, device: Device) -> Result<Replicas, String> {
        Ok(Replicas::over(Arc::new(ProcessGroup::join(rendezvous, timeout, backend_for(device))?)))
    }

    /// Replicas over a group already joined: one job training several runs, one after the other.
    pub fn over(group: Arc<ProcessGroup>) -> Replicas {
        Replicas { group, reducer: None, trainable: Vec::new() }
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world(&self) -> usize {
        self.group.world()
    }

    /// A collective's failure as a run's error, naming this replica and the ones behind it: those that had
    /// not reached the loss sum or gradient bucket this one waited in hang or died.
    pub(crate) fn error(&self, message: String) -> TrainError {
        let message = format!("{message}{}", self.laggards());
        TrainError::Replicas { rank: self.rank(), world: self.world(), message }
    }

    /// "; rank 1 is behind ..." from what the job's store knows of the replicas, or nothing when it names none.
    fn laggards(&self) -> String {
        let progress = match self.group.progress(Duration::from_secs(5), Duration::from_millis(1500)) {
            Ok(progress) => progress,
            Err(e) => return format!("; the job's store on rank 0 did not answer ({e}): rank 0 is gone or hangs"),
        };
        let mine = progress[self.rank()].reached;
        let suspects: Vec<String> = (progress.iter().enumerate())
            .filter(|&(rank, p)| rank != self.rank() && (p.silent || p.reached < mine))
            .map(|(rank, p)| {
                let at = p.reached.map_or("none".to_string(), |r| r.to_string());
                let silent = if p.silent { ", silent: stopped or gone" } else { "" };
                format!("rank {rank} (at synchronisation point {at}{silent})")
            })
            .collect();
        match mine {
            Some(mine) if !suspects.is_empty() => {
                format!("; hung, dead or slow, as this rank waited at point {mine}: {}", suspects.join(", "))
            }
            _ => String::new(),
        }
    }

    /// Overwrites every replica's `tensors` with rank 0's.
    pub(crate) fn broadcast(&self, tensors: &[Tensor]) -> Result<(), String> {
        self.group.advance()?;
        self.group.broadcast(tensors, 0)
    }

    /// Waits for every replica, at most `timeout` (else the job's).
    pub(crate) fn barrier(&self, timeout: Option<Duration>) -> Result<(), String> {
        self.group.advance()?;
        self.group.barrier(timeout)
    }

    /// Makes the gradients of `params` (those that require them now) the ones averaged over the replicas.
    pub(crate) fn track(&mut self, params: &[Param]) -> Result<(), String> {
        let trainable: Vec<&Param> = params.iter().filter(|p| p.tensor.requires_grad()).collect();
        let names: Vec<String> = trainable.iter().map(|p| p.name.clone()).collect();
        if self.reducer.is_none() || names != self.trainable {
            self.reducer = None; // the old reducer's hooks go before the new one's are installed
            let tensors: Vec<Tensor> = trainable.iter().map(|p| p.tensor.shallow_clone()).collect();
            self.reducer = Some(Reducer::new(&self.group, &tensors, BUCKET_BYTES)?);
            self.trainable = names;
        }
        Ok(())
    }

    /// Before the forward pass of every micro-batch.
    pub(crate) fn before_forward(&mut self) -> Result<(), String> {
        self.reducer.as_mut().map_or(Ok(()), Reducer::before_forward)
    }

    /// Before a micro-batch's backward pass; `step` when it is the step's last, whose gradients are averaged.
    pub(crate) fn before_backward(&mut self, step: bool) -> Result<(), String> {
        match (&mut self.reducer, step) {
            (Some(reducer), true) => reducer.before_backward(),
            _ => Ok(()),
        }
    }

    /// The sum over the replicas of each of `values`.
    pub(crate) fn sum(&self, values: &[f64]) -> Result<Vec<f64>, String> {
        self.group.advance()?;
        let t = Tensor::from_slice(values);
        self.group.all_reduce_sum(&t)?;
        Ok(Vec::try_from(&t).expect("f64 values"))
    }

    /// The first rank whose `values` differ from rank 0's, if any.
    pub(crate) fn first_disagreeing(&self, values: &[f64]) -> Result<Option<usize>, String> {
        self.group.advance()?;
        let all = self.group.all_gather(&Tensor::from_slice(values))?;
        let all: Vec<f64> = Vec::try_from(all.flatten(0, -1)).expect("f64 values");
        let rows: Vec<&[f64]> = all.chunks(values.len().max(1)).collect();
        Ok(rows.iter().position(|row| *row != rows[0]))
    }

    /// The sum over the replicas that synchronised batch norm pools its statistics with.
    pub(crate) fn batch_norm_sync(&self) -> Arc<dyn ReplicaSum> {
        Arc::new(PooledStatistics(self.group.clone()))
    }

    /// This replica's share of `items`: items `rank`, `rank + world`, ….
    pub(crate) fn share<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items.iter().skip(self.rank()).step_by(self.world()).cloned().collect()
    }

    /// The rows (`cols` values each) every replica computed for its [`Replicas::share`] of `total` items,
    /// put back in the items' order.
    pub(crate) fn gather_shares(&self, local: &[f64], cols: usize, total: usize) -> Result<Vec<f64>, String> {
        let world = self.world();
        let most = total.div_ceil(world);
        let mut padded = local.to_vec();
        padded.resize(most * cols, 0.0);
        let t = Tensor::from_slice(&padded).view([most as i64, cols as i64]);
        self.group.advance()?;
        let all = self.group.all_gather(&t)?.to_kind(Kind::Double).to_device(Device::Cpu);
        let all: Vec<f64> = Vec::try_from(all.flatten(0, -1)).expect("f64 rows");
        let mut out = Vec::with_capacity(total * cols);
        for item in 0..total {
            let (rank, row) = (item % world, item / world);
            let start = (rank * most + row) * cols;
            out.extend_from_slice(&all[start..start + cols]);
        }
        Ok(out)
    }
}

/// The device of the replica of local rank `local_rank` whose configuration names `device`: on a machine with
/// GPUs, `auto` is the GPU of the local rank (one process per GPU, as torchrun starts them).
pub fn replica_device(device: orchard_files::config::Device, local_rank: usize) -> orchard_files::config::Device {
    use orchard_files::config::Device as Named;
    match device {
        Named::Auto if orchard_torch::cuda_libs::available() => Named::Cuda(local_rank),
        other => other,
    }
}

/// The backend for the CUDA tensors of replicas on `device`: NCCL between GPUs.
pub fn backend_for(device: Device) -> CudaBackend {
    if device.is_cuda() {
        CudaBackend::Nccl
    } else {
        CudaBackend::Gloo
    }
}

/// [`ReplicaSum`] over the job's process group.
struct PooledStatistics(Arc<ProcessGroup>);

impl std::fmt::Debug for PooledStatistics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PooledStatistics(rank {} of {})", self.0.rank(), self.0.world())
    }
}

impl ReplicaSum for PooledStatistics {
    /// Runs inside the model's forward pass, which cannot fail: a replica that is gone ends this one.
    fn sum(&self, xs: &Tensor) -> Tensor {
        self.0.sum_differentiable(xs).unwrap_or_else(|e| {
            panic!("data-parallel training, rank {} of {}: synchronised batch norm: {e}", self.0.rank(), self.0.world())
        })
    }
}
