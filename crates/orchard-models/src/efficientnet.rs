//! EfficientNet-B0 … B7 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
//! Networks", ICML 2019, <https://arxiv.org/abs/1905.11946>), exactly as `keras.applications.EfficientNetB0`
//! … `B7` build them (Keras 3.15, `keras/src/applications/efficientnet.py`).
//!
//! One table of the B0 stages ([`BASE_STAGES`], Keras' `DEFAULT_BLOCKS_ARGS`) and one of the compound-scaling
//! coefficients ([`VARIANTS`]) define all eight models: widths go through Keras' `round_filters`, depths through
//! `round_repeats`. As in Keras:
//! - the input is 0–255 pixels; the graph rescales them by 1/255 and normalises them with a `Normalization`
//!   layer whose per-channel mean and variance (and a sample count) are weights of the model: zeros, ones and 0
//!   in a fresh model (Keras `weights=None`), loaded from a weights file otherwise;
//! - stride-2 convolutions (the stem and each stage's first depthwise convolution) are preceded by Keras'
//!   `correct_pad` zero padding and are "valid"; every other convolution is "same";
//! - each MBConv block is expand 1×1 (unless the expansion ratio is 1) → depthwise → squeeze-excitation
//!   (reduced to `max(1, ⌊filters_in · 0.25⌋)` channels of the block's *input*) → project 1×1, with a residual
//!   connection when the shape allows, under stochastic depth at rate `0.2 · b / blocks` for block `b`;
//! - batch norm has epsilon 1e-3 and momentum 0.99; the activation is swish (SiLU);
//! - the top is a 1×1 convolution to `round_filters(1280)` channels, and the head (global average pooling,
//!   dropout at the variant's rate, dense `predictions`) is [`crate::Classifier`]'s;
//! - variables are named after the Keras layers (`stem_conv`, `block2a_expand_conv`, `block2a_se_reduce`,
//!   `top_bn`, …; the input statistics under `normalization`), and initialised with Keras' initialisers.

use tch::{nn, Kind, Tensor};

use crate::backbone::{Backbone, Built, HeadSpec, LayerGroup, Layers, ModelSpec, Variants};
use crate::batch_norm::BatchNorm;
use crate::fused::{Activation, DenseExcitation, ExpandInPass, FusedConv, GatedProjection, InputStem, PooledDepthwise};
use crate::import_rules::{ImportRules, KerasFixup};
use crate::inference::InferenceLayers;
use crate::init::{Distribution, FanMode, Initializer};
use crate::layers::{correct_pad, drop_path, global_avg_pool, spatial, zero_pad, Conv2d, ConvConfig, Padding};
use crate::Normalization;
use orchard_torch::{fused_train, recomputed_conv};

// ---------------------------------------------------------------------------------------------------------
// Constants and initialisers

/// Stochastic-depth rate of the last block; earlier blocks get proportionally less.
pub const DROP_CONNECT_RATE: f64 = 0.2;
/// Channel counts are rounded to multiples of this.
pub const DEPTH_DIVISOR: i64 = 8;
/// The input rescaling factor 1/255 as Keras applies it: its TensorFlow backend turns the Python float into
/// an f32 tensor before casting it to the compute type, so even a float64 Keras model scales by this value.
const RESCALE: f64 = (1.0 / 255.0) as f32 as f64;
/// Keras' `backend.epsilon()`, the floor of the input normalisation's standard deviation.
const KERAS_EPSILON: f64 = 1e-7;
/// Per-channel standard deviations of ImageNet's RGB, which Keras' ImageNet weight files store as variances.
const IMAGENET_STDDEV_RGB: [f64; 3] = [0.229, 0.224, 0.225];

/// Keras `CONV_KERNEL_INITIALIZER`.
const CONV_INIT: Initializer =
    Initializer::VarianceScaling { scale: 2.0, mode: FanMode::Out, distribution: Distribution::TruncatedNormal };
/// Keras `DENSE_KERNEL_INITIALIZER`.
const DENSE_INIT: Initializer =
    Initializer::VarianceScaling { scale: 1.0 / 3.0, mode: FanMode::Out, distribution: Distribution::Uniform };

// ---------------------------------------------------------------------------------------------------------
// The tables

/// One stage of the B0 baseline (an entry of Keras' `DEFAULT_BLOCKS_ARGS`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageArgs {
    /// Depthwise kernel size.
    pub kernel: i64,
    /// Blocks in the stage, before depth scaling.
    pub repeats: i64,
    /// Input channels of the stage, before width scaling.
    pub filters_in: i64,
    /// Output channels of the stage, before width scaling.
    pub filters_out: i64,
    /// Expansion of the block's input channels by its first 1×1 convolution.
    pub expand_ratio: i64,
    /// Stride of the stage's first block.
    pub stride: i64,
    /// Squeeze-excitation width as a fraction of the block's input channels.
    pub se_ratio: f64,
    /// Whether blocks with matching shapes have a residual connection.
    pub id_skip: bool,
}

const fn stage(
    kernel: i64,
    repeats: i64,
    filters_in: i64,
    filters_out: i64,
    expand_ratio: i64,
    stride: i64,
) -> StageArgs {
    StageArgs { kernel, repeats, filters_in, filters_out, expand_ratio, stride, se_ratio: 0.25, id_skip: true }
}

/// The B0 stages, Keras' `DEFAULT_BLOCKS_ARGS`.
pub const BASE_STAGES: [StageArgs; 7] = [
    stage(3, 1, 32, 16, 1, 1),
    stage(3, 2, 16, 24, 6, 2),
    stage(5, 2, 24, 40, 6, 2),
    stage(3, 3, 40, 80, 6, 2),
    stage(5, 3, 80, 112, 6, 1),
    stage(5, 4, 112, 192, 6, 2),
    stage(3, 1, 192, 320, 6, 1),
];

/// One member of the family: compound-scaling coefficients and the head's dropout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant {
    /// Registry name.
    pub name: &'static str,
    /// Width coefficient (channels).
    pub width: f64,
    /// Depth coefficient (blocks per stage).
    pub depth: f64,
    /// Default input resolution (square).
    pub resolution: i64,
    /// Dropout before the classifier.
    pub dropout: f64,
}

const fn variant(name: &'static str, width: f64, depth: f64, resolution: i64, dropout: f64) -> Variant {
    Variant { name, width, depth, resolution, dropout }
}

/// B0 … B7 as `keras.applications.EfficientNetB0` … `B7` call `EfficientNet(...)`.
pub const VARIANTS: [Variant; 8] = [
    variant("efficientnet_b0", 1.0, 1.0, 224, 0.2),
    variant("efficientnet_b1", 1.0, 1.1, 240, 0.2),
    variant("efficientnet_b2", 1.1, 1.2, 260, 0.3),
    variant("efficientnet_b3", 1.2, 1.4, 300, 0.3),
    variant("efficientnet_b4", 1.4, 1.8, 380, 0.4),
    variant("efficientnet_b5", 1.6, 2.2, 456, 0.4),
    variant("efficientnet_b6", 1.8, 2.6, 528, 0.5),
    variant("efficientnet_b7", 2.0, 3.1, 600, 0.5),
];

/// Keras' (and the TF reference's) `round_filters`: scales a channel count by the width coefficient and rounds
/// it to a multiple of [`DEPTH_DIVISOR`], never more than 10% down.
pub fn round_filters(filters: i64, width: f64) -> i64 {
    let divisor = DEPTH_DIVISOR as f64;
    let filters = filters as f64 * width;
    let mut rounded = divisor.max(((filters + divisor / 2.0) as i64 / DEPTH_DIVISOR * DEPTH_DIVISOR) as f64);
    if rounded < 0.9 * filters {
        rounded += divisor;
    }
    rounded as i64
}

/// Keras' `round_repeats`: scales a stage's block count by the depth coefficient, rounding up.
pub fn round_repeats(repeats: i64, depth: f64) -> i64 {
    (depth * repeats as f64).ceil() as i64
}

/// One MBConv block as built: its stage's arguments after scaling, for one position in the stage.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockArgs {
    /// Keras' layer-name prefix, e.g. `block2a_` (EfficientNet-Lite names its blocks by position instead).
    pub name: String,
    /// Stage number, from 1.
    pub stage: usize,
    pub kernel: i64,
    pub stride: i64,
    pub filters_in: i64,
    pub filters_out: i64,
    pub expand_ratio: i64,
    pub se_ratio: f64,
    pub id_skip: bool,
    /// Stochastic-depth rate.
    pub drop_rate: f64,
}

impl BlockArgs {
    /// Channels after the expansion convolution.
    pub fn filters(&self) -> i64 {
        self.filters_in * self.expand_ratio
    }

    /// Channels of the squeeze-excitation bottleneck, `None` without one.
    pub fn filters_se(&self) -> Option<i64> {
        (self.se_ratio > 0.0 && self.se_ratio <= 1.0).then(|| ((self.filters_in as f64 * self.se_ratio) as i64).max(1))
    }

    /// Whether the block adds its input to its output.
    pub fn residual(&self) -> bool {
        self.id_skip && self.stride == 1 && self.filters_in == self.filters_out
    }
}

impl Variant {
    /// Keras' `round_filters` with this variant's width coefficient: see [`round_filters`].
    pub fn round_filters(&self, filters: i64) -> i64 {
        round_filters(filters, self.width)
    }

    /// Keras' `round_repeats` with this variant's depth coefficient: see [`round_repeats`].
    pub fn round_repeats(&self, repeats: i64) -> i64 {
        round_repeats(repeats, self.depth)
    }

    /// Every block of the model in order, as Keras' loop over `blocks_args` builds them, with stochastic
    /// depth rising to `drop_connect_rate` (Keras' default: [`DROP_CONNECT_RATE`]).
    pub fn blocks(&self, drop_connect_rate: f64) -> Vec<BlockArgs> {
        let scaled = |_, stage: &StageArgs| (self.round_repeats(stage.repeats), self.round_filters(stage.filters_in));
        lay_out_blocks(scaled, self.width, drop_connect_rate)
    }
}

/// Every block of a network of [`BASE_STAGES`] in order, as Keras' loop over `blocks_args` lays them out:
/// `stage_size(i, stage)` gives stage `i`'s number of blocks and the input channels of its first block (the
/// others read the stage's output, its `filters_out` rounded for `width`); stochastic depth rises linearly to
/// `drop_connect_rate` over all blocks. EfficientNet scales every stage; EfficientNet-Lite keeps some unscaled.
pub(crate) fn lay_out_blocks(
    stage_size: impl Fn(usize, &StageArgs) -> (i64, i64),
    width: f64,
    drop_connect_rate: f64,
) -> Vec<BlockArgs> {
    let total: i64 = BASE_STAGES.iter().enumerate().map(|(i, stage)| stage_size(i, stage).0).sum();
    let mut blocks = Vec::with_capacity(total as usize);
    for (i, stage) in BASE_STAGES.iter().enumerate() {
        let (repeats, filters_in) = stage_size(i, stage);
        let filters_out = round_filters(stage.filters_out, width);
        for j in 0..repeats {
            let first = j == 0;
            blocks.push(BlockArgs {
                name: format!("block{}{}_", i + 1, char::from(b'a' + j as u8)),
                stage: i + 1,
                kernel: stage.kernel,
                stride: if first { stage.stride } else { 1 },
                filters_in: if first { filters_in } else { filters_out },
                filters_out,
                expand_ratio: stage.expand_ratio,
                se_ratio: stage.se_ratio,
                id_skip: stage.id_skip,
                drop_rate: drop_connect_rate * blocks.len() as f64 / total as f64,
            });
        }
    }
    blocks
}

// ---------------------------------------------------------------------------------------------------------
// Registry entry

impl Variants for Variant {
    const ALL: &'static [Self] = &VARIANTS;

    /// Keras' default size, raw 0–255 input, `round_filters(1280)` features; Keras' ImageNet files need their
    /// input statistics adopted ([`adopt_imagenet_statistics`]).
    fn spec(&self) -> ModelSpec {
        let head = HeadSpec::new("predictions", self.dropout, DENSE_INIT);
        let import = ImportRules { after_keras: Some(KerasFixup(adopt_imagenet_statistics)), ..Default::default() };
        ModelSpec::new(self.name, self.resolution, Normalization::Raw, self.round_filters(1280), head)
            .with_import(import)
    }

    /// Keras' `weights=None` model with the default [`Options`].
    fn build(&self, path: &nn::Path) -> Box<dyn Backbone> {
        Box::new(EfficientNet::new(path, self, Options::default()))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Blocks

/// How the in-graph input scaling is set up, which depends on where the weights come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputScaling {
    /// `Rescaling(1/255)` then `Normalization`: what Keras builds for `weights=None` or a weights path.
    #[default]
    Adapted,
    /// As [`Self::Adapted`], then one more `Rescaling` by `1/sqrt(std)` per channel: what Keras builds for
    /// `weights="imagenet"`, whose files store ImageNet's standard deviation where the variance belongs.
    ImageNetWeights,
}

/// What Keras' `EfficientNet()` lets a caller choose beyond the variant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Stochastic-depth rate of the last block (Keras `drop_connect_rate`); default [`DROP_CONNECT_RATE`].
    pub drop_connect_rate: f64,
    /// The in-graph input scaling; default [`InputScaling::Adapted`] (Keras `weights=None`).
    pub input_scaling: InputScaling,
}

impl Default for Options {
    fn default() -> Self {
        Options { drop_connect_rate: DROP_CONNECT_RATE, input_scaling: InputScaling::Adapted }
    }
}

/// Keras' `Rescaling(1/255)` + `Normalization` (+ the ImageNet-weights correction): 0–255 pixels to the stem.
#[derive(Debug)]
struct InputNormalization {
    mean: Tensor,
    variance: Tensor,
    /// Keras keeps the number of samples the statistics were adapted on; it plays no part in the forward pass.
    _count: Tensor,
    /// Per-channel factors after the normalisation, as f32 like Keras' `Rescaling` applies them.
    imagenet_correction: Option<[f32; 3]>,
}

impl InputNormalization {
    fn new(path: &nn::Path, scaling: InputScaling) -> Self {
        let device = path.device();
        let options = (Kind::Float, device);
        let imagenet_correction = (scaling == InputScaling::ImageNetWeights)
            .then(|| IMAGENET_STDDEV_RGB.map(|std| (1.0 / std.sqrt()) as f32));
        InputNormalization {
            mean: path.add("mean", Tensor::zeros([3], options), false),
            variance: path.add("variance", Tensor::ones([3], options), false),
            _count: path.add("count", Tensor::zeros([], (Kind::Int64, device)), false),
            imagenet_correction,
        }
    }

    /// # Shapes
    /// N×3×H×W → N×3×H×W.
    fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = xs * RESCALE;
        let std = self.variance.sqrt().clamp_min(KERAS_EPSILON).view([1, 3, 1, 1]);
        let xs = (xs - self.mean.view([1, 3, 1, 1])) / std;
        match &self.imagenet_correction {
            Some(scale) => {
                let scale = Tensor::from_slice(scale).to_device(xs.device()).to_kind(xs.kind()).view([1, 3, 1, 1]);
                xs * scale
            }
            None => xs,
        }
    }
}

impl InputNormalization {
    /// The same scaling as one per-channel `x · scale + shift`: `(scale, shift)`, 3 values each in f64.
    fn affine(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let std = self.variance.to_kind(Kind::Double).sqrt().clamp_min(KERAS_EPSILON);
            let correction = self.imagenet_correction.map_or([1.0; 3], |c| c.map(f64::from));
            let correction = Tensor::from_slice(&correction).to_device(std.device());
            let scale = &correction / &std * RESCALE;
            let shift = -(self.mean.to_kind(Kind::Double) / &std) * correction;
            (scale, shift)
        })
    }
}

/// Makes a model built with [`InputScaling::Adapted`] compute what Keras' ImageNet-weights graph computes, when
/// the weights just loaded under `prefix` are ImageNet's: their input `Normalization` stores ImageNet's standard
/// deviation as its variance, and Keras follows it with a `Rescaling` by `1/sqrt(std)`, so that the input ends
/// up divided by the standard deviation itself. Storing `std²` as the variance computes the same (within f32
/// rounding). `imagenet`: `Some` forces the choice, `None` tells by the stored statistics. Returns whether the
/// statistics were adopted; models without a Keras input `Normalization` are left alone.
pub fn adopt_imagenet_statistics(vs: &nn::VarStore, prefix: &str, imagenet: Option<bool>) -> bool {
    let variables = vs.variables();
    let Some(variance) = variables.get(&format!("{prefix}normalization.variance")) else { return false };
    let stored: Vec<f64> = Vec::try_from(variance.to_kind(Kind::Double)).unwrap_or_default();
    let is_imagenet = stored.len() == 3 && stored.iter().zip(IMAGENET_STDDEV_RGB).all(|(v, s)| (v - s).abs() < 1e-6);
    if !imagenet.unwrap_or(is_imagenet) {
        return false;
    }
    tch::no_grad(|| {
        let squared = variance.square();
        variance.shallow_clone().copy_(&squared)
    });
    true
}

/// Squeeze-excitation: channel gates from the globally pooled block features.
#[derive(Debug)]
struct SqueezeExcite {
    reduce: Conv2d,
    expand: Conv2d,
}

impl SqueezeExcite {
    /// # Shapes
    /// N×C×H×W → N×C×1×1.
    fn gates(&self, xs: &Tensor) -> Tensor {
        let gates = global_avg_pool(xs, true);
        self.expand.forward(&self.reduce.forward(&gates).silu()).sigmoid()
    }

    /// `xs` gated by [`Self::gates`].
    fn scale(xs: &Tensor, gates: &Tensor) -> Tensor {
        match fused_train::channel_scale_applies(xs, gates) {
            // One backward pass instead of libtorch's three over the block's widest tensor.
            true => fused_train::channel_scale(xs, gates).unwrap_or_else(|e| panic!("{e}")),
            false => xs * gates,
        }
    }
}

/// An inverted-residual (MBConv) block, Keras' `block()`.
#[derive(Debug)]
struct MbConv {
    args: BlockArgs,
    expand: Option<(Conv2d, BatchNorm)>,
    dwconv: Conv2d,
    bn: BatchNorm,
    se: Option<SqueezeExcite>,
    project_conv: Conv2d,
    project_bn: BatchNorm,
}

impl MbConv {
    fn new(path: &nn::Path, args: BlockArgs) -> Self {
        let layer = |suffix: &str| path.sub(format!("{}{suffix}", args.name));
        let conv1x1 = ConvConfig::new(1).init(CONV_INIT);
        let filters = args.filters();
        let expand = (args.expand_ratio != 1).then(|| {
            (
                Conv2d::new(&layer("expand_conv"), args.filters_in, filters, conv1x1),
                BatchNorm::new(&layer("expand_bn"), filters),
            )
        });
        let padding = if args.stride == 2 { Padding::Valid } else { Padding::Same };
        let dwconv = Conv2d::depthwise(
            &layer("dwconv"),
            filters,
            ConvConfig::new(args.kernel).stride(args.stride).padding(padding).init(CONV_INIT),
        );
        let bn = BatchNorm::new(&layer("bn"), filters);
        let se = args.filters_se().map(|filters_se| SqueezeExcite {
            reduce: Conv2d::new(&layer("se_reduce"), filters, filters_se, conv1x1.bias(true)),
            expand: Conv2d::new(&layer("se_expand"), filters_se, filters, conv1x1.bias(true)),
        });
        let project_conv = Conv2d::new(&layer("project_conv"), filters, args.filters_out, conv1x1);
        let project_bn = BatchNorm::new(&layer("project_bn"), args.filters_out);
        MbConv { args, expand, dwconv, bn, se, project_conv, project_bn }
    }

    /// # Shapes
    /// N×filters_in×H×W → N×filters_out×⌈H/stride⌉×⌈W/stride⌉.
    ///
    /// In training the two convolutions whose inputs only their weight gradients need (the depthwise one
    /// after the expand layer, the projection after squeeze-excitation) run as nodes that make their input
    /// again in the backward instead of keeping it, where those nodes run.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let pads = |x: &Tensor| {
            let (h, w) = spatial(x);
            match self.args.stride {
                2 => correct_pad(h, w, self.args.kernel),
                _ => self.dwconv.pads(h, w),
            }
        };
        let depthwise = match &self.expand {
            Some((conv, bn)) => {
                let expanded = conv.forward(xs);
                bn.act_conv_t(&expanded, train, Activation::Swish, &self.dwconv, pads(&expanded))
            }
            None => self.dwconv.forward_padded(xs, pads(xs)),
        };
        let x = self.bn.forward_act_t(&depthwise, train, Activation::Swish);
        let projected = match &self.se {
            Some(se) => {
                let gates = se.gates(&x);
                let recomputable = train
                    && self.project_conv.bias.is_none()
                    && fused_train::channel_scale_applies(&x, &gates)
                    && recomputed_conv::applies(&x, &self.project_conv.weight);
                match recomputable {
                    true => recomputed_conv::scaled_conv(&x, &gates, &self.project_conv.weight)
                        .unwrap_or_else(|e| panic!("{e}")),
                    false => self.project_conv.forward(&SqueezeExcite::scale(&x, &gates)),
                }
            }
            None => self.project_conv.forward(&x),
        };
        let mut x = self.project_bn.forward_t(&projected, train);
        if self.args.residual() {
            x = drop_path(&x, self.args.drop_rate, train) + xs;
        }
        x
    }
}

impl MbConv {
    /// The inference form: batch norms folded, swish and sigmoid fused, the stride-2 `correct_pad` done by
    /// TF's "same" rule (the same padding), the residual sum fused into the projection.
    fn fused(&self) -> FusedMbConv {
        let expand = self.expand.as_ref().map(|(conv, bn)| FusedConv::fold(conv, Some(bn), Activation::Swish));
        let dwconv = FusedConv::fold(&self.dwconv, Some(&self.bn), Activation::Swish).with_padding(Padding::Same);
        let se = self.se.as_ref().map(|se| {
            DenseExcitation::new(
                &FusedConv::fold(&se.reduce, None, Activation::Swish),
                &FusedConv::fold(&se.expand, None, Activation::Sigmoid),
            )
        });
        let project = FusedConv::fold(&self.project_conv, Some(&self.project_bn), Activation::None);
        let pooled = se.as_ref().and_then(|_| PooledDepthwise::new(&dwconv));
        let gated = pooled.as_ref().and_then(|_| GatedProjection::new(&project));
        let expand_in_pass = pooled.as_ref().and(expand.as_ref()).and_then(ExpandInPass::new);
        FusedMbConv { expand, expand_in_pass, dwconv, pooled, se, project, gated, residual: self.args.residual() }
    }
}

/// An [`MbConv`]'s inference form.
#[derive(Debug)]
struct FusedMbConv {
    expand: Option<FusedConv>,
    /// The expand convolution as the pooled depthwise pass computes it, row by row.
    expand_in_pass: Option<ExpandInPass>,
    dwconv: FusedConv,
    /// The depthwise layer, its swish, the expand convolution's swish and squeeze-excitation's pooling as one
    /// pass, where the CPU runs it.
    pooled: Option<PooledDepthwise>,
    /// Squeeze-excitation's reduce (swish) and expand (sigmoid) convolutions, as matrix products.
    se: Option<DenseExcitation>,
    project: FusedConv,
    /// The projection with squeeze-excitation's gate applied in its pass, after the pooled depthwise pass.
    gated: Option<GatedProjection>,
    residual: bool,
}

impl FusedMbConv {
    fn forward(&self, xs: Tensor) -> Tensor {
        let (mut x, pooled) = match &self.pooled {
            Some(pooled) if pooled.runs(&xs) => {
                let (x, mean) = match (&self.expand_in_pass, &self.expand) {
                    (Some(in_pass), _) => pooled.forward_expanded(&xs, in_pass),
                    (_, Some(expand)) => pooled.forward(&expand.forward_with(&xs, Activation::None), true),
                    (_, None) => pooled.forward(&xs, false),
                };
                (x, Some(mean))
            }
            _ => match &self.expand {
                Some(expand) => (self.dwconv.forward(&expand.forward(&xs)), None),
                None => (self.dwconv.forward(&xs), None),
            },
        };
        if let Some(se) = &self.se {
            let from_pass = pooled.is_some();
            let gate = se.forward(&pooled.unwrap_or_else(|| global_avg_pool(&x, true)));
            match &self.gated {
                Some(gated) if from_pass => return gated.forward(&x, &gate, self.residual.then_some(xs)),
                _ => x *= gate,
            }
        }
        if self.residual {
            self.project.forward_add(&x, xs)
        } else {
            self.project.forward(&x)
        }
    }
}

/// An [`EfficientNet`]'s inference form.
#[derive(Debug)]
struct FusedEfficientNet {
    /// The input normalization and the stem convolution.
    stem: InputStem,
    blocks: Vec<FusedMbConv>,
    top: FusedConv,
}

impl InferenceLayers for FusedEfficientNet {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let x = self.stem.forward(xs);
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        self.top.forward(&x)
    }
}

// ---------------------------------------------------------------------------------------------------------
// The model

/// An EfficientNet backbone's layers: input scaling, stem, MBConv blocks, top convolution.
#[derive(Debug)]
pub struct EfficientNet {
    input: InputNormalization,
    stem_conv: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<MbConv>,
    top_conv: Conv2d,
    top_bn: BatchNorm,
}

impl EfficientNet {
    /// Builds `variant` with fresh Keras-initialised weights, its variables under `path`.
    pub fn new(path: &nn::Path, variant: &Variant, options: Options) -> Built<Self> {
        let spec = variant.spec();
        let num_features = spec.num_features;
        Built::new(spec, || {
            let stem_filters = variant.round_filters(32);
            let input = InputNormalization::new(&path.sub("normalization"), options.input_scaling);
            let stem_conv = Conv2d::new(
                &path.sub("stem_conv"),
                3,
                stem_filters,
                ConvConfig::new(3).stride(2).padding(Padding::Valid).init(CONV_INIT),
            );
            let stem_bn = BatchNorm::new(&path.sub("stem_bn"), stem_filters);
            let block_args = variant.blocks(options.drop_connect_rate);
            let last_filters = block_args.last().map_or(stem_filters, |b| b.filters_out);
            let top_conv =
                Conv2d::new(&path.sub("top_conv"), last_filters, num_features, ConvConfig::new(1).init(CONV_INIT));
            let top_bn = BatchNorm::new(&path.sub("top_bn"), num_features);

            // A layer's variables are `<layer>.<name>`; a block's layers all start with its `blockNx_` prefix.
            let layers = |layers: &[&str]| layers.iter().map(|l| format!("{}.", path.path(l))).collect();
            let mut groups =
                vec![LayerGroup { name: "stem".into(), prefixes: layers(&["normalization", "stem_conv", "stem_bn"]) }];
            for stage in 1..=BASE_STAGES.len() {
                let blocks = block_args.iter().filter(|b| b.stage == stage).map(|b| path.path(&b.name)).collect();
                groups.push(LayerGroup { name: format!("block{stage}"), prefixes: blocks });
            }
            groups.push(LayerGroup { name: "top".into(), prefixes: layers(&["top_conv", "top_bn"]) });

            let blocks = block_args.into_iter().map(|args| MbConv::new(path, args)).collect();
            (EfficientNet { input, stem_conv, stem_bn, blocks, top_conv, top_bn }, groups)
        })
    }
}

impl Layers for EfficientNet {
    /// # Shapes
    /// N×3×H×W, 0–255 → N×`round_filters(1280)`×⌈H/32⌉×⌈W/32⌉.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.input.forward(xs);
        let (h, w) = spatial(&x);
        let x = self.stem_conv.forward(&zero_pad(&x, correct_pad(h, w, 3)));
        let mut x = self.stem_bn.forward_act_t(&x, train, Activation::Swish);
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        self.top_bn.forward_act_t(&self.top_conv.forward(&x), train, Activation::Swish)
    }

    fn inference(&self) -> Box<dyn InferenceLayers> {
        Box::new(FusedEfficientNet {
            stem: {
                let (scale, shift) = self.input.affine();
                let stem = FusedConv::fold(&self.stem_conv, Some(&self.stem_bn), Activation::Swish);
                InputStem::new(&scale, &shift, stem.with_padding(Padding::Same))
            },
            blocks: self.blocks.iter().map(MbConv::fused).collect(),
            top: FusedConv::fold(&self.top_conv, Some(&self.top_bn), Activation::Swish),
        })
    }

    /// Block `i` of `n` drops its residual branch at `rate·i/n`, as [`Variant::blocks`] lays it out.
    fn set_drop_path_rate(&mut self, rate: f64) -> bool {
        let n = self.blocks.len() as f64;
        for (i, block) in self.blocks.iter_mut().enumerate() {
            block.args.drop_rate = rate * i as f64 / n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_counts_follow_the_depth_coefficient() {
        // Keras B0 has 16 blocks (block1a … block7a); B7 has 55, ending at block7d.
        let b0 = VARIANTS[0].blocks(DROP_CONNECT_RATE);
        assert_eq!(b0.len(), 16);
        assert_eq!((b0[0].name.as_str(), b0[15].name.as_str()), ("block1a_", "block7a_"));
        let b7 = VARIANTS[7].blocks(DROP_CONNECT_RATE);
        assert_eq!(b7.len(), 55);
        assert_eq!(b7.last().unwrap().name, "block7d_");
    }

    #[test]
    fn drop_rates_rise_linearly_from_zero() {
        for v in &VARIANTS {
            let blocks = v.blocks(DROP_CONNECT_RATE);
            let n = blocks.len() as f64;
            for (b, block) in blocks.iter().enumerate() {
                assert_eq!(block.drop_rate, DROP_CONNECT_RATE * b as f64 / n);
            }
        }
    }

    #[test]
    fn width_rounding_never_loses_more_than_ten_percent() {
        for v in &VARIANTS {
            for filters in [16, 24, 32, 40, 80, 112, 192, 320, 1280] {
                let rounded = v.round_filters(filters);
                assert_eq!(rounded % DEPTH_DIVISOR, 0);
                assert!(rounded as f64 >= 0.9 * filters as f64 * v.width, "{} {filters} → {rounded}", v.name);
            }
        }
    }

    #[test]
    fn imagenet_weights_scale_the_normalised_input_by_one_over_the_root_of_the_std() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let adapted = InputNormalization::new(&vs.root().sub("a"), InputScaling::Adapted);
        let imagenet = InputNormalization::new(&vs.root().sub("i"), InputScaling::ImageNetWeights);
        let xs = Tensor::rand([1, 3, 4, 4], (Kind::Float, tch::Device::Cpu)) * 255.0;
        let factors = Tensor::from_slice(&IMAGENET_STDDEV_RGB.map(|s| 1.0 / s.sqrt())).view([1, 3, 1, 1]);
        let expected = adapted.forward(&xs).to_kind(Kind::Double) * factors;
        assert!(imagenet.forward(&xs).to_kind(Kind::Double).allclose(&expected, 1e-6, 1e-6, false));
    }
}
