//! Architectures by name: the only place that knows which families exist.
//!
//! Each family module lists its variants through [`Variants`] (names, specs, constructors); adding a family is
//! one entry in `FAMILIES`.

use tch::nn;

use crate::backbone::{Backbone, ModelError, ModelSpec, Variants};
use crate::classifier::Classifier;
use crate::{efficientnet, efficientnet_lite, inception_resnet_v2, mobilenet, resnet, resnet_v2};

/// One architecture family's entry points.
struct Family {
    names: fn() -> Vec<&'static str>,
    spec: fn(&str) -> Option<ModelSpec>,
    build: fn(&str, &nn::Path) -> Option<Box<dyn Backbone>>,
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
    use crate::import_rules::{ImportRules, TimmLayout};

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

    /// The families that need more than the generic weight import declare it; the others add nothing.
    #[test]
    fn families_declare_their_weight_import_rules() {
        let rules = |name| spec(name).unwrap().import;
        assert_eq!(rules("mobilenet_v2").timm, Some(TimmLayout::TorchvisionFeatures));
        for name in ["efficientnet_lite0", "efficientnet_lite4"] {
            assert_eq!(rules(name).timm, Some(TimmLayout::Lukemelas), "{name}");
        }
        for name in ["efficientnet_b0", "efficientnet_b7"] {
            assert!(rules(name).after_keras.is_some() && rules(name).timm.is_none(), "{name}");
        }
        for name in ["resnet50", "resnet152", "resnet50_v2", "inception_resnet_v2"] {
            assert_eq!(rules(name), ImportRules::default(), "{name}");
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
