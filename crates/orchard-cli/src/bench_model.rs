//! `orchard bench model`: images/second and peak memory of one architecture, inference or training steps,
//! on random inputs, in the layout and precision asked for.

use std::time::Instant;

use anyhow::Result;
use orchard_torch::autocast::{Autocast, HalfType};
use orchard_train::config::OptimizerConfig;
use orchard_train::optim::{Optimizer, Param};
use tch::{nn, Device, Kind, Tensor};

use crate::bench_cmd::{peak_memory, reset_peak_memory};
use crate::cli::{parse_size, BenchModelArgs, UsageError};

pub fn run(args: BenchModelArgs) -> Result<()> {
    let (w, h) = parse_size(&args.size)?;
    if args.batch == 0 || args.steps == 0 {
        return Err(UsageError("--batch and --steps must be at least 1".into()).into());
    }
    let device = orchard_torch::parse_device(&args.device).map_err(UsageError)?;
    let spec = orchard_models::spec(&args.arch).map_err(|e| UsageError(e.to_string()))?;
    spec.check_input(h as i64, w as i64).map_err(|e| UsageError(e.to_string()))?;
    let channels_last = args.layout == "channels-last";
    let half = match args.precision.as_str() {
        "bf16" => Some(HalfType::BFloat16),
        "f16" => Some(HalfType::Float16),
        _ => None,
    };
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = orchard_models::build(&args.arch, &vs.root(), Some(args.classes)).map_err(|e| UsageError(e.to_string()))?;
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    if channels_last {
        orchard_torch::convolutions_to_channels_last(variables.iter_mut().map(|(_, t)| t));
    }
    let params = variables
        .iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| Param { name: n.clone(), tensor: t.shallow_clone(), lr_mult: 1.0 })
        .collect();
    let mut optimizer = Optimizer::new(OptimizerConfig::default(), params);
    let shape = [args.batch as i64, h as i64, w as i64, 3];
    let xs = (Tensor::rand(shape, (Kind::Float, device)) * 255.0).permute([0, 3, 1, 2]);
    let xs = if channels_last { xs } else { xs.contiguous() };
    let labels = Tensor::randint(args.classes, [args.batch as i64], (Kind::Int64, device));

    let mut step = || -> Result<()> {
        let _autocast = half.map(|d| Autocast::new(device, d)).transpose().map_err(UsageError)?;
        if args.train {
            let logits = model.forward_t(&xs, true);
            let loss = logits.to_kind(Kind::Float).cross_entropy_for_logits(&labels);
            drop(_autocast);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step(1e-4);
        } else {
            let logits = tch::no_grad(|| model.forward_t(&xs, false));
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
    let start = Instant::now();
    for _ in 0..args.steps {
        step()?;
    }
    let secs = start.elapsed().as_secs_f64();
    let images = (args.steps * args.batch) as f64;
    println!(
        "model bench: {} {} {}x{} batch {} {} {} on {:?}, {} threads: {:.2} images/s ({:.3} s/step); peak memory {}",
        args.arch,
        if args.train { "train" } else { "inference" },
        w,
        h,
        args.batch,
        args.layout,
        args.precision,
        device,
        tch::get_num_threads(),
        images / secs,
        secs / args.steps as f64,
        peak_memory()
    );
    Ok(())
}
