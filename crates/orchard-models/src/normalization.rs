//! Pixel normalisation presets: how each backbone family expects its 0–255 input scaled.
//!
//! The preset is part of an architecture's spec ([`crate::ModelSpec::normalization`]), so it lives with the
//! architectures. Batches leave the loader as 8-bit pixels (a quarter of the bytes of f32, so a quarter of the
//! host-to-device traffic); the conversion `(x - mean) / std` happens in libtorch on the target device
//! (`orchard_torch::images`), with the per-channel constants [`Normalization::mean_std`] gives on the 0–255
//! scale.

use serde::{Deserialize, Serialize};

/// A backbone family's input convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// Raw 0–255: Keras EfficientNet rescales and normalises inside its own graph.
    Raw,
    /// [-1, 1] (`x / 127.5 - 1`): Keras ResNetV2 and InceptionResNetV2 (`preprocess_input` mode "tf").
    SignedUnit,
    /// ImageNet mean and standard deviation on [0, 1]: torchvision and timm models.
    ImageNet,
    /// `(x - 127) / 128`: EfficientNet-Lite's TF-Lite convention.
    Lite,
}

impl Normalization {
    /// Per-channel (mean, std) on the 0–255 scale, so that `normalised = (x - mean) / std`.
    pub fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        match self {
            Normalization::Raw => ([0.0; 3], [1.0; 3]),
            Normalization::SignedUnit => ([127.5; 3], [127.5; 3]),
            Normalization::ImageNet => {
                ([0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0], [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0])
            }
            Normalization::Lite => ([127.0; 3], [128.0; 3]),
        }
    }

    /// Normalises one interleaved RGB value on the CPU (for tests and tools that do not use libtorch).
    pub fn apply(self, rgb: [u8; 3]) -> [f32; 3] {
        let (mean, std) = self.mean_std();
        std::array::from_fn(|c| (rgb[c] as f32 - mean[c]) / std[c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_map_the_ends_of_the_range_as_their_frameworks_do() {
        assert_eq!(Normalization::Raw.apply([0, 128, 255]), [0.0, 128.0, 255.0]);
        assert_eq!(Normalization::SignedUnit.apply([0, 255, 0]), [-1.0, 1.0, -1.0]);
        assert_eq!(Normalization::Lite.apply([127, 255, 255]), [0.0, 1.0, 1.0]);
        let v = Normalization::ImageNet.apply([255, 0, 124]);
        assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((v[1] - (0.0 - 0.456) / 0.224).abs() < 1e-5);
        assert!((v[2] - (124.0 / 255.0 - 0.406) / 0.225).abs() < 1e-5);
    }
}
