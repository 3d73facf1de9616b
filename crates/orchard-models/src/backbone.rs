//! The interface every architecture implements, and the classifier that puts a head on any of them.
//!
//! A [`Backbone`] turns normalised images into a feature map; a [`Classifier`] pools that map, applies
//! dropout and a dense layer, the head every reference model here ends with (Keras' `avg_pool` →
//! `top_dropout` → `predictions`; timm's `forward_head`). Training, ensembling and serving hold a
//! `Classifier` and never ask which architecture is inside.

use std::fmt;

use orchard_data::normalize::Normalization;
use tch::{nn, Tensor};

use crate::init::Initializer;
use crate::layers::{global_avg_pool, layer_path, Dense};
use crate::registry::ModelError;

/// What the rest of Orchard needs to know about an architecture without building it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Registry name, e.g. `efficientnet_b0`.
    pub name: String,
    /// Input size `(height, width)` the architecture was designed and pre-trained at.
    pub default_size: (i64, i64),
    /// Smallest input side the architecture accepts (Keras' `min_size`): below it a valid-padded
    /// convolution or pooling would have nothing left to slide over.
    pub min_size: i64,
    /// How 0–255 pixels must be scaled before [`Backbone::forward_features`].
    pub normalization: Normalization,
    /// Channels of the feature map, hence the width of the pooled embedding.
    pub num_features: i64,
    /// The reference framework's head on top of this backbone.
    pub head: HeadSpec,
}

/// Keras' smallest input side for its applications other than InceptionResNetV2 (75).
pub const KERAS_MIN_SIZE: i64 = 32;

impl ModelSpec {
    /// Refuses an input of `height`×`width` that is smaller than [`ModelSpec::min_size`] on either side, before
    /// libtorch would fail deep inside the network.
    pub fn check_input(&self, height: i64, width: i64) -> Result<(), ModelError> {
        if height < self.min_size || width < self.min_size {
            return Err(ModelError::InputTooSmall { name: self.name.clone(), min: self.min_size, height, width });
        }
        Ok(())
    }
}

/// The head of an architecture in its reference framework: global average pooling, dropout, dense.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadSpec {
    /// Dropout rate before the dense layer, active only in training.
    pub dropout: f64,
    /// Name of the dense layer, under which its `weight` and `bias` are stored (Keras `predictions`,
    /// torchvision `fc` or, inside a `Sequential`, `classifier.1`).
    pub layer: String,
    /// Initialiser of the dense kernel (its bias starts at zero).
    pub init: Initializer,
}

/// A named set of layers trained together: the unit of freezing and of discriminative learning rates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerGroup {
    /// e.g. `stem`, `block3`, `top`, `head`.
    pub name: String,
    /// Var-store name prefixes of the group's variables, including the path the model was built under.
    pub prefixes: Vec<String>,
}

impl LayerGroup {
    /// The group `name` of the layers called `layers` under `path` (a layer name may have dots, as a
    /// PyTorch module path such as `features.1` does).
    pub fn of_layers<S: AsRef<str>>(name: &str, path: &nn::Path, layers: impl IntoIterator<Item = S>) -> Self {
        let prefixes = layers
            .into_iter()
            .map(|layer| layer_path(path, layer.as_ref()).components().map(|c| format!("{c}.")).collect())
            .collect();
        LayerGroup { name: name.to_string(), prefixes }
    }

    /// Whether the variable called `name` in the var store belongs to this group.
    pub fn contains(&self, name: &str) -> bool {
        self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// A feature extractor: one for every architecture.
pub trait Backbone: Send + fmt::Debug {
    /// The architecture's name, input size, preprocessing and width.
    fn spec(&self) -> &ModelSpec;

    /// The feature map before pooling. `train` switches batch norm (batch statistics, which it also folds
    /// into the moving averages, vs the moving averages), dropout and stochastic depth.
    ///
    /// # Shapes
    /// N×3×H×W, normalised per [`ModelSpec::normalization`] → N×[`ModelSpec::num_features`]×h×w.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor;

    /// The backbone's layer groups in order from the input to the top, together covering all its variables.
    fn layer_groups(&self) -> Vec<LayerGroup>;

    /// Sets the stochastic-depth rate of the last block, earlier blocks getting proportionally less as in the
    /// reference models (Keras' `drop_connect_rate`, timm's `drop_path_rate`). Returns false, changing
    /// nothing, for architectures without stochastic depth.
    fn set_drop_path_rate(&mut self, _rate: f64) -> bool {
        false
    }
}

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
                return Err(ModelError::NoStochasticDepth(self.spec().name.clone()));
            }
        }
        if let (Some(p), Some(head)) = (dropout, &mut self.head) {
            head.dropout = p;
        }
        Ok(())
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

/// Builds `name` with a 4-class head under a non-root path and checks that its layer groups are `expected`,
/// in order, and that every variable is in exactly one of them.
#[cfg(test)]
pub(crate) fn assert_groups_partition(name: &str, expected: &[&str]) {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let model = crate::build(name, &vs.root().sub("member0"), Some(4)).unwrap();
    let groups = model.layer_groups();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, expected, "{name}");
    for var in vs.variables().keys() {
        let owners: Vec<&str> = groups.iter().filter(|g| g.contains(var)).map(|g| g.name.as_str()).collect();
        assert_eq!(owners.len(), 1, "{name}: {var} is in groups {owners:?}");
    }
}

/// Builds `name` with a 1000-class head at the root of a var store and checks the shapes of the variables
/// `expected` names; returns every variable for further checks.
#[cfg(test)]
pub(crate) fn assert_variable_shapes(
    name: &str,
    expected: &[(&str, &[i64])],
) -> std::collections::HashMap<String, Tensor> {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _model = crate::build(name, &vs.root(), Some(1000)).unwrap();
    let vars = vs.variables();
    for (key, shape) in expected {
        assert_eq!(vars.get(*key).map(Tensor::size).as_deref(), Some(*shape), "{name}: {key}");
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two training-mode forward passes of the same batch differ only through dropout and stochastic depth.
    fn training_passes_differ(name: &str, dropout: Option<f64>, drop_path: Option<f64>) -> bool {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut model = crate::build(name, &vs.root(), Some(3)).unwrap();
        model.set_regularization(dropout, drop_path).unwrap();
        let xs = Tensor::rand([2, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu)) * 255.0;
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
}

#[cfg(test)]
mod input_size_tests {
    #[test]
    fn inputs_below_the_architecture_minimum_are_refused_by_name() {
        let irv2 = crate::spec("inception_resnet_v2").unwrap();
        irv2.check_input(75, 75).unwrap();
        let err = irv2.check_input(74, 299).unwrap_err();
        assert_eq!(err.to_string(), "inception_resnet_v2 needs inputs of at least 75x75 pixels, got 299x74 (width x height)");
        for name in crate::names() {
            let spec = crate::spec(name).unwrap();
            spec.check_input(spec.default_size.0, spec.default_size.1).unwrap();
            assert!(spec.check_input(64, 31).is_err(), "{name}");
        }
    }
}
