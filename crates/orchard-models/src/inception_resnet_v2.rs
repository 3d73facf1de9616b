//! Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and the Impact of
//! Residual Connections on Learning", AAAI 2017, <https://arxiv.org/abs/1602.07261>), exactly as
//! `keras.applications.InceptionResNetV2` builds it (Keras 3.15, `keras/src/applications/inception_resnet_v2.py`).
//!
//! The architecture is tables: the stem, the three Inception modules (`mixed_5b`, and the reductions
//! `mixed_6a`, `mixed_7a`) and the branches of the three residual block types are lists of convolutions
//! (of `conv2d_bn`s); [`VARIANTS`] holds the block counts and residual scales. As in Keras:
//! - the input is already scaled to [-1, 1] (Keras `inception_resnet_v2.preprocess_input`, mode "tf");
//! - every convolution but one per residual block is Keras' `conv2d_bn`: a convolution without bias ("same"
//!   unless the table says "valid"), batch norm *without a scale* (`scale=False`: an offset only, epsilon
//!   1e-3, momentum 0.99), ReLU;
//! - a residual block concatenates its branches, projects them back to its input's width with a 1×1
//!   convolution *with* bias and no batch norm (`block35_3_conv`), and adds that times the stage's scale
//!   (0.17, 0.1, 0.2) to its input (Keras' `CustomScaleLayer`), then applies ReLU; the very last block
//!   (`block8_10`) has scale 1 and no ReLU;
//! - `mixed_5b`'s pooling branch is a 3×3 average pooling, stride 1, "same", that averages only the positions
//!   inside the input (TensorFlow's rule), followed by a `conv2d_bn`; the reductions' pooling branches are 3×3
//!   max poolings with stride 2, "valid"; branches are concatenated in table order, the pooling branch last;
//! - `conv_7b` (1×1 to 1536 channels, batch norm `conv_7b_bn`, ReLU) closes the network; the head (global
//!   average pooling, dense `predictions` with Keras' default `glorot_uniform` kernel, no dropout) is
//!   [`crate::Classifier`]'s.
//!
//! Keras names only the residual projections and `conv_7b`: the other 203 convolutions and batch norms are
//! auto-named in creation order, `conv2d`, `conv2d_1`, … `conv2d_202` and `batch_normalization` …
//! `batch_normalization_202`, the names a fresh Keras 3 session gives them. Orchard builds the layers in the
//! same order under the same names (files from other sessions or Keras 2 number them from another start;
//! [`crate::weights::keras::load`] renumbers by order). Kernels are `glorot_uniform`, biases and offsets zero.

use orchard_torch::fused_train;
use tch::{nn, Tensor};

use crate::backbone::{Backbone, Built, HeadSpec, LayerGroup, Layers, ModelSpec, Variants};
use crate::batch_norm::BatchNorm;
use crate::fused::{Activation, FusedConv, ParallelChains};
use crate::inference::InferenceLayers;
use crate::init::Initializer;
use crate::layers::{avg_pool_same, max_pool, Conv2d, ConvConfig, Padding};
use crate::Normalization;

// ---------------------------------------------------------------------------------------------------------
// The tables

/// One `conv2d_bn`: a convolution, batch norm without scale, ReLU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvSpec {
    /// Output channels.
    filters: i64,
    /// Kernel `[height, width]`.
    kernel: [i64; 2],
    stride: i64,
    padding: Padding,
}

/// A stride-1 "same" convolution with a `kh`×`kw` kernel.
const fn same(filters: i64, kh: i64, kw: i64) -> ConvSpec {
    ConvSpec { filters, kernel: [kh, kw], stride: 1, padding: Padding::Same }
}

/// A "valid" convolution with a square kernel.
const fn valid(filters: i64, kernel: i64, stride: i64) -> ConvSpec {
    ConvSpec { filters, kernel: [kernel, kernel], stride, padding: Padding::Valid }
}

/// Sequences of convolutions whose outputs are concatenated.
pub(crate) type Branches = &'static [&'static [ConvSpec]];

/// The pooling branch of an Inception module, concatenated after the convolution branches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolBranch {
    /// 3×3 average pooling, stride 1, "same", then this `conv2d_bn`.
    Average(ConvSpec),
    /// 3×3 max pooling, stride 2, "valid".
    Max,
}

/// An Inception module: convolution branches and a pooling branch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ModuleSpec {
    /// Keras' name of the concatenation, used for the layer group.
    name: &'static str,
    branches: Branches,
    pool: PoolBranch,
}

/// The stem before the first max pooling (149×149 → 147×147 → 147×147 at 299).
pub(crate) const STEM_A: &[ConvSpec] = &[valid(32, 3, 2), valid(32, 3, 1), same(64, 3, 3)];
/// The stem between the two max poolings (73×73 → 71×71 at 299).
pub(crate) const STEM_B: &[ConvSpec] = &[valid(80, 1, 1), valid(192, 3, 1)];

/// Inception-A, 35×35×192 → 35×35×320.
pub(crate) const MIXED_5B: ModuleSpec = ModuleSpec {
    name: "mixed_5b",
    branches: &[
        &[same(96, 1, 1)],
        &[same(48, 1, 1), same(64, 5, 5)],
        &[same(64, 1, 1), same(96, 3, 3), same(96, 3, 3)],
    ],
    pool: PoolBranch::Average(same(64, 1, 1)),
};
/// Reduction-A, 35×35×320 → 17×17×1088.
pub(crate) const MIXED_6A: ModuleSpec = ModuleSpec {
    name: "mixed_6a",
    branches: &[&[valid(384, 3, 2)], &[same(256, 1, 1), same(256, 3, 3), valid(384, 3, 2)]],
    pool: PoolBranch::Max,
};
/// Reduction-B, 17×17×1088 → 8×8×2080.
pub(crate) const MIXED_7A: ModuleSpec = ModuleSpec {
    name: "mixed_7a",
    branches: &[
        &[same(256, 1, 1), valid(384, 3, 2)],
        &[same(256, 1, 1), valid(288, 3, 2)],
        &[same(256, 1, 1), same(288, 3, 3), valid(320, 3, 2)],
    ],
    pool: PoolBranch::Max,
};

/// Inception-ResNet-A's branches.
pub(crate) const BLOCK35: Branches =
    &[&[same(32, 1, 1)], &[same(32, 1, 1), same(32, 3, 3)], &[same(32, 1, 1), same(48, 3, 3), same(64, 3, 3)]];
/// Inception-ResNet-B's branches (factorised 7×7).
pub(crate) const BLOCK17: Branches = &[&[same(192, 1, 1)], &[same(128, 1, 1), same(160, 1, 7), same(192, 7, 1)]];
/// Inception-ResNet-C's branches (factorised 3×3).
pub(crate) const BLOCK8: Branches = &[&[same(192, 1, 1)], &[same(192, 1, 1), same(224, 1, 3), same(256, 3, 1)]];

/// A run of residual blocks of one type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidualStage {
    /// Keras' block type, the prefix of the blocks' names (`block35` → `block35_1`, …).
    pub name: &'static str,
    /// The branches before the concatenation (crate tables of `conv2d_bn`s).
    pub(crate) branches: Branches,
    /// Blocks in the stage.
    pub repeats: usize,
    /// Weight of the residual in the sum.
    pub scale: f64,
    /// `Some(scale)`: the stage's last block uses this scale and has no ReLU after the sum.
    pub last_linear: Option<f64>,
}

/// One member of the family.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant {
    /// Registry name.
    pub name: &'static str,
    /// Default input resolution (square).
    pub resolution: i64,
    /// The residual stages after `mixed_5b`, `mixed_6a` and `mixed_7a` respectively.
    pub stages: [ResidualStage; 3],
}

/// InceptionResNetV2 as Keras builds it.
pub const VARIANTS: [Variant; 1] = [Variant {
    name: "inception_resnet_v2",
    resolution: 299,
    stages: [
        ResidualStage { name: "block35", branches: BLOCK35, repeats: 10, scale: 0.17, last_linear: None },
        ResidualStage { name: "block17", branches: BLOCK17, repeats: 20, scale: 0.1, last_linear: None },
        ResidualStage { name: "block8", branches: BLOCK8, repeats: 10, scale: 0.2, last_linear: Some(1.0) },
    ],
}];

/// Channels of `conv_7b`, the pooled features.
pub const NUM_FEATURES: i64 = 1536;
/// The smallest input Keras accepts (`min_size`): below it the reductions run out of pixels.
pub const MIN_SIZE: i64 = 75;

// ---------------------------------------------------------------------------------------------------------
// Registry entry

impl Variants for Variant {
    const ALL: &'static [Self] = &VARIANTS;

    /// The variant's spec: 299×299, [-1, 1] input, 1536 features, Keras' plain dense top.
    fn spec(&self) -> ModelSpec {
        let head = HeadSpec::new("predictions", 0.0, Initializer::GLOROT_UNIFORM);
        ModelSpec::new(self.name, self.resolution, Normalization::SignedUnit, NUM_FEATURES, head)
            .with_min_size(MIN_SIZE)
    }

    fn build(&self, path: &nn::Path) -> Box<dyn Backbone> {
        Box::new(InceptionResNetV2::new(path, self))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Layers and blocks

/// Keras' `conv2d_bn` with its default ReLU.
#[derive(Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.bn.forward_act_t(&self.conv.forward(xs), train, Activation::Relu)
    }

    /// The inference form: batch norm folded, ReLU fused.
    fn fused(&self) -> FusedConv {
        FusedConv::fold(&self.conv, Some(&self.bn), Activation::Relu)
    }
}

/// Runs `xs` through a sequence of `conv2d_bn`s.
fn chain(layers: &[ConvBn], xs: &Tensor, train: bool) -> Tensor {
    layers.iter().fold(xs.shallow_clone(), |x, layer| layer.forward_t(&x, train))
}

/// Runs `xs` through branches of `conv2d_bn`s side by side: each branch's output, in order. In training, as
/// [`merged_openings`] where it runs.
fn branches_t(branches: &[Vec<ConvBn>], xs: &Tensor, train: bool) -> Vec<Tensor> {
    let merged = train.then(|| merged_openings(branches, xs)).flatten();
    merged.unwrap_or_else(|| branches.iter().map(|b| chain(b, xs, train)).collect())
}

/// The branches' training outputs with the opening 1×1 convolutions of two or more of them run as one
/// convolution over their concatenated kernels and one fused batch norm ([`BatchNorm::side_by_side_act_t`]):
/// one pass over `xs`, one input gradient instead of one per branch and their sum, and wider products for
/// oneDNN (block35's three 320 → 32 become one 320 → 96). `None` where the fused batch norm does not run.
fn merged_openings(branches: &[Vec<ConvBn>], xs: &Tensor) -> Option<Vec<Tensor>> {
    let opens = |b: &Vec<ConvBn>| {
        b.first().is_some_and(|l| {
            let conv = &l.conv;
            let (h, w) = (xs.size()[2], xs.size()[3]);
            let unpadded = conv.pads(h, w) == [0; 4];
            conv.config.kernel == [1, 1]
                && conv.config.stride == 1
                && unpadded
                && conv.bias.is_none()
                && conv.groups == 1
        })
    };
    let openings: Vec<&ConvBn> = branches.iter().filter(|b| opens(b)).map(|b| &b[0]).collect();
    let bns: Vec<&BatchNorm> = openings.iter().map(|l| &l.bn).collect();
    if openings.len() < 2 || !BatchNorm::side_by_side_runs(&bns, xs, Activation::Relu) {
        return None;
    }
    let weight = Tensor::cat(&openings.iter().map(|l| &l.conv.weight).collect::<Vec<_>>(), 0);
    let opened = xs.conv2d(&weight, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1);
    let opened = BatchNorm::side_by_side_act_t(&bns, &opened, Activation::Relu)?;
    let widths: Vec<i64> = openings.iter().map(|l| l.conv.weight.size()[0]).collect();
    let mut parts = opened.split_with_sizes(widths.as_slice(), 1).into_iter();
    let outputs = branches.iter().map(|b| match opens(b) {
        true => {
            let part = parts.next().expect("one part per merged branch");
            match b.len() {
                1 => part,
                // The next convolutions (Winograd's among them) read a dense channels-last input.
                _ => chain(&b[1..], &orchard_torch::channels_last(&part), true),
            }
        }
        false => chain(b, xs, true),
    });
    Some(outputs.collect())
}

/// Runs `xs` through the inference form of a sequence of `conv2d_bn`s.
fn fused_chain(layers: &[FusedConv], xs: &Tensor) -> Tensor {
    layers.iter().fold(xs.shallow_clone(), |x, layer| layer.forward(&x))
}

/// The inference forms of branches of `conv2d_bn`s, their opening 1×1 convolutions merged.
fn fused_branches(branches: &[Vec<ConvBn>]) -> ParallelChains {
    ParallelChains::new(branches.iter().map(|b| b.iter().map(ConvBn::fused).collect()).collect())
}

/// Builds layers under Keras' names: auto-numbered `conv2d_N` / `batch_normalization_N` pairs in creation
/// order, or given names, remembering every name for the layer groups.
struct Namer<'p, 'a> {
    path: &'p nn::Path<'a>,
    next: usize,
    created: Vec<String>,
}

impl<'p, 'a> Namer<'p, 'a> {
    fn new(path: &'p nn::Path<'a>) -> Self {
        Namer { path, next: 0, created: Vec::new() }
    }

    fn layer(&mut self, name: String) -> nn::Path<'a> {
        let path = self.path.sub(&name);
        self.created.push(name);
        path
    }

    fn conv_bn_named(&mut self, conv: String, bn: String, c_in: i64, spec: ConvSpec) -> ConvBn {
        let [kh, kw] = spec.kernel;
        let config = ConvConfig::rect(kh, kw).stride(spec.stride).padding(spec.padding);
        let conv = Conv2d::new(&self.layer(conv), c_in, spec.filters, config);
        let bn = BatchNorm::without_scale(
            &self.layer(bn),
            spec.filters,
            BatchNorm::KERAS_EPSILON,
            BatchNorm::KERAS_MOMENTUM,
        );
        ConvBn { conv, bn }
    }

    /// The next auto-named `conv2d_bn`.
    fn conv_bn(&mut self, c_in: i64, spec: ConvSpec) -> ConvBn {
        let suffix = if self.next == 0 { String::new() } else { format!("_{}", self.next) };
        self.next += 1;
        self.conv_bn_named(format!("conv2d{suffix}"), format!("batch_normalization{suffix}"), c_in, spec)
    }

    /// A sequence of auto-named `conv2d_bn`s from `c_in` channels, and its output channels.
    fn sequence(&mut self, c_in: i64, specs: &[ConvSpec]) -> (Vec<ConvBn>, i64) {
        let mut channels = c_in;
        let layers = specs
            .iter()
            .map(|&spec| {
                let layer = self.conv_bn(channels, spec);
                channels = spec.filters;
                layer
            })
            .collect();
        (layers, channels)
    }

    /// Branches side by side, and their concatenated width.
    fn branches(&mut self, c_in: i64, branches: Branches) -> (Vec<Vec<ConvBn>>, i64) {
        let built: Vec<(Vec<ConvBn>, i64)> = branches.iter().map(|specs| self.sequence(c_in, specs)).collect();
        let width = built.iter().map(|(_, c)| c).sum();
        (built.into_iter().map(|(layers, _)| layers).collect(), width)
    }

    /// The layer group of every layer built since the last group.
    fn group(&mut self, name: &str) -> LayerGroup {
        let prefixes = self.created.drain(..).map(|layer| format!("{}.", self.path.path(&layer))).collect();
        LayerGroup { name: name.into(), prefixes }
    }
}

/// The pooling branch as built.
#[derive(Debug)]
enum Pool {
    Average(ConvBn),
    Max,
}

/// An Inception module (`mixed_5b`, `mixed_6a`, `mixed_7a`).
#[derive(Debug)]
struct Module {
    branches: Vec<Vec<ConvBn>>,
    pool: Pool,
}

impl Module {
    /// The module and its output channels.
    fn new(names: &mut Namer, c_in: i64, spec: &ModuleSpec) -> (Self, i64) {
        let (branches, width) = names.branches(c_in, spec.branches);
        let (pool, pool_width) = match spec.pool {
            PoolBranch::Average(conv) => (Pool::Average(names.conv_bn(c_in, conv)), conv.filters),
            PoolBranch::Max => (Pool::Max, c_in),
        };
        (Module { branches, pool }, width + pool_width)
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut outputs = branches_t(&self.branches, xs, train);
        outputs.push(match &self.pool {
            Pool::Average(conv) => conv.forward_t(&avg_pool_same(xs, 3), train),
            Pool::Max => max_pool(xs, 3, 2),
        });
        Tensor::cat(&outputs, 1)
    }
}

/// An Inception-ResNet block, Keras' `inception_resnet_block`.
#[derive(Debug)]
struct ResidualBlock {
    branches: Vec<Vec<ConvBn>>,
    /// `<block>_conv`: 1×1 with bias back to the input's width.
    up: Conv2d,
    scale: f64,
    relu: bool,
}

impl ResidualBlock {
    fn new(names: &mut Namer, name: &str, channels: i64, branches: Branches, scale: f64, relu: bool) -> Self {
        let (branches, width) = names.branches(channels, branches);
        let up = Conv2d::new(&names.layer(format!("{name}_conv")), width, channels, ConvConfig::new(1).bias(true));
        ResidualBlock { branches, up, scale, relu }
    }

    /// # Shapes
    /// N×C×H×W → N×C×H×W.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mixed = branches_t(&self.branches, xs, train);
        let up = self.up.forward(&Tensor::cat(&mixed, 1));
        if fused_train::residual_applies(xs, &up) {
            return fused_train::residual(xs, &up, self.scale, self.relu).unwrap_or_else(|e| panic!("{e}"));
        }
        let x = xs + up * self.scale;
        if self.relu {
            x.relu()
        } else {
            x
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The model

/// An Inception-ResNet-v2 backbone's layers.
#[derive(Debug)]
pub struct InceptionResNetV2 {
    stem_a: Vec<ConvBn>,
    stem_b: Vec<ConvBn>,
    mixed_5b: Module,
    mixed_6a: Module,
    mixed_7a: Module,
    /// The three residual stages, after `mixed_5b`, `mixed_6a` and `mixed_7a`.
    stages: [Vec<ResidualBlock>; 3],
    conv_7b: ConvBn,
}

impl InceptionResNetV2 {
    /// Builds `variant` with fresh Keras-initialised weights, its variables under `path`, in Keras' layer order.
    pub fn new(path: &nn::Path, variant: &Variant) -> Built<Self> {
        Built::new(variant.spec(), || {
            let mut names = Namer::new(path);
            let mut groups = Vec::new();
            let (stem_a, c) = names.sequence(3, STEM_A);
            let (stem_b, c) = names.sequence(c, STEM_B);
            groups.push(names.group("stem"));

            let mut channels = c;
            let mut modules = Vec::new();
            let mut stages: [Vec<ResidualBlock>; 3] = Default::default();
            let tables = [MIXED_5B, MIXED_6A, MIXED_7A].iter().zip(&variant.stages).zip(&mut stages);
            for ((module, stage), blocks) in tables {
                let (built, c) = Module::new(&mut names, channels, module);
                modules.push(built);
                channels = c;
                groups.push(names.group(module.name));
                for b in 1..=stage.repeats {
                    let (scale, relu) = match stage.last_linear {
                        Some(scale) if b == stage.repeats => (scale, false),
                        _ => (stage.scale, true),
                    };
                    let name = format!("{}_{b}", stage.name);
                    blocks.push(ResidualBlock::new(&mut names, &name, channels, stage.branches, scale, relu));
                }
                groups.push(names.group(stage.name));
            }
            let conv_7b =
                names.conv_bn_named("conv_7b".into(), "conv_7b_bn".into(), channels, same(NUM_FEATURES, 1, 1));
            groups.push(names.group("top"));

            let [mixed_5b, mixed_6a, mixed_7a]: [Module; 3] = modules.try_into().expect("three Inception modules");
            (InceptionResNetV2 { stem_a, stem_b, mixed_5b, mixed_6a, mixed_7a, stages, conv_7b }, groups)
        })
    }
}

impl Layers for InceptionResNetV2 {
    /// # Shapes
    /// N×3×H×W in [-1, 1], H and W ≥ [`MIN_SIZE`] → N×1536×h×w (8×8 at 299, 1×1 at 75).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = max_pool(&chain(&self.stem_a, xs, train), 3, 2);
        let x = max_pool(&chain(&self.stem_b, &x, train), 3, 2);
        let mut x = x;
        for (module, stage) in [&self.mixed_5b, &self.mixed_6a, &self.mixed_7a].into_iter().zip(&self.stages) {
            x = module.forward_t(&x, train);
            for block in stage {
                x = block.forward_t(&x, train);
            }
        }
        self.conv_7b.forward_t(&x, train)
    }

    fn inference(&self) -> Box<dyn InferenceLayers> {
        let module = |m: &Module| FusedModule {
            branches: fused_branches(&m.branches),
            pool: match &m.pool {
                Pool::Average(conv) => Some(conv.fused()),
                Pool::Max => None,
            },
        };
        let block = |b: &ResidualBlock| FusedResidualBlock {
            branches: fused_branches(&b.branches),
            up: FusedConv::fold(&b.up, None, if b.relu { Activation::Relu } else { Activation::None }).scaled(b.scale),
        };
        Box::new(FusedInceptionResNetV2 {
            stem_a: self.stem_a.iter().map(ConvBn::fused).collect(),
            stem_b: self.stem_b.iter().map(ConvBn::fused).collect(),
            modules: [&self.mixed_5b, &self.mixed_6a, &self.mixed_7a].map(module),
            stages: self.stages.each_ref().map(|stage| stage.iter().map(block).collect()),
            conv_7b: self.conv_7b.fused(),
        })
    }
}

/// A [`Module`]'s inference form; `pool` is the average pooling branch's convolution, `None` for max pooling.
#[derive(Debug)]
struct FusedModule {
    branches: ParallelChains,
    pool: Option<FusedConv>,
}

impl FusedModule {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let mut outputs = self.branches.forward(xs);
        outputs.push(match &self.pool {
            Some(conv) => conv.forward(&avg_pool_same(xs, 3)),
            None => max_pool(xs, 3, 2),
        });
        Tensor::cat(&outputs, 1)
    }
}

/// A [`ResidualBlock`]'s inference form: the scale folded into `up`, which fuses the residual sum and ReLU.
#[derive(Debug)]
struct FusedResidualBlock {
    branches: ParallelChains,
    up: FusedConv,
}

/// An [`InceptionResNetV2`]'s inference form.
#[derive(Debug)]
struct FusedInceptionResNetV2 {
    stem_a: Vec<FusedConv>,
    stem_b: Vec<FusedConv>,
    modules: [FusedModule; 3],
    stages: [Vec<FusedResidualBlock>; 3],
    conv_7b: FusedConv,
}

impl InferenceLayers for FusedInceptionResNetV2 {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let x = max_pool(&fused_chain(&self.stem_a, xs), 3, 2);
        let mut x = max_pool(&fused_chain(&self.stem_b, &x), 3, 2);
        for (module, stage) in self.modules.iter().zip(&self.stages) {
            x = module.forward(&x);
            for block in stage {
                let mixed = Tensor::cat(&block.branches.forward(&x), 1);
                x = block.up.forward_add(&mixed, x);
            }
        }
        self.conv_7b.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn modules_widen_as_the_paper_says() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let mut names = Namer::new(&root);
        let (_, c) = Module::new(&mut names, 192, &MIXED_5B);
        assert_eq!(c, 320);
        let (_, c) = Module::new(&mut names, c, &MIXED_6A);
        assert_eq!(c, 1088);
        let (_, c) = Module::new(&mut names, c, &MIXED_7A);
        assert_eq!(c, 2080);
    }

    /// Merged opening convolutions train as the branches one by one: the same outputs, gradients of the input
    /// and of every variable, and running statistics (block35's three openings, block17's two, and mixed_7a's
    /// three, whose branches go on after them).
    #[test]
    fn merged_openings_train_as_the_branches_one_by_one() {
        if !orchard_torch::fused_train::available() {
            eprintln!("skipped: this CPU lacks AVX2 or FMA");
            return;
        }
        let cpu = (tch::Kind::Float, Device::Cpu);
        for (branches, channels) in [(BLOCK35, 320), (BLOCK17, 1088), (MIXED_7A.branches, 1088)] {
            let xs = orchard_torch::channels_last(&Tensor::randn([2, channels, 7, 5], cpu));
            // Both runs start from the same variables, whatever other tests draw from the generator meanwhile.
            let start = nn::VarStore::new(Device::Cpu);
            Namer::new(&start.root()).branches(channels, branches);
            let run = |merged: bool| {
                let mut vs = nn::VarStore::new(Device::Cpu);
                let root = vs.root();
                let (layers, _) = Namer::new(&root).branches(channels, branches);
                vs.copy(&start).unwrap();
                let mut variables: Vec<Tensor> = vs.variables().into_values().collect();
                orchard_torch::convolutions_to_channels_last(variables.iter_mut());
                let x = xs.detach().set_requires_grad(true);
                let outputs = match merged {
                    true => merged_openings(&layers, &x).expect("the merge runs on f32 channels-last"),
                    false => layers.iter().map(|b| chain(b, &x, true)).collect(),
                };
                let weighted = |i: usize, out: &Tensor| {
                    let w = Tensor::linspace(-1.0, 1.0 + i as f64, out.numel() as i64, cpu).view_as(out);
                    (out * w).sum(tch::Kind::Float)
                };
                let loss = outputs.iter().enumerate().fold(Tensor::zeros([], cpu), |sum, (i, o)| sum + weighted(i, o));
                loss.backward();
                let mut state: Vec<(String, Tensor)> = vs
                    .variables()
                    .into_iter()
                    .map(|(n, t)| if n.contains("running_") { (n, t.detach()) } else { (n, t.grad()) })
                    .collect();
                state.sort_by(|a, b| a.0.cmp(&b.0));
                state.push(("input gradient".into(), x.grad()));
                state.extend(outputs.into_iter().enumerate().map(|(i, o)| (format!("output {i}"), o.detach())));
                state
            };
            let (merged, separate) = (run(true), run(false));
            assert_eq!(merged.len(), separate.len());
            for ((name, a), (_, b)) in merged.iter().zip(&separate) {
                let scale = b.abs().max().double_value(&[]).max(1e-6);
                let gap = (a - b).abs().max().double_value(&[]);
                assert!(gap <= 1e-5 * scale, "{channels} channels, {name}: largest gap {gap} of {scale}");
            }
        }
    }

    #[test]
    fn layers_carry_keras_names_in_keras_creation_order() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = InceptionResNetV2::new(&vs.root(), &VARIANTS[0]);
        let variables = vs.variables();
        // 203 auto-named conv2d_bn pairs, numbered from zero, without a batch-norm scale.
        assert!(variables.contains_key("conv2d.weight") && variables.contains_key("conv2d_202.weight"));
        assert!(!variables.contains_key("conv2d_203.weight"));
        assert!(variables.contains_key("batch_normalization_202.bias"));
        assert!(!variables.keys().any(|k| k.starts_with("batch_normalization") && k.ends_with(".weight")));
        // Keras' first block35 is conv2d_12 … conv2d_17 (after the stem's 5 and mixed_5b's 7), then block35_1_conv.
        assert_eq!(variables["conv2d_17.weight"].size(), [64, 48, 3, 3]);
        assert_eq!(variables["block35_1_conv.weight"].size(), [320, 128, 1, 1]);
        // block17_1 (after mixed_6a's conv2d_72 … conv2d_75): the factorised 1×7 then 7×1, projected back to 1088.
        assert_eq!(variables["conv2d_78.weight"].size(), [160, 128, 1, 7]);
        assert_eq!(variables["conv2d_79.weight"].size(), [192, 160, 7, 1]);
        assert_eq!(variables["block17_1_conv.weight"].size(), [1088, 384, 1, 1]);
        assert_eq!(variables["conv_7b.weight"].size(), [1536, 2080, 1, 1]);
        let last = model.layers.stages[2].last().unwrap();
        assert_eq!((last.scale, last.relu), (1.0, false));
        assert!(model.layers.stages[2][..9].iter().all(|b| b.scale == 0.2 && b.relu));
    }
}
