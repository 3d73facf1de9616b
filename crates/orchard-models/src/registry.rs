//! Architectures by name: the only place that knows which families exist.
//!
//! Each family module offers its variant names, their specs, and a constructor (most through a preset table,
//! [`VariantTable`]); adding a family is one entry in `FAMILIES`.

use tch::nn;

use crate::backbone::{Backbone, Classifier, ModelSpec};
use crate::{efficientnet, efficientnet_lite, mobilenet, resnet};

/// Errors of building a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {name:?}; registered models: {}", known.join(", "))]
    UnknownModel { name: String, known: Vec<&'static str> },
    #[error("a classification head needs at least one class, got num_classes = {0}")]
    InvalidNumClasses(i64),
}

/// One architecture family's entry points.
struct Family {
    names: fn() -> Vec<&'static str>,
    spec: fn(&str) -> Option<ModelSpec>,
    build: fn(&str, &nn::Path) -> Option<Box<dyn Backbone>>,
}

const FAMILIES: &[Family] = &[
    Family::table::<efficientnet::Variant>(),
    Family::table::<resnet::Variant>(),
    Family::table::<mobilenet::Variant>(),
    Family::table::<efficientnet_lite::Variant>(),
];

/// A family whose members are the rows of one preset table: its registry entry follows from the table.
pub trait VariantTable: Sized + 'static {
    /// Every member, smallest first.
    const VARIANTS: &'static [Self];

    /// The member's registry name.
    fn name(&self) -> &'static str;

    /// The member's spec, without building it.
    fn model_spec(&self) -> ModelSpec;

    /// Builds the member with fresh weights under `path`, as its reference framework does by default.
    fn build_backbone(&self, path: &nn::Path) -> Box<dyn Backbone>;

    /// Looks a member up by registry name.
    fn by_name(name: &str) -> Option<&'static Self> {
        Self::VARIANTS.iter().find(|v| v.name() == name)
    }
}

impl Family {
    /// The entry of a family defined by its [`VariantTable`].
    const fn table<V: VariantTable>() -> Family {
        Family { names: table_names::<V>, spec: table_spec::<V>, build: table_build::<V> }
    }
}

fn table_names<V: VariantTable>() -> Vec<&'static str> {
    V::VARIANTS.iter().map(V::name).collect()
}

fn table_spec<V: VariantTable>(name: &str) -> Option<ModelSpec> {
    V::by_name(name).map(V::model_spec)
}

fn table_build<V: VariantTable>(name: &str, path: &nn::Path) -> Option<Box<dyn Backbone>> {
    V::by_name(name).map(|v| v.build_backbone(path))
}

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
