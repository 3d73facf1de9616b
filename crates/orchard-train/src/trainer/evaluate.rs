//! Validation: the model (with the EMA weights when the run keeps an average) predicts its fold through the
//! one inference loop, `orchard-infer`'s predictor, and the epoch's loss, accuracy and AUC are computed from
//! the predictions. In a data-parallel run each replica predicts its share of the fold and the shares are
//! gathered, so every replica holds every prediction.

use orchard_infer::predictor::Predictor;
use orchard_infer::tta::Tta;

use super::{Run, TrainError};
use crate::ema::Ema;

impl Run {
    /// Validation predictions (with the EMA weights when enabled) and their metrics; `None` without a fold.
    pub(super) fn evaluate(&mut self) -> Result<Option<Evaluation>, TrainError> {
        let Some(loader) = &self.val_loader else { return Ok(None) };
        let saved = self.ema.as_ref().map(Ema::swap_in);
        let n = &self.network;
        // The inference form of the weights as they are now (the EMA's when swapped in), as `predict` runs it.
        let model = n.model.inference();
        let predictor = Predictor { model: &model, device: n.device, layout: n.layout, softmax: self.loss.softmax };
        let result = predictor.predict(loader, Tta::None);
        if let (Some(ema), Some(saved)) = (&self.ema, saved) {
            ema.restore(saved);
        }
        let c = self.dataset.classes.len();
        let probs = match &self.replicas {
            Some(r) => r.gather_shares(&result?, c, self.val_samples.len()).map_err(|message| r.error(message))?,
            None => result?,
        };
        let truth: Vec<f64> = self
            .val_samples
            .iter()
            .flat_map(|&i| self.dataset.samples[i].target.iter().map(|&t| f64::from(t)))
            .collect();
        Ok(Some(Evaluation::new(&truth, probs, c, self.loss.softmax)))
    }
}

/// Validation metrics of one epoch.
pub(super) struct Evaluation {
    pub(super) probs: Vec<f64>,
    pub(super) loss: f64,
    pub(super) accuracy: f64,
    pub(super) auc: orchard_metrics::ColumnAuc,
}

impl Evaluation {
    fn new(truth: &[f64], probs: Vec<f64>, classes: usize, softmax: bool) -> Self {
        let (loss, accuracy) = if softmax {
            (
                orchard_metrics::log_loss(truth, &probs, classes).unwrap_or(f64::NAN),
                orchard_metrics::accuracy(truth, &probs, classes).unwrap_or(f64::NAN),
            )
        } else {
            multilabel_loss_and_accuracy(truth, &probs)
        };
        let auc = orchard_metrics::mean_column_auc(truth, &probs, classes)
            .unwrap_or(orchard_metrics::ColumnAuc { per_class: vec![None; classes], mean: None });
        Evaluation { probs, loss, accuracy, auc }
    }
}

/// Mean binary cross-entropy and element-wise accuracy at 0.5 of independent per-class probabilities.
fn multilabel_loss_and_accuracy(truth: &[f64], probs: &[f64]) -> (f64, f64) {
    let eps = f64::EPSILON;
    let n = truth.len().max(1) as f64;
    let loss = truth
        .iter()
        .zip(probs)
        .map(|(t, p)| -(t * p.clamp(eps, 1.0 - eps).ln() + (1.0 - t) * (1.0 - p.clamp(eps, 1.0 - eps)).ln()))
        .sum::<f64>()
        / n;
    let correct = truth.iter().zip(probs).filter(|(t, p)| (**t >= 0.5) == (**p >= 0.5)).count();
    (loss, correct as f64 / n)
}
