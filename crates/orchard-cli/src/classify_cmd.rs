//! `orchard classify`: run any registered architecture with a weight file on images and print the top
//! classes (ImageNet names for a 1000-class head) or the raw logits.
//!
//! Images are prepared the way torchvision evaluates: the shorter side resized to `size / 0.875` (256 for
//! 224) with the antialiased bilinear filter, then the centre `size` crop, then the architecture's
//! normalisation.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use orchard_data::decode::{self, DecodeOptions};
use orchard_data::image::RgbImage;
use orchard_data::normalize::Normalization;
use orchard_data::resize::{self, Filter};
use orchard_models::{imagenet, weights};
use tch::{nn, Device, Kind, Tensor};

use crate::cli::{parse_size, UsageError};

/// Ratio of the centre crop to the resized image in torchvision's evaluation transform (224 of 256).
const CROP_FRACTION: f64 = 0.875;

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
    pub size: Option<String>,
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
    let (width, height) = match &args.size {
        Some(text) => parse_size(text)?,
        None => (spec.default_size.1 as usize, spec.default_size.0 as usize),
    };
    spec.check_input(height as i64, width as i64).map_err(|e| UsageError(e.to_string()))?;
    let file = weights::read(&args.weights)?;
    weights::check_arch(&file, &spec)?;
    let classes = weights::head_classes(&file, &spec).ok_or_else(|| {
        UsageError(format!(
            "{} has no classification head for {}: classify needs one",
            args.weights.display(),
            spec.name
        ))
    })?;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = orchard_models::build(&spec.name, &vs.root(), Some(classes))?;
    weights::load_into(&vs, "", &spec, &file, weights::LoadOptions::default())?;

    let mut outputs = Vec::new();
    for path in &args.images {
        let pixels = eval_pixels(path, (width, height))?;
        let xs = to_tensor(&pixels, spec.normalization);
        let logits = tch::no_grad(|| model.forward_t(&xs, false)).squeeze_dim(0);
        let logits: Vec<f32> = Vec::try_from(&logits).context("reading the logits")?;
        if args.logits {
            outputs.push(Logits { image: path, logits });
        } else {
            print_top(path, &logits, args.top, classes);
        }
    }
    if args.logits {
        println!("{}", serde_json::to_string(&outputs)?);
    }
    Ok(())
}

/// Prints the `k` most probable classes (softmax over the logits) of one image.
fn print_top(path: &Path, logits: &[f32], k: usize, classes: i64) {
    let probabilities: Vec<f64> =
        Vec::try_from(Tensor::from_slice(logits).to_kind(Kind::Double).softmax(0, Kind::Double))
            .expect("a 1-D tensor converts to a vector");
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    println!("{}", path.display());
    for &class in order.iter().take(k) {
        let name = match classes as usize {
            imagenet::NUM_CLASSES => imagenet::label(class).unwrap_or("?").to_string(),
            _ => format!("class {class}"),
        };
        println!("  {:.4}  {class:>4}  {name}", probabilities[class]);
    }
}

/// torchvision's evaluation crop of the image at `path`: shorter side to `size / 0.875`, centre crop.
fn eval_pixels(path: &Path, (width, height): (usize, usize)) -> Result<RgbImage> {
    let info = decode::probe_file(path)?;
    let short = (width.max(height) as f64 / CROP_FRACTION) as usize;
    let (w, h) = (info.width, info.height);
    // torchvision's Resize(int): the shorter side becomes `short`, the longer one is truncated.
    let (rw, rh) = if w <= h {
        (short, (short as f64 * h as f64 / w as f64) as usize)
    } else {
        ((short as f64 * w as f64 / h as f64) as usize, short)
    };
    let (rw, rh) = (rw.max(width), rh.max(height));
    let decoded = decode::decode_file(path, &DecodeOptions { min_size: Some((rw, rh)), ..Default::default() })?;
    let resized = resize::resize(&decoded, rw, rh, Filter::Bilinear);
    // Python's round, as torchvision's CenterCrop uses it: halves to even.
    let centre = |extra: usize| (extra as f64 / 2.0).round_ties_even() as usize;
    let (left, top) = (centre(rw - width), centre(rh - height));
    let mut data = Vec::with_capacity(width * height * 3);
    for row in top..top + height {
        let start = (row * rw + left) * 3;
        data.extend_from_slice(&resized.data[start..start + width * 3]);
    }
    Ok(RgbImage::from_raw(width, height, data))
}

/// One image as a normalised 1×3×H×W f32 tensor.
fn to_tensor(image: &RgbImage, normalization: Normalization) -> Tensor {
    let (mean, std) = normalization.mean_std();
    let (mean, std) = (Tensor::from_slice(&mean).view([1, 3, 1, 1]), Tensor::from_slice(&std).view([1, 3, 1, 1]));
    let pixels = Tensor::from_slice(&image.data).view([1, image.height as i64, image.width as i64, 3]);
    (pixels.permute([0, 3, 1, 2]).to_kind(Kind::Float) - mean) / std
}
