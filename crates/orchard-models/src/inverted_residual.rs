//! The trunk MobileNetV2 and EfficientNet-Lite share: a stem, inverted-residual blocks and a 1×1 top
//! convolution, each convolution followed by batch norm and every activation ReLU6 (Sandler et al.,
//! "MobileNetV2: Inverted Residuals and Linear Bottlenecks", <https://arxiv.org/abs/1801.04381>).
//!
//! The families differ only in what they build into it — variable names, padding, initialisers, batch-norm
//! constants, stochastic depth — so they construct the [`ConvBn`]s and hand them over.

use tch::Tensor;

use crate::fused::{Activation, FusedConv};
use crate::inference::InferenceLayers;
use crate::layers::{drop_path, spatial, ConvBn};

/// Expand 1×1 (unless the expansion is 1) → depthwise → linear project 1×1, plus the input when the shapes
/// allow.
#[derive(Debug)]
pub(crate) struct InvertedResidual {
    pub expand: Option<ConvBn>,
    pub depthwise: ConvBn,
    pub project: ConvBn,
    /// Whether the block adds its input to its output.
    pub residual: bool,
    /// Stochastic-depth rate of the residual branch, in training (0 for none).
    pub drop_rate: f64,
}

impl InvertedResidual {
    /// # Shapes
    /// N×C_in×H×W → N×C_out×H'×W', H' as the depthwise convolution's stride and padding make it.
    ///
    /// In training the depthwise convolution may run as a node that makes its input (the expand layer's
    /// activation) again in the backward instead of keeping it ([`crate::batch_norm::BatchNorm::act_conv_t`]).
    /// (The projection after the depthwise layer's activation the same way cost MobileNetV2's step 12%.)
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let relu6 = Activation::Relu6;
        let depthwise = &self.depthwise.conv;
        let x = match &self.expand {
            Some(expand) => {
                let expanded = expand.conv.forward(xs);
                let (h, w) = spatial(&expanded);
                expand.bn.act_conv_t(&expanded, train, relu6, depthwise, depthwise.pads(h, w))
            }
            None => depthwise.forward(xs),
        };
        let x = self.depthwise.bn.forward_act_t(&x, train, relu6);
        let x = self.project.forward_t(&x, train);
        if self.residual {
            drop_path(&x, self.drop_rate, train) + xs
        } else {
            x
        }
    }
}

/// Stem → blocks → top, ReLU6 after the stem and the top.
#[derive(Debug)]
pub(crate) struct Trunk {
    pub stem: ConvBn,
    pub blocks: Vec<InvertedResidual>,
    pub top: ConvBn,
}

impl Trunk {
    /// # Shapes
    /// N×3×H×W → N×C_top×h×w.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward_act_t(xs, train, Activation::Relu6);
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        self.top.forward_act_t(&x, train, Activation::Relu6)
    }
}

impl ConvBn {
    /// The inference form: batch norm folded, `act` fused.
    pub(crate) fn fused(&self, act: Activation) -> FusedConv {
        FusedConv::fold(&self.conv, Some(&self.bn), act)
    }
}

/// An [`InvertedResidual`]'s inference form.
#[derive(Debug)]
struct FusedInvertedResidual {
    expand: Option<FusedConv>,
    depthwise: FusedConv,
    /// The projection, with the residual sum fused when the block has one.
    project: FusedConv,
    residual: bool,
}

impl FusedInvertedResidual {
    fn forward(&self, xs: Tensor) -> Tensor {
        let x = match &self.expand {
            Some(expand) => self.depthwise.forward(&expand.forward(&xs)),
            None => self.depthwise.forward(&xs),
        };
        if self.residual {
            self.project.forward_add(&x, xs)
        } else {
            self.project.forward(&x)
        }
    }
}

/// A [`Trunk`]'s inference form.
#[derive(Debug)]
struct FusedTrunk {
    stem: FusedConv,
    blocks: Vec<FusedInvertedResidual>,
    top: FusedConv,
}

impl InferenceLayers for FusedTrunk {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let x = self.blocks.iter().fold(self.stem.forward(xs), |x, block| block.forward(x));
        self.top.forward(&x)
    }
}

impl Trunk {
    /// The inference form: every batch norm folded, ReLU6 fused, residual sums fused into the projections.
    pub fn inference(&self) -> Box<dyn InferenceLayers> {
        let blocks = self
            .blocks
            .iter()
            .map(|b| FusedInvertedResidual {
                expand: b.expand.as_ref().map(|e| e.fused(Activation::Relu6)),
                depthwise: b.depthwise.fused(Activation::Relu6),
                project: b.project.fused(Activation::None),
                residual: b.residual,
            })
            .collect();
        Box::new(FusedTrunk {
            stem: self.stem.fused(Activation::Relu6),
            blocks,
            top: self.top.fused(Activation::Relu6),
        })
    }
}
