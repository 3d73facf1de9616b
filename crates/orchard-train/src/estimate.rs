//! What a run will cost before it starts: memory and time measured on a few real training steps of small
//! batches at the run's input size, on the run's device, then scaled to its batch and to an epoch's images.
//!
//! The network is set up as training sets it up (architecture, classes, memory layout, regularisation,
//! batch-norm mode, precision, optimizer), on random pixels. Steps of 1 and of 2 images (the fastest of three
//! of each, after a warm-up step) give a line through both: a fixed part and a part per image, for memory and for time
//! alike, so an epoch's steps at the configured batch can be priced (a small batch's time per image alone
//! would overstate it, most of all on a CPU at small inputs, where every operation's overhead counts).
//!
//! Memory is the model's state, counted (weights and batch-norm statistics, gradients, the optimizer's
//! moments, the EMA's copy), plus the activations:
//! - on a GPU, the CUDA caching allocator's peak over a whole step (forward, backward, update) above what
//!   was allocated before it, which includes the backward pass's transient buffers;
//! - on the CPU, which has no peak counter, the heap bytes held once the forward pass is done: the tensors
//!   autograd saved for the backward pass, and the logits (see [`orchard_torch::memory`]). The backward
//!   pass's transients come on top; they are of the order of the largest layer's activations.
//!
//! Validation is timed the same way on forward passes without gradients, and decoding on a few of the
//! dataset's images on one thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use orchard_data::pipeline::{Pipeline, PipelineConfig, Source};
use orchard_files::config::{BatchNormMode, OptimizerKind, TrainConfig};
use orchard_torch::autocast::Autocast;
use orchard_torch::memory;
use orchard_torch::Layout;
use tch::{Device, Kind, Tensor};

use crate::loss::Loss;
use crate::network::Network;
use crate::optim::Optimizer;

/// Timed steps of each batch size (1 and 2), after one warm-up step; the fastest counts, since other work
/// on the machine only ever slows a step down.
const TIMED: usize = 3;
/// Images decoded to time the input pipeline.
const DECODED: usize = 4;

/// A run's estimated memory and speed on one device.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub device: Device,
    /// Input (height, width).
    pub size: (usize, usize),
    /// Images per training micro-batch and per validation batch, as configured.
    pub batch: usize,
    pub eval_batch: usize,
    /// Numbers in the model's variables (parameters and batch-norm statistics).
    pub numbers: u64,
    /// Of which the optimizer trains.
    pub trainable: u64,
    /// Bytes of the variables, their gradients, the optimizer's moments and the EMA's copy.
    pub state_bytes: u64,
    /// Activations at `batch`: `activation_fixed + activation_per_image × batch`.
    pub activation_bytes: u64,
    pub activation_fixed: u64,
    pub activation_per_image: u64,
    /// Seconds of a training step (forward, backward, update): per step and per image.
    pub train_seconds: Line,
    /// Seconds of a validation forward pass: per batch and per image.
    pub eval_seconds: Line,
    /// Seconds to decode and resize one image on one thread, `None` when no image was given.
    pub decode_seconds: Option<f64>,
}

/// A quantity that grows with the batch: `fixed + per_image × images`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Line {
    pub fixed: f64,
    pub per_image: f64,
}

impl Line {
    /// The line through the values at batches of 1 and 2; when noise makes it fall, all per image.
    fn through(one: f64, two: f64) -> Line {
        if two > one && 2.0 * one >= two {
            Line { fixed: 2.0 * one - two, per_image: two - one }
        } else {
            Line { fixed: 0.0, per_image: two.max(0.0) / 2.0 }
        }
    }

    /// The value for `images` images in batches of `batch`.
    pub fn at(&self, images: usize, batch: usize) -> f64 {
        images.div_ceil(batch.max(1)) as f64 * self.fixed + images as f64 * self.per_image
    }
}

impl Estimate {
    /// The state and the activations at the configured batch.
    pub fn total_bytes(&self) -> u64 {
        self.state_bytes + self.activation_bytes
    }

    /// Seconds of an epoch that trains on `train` images and validates on `val`, with `workers` decode
    /// threads running beside the model: the slower of the two (without the decoding when the images are
    /// cached).
    pub fn epoch_seconds(&self, train: usize, val: usize, workers: usize, cached: bool) -> f64 {
        let compute = self.train_seconds.at(train, self.batch) + self.eval_seconds.at(val, self.eval_batch);
        let decode = match (self.decode_seconds, cached) {
            (Some(s), false) => s * (train + val) as f64 / workers.max(1) as f64,
            _ => 0.0,
        };
        compute.max(decode)
    }
}

/// Measures what training `config` on `classes` classes needs, decoding `images` (a few of the dataset's)
/// for the input's share. A libtorch failure (such as running out of memory) comes back as its message.
pub fn measure(config: &TrainConfig, classes: usize, images: &[PathBuf]) -> Result<Estimate, String> {
    let spec = orchard_models::spec(&config.model.arch).map_err(|e| e.to_string())?;
    let size = config.data.size.unwrap_or((spec.default_size.0 as usize, spec.default_size.1 as usize));
    let device = orchard_torch::device(config.device);
    let decode_seconds = time_decoding(config, size, images)?;
    let measured = orchard_torch::failure::catch(|| measure_steps(config, classes, size, device));
    let mut estimate = measured.map_err(|failure| failure.to_string())??;
    estimate.decode_seconds = decode_seconds;
    Ok(estimate)
}

/// The model's numbers, its state's bytes, the activations at batches 1 and 2, and the step times.
fn measure_steps(
    config: &TrainConfig,
    classes: usize,
    size: (usize, usize),
    device: Device,
) -> Result<Estimate, String> {
    tch::manual_seed(0);
    let layout = if config.channels_last { Layout::ChannelsLast } else { Layout::Contiguous };
    let mut network = Network::new(&config.model.arch, classes as i64, device, layout).map_err(|e| e.to_string())?;
    network.model.set_regularization(config.model.dropout, config.model.drop_path).map_err(|e| e.to_string())?;
    network.model.set_batch_norm_momentum(config.batch_norm_momentum);
    let mut optimizer = Optimizer::new(config.optimizer.clone(), network.params(|_| 1.0));
    let numbers: u64 = network.variables.iter().map(|(_, t)| t.numel() as u64).sum();
    let trainable: u64 = optimizer.params().iter().map(|p| p.tensor.numel() as u64).sum();
    let moments = match config.optimizer.kind {
        OptimizerKind::Adam | OptimizerKind::AdamW => 2,
        OptimizerKind::Sgd => u64::from(config.optimizer.momentum != 0.0),
    };
    let ema = u64::from(config.ema.is_some());
    let state_bytes = 4 * (numbers + trainable * (1 + moments) + numbers * ema);

    let loss = Loss { softmax: true, label_smoothing: config.loss.label_smoothing, class_weights: None };
    let half = orchard_torch::autocast::half_type(config.precision);
    let backbone_train = config.batch_norm == BatchNormMode::Train;
    // One step: returns the activation bytes it measured.
    let mut step = |batch: usize| -> Result<u64, String> {
        let images = random_images(batch, size, device, layout);
        let targets = Tensor::randint(classes as i64, [batch as i64], (Kind::Int64, device)).one_hot(classes as i64);
        let targets = targets.to_kind(Kind::Float);
        synchronize(device);
        let before = memory::reset_peak(device)?;
        let value = {
            let _autocast = half.map(|d| Autocast::new(device, d)).transpose()?;
            let logits = network.model.forward_modes(&images, backbone_train, true);
            loss.forward(&logits, &targets)
        };
        let after_forward = memory::allocated(device)?;
        value.f_backward().map_err(|e| e.to_string())?;
        optimizer.step(1e-6);
        optimizer.zero_grad();
        synchronize(device);
        let after = memory::allocated(device)?;
        Ok(match after.peak {
            Some(peak) => peak.saturating_sub(before.current),
            None => after_forward.current.saturating_sub(before.current),
        })
    };
    // Steps of 1 then 2 images, each size warmed up first (gradients and the optimizer's moments come into
    // being at the first); the activations are the larger of a size's timed steps.
    let mut timed = |batch: usize| -> Result<(f64, u64), String> {
        step(batch)?;
        let (mut seconds, mut bytes) = (f64::INFINITY, 0);
        for _ in 0..TIMED {
            let start = Instant::now();
            bytes = bytes.max(step(batch)?);
            seconds = seconds.min(start.elapsed().as_secs_f64());
        }
        Ok((seconds, bytes))
    };
    let (time_one, bytes_one) = timed(1)?;
    let (time_two, bytes_two) = timed(2)?;
    let train_seconds = Line::through(time_one, time_two);
    let activations = Line::through(bytes_one as f64, bytes_two as f64);
    let eval_seconds = Line::through(time_validation(&network, 1, size), time_validation(&network, 2, size));
    let (activation_fixed, activation_per_image) = (activations.fixed as u64, activations.per_image as u64);
    let batch = config.batch;
    Ok(Estimate {
        device,
        size,
        batch,
        eval_batch: config.eval_batch.unwrap_or(batch),
        numbers,
        trainable,
        state_bytes,
        activation_bytes: activation_fixed + activation_per_image * batch as u64,
        activation_fixed,
        activation_per_image,
        train_seconds,
        eval_seconds,
        decode_seconds: None,
    })
}

/// Random pixels in the network's layout.
fn random_images(batch: usize, size: (usize, usize), device: Device, layout: Layout) -> Tensor {
    let images = Tensor::randn([batch as i64, size.0 as i64, size.1 as i64, 3], (Kind::Float, device));
    let images = images.permute([0, 3, 1, 2]);
    if layout == Layout::ChannelsLast {
        images
    } else {
        images.contiguous()
    }
}

/// Seconds of a forward pass of `batch` images without gradients (validation, prediction), after a warm-up.
fn time_validation(network: &Network, batch: usize, size: (usize, usize)) -> f64 {
    let (device, layout) = (network.device, network.layout);
    let images = random_images(batch, size, device, layout);
    let forward = || {
        let _ = tch::no_grad(|| network.model.forward_t(&images, false));
        synchronize(device);
    };
    forward();
    (0..TIMED)
        .map(|_| {
            let start = Instant::now();
            forward();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Seconds to read, decode, resize and augment one of `images` on one thread, as the loader does.
fn time_decoding(config: &TrainConfig, size: (usize, usize), images: &[PathBuf]) -> Result<Option<f64>, String> {
    let images: Vec<PathBuf> = images.iter().take(DECODED).cloned().collect();
    if images.is_empty() {
        return Ok(None);
    }
    let n = images.len();
    let pipeline_config =
        PipelineConfig { size: (size.1, size.0), augment: config.augment.clone(), seed: 0, ..Default::default() };
    let pipeline = Pipeline::new(pipeline_config, Source::Files(Arc::new(images)));
    let start = Instant::now();
    for i in 0..n {
        pipeline.sample(i, 0, true).map_err(|e| e.to_string())?;
    }
    Ok(Some(start.elapsed().as_secs_f64() / n as f64))
}

fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(decode_seconds: Option<f64>) -> Estimate {
        Estimate {
            device: Device::Cpu,
            size: (32, 32),
            batch: 8,
            eval_batch: 16,
            numbers: 10,
            trainable: 8,
            state_bytes: 100,
            activation_bytes: 50,
            activation_fixed: 10,
            activation_per_image: 5,
            train_seconds: Line { fixed: 0.5, per_image: 0.1 },
            eval_seconds: Line { fixed: 0.2, per_image: 0.01 },
            decode_seconds,
        }
    }

    #[test]
    fn an_epoch_takes_the_slower_of_the_model_and_the_decoding() {
        // 90 images in 12 steps of 8: 12 × 0.5 + 90 × 0.1 = 15 s; 10 in one batch of 16: 0.2 + 10 × 0.01.
        let e = estimate(Some(0.2));
        assert!((e.epoch_seconds(90, 10, 4, false) - 15.3).abs() < 1e-9);
        // 100 images × 0.2 s on 1 thread = 20 s of decoding; none from a cache.
        assert!((e.epoch_seconds(90, 10, 1, false) - 20.0).abs() < 1e-9);
        assert!((e.epoch_seconds(90, 10, 1, true) - 15.3).abs() < 1e-9);
        assert_eq!(e.total_bytes(), 150);
    }

    #[test]
    fn a_line_through_two_batches_splits_the_fixed_part_from_the_part_per_image() {
        assert_eq!(Line::through(3.0, 5.0), Line { fixed: 1.0, per_image: 2.0 });
        // Noise: falling, or steeper than proportional, is read as all per image.
        assert_eq!(Line::through(5.0, 4.0), Line { fixed: 0.0, per_image: 2.0 });
        assert_eq!(Line::through(1.0, 5.0), Line { fixed: 0.0, per_image: 2.5 });
        assert_eq!(Line { fixed: 1.0, per_image: 2.0 }.at(5, 2), 3.0 + 10.0);
    }
}
