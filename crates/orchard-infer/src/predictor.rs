//! The one inference loop: a classifier's probabilities for every image a loader yields, averaged over the
//! test-time augmentation's copies. Validation during training, `orchard predict`, an experiment's gather
//! step and the server all predict through it, with the model's inference form (batch norms folded,
//! activations fused: [`orchard_models::inference`]), so a run's `oof.csv` and a later prediction of its fold
//! agree exactly.

use orchard_data::decode::DecodeError;
use orchard_data::loader::Loader;
use orchard_models::InferenceModel;
use orchard_torch::Layout;
use tch::{Device, Kind, Tensor};

use crate::tta::{self, Tta};

/// A model ready to predict: its inference form, where it computes, the memory layout of its inputs, and its
/// output function.
pub struct Predictor<'a> {
    pub model: &'a InferenceModel,
    pub device: Device,
    pub layout: Layout,
    /// Softmax rows (multi-class) when true, independent sigmoids (multi-label) otherwise.
    pub softmax: bool,
}

impl Predictor<'_> {
    /// Probabilities of every image `loader` yields (its epoch 0), in its order, row-major N×C, averaged over
    /// `tta`'s transforms.
    pub fn predict(&self, loader: &Loader, tta: Tta) -> Result<Vec<f64>, DecodeError> {
        let mean_std = self.model.spec().normalization.mean_std();
        let mut out = Vec::new();
        for batch in loader.epoch(0) {
            let xs = orchard_torch::images(&batch?, mean_std, self.device, self.layout);
            let probs = tch::no_grad(|| self.predict_tensor(&xs, tta));
            let probs = probs.to_kind(Kind::Double).to_device(Device::Cpu).flatten(0, -1);
            out.extend(Vec::<f64>::try_from(probs).expect("f64 probabilities"));
        }
        Ok(out)
    }

    /// Probabilities for a batch of normalised images (N×3×H×W), averaged over `tta`'s transforms.
    pub fn predict_tensor(&self, xs: &Tensor, tta: Tta) -> Tensor {
        tta::average(xs, tta, self.layout, |x| probabilities(&self.model.forward(x), self.softmax))
    }
}

/// Class probabilities from logits: softmax rows, or independent sigmoids.
pub fn probabilities(logits: &Tensor, softmax: bool) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    if softmax {
        logits.softmax(1, Kind::Float)
    } else {
        logits.sigmoid()
    }
}
