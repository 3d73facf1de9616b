//! The interface every architecture implements: a [`Backbone`] turns normalised images into a feature map and
//! says what the rest of Orchard needs to know about it ([`ModelSpec`]); a family module lists its members
//! through [`Variants`] and builds their layers into [`Built`], the one implementation of [`Backbone`].
//! [`crate::Classifier`] puts a head on any backbone.

use std::fmt;
use std::sync::Arc;

use tch::{nn, Tensor};

use crate::batch_norm::{ReplicaSum, SharedBatchNorm};
use crate::import_rules::ImportRules;
use crate::inference::InferenceLayers;
use crate::init::Initializer;
use crate::layers::layer_path;
use crate::Normalization;

/// Errors of building a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {name:?}; registered models: {}", known.join(", "))]
    UnknownModel { name: String, known: Vec<&'static str> },
    #[error("a classification head needs at least one class, got num_classes = {0}")]
    InvalidNumClasses(i64),
    #[error("{0} has no stochastic depth to set a drop-path rate for")]
    NoStochasticDepth(String),
    #[error("{name} needs inputs of at least {min}x{min} pixels, got {width}x{height} (width x height)")]
    InputTooSmall { name: String, min: i64, height: i64, width: i64 },
}

/// What the rest of Orchard needs to know about an architecture without building it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Registry name, e.g. `efficientnet_b0`.
    pub name: &'static str,
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
    /// What the family adds to the import of other frameworks' weight files.
    pub import: ImportRules,
}

/// Keras' smallest input side for its applications other than InceptionResNetV2 (75).
pub const KERAS_MIN_SIZE: i64 = 32;

impl ModelSpec {
    /// The spec of an architecture designed for `size`×`size` inputs, accepting sides down to
    /// [`KERAS_MIN_SIZE`] and importing weights by the generic rules alone; the `with_` methods change those.
    pub fn new(name: &'static str, size: i64, normalization: Normalization, num_features: i64, head: HeadSpec) -> Self {
        ModelSpec {
            name,
            default_size: (size, size),
            min_size: KERAS_MIN_SIZE,
            normalization,
            num_features,
            head,
            import: ImportRules::default(),
        }
    }

    /// The spec with another smallest input side.
    pub fn with_min_size(self, min_size: i64) -> Self {
        ModelSpec { min_size, ..self }
    }

    /// The spec with the family's import rules.
    pub fn with_import(self, import: ImportRules) -> Self {
        ModelSpec { import, ..self }
    }

    /// Refuses an input of `height`×`width` that is smaller than [`ModelSpec::min_size`] on either side, before
    /// libtorch would fail deep inside the network.
    pub fn check_input(&self, height: i64, width: i64) -> Result<(), ModelError> {
        if height < self.min_size || width < self.min_size {
            return Err(ModelError::InputTooSmall { name: self.name.to_string(), min: self.min_size, height, width });
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

impl HeadSpec {
    /// The dense layer `layer`, after dropout at `dropout`, its kernel drawn by `init`.
    pub fn new(layer: &str, dropout: f64, init: Initializer) -> Self {
        HeadSpec { dropout, layer: layer.to_string(), init }
    }
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

    /// Sets the momentum with which every batch norm of this backbone, and of no other, moves its running
    /// statistics in training (Keras' convention: the weight of the old value); `None` restores each layer's
    /// own.
    fn set_batch_norm_momentum(&mut self, momentum: Option<f64>);

    /// Makes every batch norm of this backbone train on the statistics of the global batch, pooled over the
    /// replicas `sync` sums over; `None` for each replica's own batch.
    fn set_batch_norm_sync(&mut self, sync: Option<Arc<dyn ReplicaSum>>);

    /// The backbone's inference form ([`crate::inference`]), from its weights as they are now.
    fn inference(&self) -> Box<dyn InferenceLayers>;
}

/// What a family's layers compute; [`Built`] adds what every backbone carries beside them.
pub trait Layers: Send + fmt::Debug {
    /// The feature map: [`Backbone::forward_features`].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor;

    /// [`Backbone::set_drop_path_rate`].
    fn set_drop_path_rate(&mut self, _rate: f64) -> bool {
        false
    }

    /// [`Backbone::inference`]: the same layers with batch norms folded and activations fused.
    fn inference(&self) -> Box<dyn InferenceLayers>;
}

/// A family's layers with their spec, layer groups and batch-norm settings: the one implementation of
/// [`Backbone`], so that a family writes only what its layers are and compute.
#[derive(Debug)]
pub struct Built<L> {
    spec: ModelSpec,
    groups: Vec<LayerGroup>,
    batch_norm: SharedBatchNorm,
    /// The family's layers.
    pub(crate) layers: L,
}

impl<L> Built<L> {
    /// Runs `build`, which makes the layers of the architecture of `spec` and their layer groups; every batch
    /// norm it creates follows this backbone's batch-norm settings.
    pub(crate) fn new(spec: ModelSpec, build: impl FnOnce() -> (L, Vec<LayerGroup>)) -> Self {
        let ((layers, groups), batch_norm) = SharedBatchNorm::share(build);
        Built { spec, groups, batch_norm, layers }
    }
}

impl<L: Layers> Backbone for Built<L> {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers.forward_t(xs, train)
    }

    fn layer_groups(&self) -> Vec<LayerGroup> {
        self.groups.clone()
    }

    fn set_drop_path_rate(&mut self, rate: f64) -> bool {
        self.layers.set_drop_path_rate(rate)
    }

    fn set_batch_norm_momentum(&mut self, momentum: Option<f64>) {
        self.batch_norm.set(momentum);
    }

    fn set_batch_norm_sync(&mut self, sync: Option<Arc<dyn ReplicaSum>>) {
        self.batch_norm.set_sync(sync);
    }

    fn inference(&self) -> Box<dyn InferenceLayers> {
        self.layers.inference()
    }
}

/// A family's table of variants: what a family module provides so that the registry can list, describe and
/// build its members: its names, specs and constructors all derive from the table.
pub trait Variants: Sized + Sync + 'static {
    /// Every variant, smallest first.
    const ALL: &'static [Self];
    /// The variant's spec, without building it.
    fn spec(&self) -> ModelSpec;
    /// Builds the variant with fresh weights as its reference framework does (Keras `weights=None`).
    fn build(&self, path: &nn::Path) -> Box<dyn Backbone>;

    /// The variant's registry name, its spec's.
    fn name(&self) -> &'static str {
        self.spec().name
    }

    /// Looks a variant up by registry name.
    fn by_name(name: &str) -> Option<&'static Self> {
        Self::ALL.iter().find(|v| v.name() == name)
    }
}

/// Builds `name` with a 1000-class head at the root of a var store and checks that its variables are exactly
/// the keys and shapes of its PyTorch reference's state dict, as `tests/fixtures/state_dict_keys.py` lists them
/// in `tests/fixtures/state_dict_keys/<name>.txt` (one `key dim dim …` line per tensor, without the batch-norm
/// step counters): the reference's weight files then load by name.
#[cfg(test)]
pub(crate) fn assert_variables_are_the_state_dict(name: &str) {
    use std::collections::BTreeMap;

    let file = format!("{}/tests/fixtures/state_dict_keys/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let listing = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let expected: BTreeMap<&str, Vec<i64>> = listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?, fields.map(|d| d.parse().unwrap()).collect()))
        })
        .collect();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _model = crate::build(name, &vs.root(), Some(1000)).unwrap();
    let actual: BTreeMap<String, Vec<i64>> = vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect();
    let missing: Vec<&&str> = expected.keys().filter(|k| !actual.contains_key(**k)).collect();
    let unexpected: Vec<&String> = actual.keys().filter(|k| !expected.contains_key(k.as_str())).collect();
    let mis_shaped: Vec<(&String, &Vec<i64>)> =
        actual.iter().filter(|(k, shape)| expected.get(k.as_str()).is_some_and(|s| s != *shape)).collect();
    assert!(expected.len() > 100, "{file} lists only {} tensors", expected.len());
    assert!(
        missing.is_empty() && unexpected.is_empty() && mis_shaped.is_empty(),
        "{name}: missing {missing:?}, unexpected {unexpected:?}, mis-shaped {mis_shaped:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `name` with a 4-class head under a non-root path, as an ensemble member is, and checks that its
    /// layer groups are `expected`, in order, and that every variable is in exactly one of them.
    fn assert_groups_partition(name: &str, expected: &[&str]) {
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

    /// Every family's layer groups from the input to the head (the names `group_lr` takes), each holding its
    /// own variables; that they cover every model's variables once is also checked by the sweep test.
    #[test]
    fn layer_groups_are_named_in_order_and_hold_every_variable_once() {
        let seven_stages =
            ["stem", "block1", "block2", "block3", "block4", "block5", "block6", "block7", "top", "head"];
        let inception = ["stem", "mixed_5b", "block35", "mixed_6a", "block17", "mixed_7a", "block8", "top", "head"];
        let families: [(&str, &[&str]); 6] = [
            ("efficientnet_b0", &seven_stages),
            ("efficientnet_lite2", &seven_stages),
            ("mobilenet_v2", &seven_stages),
            ("resnet50", &["stem", "layer1", "layer2", "layer3", "layer4", "head"]),
            ("resnet50_v2", &["stem", "conv2", "conv3", "conv4", "conv5", "top", "head"]),
            ("inception_resnet_v2", &inception),
        ];
        for (name, expected) in families {
            assert_groups_partition(name, expected);
        }
    }

    #[test]
    fn inputs_below_the_architecture_minimum_are_refused_by_name() {
        let irv2 = crate::spec("inception_resnet_v2").unwrap();
        irv2.check_input(75, 75).unwrap();
        let err = irv2.check_input(74, 299).unwrap_err();
        assert_eq!(
            err.to_string(),
            "inception_resnet_v2 needs inputs of at least 75x75 pixels, got 299x74 (width x height)"
        );
        for name in crate::names() {
            let spec = crate::spec(name).unwrap();
            spec.check_input(spec.default_size.0, spec.default_size.1).unwrap();
            assert!(spec.check_input(64, 31).is_err(), "{name}");
        }
    }
}
