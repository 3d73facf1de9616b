//! `orchard bench model`: images/second and peak memory of one architecture, inference or training steps,
//! on random inputs, in the layout and precision asked for. The model is set up as training sets it up;
//! inference times its inference form (folded batch norms, fused activations), what predictions run.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use orchard_files::config::OptimizerConfig;
use orchard_torch::autocast::{inference_kind, Autocast};
use orchard_torch::Layout;
use orchard_train::network::Network;
use orchard_train::optim::Optimizer;
use tch::{Device, Kind, Tensor};

use super::{peak_memory, reset_peak_memory};
use crate::args::{self, DeviceArg, LayoutArg, PrecisionArg, Size};
use crate::usage::UsageError;

#[derive(Args)]
pub struct BenchModelArgs {
    /// Architecture (`orchard models list`).
    #[arg(long)]
    pub arch: String,
    /// Input size, N or WxH.
    #[arg(long, default_value = "224")]
    pub size: Size,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Time training steps (forward + backward + optimizer step) instead of inference.
    #[arg(long)]
    pub train: bool,
    /// Timed iterations, after --warmup untimed ones.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Number of classes of the head.
    #[arg(long, default_value_t = 1000)]
    pub classes: i64,
    /// Memory layout of images and convolution weights.
    #[arg(long, value_enum, default_value_t = LayoutArg::ChannelsLast)]
    pub layout: LayoutArg,
    /// Arithmetic (autocast for bf16 and f16).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: BenchModelArgs) -> Result<()> {
    let (w, h) = args.size.wh();
    if args.batch == 0 || args.steps == 0 {
        return Err(UsageError("--batch and --steps must be at least 1".into()).into());
    }
    let device = args.device.torch();
    let spec = orchard_models::spec(&args.arch).map_err(|e| UsageError(e.to_string()))?;
    spec.check_input(h as i64, w as i64).map_err(|e| UsageError(e.to_string()))?;
    let layout = Layout::from(args.layout);
    let half = orchard_torch::autocast::half_type(args.precision.into());
    tch::manual_seed(0);
    let network = Network::new(&args.arch, args.classes, device, layout).map_err(|e| UsageError(e.to_string()))?;
    // Inference keeps only the inference form, as `predict` does, so that peak memory holds one model: the
    // eager network (its variables, as many bytes as the form's weights) goes once the form is made.
    let (network, inference) = if args.train {
        (Some(network), None)
    } else {
        let kind = inference_kind(args.precision.into(), device).map_err(UsageError)?;
        let inference = network.model.inference_in(kind);
        drop(network);
        (None, Some(inference))
    };
    let mut optimizer = network.as_ref().map(|n| Optimizer::new(OptimizerConfig::default(), n.params(|_| 1.0)));
    let shape = [args.batch as i64, h as i64, w as i64, 3];
    let xs = (Tensor::rand(shape, (Kind::Float, device)) * 255.0).permute([0, 3, 1, 2]);
    let xs = if layout == Layout::ChannelsLast { xs } else { xs.contiguous() };
    let labels = Tensor::randint(args.classes, [args.batch as i64], (Kind::Int64, device));

    let mut step = || -> Result<()> {
        // Training autocasts; the inference form was made in the reduced type itself.
        let half = if args.train { half } else { None };
        let _autocast = half.map(|d| Autocast::new(device, d)).transpose().map_err(UsageError)?;
        if let (Some(network), Some(optimizer)) = (&network, &mut optimizer) {
            let logits = network.model.forward_t(&xs, true);
            let loss = logits.to_kind(Kind::Float).cross_entropy_for_logits(&labels);
            drop(_autocast);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step(1e-4);
        } else if let Some(inference) = &inference {
            let logits = inference.forward(&xs);
            logits.to_kind(Kind::Float).sum(Kind::Float).double_value(&[]);
        }
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
        Ok(())
    };
    for _ in 0..args.warmup {
        step()?;
    }
    reset_peak_memory();
    let faults_before = minor_page_faults();
    let start = Instant::now();
    for _ in 0..args.steps {
        step()?;
    }
    let secs = start.elapsed().as_secs_f64();
    let faults = (minor_page_faults() - faults_before) as f64 / args.steps as f64;
    let images = (args.steps * args.batch) as f64;
    outln!(
        "model bench: {} {} {}x{} batch {} {} {} on {:?}, {} threads: {:.2} images/s ({:.3} s/step); peak memory {}; {:.0} page faults/step",
        args.arch,
        if args.train { "train" } else { "inference" },
        w,
        h,
        args.batch,
        args::name(args.layout),
        args::name(args.precision),
        device,
        tch::get_num_threads(),
        images / secs,
        secs / args.steps as f64,
        peak_memory(),
        faults
    )?;
    Ok(())
}

/// Page faults served without I/O so far in this process: memory the allocator handed back to the kernel and
/// a later step touched again (zeroed pages, each a trap into the kernel). In a steady state they should be
/// near zero; see the allocator in main.rs.
fn minor_page_faults() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    usage.ru_minflt
}
