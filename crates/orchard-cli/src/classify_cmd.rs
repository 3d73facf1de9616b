//! `orchard classify`: run any registered architecture with a weight file on images and print the top
//! classes (ImageNet names for a 1000-class head) or the raw logits.
//!
//! Images are prepared the way torchvision evaluates (`orchard_infer::preprocess`): the shorter side resized
//! to `size / 0.875` (256 for 224), then the centre `size` crop, then the architecture's normalisation.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use orchard_infer::preprocess::{eval_crop, to_tensor};
use orchard_models::{imagenet, weights};
use tch::{nn, Device, Kind, Tensor};

use crate::args::{DeviceArg, PrecisionArg, Size};
use crate::usage::UsageError;
use orchard_torch::autocast::inference_kind;

#[derive(Args)]
pub struct ClassifyArgs {
    /// Registered architecture (see `orchard models list`).
    #[arg(long)]
    pub arch: String,
    /// Weights with a classification head: Keras .h5, PyTorch .pth/.pt, .safetensors, Orchard checkpoint.
    #[arg(long)]
    pub weights: PathBuf,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print the raw logits of every image as JSON instead.
    #[arg(long)]
    pub logits: bool,
    /// Input size, N or WxH (default: the architecture's).
    #[arg(long)]
    pub size: Option<Size>,
    #[command(flatten)]
    pub device: DeviceArg,
    /// The model's arithmetic (bf16: its inference form cast once; f16 needs CUDA).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Images (JPEG or PNG).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// One image's output in `--logits` mode.
#[derive(serde::Serialize)]
struct Logits<'a> {
    image: &'a Path,
    logits: Vec<f32>,
}

pub fn run(args: ClassifyArgs) -> Result<()> {
    let spec = orchard_models::spec(&args.arch).map_err(|e| UsageError(e.to_string()))?;
    if args.top == 0 {
        return Err(UsageError("--top must be at least 1".into()).into());
    }
    let (width, height) = match args.size {
        Some(size) => size.wh(),
        None => (spec.default_size.1 as usize, spec.default_size.0 as usize),
    };
    spec.check_input(height as i64, width as i64).map_err(|e| UsageError(e.to_string()))?;
    let file = weights::read(&args.weights)?;
    weights::check_arch(&file, &spec)?;
    let Some(classes) = weights::head_classes(&file, &spec) else {
        // A file of another architecture has no head under this one's names either: say that it does not
        // fit rather than that it lacks a head.
        let vs = nn::VarStore::new(Device::Cpu);
        orchard_models::build(spec.name, &vs.root(), None)?;
        weights::load_into(&vs, "", &spec, &file, weights::LoadOptions { no_top: true, ..Default::default() })?;
        let weights = args.weights.display();
        return Err(
            UsageError(format!("{weights} has no classification head for {}: classify needs one", spec.name)).into()
        );
    };
    let device = args.device.torch();
    let kind = inference_kind(args.precision.into(), device).map_err(UsageError)?;
    // Only the inference form stays: the file's tensors and the eager model's variables (each as many bytes
    // as the weights) go before the first image.
    let model = {
        let vs = nn::VarStore::new(device);
        let model = orchard_models::build(spec.name, &vs.root(), Some(classes))?;
        weights::load_into(&vs, "", &spec, &file, weights::LoadOptions::default())?;
        drop(file);
        model.inference_in(kind)
    };

    let mut outputs = Vec::new();
    for path in &args.images {
        let pixels = eval_crop(path, (width, height))?;
        let xs = to_tensor(&pixels, spec.normalization.mean_std(), device);
        let logits = orchard_torch::failure::catch(|| model.forward(&xs))
            .map_err(|failure| anyhow::anyhow!("classifying {}: {failure}", path.display()))?;
        let logits = logits.squeeze_dim(0).to_device(Device::Cpu);
        let logits: Vec<f32> = Vec::try_from(&logits).context("reading the logits")?;
        if args.logits {
            outputs.push(Logits { image: path, logits });
        } else {
            print_top(path, &logits, args.top, classes)?;
        }
    }
    if args.logits {
        outln!("{}", serde_json::to_string(&outputs)?)?;
    }
    Ok(())
}

/// Prints the `k` most probable classes (softmax over the logits) of one image.
fn print_top(path: &Path, logits: &[f32], k: usize, classes: i64) -> Result<(), crate::out::StdoutError> {
    let probabilities: Vec<f64> =
        Vec::try_from(Tensor::from_slice(logits).to_kind(Kind::Double).softmax(0, Kind::Double))
            .expect("a 1-D tensor converts to a vector");
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    outln!("{}", path.display())?;
    for &class in order.iter().take(k) {
        let name = match classes as usize {
            imagenet::NUM_CLASSES => imagenet::label(class).unwrap_or("?").to_string(),
            _ => format!("class {class}"),
        };
        outln!("  {:.4}  {class:>4}  {name}", probabilities[class])?;
    }
    Ok(())
}
