//! Training losses over logits and (possibly soft) targets. (The probabilities each implies are
//! `orchard_infer::predictor::probabilities`.)

use tch::{Kind, Tensor};

/// A resolved loss: its kind, label smoothing and optional per-class weights.
#[derive(Debug)]
pub struct Loss {
    /// Softmax cross-entropy (multi-class) when true, per-class sigmoid binary cross-entropy otherwise.
    pub softmax: bool,
    pub label_smoothing: f64,
    /// C weights, on the logits' device.
    pub class_weights: Option<Tensor>,
}

impl Loss {
    /// The mean loss of a batch.
    ///
    /// Softmax: `-Σ_c t'_c·log softmax(z)_c` per image with `t' = (1-ε)t + ε/C`, averaged with image weights
    /// `Σ_c w_c·t_c` (PyTorch's `CrossEntropyLoss(weight=w)` for hard labels). Sigmoid: binary cross-entropy
    /// with logits per element against `t' = (1-ε)t + ε/2`, each column weighted by `w_c`, averaged.
    ///
    /// # Shapes
    /// logits N×C, targets N×C (rows of one-hot, soft or multi-hot targets) → scalar, in f32 (f64 for f64
    /// logits).
    pub fn forward(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        // Half-precision logits are upcast; f64 ones (a model run in f64) keep their precision.
        let kind = if logits.kind() == Kind::Double { Kind::Double } else { Kind::Float };
        let logits = logits.to_kind(kind);
        let classes = logits.size()[1] as f64;
        let eps = self.label_smoothing;
        if self.softmax {
            let smoothed = if eps > 0.0 { targets * (1.0 - eps) + eps / classes } else { targets.shallow_clone() };
            let per_image = -(smoothed * logits.log_softmax(1, kind)).sum_dim_intlist(1, false, kind);
            match &self.class_weights {
                None => per_image.mean(kind),
                Some(w) => {
                    let image_weights = (targets * w).sum_dim_intlist(1, false, kind);
                    (per_image * &image_weights).sum(kind) / image_weights.sum(kind)
                }
            }
        } else {
            let smoothed = if eps > 0.0 { targets * (1.0 - eps) + eps / 2.0 } else { targets.shallow_clone() };
            let per_element = logits.binary_cross_entropy_with_logits::<Tensor>(
                &smoothed.to_kind(kind),
                None,
                None,
                tch::Reduction::None,
            );
            match &self.class_weights {
                None => per_element.mean(kind),
                Some(w) => (per_element * w).mean(kind),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(softmax: bool, eps: f64, w: Option<&[f32]>) -> Loss {
        Loss { softmax, label_smoothing: eps, class_weights: w.map(Tensor::from_slice) }
    }

    #[test]
    fn softmax_cross_entropy_equals_libtorch_for_hard_labels_with_weights_and_smoothing() {
        let logits = Tensor::from_slice(&[1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0]).view([2, 3]);
        let labels = Tensor::from_slice(&[1i64, 2]);
        let onehot = labels.one_hot(3).to_kind(Kind::Float);
        let w = [0.5f32, 2.0, 1.0];
        for (weights, eps) in [(None, 0.0), (Some(&w[..]), 0.0), (None, 0.1)] {
            let ours = loss(true, eps, weights).forward(&logits, &onehot).double_value(&[]);
            let theirs = logits
                .cross_entropy_loss::<Tensor>(&labels, weights.map(Tensor::from_slice), tch::Reduction::Mean, -100, eps)
                .double_value(&[]);
            assert!((ours - theirs).abs() < 1e-6, "{weights:?} {eps}: {ours} vs {theirs}");
        }
    }

    #[test]
    fn sigmoid_loss_is_mean_binary_cross_entropy() {
        let logits = Tensor::from_slice(&[0.3f32, -1.2]).view([1, 2]);
        let targets = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
        let expected = (-(1.0 / (1.0 + (-0.3f64).exp())).ln() - (1.0 - 1.0 / (1.0 + 1.2f64.exp())).ln()) / 2.0;
        let got = loss(false, 0.0, None).forward(&logits, &targets).double_value(&[]);
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }
}
