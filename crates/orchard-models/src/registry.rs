//! Architectures by name: the only place that knows which families exist.
//!
//! Each family module offers its variant names, their specs, and a constructor (most through a preset table,
//! [`VariantTable`]); adding a family is one entry in `FAMILIES`.

use tch::nn;

use crate::backbone::{Backbone, Classifier, ModelSpec};
use crate::{efficientnet, efficientnet_lite, inception_resnet_v2, mobilenet, resnet, resnet_v2};

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

/// One architecture family's entry points.
struct Family {
    names: fn() -> Vec<&'static str>,
    spec: fn(&str) -> Option<ModelSpec>,
    build: fn(&str, &nn::Path) -> Option<Box<dyn Backbone>>,
}

/// A family's table of variants: what a family module provides so that the registry can list, describe and
/// build its members: its names, specs and constructors all derive from the table.
pub trait Variants: Sized + Sync + 'static {
    /// Every variant, smallest first.
    const ALL: &'static [Self];
    /// The variant's registry name.
    fn name(&self) -> &'static str;
    /// The variant's spec, without building it.
    fn spec(&self) -> ModelSpec;
    /// Builds the variant with fresh weights as its reference framework does (Keras `weights=None`).
    fn build(&self, path: &nn::Path) -> Box<dyn Backbone>;

    /// Looks a variant up by registry name.
    fn by_name(name: &str) -> Option<&'static Self> {
        Self::ALL.iter().find(|v| v.name() == name)
    }
}

impl Family {
    /// The entry points of the family whose variants are `V`.
    const fn of<V: Variants>() -> Family {
        Family {
            names: || V::ALL.iter().map(V::name).collect(),
            spec: |name| V::by_name(name).map(V::spec),
            build: |name, path| V::by_name(name).map(|v| v.build(path)),
        }
    }
}

const FAMILIES: &[Family] = &[
    Family::of::<efficientnet::Variant>(),
    Family::of::<resnet_v2::Variant>(),
    Family::of::<inception_resnet_v2::Variant>(),
    Family::of::<resnet::Variant>(),
    Family::of::<mobilenet::Variant>(),
    Family::of::<efficientnet_lite::Variant>(),
];

/// Every registered architecture, family by family, smallest variant first.
pub fn names() -> Vec<&'static str> {
    FAMILIES.iter().flat_map(|f| (f.names)()).collect()
}

fn unknown(name: &str) -> ModelError {
    ModelError::UnknownModel { name: name.to_string(), known: names() }
}

/// The spec of a registered architecture, without building it.
pub fn spec(name: &str) -> Result<ModelSpec, ModelError> {
    FAMILIES.iter().find_map(|f| (f.spec)(name)).ok_or_else(|| unknown(name))
}

/// Builds a registered architecture's backbone with fresh weights, its variables under `path`.
pub fn build_backbone(name: &str, path: &nn::Path) -> Result<Box<dyn Backbone>, ModelError> {
    FAMILIES.iter().find_map(|f| (f.build)(name, path)).ok_or_else(|| unknown(name))
}

/// Builds a registered architecture with its reference head of `num_classes` outputs, or without a head
/// (`None`, Keras' `include_top=False, pooling="avg"`), all variables under `path`.
pub fn build(name: &str, path: &nn::Path, num_classes: Option<i64>) -> Result<Classifier, ModelError> {
    if let Some(n @ ..=0) = num_classes {
        return Err(ModelError::InvalidNumClasses(n));
    }
    Classifier::new(build_backbone(name, path)?, path, num_classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_each_has_a_spec_of_its_own_name() {
        let names = names();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for name in names {
            assert_eq!(spec(name).unwrap().name, name);
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let err = build("efficientnet_b9", &vs.root(), None).unwrap_err();
        assert!(err.to_string().contains("efficientnet_b9") && err.to_string().contains("efficientnet_b0"), "{err}");
        assert!(matches!(build("efficientnet_b0", &vs.root(), Some(0)), Err(ModelError::InvalidNumClasses(0))));
    }
}
