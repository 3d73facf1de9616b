//! ResNet-50/101/152 v2, the pre-activation residual networks (He, Zhang, Ren & Sun, "Identity Mappings in
//! Deep Residual Networks", ECCV 2016, <https://arxiv.org/abs/1603.05027>), exactly as
//! `keras.applications.ResNet50V2` … `ResNet152V2` build them (Keras 3.15, `keras/src/applications/resnet.py`
//! and `resnet_v2.py`).
//!
//! One table ([`VARIANTS`]) gives the blocks per stage; everything else is shared. As in Keras:
//! - the input is already scaled to [-1, 1] (Keras `resnet_v2.preprocess_input`, mode "tf");
//! - the stem is `conv1_pad` (3 zeros each side) → `conv1_conv` (7×7, stride 2, "valid", with a bias) →
//!   `pool1_pad` (1 zero each side: the stem has no batch norm or ReLU, so the zeros can win the max) →
//!   `pool1_pool` (3×3 max, stride 2);
//! - each bottleneck block is pre-activated: `preact_bn` → ReLU feeds the 1×1 `_1_conv` and, in a stage's first
//!   block, the 1×1 `_0_conv` shortcut (with bias); `_2_pad` (1 zero each side) → 3×3 `_2_conv` carries the
//!   block's stride; `_3_conv` (1×1, with bias) widens to 4× the bottleneck and is added to the shortcut
//!   without a batch norm after it. Only `_1_conv` and `_2_conv` lack biases;
//! - the stride of a stage sits in its *last* block (conv2 … conv4 stride 2, conv5 stride 1), whose identity
//!   shortcut is then a 1×1 max pooling with that stride: a subsampling of the block's input, taken before the
//!   pre-activation;
//! - `post_bn` → ReLU closes the network; the head (global average pooling, dense `predictions` with Keras'
//!   default `glorot_uniform` kernel, no dropout) is [`crate::Classifier`]'s;
//! - batch norm has epsilon 1.001e-5 (not the 1e-3 of the other Keras families) and momentum 0.99; kernels are
//!   `glorot_uniform`, biases zero.

use tch::{nn, Tensor};

use crate::backbone::{Backbone, Built, HeadSpec, LayerGroup, Layers, ModelSpec, Variants};
use crate::batch_norm::BatchNorm;
use crate::fused::{Activation, FrozenBatchNorm, FusedConv, PreactivatedPointwise};
use crate::inference::InferenceLayers;
use crate::init::Initializer;
use crate::layers::{max_pool, max_pool_zero_padded, zero_pad, Conv2d, ConvConfig, Padding};
use crate::{resnet, Normalization};

// ---------------------------------------------------------------------------------------------------------
// Constants and the table

/// Keras' batch-norm epsilon in `resnet.py`.
pub const BN_EPSILON: f64 = 1.001e-5;
/// Bottleneck widths of the four stages (`conv2` … `conv5`); each block widens to 4× this.
pub const STAGE_FILTERS: [i64; 4] = [64, 128, 256, 512];
/// Strides of the stages, applied in each stage's last block (Keras `stride1`).
pub const STAGE_STRIDES: [i64; 4] = [2, 2, 2, 1];
/// Width of the pooled features: 4 × the last stage's bottleneck.
pub const NUM_FEATURES: i64 = 2048;
/// Channels of the stem convolution.
const STEM_FILTERS: i64 = 64;
/// Keras' default input size for the family.
const DEFAULT_SIZE: i64 = 224;

/// One member of the family: its name and the blocks of each stage (`conv2` … `conv5`), as for ResNet v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant(pub resnet::Variant);

/// ResNet50V2, ResNet101V2, ResNet152V2 as their Keras `stack_fn`s stack them: with the blocks of ResNet-50,
/// -101 and -152 (He et al. 2016, Table 1).
pub const VARIANTS: [Variant; 3] = [v2("resnet50_v2", 0), v2("resnet101_v2", 1), v2("resnet152_v2", 2)];

/// The v2 of `resnet::VARIANTS[n]`.
const fn v2(name: &'static str, n: usize) -> Variant {
    Variant(resnet::Variant { name, blocks: resnet::VARIANTS[n].blocks })
}

// ---------------------------------------------------------------------------------------------------------
// Registry entry

impl Variants for Variant {
    const ALL: &'static [Self] = &VARIANTS;

    /// The variant's spec: 224×224, [-1, 1] input, 2048 features, Keras' plain dense top.
    fn spec(&self) -> ModelSpec {
        let head = HeadSpec::new("predictions", 0.0, Initializer::GLOROT_UNIFORM);
        ModelSpec::new(self.0.name, DEFAULT_SIZE, Normalization::SignedUnit, NUM_FEATURES, head)
    }

    fn build(&self, path: &nn::Path) -> Box<dyn Backbone> {
        Box::new(ResNetV2::new(path, self))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Blocks

fn batch_norm(path: &nn::Path, channels: i64) -> BatchNorm {
    BatchNorm::with_constants(path, channels, BN_EPSILON, BatchNorm::KERAS_MOMENTUM)
}

/// What a block adds its residual to.
#[derive(Debug)]
enum Shortcut {
    /// `_0_conv`, a 1×1 convolution of the pre-activated input (a stage's first block).
    Conv(Conv2d),
    /// The block's input itself.
    Identity,
    /// The block's input subsampled by a 1×1 max pooling with this stride (a stage's strided last block).
    Subsample(i64),
}

/// A pre-activation bottleneck block, Keras' `residual_block_v2`.
#[derive(Debug)]
struct Block {
    preact_bn: BatchNorm,
    shortcut: Shortcut,
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
}

impl Block {
    /// The block `name` (e.g. `conv3_block4`) from `c_in` channels through a bottleneck of `filters` to
    /// `4 · filters`.
    fn new(path: &nn::Path, name: &str, c_in: i64, filters: i64, stride: i64, conv_shortcut: bool) -> Self {
        let layer = |suffix: &str| path.sub(format!("{name}_{suffix}"));
        let c_out = 4 * filters;
        let shortcut = if conv_shortcut {
            Shortcut::Conv(Conv2d::new(&layer("0_conv"), c_in, c_out, ConvConfig::new(1).stride(stride).bias(true)))
        } else if stride > 1 {
            Shortcut::Subsample(stride)
        } else {
            Shortcut::Identity
        };
        Block {
            preact_bn: batch_norm(&layer("preact_bn"), c_in),
            shortcut,
            conv1: Conv2d::new(&layer("1_conv"), c_in, filters, ConvConfig::new(1)),
            bn1: batch_norm(&layer("1_bn"), filters),
            conv2: Conv2d::new(
                &layer("2_conv"),
                filters,
                filters,
                ConvConfig::new(3).stride(stride).padding(Padding::Valid),
            ),
            bn2: batch_norm(&layer("2_bn"), filters),
            conv3: Conv2d::new(&layer("3_conv"), filters, c_out, ConvConfig::new(1).bias(true)),
        }
    }

    /// # Shapes
    /// N×C_in×H×W → N×4·filters×⌈H/stride⌉×⌈W/stride⌉.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let preact = self.preact_bn.forward_act_t(xs, train, Activation::Relu);
        let shortcut = match &self.shortcut {
            Shortcut::Conv(conv) => conv.forward(&preact),
            Shortcut::Identity => xs.shallow_clone(),
            Shortcut::Subsample(stride) => max_pool(xs, 1, *stride),
        };
        let x = self.bn1.forward_act_t(&self.conv1.forward(&preact), train, Activation::Relu);
        let x = self.conv2.forward(&zero_pad(&x, [1, 1, 1, 1]));
        let x = self.bn2.forward_act_t(&x, train, Activation::Relu);
        shortcut + self.conv3.forward(&x)
    }
}

// ---------------------------------------------------------------------------------------------------------
// The model

/// A ResNet v2 backbone's layers: stem, four stages of pre-activation bottlenecks, final batch norm and ReLU.
#[derive(Debug)]
pub struct ResNetV2 {
    conv1: Conv2d,
    blocks: Vec<Block>,
    post_bn: BatchNorm,
}

impl ResNetV2 {
    /// Builds `variant` with fresh Keras-initialised weights, its variables under `path`.
    pub fn new(path: &nn::Path, variant: &Variant) -> Built<Self> {
        Built::new(variant.spec(), || {
            let conv1 = Conv2d::new(
                &path.sub("conv1_conv"),
                3,
                STEM_FILTERS,
                ConvConfig::new(7).stride(2).padding(Padding::Valid).bias(true),
            );
            let mut groups =
                vec![LayerGroup { name: "stem".into(), prefixes: vec![format!("{}.", path.path("conv1_conv"))] }];
            let mut blocks = Vec::new();
            let mut channels = STEM_FILTERS;
            for (s, &count) in variant.0.blocks.iter().enumerate() {
                let stage = format!("conv{}", s + 2);
                for b in 1..=count {
                    let stride = if b == count { STAGE_STRIDES[s] } else { 1 };
                    let name = format!("{stage}_block{b}");
                    blocks.push(Block::new(path, &name, channels, STAGE_FILTERS[s], stride, b == 1));
                    channels = 4 * STAGE_FILTERS[s];
                }
                // Every layer of the stage is `convN_blockM_…`.
                groups.push(LayerGroup { name: stage.clone(), prefixes: vec![path.path(&format!("{stage}_"))] });
            }
            let post_bn = batch_norm(&path.sub("post_bn"), channels);
            groups.push(LayerGroup { name: "top".into(), prefixes: vec![format!("{}.", path.path("post_bn"))] });
            (ResNetV2 { conv1, blocks, post_bn }, groups)
        })
    }
}

impl Layers for ResNetV2 {
    /// # Shapes
    /// N×3×H×W in [-1, 1] → N×2048×⌈H/32⌉×⌈W/32⌉.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.conv1.forward(&zero_pad(xs, [3, 3, 3, 3]));
        let mut x = max_pool(&zero_pad(&x, [1, 1, 1, 1]), 3, 2);
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        self.post_bn.forward_act_t(&x, train, Activation::Relu)
    }

    fn inference(&self) -> Box<dyn InferenceLayers> {
        let blocks = self.blocks.iter().map(FusedBlock::new).collect();
        Box::new(FusedResNetV2 {
            conv1: FusedConv::fold(&self.conv1, None, Activation::None).with_padding(Padding::Symmetric(3)),
            blocks,
            post_bn: FrozenBatchNorm::new(&self.post_bn),
        })
    }
}

/// A [`Shortcut`]'s inference form.
#[derive(Debug)]
enum FusedShortcut {
    Conv(FusedConv),
    Identity,
    Subsample(i64),
}

/// A [`Block`]'s inference form: the pre-activation stays a batch norm (it follows a residual sum, which is
/// also the identity shortcut, so no convolution can take it); `bn1` and `bn2` are folded, and `conv3` fuses
/// the residual sum. Where only conv1 reads the pre-activation (no convolution shortcut), one pass computes
/// both on CPUs with AVX-512 ([`PreactivatedPointwise`]).
#[derive(Debug)]
struct FusedBlock {
    preact: FrozenBatchNorm,
    shortcut: FusedShortcut,
    conv1: FusedConv,
    preactivated_conv1: Option<PreactivatedPointwise>,
    conv2: FusedConv,
    conv3: FusedConv,
}

impl FusedBlock {
    fn new(block: &Block) -> Self {
        let preact = FrozenBatchNorm::new(&block.preact_bn);
        let shortcut = match &block.shortcut {
            Shortcut::Conv(conv) => FusedShortcut::Conv(FusedConv::fold(conv, None, Activation::None)),
            Shortcut::Identity => FusedShortcut::Identity,
            Shortcut::Subsample(stride) => FusedShortcut::Subsample(*stride),
        };
        let conv1 = FusedConv::fold(&block.conv1, Some(&block.bn1), Activation::Relu);
        let preactivated_conv1 = match shortcut {
            FusedShortcut::Conv(_) => None,
            _ => PreactivatedPointwise::new(&preact, &conv1),
        };
        FusedBlock {
            preact,
            shortcut,
            conv1,
            preactivated_conv1,
            conv2: FusedConv::fold(&block.conv2, Some(&block.bn2), Activation::Relu)
                .with_padding(Padding::Symmetric(1)),
            conv3: FusedConv::fold(&block.conv3, None, Activation::None),
        }
    }

    fn forward(&self, xs: Tensor) -> Tensor {
        // Each tensor goes as soon as its last reader has run: the block's input once the shortcut is made,
        // the pre-activation once conv1 (and a convolution shortcut) have read it, conv1's output once conv2
        // has.
        let (bottleneck, shortcut) = match &self.preactivated_conv1 {
            Some(layer) if layer.runs(&xs) => (layer.forward(&xs), self.shortcut(xs, None)),
            _ => {
                let preact = self.preact.forward(&xs, Activation::Relu);
                let shortcut = self.shortcut(xs, Some(&preact));
                (self.conv1.forward(&preact), shortcut)
            }
        };
        let x = self.conv2.forward(&bottleneck);
        drop(bottleneck);
        self.conv3.forward_add(&x, shortcut)
    }

    /// The shortcut of the block's input `xs`, whose pre-activation `preact` a convolution shortcut reads.
    fn shortcut(&self, xs: Tensor, preact: Option<&Tensor>) -> Tensor {
        match &self.shortcut {
            FusedShortcut::Identity => xs,
            FusedShortcut::Conv(conv) => {
                drop(xs);
                conv.forward(preact.expect("a convolution shortcut is made from the pre-activation"))
            }
            FusedShortcut::Subsample(stride) => max_pool(&xs, 1, *stride),
        }
    }
}

/// A [`ResNetV2`]'s inference form.
#[derive(Debug)]
struct FusedResNetV2 {
    conv1: FusedConv,
    blocks: Vec<FusedBlock>,
    post_bn: FrozenBatchNorm,
}

impl InferenceLayers for FusedResNetV2 {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let x = max_pool_zero_padded(&self.conv1.forward(xs), 3, 2, 1);
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        self.post_bn.forward(&x, Activation::Relu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_three_layers_per_block_plus_stem_and_top() {
        // The "50", "101", "152" count the weighted layers: 3 per bottleneck, the stem convolution, the dense top.
        for (variant, depth) in VARIANTS.iter().zip([50, 101, 152]) {
            assert_eq!(3 * variant.0.blocks.iter().sum::<usize>() + 2, depth, "{}", variant.0.name);
        }
    }

    #[test]
    fn strides_sit_in_each_stages_last_block_with_a_subsampled_shortcut() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = ResNetV2::new(&vs.root(), &VARIANTS[0]);
        let kinds: Vec<String> = model
            .layers
            .blocks
            .iter()
            .map(|b| match b.shortcut {
                Shortcut::Conv(_) => "conv".to_string(),
                Shortcut::Identity => "id".to_string(),
                Shortcut::Subsample(s) => format!("pool{s}"),
            })
            .collect();
        #[rustfmt::skip]
        let expected = ["conv", "id", "pool2", "conv", "id", "id", "pool2", "conv", "id", "id", "id", "id", "pool2",
            "conv", "id", "id"];
        assert_eq!(kinds, expected);
        // An odd size exercises the padding: 97 → 49 (conv1) → 25 (pool1) → 13 → 7 → 4 → 4.
        let xs = Tensor::zeros([1, 3, 97, 97], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(tch::no_grad(|| model.forward_features(&xs, false)).size(), [1, NUM_FEATURES, 4, 4]);
    }
}
