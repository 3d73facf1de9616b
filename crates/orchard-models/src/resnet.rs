//! ResNet-50, -101 and -152 (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
//! <https://arxiv.org/abs/1512.03385>), exactly as torchvision builds them (`torchvision.models.resnet50` …
//! `resnet152`, torchvision 0.28), because that is where real weights exist.
//!
//! One table ([`VARIANTS`]) gives the bottleneck blocks per stage; everything else is shared. As in torchvision
//! (the "v1.5" layout):
//! - the stem is a 7×7 stride-2 convolution (padding 3), batch norm, ReLU and a 3×3 stride-2 max pool
//!   (padding 1); padding is PyTorch's, symmetric, whatever the input size;
//! - a bottleneck is 1×1 → 3×3 → 1×1 (×4 channels), the stride on the 3×3, each convolution followed by batch
//!   norm, ReLU after the first two and after the sum with the shortcut; the first block of every stage has a
//!   projection shortcut (`downsample`: 1×1 convolution with the stage's stride, batch norm);
//! - no convolution has a bias; batch norm has epsilon 1e-5 and PyTorch's momentum 0.1, and in training moves
//!   its running variance by the unbiased batch variance, as PyTorch does;
//! - the head is global average pooling and the dense layer `fc` (no dropout), [`crate::Classifier`]'s;
//! - initialisation as torchvision's: convolution kernels `kaiming_normal_(mode="fan_out")`, batch norm scale 1
//!   and offset 0 (`zero_init_residual=False`), `fc` PyTorch's `nn.Linear` default;
//! - variables are named by the torchvision state-dict keys (`conv1.weight`, `bn1.running_mean`,
//!   `layer1.0.downsample.0.weight`, `fc.bias`, …), so that a torchvision state dict loads with no renaming.
//!   Its `num_batches_tracked` counters are not variables here: they count steps and play no part in the
//!   computation (PyTorch reads them only when `momentum=None`).
//!
//! The input is normalised with ImageNet's mean and standard deviation ([`Normalization::ImageNet`]).

use tch::{nn, Tensor};

use crate::backbone::{Backbone, Built, HeadSpec, LayerGroup, Layers, ModelSpec, Variants};
use crate::fused::{Activation, FusedConv};
use crate::inference::InferenceLayers;
use crate::init::Initializer;
use crate::layers::ConvBn;
use crate::Normalization;

/// Bottleneck output channels per input channel of its 3×3 convolution.
const EXPANSION: i64 = 4;
/// Channels of each stage's 3×3 convolutions.
const STAGE_WIDTHS: [i64; 4] = [64, 128, 256, 512];
/// Channels out of the stem.
const STEM_WIDTH: i64 = 64;

/// One member of the family, and of [`crate::resnet_v2`]'s, which stacks its blocks alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Registry name (here torchvision's constructor name).
    pub name: &'static str,
    /// Bottleneck blocks in the four stages (`layer1` … `layer4` here).
    pub blocks: [usize; 4],
}

/// ResNet-50, -101 and -152, torchvision's `layers` arguments.
pub const VARIANTS: [Variant; 3] = [
    Variant { name: "resnet50", blocks: [3, 4, 6, 3] },
    Variant { name: "resnet101", blocks: [3, 4, 23, 3] },
    Variant { name: "resnet152", blocks: [3, 8, 36, 3] },
];

impl Variants for Variant {
    const ALL: &'static [Variant] = &VARIANTS;

    /// torchvision's defaults: 224×224, ImageNet normalisation, 2048 features, the dense `fc` without dropout.
    fn spec(&self) -> ModelSpec {
        let head = HeadSpec::new("fc", 0.0, Initializer::PyTorchDefault);
        ModelSpec::new(self.name, 224, Normalization::ImageNet, STAGE_WIDTHS[3] * EXPANSION, head)
    }

    /// The variant as torchvision builds it with `weights=None`.
    fn build(&self, path: &nn::Path) -> Box<dyn Backbone> {
        Box::new(ResNet::new(path, self))
    }
}

/// A convolution and its batch norm as torchvision's ResNet builds them (no groups).
fn conv_bn(conv: &nn::Path, bn: &nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> ConvBn {
    ConvBn::torchvision(conv, bn, (c_in, c_out), kernel, stride, 1)
}

/// torchvision's `Bottleneck`.
#[derive(Debug)]
struct Bottleneck {
    reduce: ConvBn,
    spatial: ConvBn,
    expand: ConvBn,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn new(path: &nn::Path, c_in: i64, width: i64, stride: i64) -> Self {
        let c_out = width * EXPANSION;
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = path.sub("downsample");
            conv_bn(&d.sub("0"), &d.sub("1"), c_in, c_out, 1, stride)
        });
        Bottleneck {
            reduce: conv_bn(&path.sub("conv1"), &path.sub("bn1"), c_in, width, 1, 1),
            spatial: conv_bn(&path.sub("conv2"), &path.sub("bn2"), width, width, 3, stride),
            expand: conv_bn(&path.sub("conv3"), &path.sub("bn3"), width, c_out, 1, 1),
            downsample,
        }
    }

    /// # Shapes
    /// N×c_in×H×W → N×4·width×⌊(H-1)/stride+1⌋×⌊(W-1)/stride+1⌋.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.reduce.forward_act_t(xs, train, Activation::Relu);
        let x = self.spatial.forward_act_t(&x, train, Activation::Relu);
        let x = self.expand.forward_t(&x, train);
        let shortcut = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (x + shortcut).relu()
    }
}

/// A ResNet v1.5 backbone's layers: stem, four stages of bottlenecks.
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBn,
    stages: Vec<Vec<Bottleneck>>,
}

impl ResNet {
    /// Builds `variant` with fresh torchvision-initialised weights, its variables under `path`: layer groups
    /// `stem` (`conv1`, `bn1`), then `layer1` … `layer4`; ResNet has no layers between its last stage and the
    /// head, hence no `top`.
    pub fn new(path: &nn::Path, variant: &Variant) -> Built<Self> {
        Built::new(variant.spec(), || {
            let stem = conv_bn(&path.sub("conv1"), &path.sub("bn1"), 3, STEM_WIDTH, 7, 2);
            let mut groups = vec![LayerGroup::of_layers("stem", path, ["conv1", "bn1"])];
            let mut c_in = STEM_WIDTH;
            let mut stages = Vec::with_capacity(STAGE_WIDTHS.len());
            for (i, (&width, &blocks)) in STAGE_WIDTHS.iter().zip(&variant.blocks).enumerate() {
                let name = format!("layer{}", i + 1);
                let stage_path = path.sub(&name);
                let stride = if i == 0 { 1 } else { 2 };
                let stage = (0..blocks)
                    .map(|b| {
                        let block = Bottleneck::new(&stage_path.sub(b), c_in, width, if b == 0 { stride } else { 1 });
                        c_in = width * EXPANSION;
                        block
                    })
                    .collect();
                stages.push(stage);
                groups.push(LayerGroup::of_layers(&name, path, [&name]));
            }
            (ResNet { stem, stages }, groups)
        })
    }
}

impl Layers for ResNet {
    /// # Shapes
    /// N×3×H×W, ImageNet-normalised → N×2048×h×w, h = H/32 for H a multiple of 32.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.stem.forward_act_t(xs, train, Activation::Relu);
        let mut x = stem_pool(&x);
        for block in self.stages.iter().flatten() {
            x = block.forward_t(&x, train);
        }
        x
    }

    fn inference(&self) -> Box<dyn InferenceLayers> {
        let blocks = self
            .stages
            .iter()
            .flatten()
            .map(|b| FusedBottleneck {
                reduce: b.reduce.fused(Activation::Relu),
                spatial: b.spatial.fused(Activation::Relu),
                expand: b.expand.fused(Activation::Relu),
                downsample: b.downsample.as_ref().map(|d| d.fused(Activation::None)),
            })
            .collect();
        Box::new(FusedResNet { stem: self.stem.fused(Activation::Relu), blocks })
    }
}

/// The stem's 3×3 max pooling, stride 2, padding 1.
fn stem_pool(xs: &Tensor) -> Tensor {
    xs.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
}

/// A [`Bottleneck`]'s inference form: `expand` fuses the residual sum and the ReLU after it.
#[derive(Debug)]
struct FusedBottleneck {
    reduce: FusedConv,
    spatial: FusedConv,
    expand: FusedConv,
    downsample: Option<FusedConv>,
}

/// A [`ResNet`]'s inference form.
#[derive(Debug)]
struct FusedResNet {
    stem: FusedConv,
    blocks: Vec<FusedBottleneck>,
}

impl InferenceLayers for FusedResNet {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let x = stem_pool(&self.stem.forward(xs));
        self.blocks.iter().fold(x, |x, b| {
            let shortcut = b.downsample.as_ref().map(|d| d.forward(&x));
            let y = b.spatial.forward(&b.reduce.forward(&x));
            b.expand.forward_add(&y, shortcut.unwrap_or(x))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Exactly torchvision's state-dict keys and shapes: bias-free convolutions, a projection (`downsample`) in
    /// each stage's first block only, `fc`.
    #[test]
    fn variables_carry_torchvision_state_dict_keys() {
        crate::backbone::assert_variables_are_the_state_dict("resnet50");
    }

    #[test]
    fn kernels_have_kaiming_fan_out_variance() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = ResNet::new(&vs.root(), &VARIANTS[0]);
        let w = &vs.variables()["layer4.0.conv2.weight"]; // 512×512×3×3, fan_out 4608
        let var = w.var(true).double_value(&[]);
        assert!((var / (2.0 / 4608.0) - 1.0).abs() < 0.02, "variance {var}");
        assert_eq!(vs.variables()["layer4.0.bn3.weight"].mean(Kind::Float).double_value(&[]), 1.0);
    }
}
