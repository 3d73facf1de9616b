//! A model's inference form: what every prediction runs (`predict`, TTA, validation, `classify`, the
//! server, `orchard bench model`). Made once from a [`crate::Classifier`] whose weights are final
//! ([`crate::Classifier::inference`]): every batch norm that follows a convolution is folded into that
//! convolution's weights and bias, and the convolution, its bias, its activation (and a residual sum where
//! one follows) run as one oneDNN kernel on the CPU ([`crate::fused`]). Its logits are the eager model's in
//! evaluation mode, within f32 rounding; it has no training mode and no gradients.
//!
//! Each family builds its own form from its layers ([`crate::backbone::Layers::inference`]); the head is
//! shared here.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Kind, Tensor};

use crate::backbone::ModelSpec;
use crate::layers::global_avg_pool;

/// A backbone's inference form: the feature map of [`crate::Backbone::forward_features`] in evaluation mode.
pub trait InferenceLayers: Send + fmt::Debug {
    /// # Shapes
    /// N×3×H×W, normalised per [`ModelSpec::normalization`] → N×[`ModelSpec::num_features`]×h×w.
    fn forward(&self, xs: &Tensor) -> Tensor;
}

/// A classifier's inference form: the backbone's, global average pooling and the dense head.
#[derive(Debug)]
pub struct InferenceModel {
    spec: ModelSpec,
    backbone: Box<dyn InferenceLayers>,
    /// The dense head's weight (classes × features) and bias, copied; `None` without a head.
    head: Option<(Tensor, Tensor)>,
    /// The kind of its tensors when not the model's (bf16 inference): inputs are cast to it, logits back
    /// to f32.
    kind: Option<Kind>,
    /// Whether a forward pass has finished: the first one packs the weights for oneDNN, dropping their
    /// plain copies, and then hands the freed memory back ([`orchard_torch::memory::release_freed`]).
    warm: AtomicBool,
}

impl InferenceModel {
    pub(crate) fn new(
        spec: ModelSpec,
        backbone: Box<dyn InferenceLayers>,
        head: Option<(Tensor, Tensor)>,
        kind: Option<Kind>,
    ) -> Self {
        InferenceModel { spec, backbone, head, kind, warm: AtomicBool::new(false) }
    }

    /// The architecture's spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Logits, or the pooled features without a head: [`crate::Classifier::forward_t`] in evaluation mode.
    /// Runs without gradients.
    ///
    /// # Shapes
    /// N×3×H×W → N×num_classes (N×num_features without a head).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let cast;
            let xs = match self.kind {
                Some(kind) if xs.kind() != kind => {
                    cast = xs.to_kind(kind);
                    &cast
                }
                _ => xs,
            };
            // A reduced form pools and applies the head in f32: the head is a sliver of the work, and its
            // rounding would reach the probabilities directly.
            let map = self.backbone.forward(xs);
            let map = if self.kind.is_some() { map.to_kind(Kind::Float) } else { map };
            let features = global_avg_pool(&map, false);
            let out = match &self.head {
                None => features,
                Some((weight, bias)) => features.linear(weight, Some(bias)),
            };
            if !self.warm.swap(true, Ordering::Relaxed) {
                orchard_torch::memory::release_freed();
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tch::{nn, Device};

    /// A process-wide count of [`orchard_torch::memory::release_freed`] calls (the only hook any test of this
    /// crate sets).
    static RELEASES: AtomicUsize = AtomicUsize::new(0);

    fn count_release() {
        RELEASES.fetch_add(1, Ordering::SeqCst);
    }

    use super::*;

    /// The first pass of an inference form hands freed memory back through the process's hook, and marks the
    /// form warm, so that later passes (a steady step, which reuses the pages it keeps) do not.
    #[test]
    fn the_first_pass_of_an_inference_form_releases_freed_memory() {
        orchard_torch::memory::set_release_freed(count_release);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = crate::build("mobilenet_v2", &vs.root(), Some(3)).unwrap().inference();
        let xs = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert!(!model.warm.load(Ordering::SeqCst));
        let before = RELEASES.load(Ordering::SeqCst);
        assert_eq!(model.forward(&xs).size(), [1, 3]);
        assert!(model.warm.load(Ordering::SeqCst));
        let after_first = RELEASES.load(Ordering::SeqCst);
        assert!(after_first > before, "the first pass released nothing");
    }
}
