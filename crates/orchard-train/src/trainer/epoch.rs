//! One pass over the training images: micro-batches forward and backward under the configured precision,
//! their gradients accumulated into optimizer steps. In a data-parallel run the step's last backward pass
//! averages the gradients over the replicas (see [`crate::replicas`]), and every micro-batch's loss is summed
//! over them, so that every replica sees the same numbers and takes the same decisions.

use std::collections::HashSet;

use orchard_files::config::{BatchNormMode, ConfigError};
use orchard_torch::autocast::Autocast;
use tch::Tensor;

use super::{Run, TrainError};
use crate::progress::Progress;
use crate::replicas::Replicas;

impl Run {
    /// One pass over the training images; returns the mean loss and the number of images (over every
    /// replica).
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
            let step_ends = (i + 1) % accumulate == 0 || i + 1 == total;
            let xs = orchard_torch::images(&batch, mean_std, device, layout);
            let ys = orchard_torch::targets(&batch, device);
            self.replicated(|r| r.before_forward())?;
            let loss = {
                let _autocast = self.autocast()?;
                self.network.training_loss(&self.loss, &xs, &ys, backbone_train)
            };
            let (sum, count) = self.summed(loss.double_value(&[]) * batch.len() as f64, batch.len())?;
            let value = sum / count.max(1) as f64;
            if !value.is_finite() {
                let last_good =
                    if epoch == 0 { "none: no epoch finished".to_string() } else { (epoch - 1).to_string() };
                return Err(TrainError::NonFiniteLoss { epoch, step: i, loss: value, last_good });
            }
            let scale = self.state.loss_scaler.as_ref().map_or(1.0, |s| s.scale);
            self.replicated(|r| r.before_backward(step_ends))?;
            (loss * (scale / accumulate as f64)).f_backward().map_err(|e| self.replica_error(e.to_string()))?;
            loss_sum += sum;
            images += count;
            if step_ends {
                let step_lr = if self.config.schedule.per_step {
                    self.schedule.lr_at_step(self.state.step, steps_per_epoch)
                } else {
                    lr
                };
                self.optimizer_step(step_lr)?;
            }
            progress.batch(i + 1, batch.len(), value);
        }
        Ok((loss_sum / images.max(1) as f64, images))
    }

    /// The optimizer step once a step's gradients are complete (and, in a data-parallel run, averaged over
    /// the replicas): unscaled (f16), clipped and applied; a step whose gradients overflowed is skipped. The
    /// step counter moves either way.
    fn optimizer_step(&mut self, lr: f64) -> Result<(), TrainError> {
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

    /// Runs `f` on the replicas of a data-parallel run; nothing on a run on its own.
    pub(super) fn replicated(&mut self, f: impl FnOnce(&mut Replicas) -> Result<(), String>) -> Result<(), TrainError> {
        let result = self.replicas.as_mut().map_or(Ok(()), f);
        result.map_err(|message| self.replica_error(message))
    }

    /// Overwrites this replica's state with rank 0's: the whole model at the start (`whole`), and before
    /// every evaluation the variables no optimizer step keeps equal (batch-norm statistics, which each replica
    /// updates from its own batches; rank 0's are kept, as DDP's `broadcast_buffers` does); the EMA both
    /// times.
    pub(super) fn align_replicas(&mut self, whole: bool) -> Result<(), TrainError> {
        let Some(replicas) = &self.replicas else { return Ok(()) };
        let trained: HashSet<&str> = self.optimizer.params().iter().map(|p| p.name.as_str()).collect();
        let mut tensors: Vec<Tensor> = (self.network.variables.iter())
            .filter(|(name, _)| whole || !trained.contains(name.as_str()))
            .map(|(_, t)| t.shallow_clone())
            .collect();
        tensors.extend(self.ema.iter().flat_map(|ema| ema.shadows().into_iter().map(|(_, t)| t)));
        replicas.broadcast(&tensors).map_err(|message| replicas.error(message))
    }

    /// A micro-batch's loss sum and image count, summed over the replicas.
    fn summed(&self, sum: f64, count: usize) -> Result<(f64, usize), TrainError> {
        let Some(replicas) = &self.replicas else { return Ok((sum, count)) };
        let totals = replicas.sum(&[sum, count as f64]).map_err(|message| self.replica_error(message))?;
        Ok((totals[0], totals[1] as usize))
    }

    /// Freezes (no gradient) or unfreezes every parameter outside the head; in a data-parallel run, the
    /// gradients averaged over the replicas are those of the parameters that train.
    pub(super) fn set_backbone_trainable(&mut self, trainable: bool) -> Result<(), TrainError> {
        for p in self.optimizer.params() {
            if !self.head.contains(&p.name) {
                let _ = p.tensor.shallow_clone().set_requires_grad(trainable);
            }
        }
        let Some(replicas) = &mut self.replicas else { return Ok(()) };
        let result = replicas.track(self.optimizer.params());
        result.map_err(|message| self.replica_error(message))
    }
}
