//! The run's checkpoints: `best.ckpt` (the model as evaluated) with its `oof.csv`, `last.ckpt` (model, EMA,
//! optimizer and loop state: everything needed to resume), and a run restored from the latter. Every
//! replica of a data-parallel run restores; only rank 0 saves.

use orchard_files::state::{RunState, BEST, LAST};
use orchard_files::Predictions;
use orchard_models::weights::checkpoint;
use tch::Tensor;

use super::evaluate::Evaluation;
use super::{Run, TrainError};
use crate::ema::Ema;

impl Run {
    /// Puts a checkpoint's model, EMA, optimizer and loop state back.
    pub(super) fn restore(&mut self, saved: checkpoint::Loaded<RunState>) -> Result<(), TrainError> {
        let mismatch = |message: String| TrainError::ResumeMismatch { path: self.dir.clone(), message };
        if saved.state.classes != self.dataset.classes || saved.state.arch != self.config.model.arch {
            return Err(mismatch(format!(
                "the checkpoint is {} on classes {:?}, the run {} on {:?}",
                saved.state.arch, saved.state.classes, self.config.model.arch, self.dataset.classes
            )));
        }
        saved.restore("model", &self.network.vs, |_| false).map_err(|m| mismatch(m.to_string()))?;
        if let Some(ema) = &mut self.ema {
            ema.load(&saved.group("ema")).map_err(mismatch)?;
        }
        self.optimizer.load_state(&saved.group("optim"), &saved.state.optimizer_steps).map_err(mismatch)?;
        let config = self.config.clone();
        self.state = RunState { config, replicas: self.state.replicas, ..saved.state };
        Ok(())
    }

    /// `best.ckpt` (the model as evaluated) and `oof.csv`.
    pub(super) fn save_best(&mut self, evaluation: Option<&Evaluation>) -> Result<(), TrainError> {
        if !self.is_writer() {
            return Ok(());
        }
        let saved = self.ema.as_ref().map(Ema::swap_in);
        let model: Vec<(String, Tensor)> =
            self.network.variables.iter().map(|(n, t)| (n.clone(), t.detach().copy())).collect();
        if let (Some(ema), Some(saved)) = (&self.ema, saved) {
            ema.restore(saved);
        }
        checkpoint::save(&self.dir.join(BEST), &self.state, &[("model", model)])?;
        if let Some(e) = evaluation {
            let ids = self.val_samples.iter().map(|&i| self.dataset.samples[i].id.clone()).collect();
            Predictions::new("image_id", self.dataset.classes.clone(), ids, e.probs.clone())
                .write(&self.dir.join("oof.csv"))?;
        }
        Ok(())
    }

    /// `last.ckpt`: everything needed to resume.
    pub(super) fn save_last(&mut self) -> Result<(), TrainError> {
        if !self.is_writer() {
            return Ok(());
        }
        let (optim, steps) = self.optimizer.state();
        self.state.optimizer_steps = steps;
        let model = self.network.variables.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        let ema = self.ema.as_ref().map(Ema::shadows).unwrap_or_default();
        checkpoint::save(&self.dir.join(LAST), &self.state, &[("model", model), ("ema", ema), ("optim", optim)])?;
        Ok(())
    }
}
