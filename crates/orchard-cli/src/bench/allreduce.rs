//! `orchard bench allreduce`: the time one training step spends averaging gradients over the replicas,
//! measured alone: the gradients of an architecture (or a given size) summed over the job in DDP's buckets,
//! as the reducer sums them. Run under `orchard launch` (or any launcher that sets torchrun's or Slurm's
//! variables); rank 0 prints.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use orchard_torch::distributed::{CudaBackend, ProcessGroup, Rendezvous, BUCKET_BYTES};
use orchard_torch::Layout;
use orchard_train::network::Network;
use tch::{Device, Kind, Tensor};

use crate::usage::UsageError;

#[derive(Args)]
pub struct BenchAllreduceArgs {
    /// The architecture whose gradients are summed (`orchard models list`).
    #[arg(long, conflicts_with = "mib")]
    pub arch: Option<String>,
    /// Classes of the architecture's head.
    #[arg(long, default_value_t = 4)]
    pub classes: i64,
    /// Sum this many MiB of f32 instead of an architecture's gradients.
    #[arg(long)]
    pub mib: Option<f64>,
    /// Timed steps, after --warmup untimed ones.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Gradients on the GPU of each rank's local rank, summed through NCCL (else on the CPU, through Gloo).
    #[arg(long)]
    pub cuda: bool,
}

pub fn run(args: BenchAllreduceArgs) -> Result<()> {
    let Some(rendezvous) = Rendezvous::from_env().map_err(UsageError)? else {
        let message = "bench allreduce needs a job: run it as `orchard launch --nproc-per-node 2 -- bench allreduce`";
        return Err(UsageError(message.into()).into());
    };
    if args.steps == 0 {
        return Err(UsageError("--steps must be at least 1".into()).into());
    }
    let elements = match (&args.arch, args.mib) {
        (Some(arch), _) => {
            let network = Network::new(arch, args.classes, Device::Cpu, Layout::Contiguous)
                .map_err(|e| UsageError(e.to_string()))?;
            network.params(|_| 1.0).iter().map(|p| p.tensor.numel()).sum::<usize>()
        }
        (None, Some(mib)) if mib > 0.0 => (mib * 1024.0 * 1024.0 / 4.0) as usize,
        _ => return Err(UsageError("give --arch or a positive --mib".into()).into()),
    };
    let (device, backend) = match args.cuda {
        true => (Device::Cuda(rendezvous.local_rank), CudaBackend::Nccl),
        false => (Device::Cpu, CudaBackend::Gloo),
    };
    let group = ProcessGroup::join(&rendezvous, Duration::from_secs(120), backend).map_err(anyhow::Error::msg)?;
    let per_bucket = BUCKET_BYTES / 4;
    let buckets: Vec<Tensor> = (0..elements.div_ceil(per_bucket))
        .map(|i| Tensor::ones([per_bucket.min(elements - i * per_bucket) as i64], (Kind::Float, device)))
        .collect();
    let step = || -> Result<Duration> {
        let start = Instant::now();
        for bucket in &buckets {
            group.all_reduce_sum(bucket).map_err(anyhow::Error::msg)?;
        }
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
        Ok(start.elapsed())
    };
    for _ in 0..args.warmup {
        step()?;
    }
    let mut times = (0..args.steps).map(|_| step()).collect::<Result<Vec<_>>>()?;
    times.sort();
    if group.rank() == 0 {
        let median = times[times.len() / 2].as_secs_f64();
        let bytes = elements as f64 * 4.0;
        let world = group.world() as f64;
        // A ring all-reduce moves 2(w-1)/w of the data through each rank's link: NCCL-tests' "bus bandwidth".
        let bus = bytes * 2.0 * (world - 1.0) / world / median / 1e9;
        outln!(
            "allreduce bench: {:.1} MiB of f32 ({} buckets of at most {} MiB) over {} ranks ({}): median {:.2} \
             ms, min {:.2} ms, max {:.2} ms per step over {} steps; bus bandwidth {bus:.2} GB/s",
            bytes / 1048576.0,
            buckets.len(),
            BUCKET_BYTES >> 20,
            group.world(),
            if args.cuda { "NCCL" } else { "Gloo" },
            median * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            args.steps,
        )?;
    }
    Ok(())
}
