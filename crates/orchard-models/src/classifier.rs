//! The classifier that puts a head on any backbone: global average pooling, dropout and a dense layer, the head
//! every reference model here ends with (Keras' `avg_pool` → `top_dropout` → `predictions`; timm's
//! `forward_head`). Training, ensembling and serving hold a [`Classifier`] and never ask which architecture is
//! inside; the training options that concern the whole model (regularisation, a fresh head, batch-norm
//! momentum) are set on it.

use tch::{nn, Kind, Tensor};

use crate::backbone::{Backbone, LayerGroup, ModelError, ModelSpec};
use crate::inference::InferenceModel;
use crate::init::Initializer;
use crate::layers::{global_avg_pool, layer_path, Dense};

/// A classification head: global average pooling → dropout → dense.
#[derive(Debug)]
struct Head {
    dense: Dense,
    dropout: f64,
    num_classes: i64,
    group: LayerGroup,
}

/// A backbone with an optional head: the model that training and inference use.
#[derive(Debug)]
pub struct Classifier {
    backbone: Box<dyn Backbone>,
    head: Option<Head>,
}

impl Classifier {
    /// Puts the backbone's reference head with `num_classes` outputs on `backbone`, its variables under
    /// `path` (the path the backbone was built under); `None` builds no head, like Keras' `include_top=False,
    /// pooling="avg"`.
    pub fn new(backbone: Box<dyn Backbone>, path: &nn::Path, num_classes: Option<i64>) -> Result<Self, ModelError> {
        let head = match num_classes {
            None => None,
            Some(n) if n < 1 => return Err(ModelError::InvalidNumClasses(n)),
            Some(num_classes) => {
                let spec = backbone.spec();
                let layer = &spec.head.layer;
                let dense = Dense::new(&layer_path(path, layer), spec.num_features, num_classes, spec.head.init);
                let group = LayerGroup::of_layers("head", path, [layer]);
                Some(Head { dense, dropout: spec.head.dropout, num_classes, group })
            }
        };
        Ok(Classifier { backbone, head })
    }

    /// Overrides the head's dropout rate and the backbone's stochastic depth (see
    /// [`Backbone::set_drop_path_rate`]); `None` keeps the architecture's reference value. Short runs from
    /// scratch learn faster with less of both.
    pub fn set_regularization(&mut self, dropout: Option<f64>, drop_path: Option<f64>) -> Result<(), ModelError> {
        if let Some(rate) = drop_path {
            if !self.backbone.set_drop_path_rate(rate) {
                return Err(ModelError::NoStochasticDepth(self.spec().name.to_string()));
            }
        }
        if let (Some(p), Some(head)) = (dropout, &mut self.head) {
            head.dropout = p;
        }
        Ok(())
    }

    /// Draws the head's dense layer afresh with `init`, as a new head built with it would start (the kernel by
    /// `init`, the bias zero but for [`Initializer::PyTorchDefault`]), and leaves the backbone alone; nothing
    /// happens without a head. A new task's head wants it: an architecture's own top initialiser is scaled for
    /// ImageNet's 1000 classes, and for a handful gives logits an order of magnitude too large, where Keras'
    /// `Dense` default ([`Initializer::GLOROT_UNIFORM`]) does not.
    pub fn reset_head(&mut self, init: Initializer) {
        if let Some(head) = &self.head {
            head.dense.reset(init);
        }
    }

    /// Sets the momentum with which every batch norm of this model moves its running statistics in training
    /// (Keras' convention: the weight of the old value); `None` restores each layer's own. Other models are
    /// not affected. Keras' 0.99 suits fine-tuning from pretrained statistics; a short run from scratch wants
    /// faster ones (PyTorch's default corresponds to 0.9).
    pub fn set_batch_norm_momentum(&mut self, momentum: Option<f64>) {
        self.backbone.set_batch_norm_momentum(momentum);
    }

    /// Makes the backbone's batch norms train on the statistics of the global batch of a data-parallel job,
    /// pooled over the replicas `sync` sums over (synchronised batch norm); `None` for each replica's own.
    pub fn set_batch_norm_sync(&mut self, sync: Option<std::sync::Arc<dyn crate::ReplicaSum>>) {
        self.backbone.set_batch_norm_sync(sync);
    }

    /// The backbone's spec.
    pub fn spec(&self) -> &ModelSpec {
        self.backbone.spec()
    }

    /// The feature extractor under the head.
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// Number of outputs of the head, `None` without one.
    pub fn num_classes(&self) -> Option<i64> {
        self.head.as_ref().map(|h| h.num_classes)
    }

    /// Pooled features: the input of the head's dropout.
    ///
    /// # Shapes
    /// N×3×H×W → N×[`ModelSpec::num_features`].
    pub fn embedding(&self, xs: &Tensor, train: bool) -> Tensor {
        global_avg_pool(&self.backbone.forward_features(xs, train), false)
    }

    /// Logits (no softmax), or the pooled features without a head.
    ///
    /// # Shapes
    /// N×3×H×W → N×num_classes (N×num_features without a head).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_modes(xs, train, train)
    }

    /// Logits with the backbone and the head in separate modes: fine-tuning with frozen batch-norm
    /// statistics runs the backbone in inference mode (`backbone_train = false`, Keras'
    /// `base_model(x, training=False)`) while the head's dropout trains.
    ///
    /// # Shapes
    /// N×3×H×W → N×num_classes (N×num_features without a head).
    pub fn forward_modes(&self, xs: &Tensor, backbone_train: bool, head_train: bool) -> Tensor {
        let features = self.embedding(xs, backbone_train);
        match &self.head {
            None => features,
            Some(head) => head.dense.forward(&features.dropout(head.dropout, head_train)),
        }
    }

    /// The model's inference form ([`crate::inference`]) from its weights as they are now: what every
    /// prediction runs. Its logits are [`Classifier::forward_t`]'s in evaluation mode, within f32 rounding;
    /// later changes to the weights do not reach it.
    pub fn inference(&self) -> InferenceModel {
        self.form(None)
    }

    /// The inference form with its backbone in `kind` (bf16 or f16; f32 is [`Classifier::inference`]): batch
    /// norms are folded in f64 from the f32 weights, then rounded; inputs are cast to `kind`, and the feature
    /// map back to f32 for the pooling and the head. On the CPU oneDNN runs its bf16 kernels (AVX-512 BF16,
    /// AMX).
    pub fn inference_in(&self, kind: Kind) -> InferenceModel {
        if kind == Kind::Float {
            return self.inference();
        }
        crate::fused::in_kind(kind, || self.form(Some(kind)))
    }

    fn form(&self, kind: Option<Kind>) -> InferenceModel {
        let head =
            self.head.as_ref().map(|h| tch::no_grad(|| (h.dense.weight.detach().copy(), h.dense.bias.detach().copy())));
        InferenceModel::new(self.spec().clone(), self.backbone.inference(), head, kind)
    }

    /// The backbone's layer groups followed by `head` when there is one.
    pub fn layer_groups(&self) -> Vec<LayerGroup> {
        let mut groups = self.backbone.layer_groups();
        groups.extend(self.head.as_ref().map(|h| h.group.clone()));
        groups
    }
}

impl nn::ModuleT for Classifier {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Classifier::forward_t(self, xs, train)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tch::{Device, Kind};

    use super::*;

    /// Two training-mode forward passes of the same batch differ only through dropout and stochastic depth.
    /// Eight images: other tests draw from (and reseed) libtorch's global generator at the same time, and with
    /// two images both passes kept every block now and then (B0's drop rates average 0.1).
    fn training_passes_differ(name: &str, dropout: Option<f64>, drop_path: Option<f64>) -> bool {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut model = crate::build(name, &vs.root(), Some(3)).unwrap();
        model.set_regularization(dropout, drop_path).unwrap();
        let xs = Tensor::rand([8, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu)) * 255.0;
        let (a, b) = (model.forward_t(&xs, true), model.forward_t(&xs, true));
        a != b
    }

    #[test]
    fn regularization_can_be_switched_off_and_architectures_without_stochastic_depth_say_so() {
        for name in ["efficientnet_b0", "efficientnet_lite0"] {
            assert!(training_passes_differ(name, None, None), "{name}: the reference rates are random");
            assert!(training_passes_differ(name, Some(0.0), None), "{name}: stochastic depth alone is random");
            assert!(training_passes_differ(name, None, Some(0.0)), "{name}: dropout alone is random");
            assert!(!training_passes_differ(name, Some(0.0), Some(0.0)), "{name}: without either, passes agree");
        }
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut resnet = crate::build("resnet50_v2", &vs.root(), Some(3)).unwrap();
        let err = resnet.set_regularization(Some(0.1), Some(0.1)).unwrap_err();
        assert_eq!(err.to_string(), "resnet50_v2 has no stochastic depth to set a drop-path rate for");
        resnet.set_regularization(Some(0.1), None).unwrap();
    }

    #[test]
    fn reset_head_redraws_only_the_head_as_its_initializer_draws() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut model = crate::build("efficientnet_lite0", &vs.root().sub("m"), Some(10)).unwrap();
        let before: HashMap<String, Tensor> = vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
        model.reset_head(Initializer::GLOROT_UNIFORM);
        let head = model.layer_groups().pop().unwrap();
        for (name, t) in vs.variables() {
            assert_eq!(t.equal(&before[&name]), !head.contains(&name), "{name}: only the head changes");
        }
        // Glorot-uniform on ±sqrt(6 / (fan_in + fan_out)) and a zero bias (PyTorch's default, the architecture's
        // own, had drawn a non-zero one).
        let variables = vs.variables();
        let (weight, bias) = (&variables["m._fc.weight"], &variables["m._fc.bias"]);
        let bound = (6.0 / (1280.0 + 10.0f64)).sqrt();
        let max = weight.abs().max().double_value(&[]);
        assert!(max <= bound && max > 0.99 * bound, "largest |weight| {max}, bound {bound}");
        let variance = weight.var(true).double_value(&[]);
        assert!((variance / (bound * bound / 3.0) - 1.0).abs() < 0.05, "variance {variance}");
        assert_eq!(bias.abs().sum(Kind::Float).double_value(&[]), 0.0);

        let vs = nn::VarStore::new(Device::Cpu);
        let mut backbone = crate::build("efficientnet_lite0", &vs.root(), None).unwrap();
        let before: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
        backbone.reset_head(Initializer::GLOROT_UNIFORM);
        assert!(before.iter().all(|(n, t)| vs.variables()[n].equal(t)), "without a head nothing changes");
    }

    /// How far one training pass from zero running means moves `model`'s, relative to `reference`'s from the
    /// same weights and input: `Σ a·b / Σ b²` over every batch norm, hence `(1 - momentum) / (1 - reference's)`.
    /// (In training the batch statistics normalise, not the running ones, so both models' batch norms see the
    /// same inputs.)
    fn running_mean_ratio(model: (&nn::VarStore, &Classifier), reference: (&nn::VarStore, &Classifier)) -> f64 {
        let running_means = |vs: &nn::VarStore| {
            let means: HashMap<String, Tensor> =
                vs.variables().into_iter().filter(|(n, _)| n.ends_with("running_mean")).collect();
            tch::no_grad(|| means.values().for_each(|t| _ = t.shallow_clone().zero_()));
            means
        };
        let (a, b) = (running_means(model.0), running_means(reference.0));
        let xs = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)) * 255.0;
        let _ = tch::no_grad(|| (model.1.forward_t(&xs, true), reference.1.forward_t(&xs, true)));
        let (mut ab, mut bb) = (0.0, 0.0);
        for (name, b) in &b {
            ab += (&a[name] * b).sum(Kind::Double).double_value(&[]);
            bb += (b * b).sum(Kind::Double).double_value(&[]);
        }
        ab / bb
    }

    #[test]
    fn batch_norm_momentum_is_set_per_model_and_none_restores_the_layers_own() {
        // A Keras family (momentum 0.99, biased running variance) and a PyTorch one (0.9, unbiased).
        for (name, own) in [("efficientnet_b0", 0.99), ("mobilenet_v2", 0.9)] {
            tch::manual_seed(3);
            let build = || {
                let vs = nn::VarStore::new(Device::Cpu);
                let mut model = crate::build(name, &vs.root(), None).unwrap();
                model.set_regularization(None, (name == "efficientnet_b0").then_some(0.0)).unwrap();
                (vs, model)
            };
            let ((vs_a, mut a), (mut vs_b, mut b)) = (build(), build());
            vs_b.copy(&vs_a).unwrap();
            let assert_ratio = |a: &Classifier, b: &Classifier, expected: f64, what: &str| {
                let ratio = running_mean_ratio((&vs_a, a), (&vs_b, b));
                assert!((ratio / expected - 1.0).abs() < 1e-4, "{name}, {what}: ratio {ratio}, expected {expected}");
            };
            a.set_batch_norm_momentum(Some(0.5));
            assert_ratio(&a, &b, 0.5 / (1.0 - own), "one model set, the other keeps its layers' own");
            b.set_batch_norm_momentum(Some(0.8));
            assert_ratio(&a, &b, 0.5 / 0.2, "each model its own setting");
            a.set_batch_norm_momentum(None);
            assert_ratio(&a, &b, (1.0 - own) / 0.2, "None restores the layers' own");
            b.set_batch_norm_momentum(None);
            assert_ratio(&a, &b, 1.0, "both the layers' own");
        }
    }
}
