//! One pass over the training images: micro-batches forward and backward under the configured precision,
//! their gradients accumulated into optimizer steps, each step through the [`GradientSync`] seam before it
//! is applied.
//!
//! [`GradientSync`]: crate::gradients::GradientSync

use orchard_files::config::{BatchNormMode, ConfigError};
use orchard_torch::autocast::Autocast;

use super::{Run, TrainError};
use crate::progress::Progress;

impl Run {
    /// One pass over the training images; returns the mean loss and the number of images.
    pub(super) fn train_epoch(
        &mut self,
        epoch: u32,
        lr: f64,
        steps_per_epoch: u64,
        frozen: bool,
        progress: &mut dyn Progress,
    ) -> Result<(f64, usize), TrainError> {
        let batches = self.train_loader.epoch(u64::from(epoch));
        let total = batches.total();
        progress.epoch_start(epoch, self.config.epochs, total);
        let backbone_train = !frozen && self.config.batch_norm == BatchNormMode::Train;
        let accumulate = self.config.accumulate;
        let mean_std = self.network.model.spec().normalization.mean_std();
        let (device, layout) = (self.network.device, self.network.layout);
        let (mut loss_sum, mut images) = (0.0, 0usize);
        self.optimizer.zero_grad();
        for (i, batch) in batches.enumerate() {
            let batch = batch?;
            let xs = orchard_torch::images(&batch, mean_std, device, layout);
            let ys = orchard_torch::targets(&batch, device);
            let loss = {
                let _autocast = self.autocast()?;
                let logits = self.network.model.forward_modes(&xs, backbone_train, true);
                self.loss.forward(&logits, &ys)
            };
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                let last_good =
                    if epoch == 0 { "none: no epoch finished".to_string() } else { (epoch - 1).to_string() };
                return Err(TrainError::NonFiniteLoss { epoch, step: i, loss: value, last_good });
            }
            let scale = self.state.loss_scaler.as_ref().map_or(1.0, |s| s.scale);
            (loss * (scale / accumulate as f64)).backward();
            loss_sum += value * batch.len() as f64;
            images += batch.len();
            if (i + 1) % accumulate == 0 || i + 1 == total {
                let step_lr = if self.config.schedule.per_step {
                    self.config.schedule.function.lr_at_step(self.state.step, steps_per_epoch)
                } else {
                    lr
                };
                self.optimizer_step(step_lr)?;
            }
            progress.batch(i + 1, batch.len(), value);
        }
        Ok((loss_sum / images.max(1) as f64, images))
    }

    /// The optimizer step once a step's gradients are complete: they are synchronised with other replicas
    /// (the seam, see [`crate::gradients`]), unscaled (f16), clipped and applied; a step whose gradients
    /// overflowed is skipped. The step counter moves either way.
    fn optimizer_step(&mut self, lr: f64) -> Result<(), TrainError> {
        self.sync.synchronise(self.optimizer.params()).map_err(TrainError::Sync)?;
        let finite = match &mut self.state.loss_scaler {
            Some(scaler) => crate::amp::unscale(scaler, self.optimizer.params().iter().map(|p| &p.tensor)),
            None => true,
        };
        if finite {
            if let Some(max) = self.config.clip_norm {
                self.optimizer.clip_grad_norm(max);
            }
            self.optimizer.step(lr);
            if let Some(ema) = &mut self.ema {
                ema.update();
            }
        }
        self.optimizer.zero_grad();
        self.state.step += 1;
        Ok(())
    }

    /// An autocast region for the configured precision (none in f32).
    fn autocast(&self) -> Result<Option<Autocast>, TrainError> {
        let Some(dtype) = orchard_torch::autocast::half_type(self.config.precision) else { return Ok(None) };
        Autocast::new(self.network.device, dtype)
            .map(Some)
            .map_err(|message| ConfigError { field: "precision", message }.into())
    }

    /// Freezes (no gradient) or unfreezes every parameter outside the head.
    pub(super) fn set_backbone_trainable(&mut self, trainable: bool) {
        for p in self.optimizer.params() {
            if !self.head.contains(&p.name) {
                let _ = p.tensor.shallow_clone().set_requires_grad(trainable);
            }
        }
    }
}
