//! A [`FusedConv`] by Winograd's minimal filtering on the CPU (`orchard_torch::winograd`): 3×3 stride-1
//! layers by F(4×4, 3×3), 4× fewer multiplications than oneDNN's direct convolution; Inception's 1×7, 7×1,
//! 1×3 and 3×1 by F(m, r) along their axis. Where the layer's weights are large against the work of one call
//! (a batch's few tiles of a 7×7 map) reading their transform (4× the weights) costs more than it saves, and
//! oneDNN runs instead.

use std::cell::Cell;

use orchard_torch::winograd::{self, PackedWinograd};
use tch::{Kind, Tensor};

use super::{cpu_f32_outside_autocast, Activation, FusedConv, Held};
use crate::layers::spatial;

/// The fewest output pixels a call must have for Winograd (64 tiles of 4×4, the training node's floor too):
/// each tile uses the whole transformed weight once, and the transform holds 4× the weight. Below 512 pixels
/// oneDNN's direct kernel was as fast or faster (ResNet's 512→512 at 7×7: batch 4, 16 tiles, 3.7–5.2 ms
/// against 3.8–4.1). Between 512 and 1024 Winograd still saved time (batch 16, 784 pixels: 8.3 ms against
/// 13.7) but not enough to pay for its memory: ResNet50V2's three such layers hold 85 MB more as transforms,
/// and taking them back to oneDNN took its inference at batch 16 from 662 to 572 MiB at the peak for 3% of
/// the step (5 alternated rounds, medians 0.545 → 0.562 s), below ONNX Runtime's 633 MiB.
const MIN_PIXELS: i64 = 1024;

thread_local! {
    /// [`MIN_PIXELS`] unless a test runs every layer it can by Winograd (the small images tests use).
    static FLOOR: Cell<i64> = const { Cell::new(MIN_PIXELS) };
}

#[cfg(test)]
thread_local! {
    /// How many layers ran by Winograd on this thread (what the tests count).
    static RUNS: Cell<usize> = const { Cell::new(0) };
}

impl FusedConv {
    /// `act(conv(xs) + bias)` by Winograd when it runs this layer on `xs` with symmetric `padding`.
    pub(super) fn winograd(&self, xs: &Tensor, padding: [i64; 2], act: Activation) -> Option<Tensor> {
        let [kh, kw] = self.kernel;
        let fits = PackedWinograd::runs(self.kernel, padding)
            && self.stride == 1
            && self.groups == 1
            && PackedWinograd::applies(act)
            && cpu_f32_outside_autocast(xs)
            && self.bias.kind() == Kind::Float
            && winograd::reads(xs)
            && winograd::available();
        if !fits {
            return None;
        }
        let (h, w) = spatial(xs);
        let output = [h + 2 * padding[0] - kh + 1, w + 2 * padding[1] - kw + 1];
        if output.iter().any(|&s| s < 1) || xs.size()[0] * output[0] * output[1] < FLOOR.with(Cell::get) {
            return None;
        }
        let kernel = self.winograd.get_or_init(|| {
            let kernel = PackedWinograd::new(&self.weight(), &self.bias).map(Box::new);
            if kernel.is_some() {
                *self.held() = Held::Winograd;
            }
            kernel
        });
        let out = kernel.as_ref()?.forward(xs, padding, output, act);
        #[cfg(test)]
        RUNS.with(|r| r.set(r.get() + 1));
        Some(out.unwrap_or_else(|e| panic!("the Winograd convolution failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use tch::{nn, Device};

    use super::*;
    use crate::layers::{Conv2d, ConvConfig, Padding};

    /// Every 3×3, 1×7, 7×1, 1×3 and 3×1 layer by Winograd, whatever its size, keeps the logits of the eager
    /// models within the 1e-4 relative: ResNet50V2 (13 such layers: its 3×3s but the three of stride
    /// 2) and Inception-ResNetV2 (97: the stem's, the reductions' of stride 1 and every block's), whose
    /// rounding adds up through the residual blocks.
    #[test]
    fn models_with_every_layer_by_winograd_keep_the_eager_logits() {
        if !winograd::available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        FLOOR.with(|f| f.set(0));
        for (name, side, layers) in [("resnet50_v2", 64, 13), ("inception_resnet_v2", 75, 97)] {
            tch::manual_seed(12);
            let vs = nn::VarStore::new(Device::Cpu);
            let model = crate::build(name, &vs.root().sub("m"), Some(5)).unwrap();
            let mut variables: Vec<Tensor> = vs.variables().into_values().collect();
            orchard_torch::convolutions_to_channels_last(variables.iter_mut());
            let xs = orchard_torch::channels_last(&Tensor::randn([2, 3, side, side], (Kind::Float, Device::Cpu)));
            let eager = tch::no_grad(|| model.forward_t(&xs, false));
            let inference = model.inference();
            let runs = RUNS.with(Cell::get);
            let fused = inference.forward(&xs);
            assert_eq!(RUNS.with(Cell::get) - runs, layers, "{name}: layers by Winograd");
            let error = (&fused - &eager).abs().max().double_value(&[]) / eager.abs().max().double_value(&[]);
            println!("{name}: {layers} layers by Winograd, relative error {error:.2e}");
            assert!(error < 1e-4, "{name}: relative error {error:e}");
        }
        FLOOR.with(|f| f.set(MIN_PIXELS));
    }

    /// The floor counts a call's output pixels over the batch: ResNet's 7×7 maps at batch 16 (784) stay with
    /// oneDNN and keep no transform, 8×8 ones (1024, Inception's block8 at batch 16) run by Winograd.
    #[test]
    fn calls_below_the_floor_keep_their_weights_with_onednn() {
        if !winograd::available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(9);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = Conv2d::new(&vs.root().sub("floor"), 16, 16, ConvConfig::new(3).bias(true));
        let layer = FusedConv::fold(&conv, None, Activation::Relu).with_padding(Padding::Same);
        let cpu = (Kind::Float, Device::Cpu);
        let runs = |side: i64| {
            let before = RUNS.with(Cell::get);
            let xs = orchard_torch::channels_last(&Tensor::randn([16, 16, side, side], cpu));
            let _ = tch::no_grad(|| layer.forward(&xs));
            RUNS.with(Cell::get) - before
        };
        assert_eq!(runs(7), 0, "784 pixels ran by Winograd");
        assert!(!matches!(*layer.held(), Held::Winograd), "a layer below the floor holds a transform");
        assert_eq!(runs(8), 1, "1024 pixels did not run by Winograd");
        assert!(matches!(*layer.held(), Held::Winograd));
    }

    /// The layer's output by Winograd is the eager convolution's within f32 rounding, for "same" and "valid"
    /// padding, sizes that fill whole tiles and that do not, channels that fill the 16 lanes and that do not,
    /// with and without ReLU; once the transform holds the weight, the weight read back is the folded one, a
    /// batch of too few tiles (oneDNN) and the fallback under autocast still get the layer's output.
    #[test]
    fn winograd_layers_compute_the_eager_convolution() {
        if !winograd::available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        tch::manual_seed(8);
        let vs = nn::VarStore::new(Device::Cpu);
        let cpu = (Kind::Float, Device::Cpu);
        // (channels in, out, kernel, padding, act, height, width)
        let cases = [
            (16, 32, [3, 3], Padding::Same, Activation::Relu, 12, 12),
            (5, 7, [3, 3], Padding::Same, Activation::None, 13, 10),
            (24, 20, [3, 3], Padding::Valid, Activation::Relu, 12, 10),
            (32, 16, [3, 3], Padding::Symmetric(2), Activation::None, 7, 6),
            (16, 24, [1, 7], Padding::Same, Activation::Relu, 17, 17),
            (24, 16, [7, 1], Padding::Same, Activation::Relu, 17, 17),
            (12, 20, [1, 3], Padding::Same, Activation::None, 8, 8),
            (20, 16, [3, 1], Padding::Valid, Activation::Relu, 10, 8),
        ];
        for (i, &(c_in, c_out, kernel, padding, act, h, w)) in cases.iter().enumerate() {
            let config = ConvConfig::rect(kernel[0], kernel[1]).bias(true);
            let conv = Conv2d::new(&vs.root().sub(format!("c{i}")), c_in, c_out, config);
            let _ = tch::no_grad(|| conv.bias.as_ref().unwrap().shallow_clone().uniform_(-1.0, 1.0));
            let layer = FusedConv::fold(&conv, None, act).with_padding(padding);
            let folded = layer.weight().copy();
            let pad = match padding {
                Padding::Same => [kernel[0] / 2, kernel[1] / 2],
                Padding::Symmetric(p) => [p, p],
                Padding::Valid => [0, 0],
            };
            let expected = |xs: &Tensor| {
                let mut out = xs.conv2d(&conv.weight, conv.bias.as_ref(), [1, 1], pad, [1, 1], 1);
                super::super::apply_(&mut out, act);
                out
            };
            let xs = orchard_torch::channels_last(&Tensor::randn([16, c_in, h, w], cpu));
            let out = tch::no_grad(|| layer.forward(&xs));
            let eager = tch::no_grad(|| expected(&xs));
            assert_eq!(out.size(), eager.size(), "case {i}");
            let error = (&out - &eager).abs().max().double_value(&[]) / eager.abs().max().double_value(&[]);
            assert!(error < 1e-5, "case {i}: differs by {error:e} of the largest output");
            assert!(matches!(*layer.held(), Held::Winograd), "case {i}: the weight stays beside its transform");
            let error = (layer.weight() - &folded).abs().max().double_value(&[]);
            assert!(error < 1e-6, "case {i}: the weight read back differs by {error:e}");
            // A slice of a wider tensor's channels, as an Inception branch reads its input.
            let wide = orchard_torch::channels_last(&Tensor::randn([16, c_in + 9, h, w], cpu));
            let slice = wide.narrow(1, 4, c_in);
            assert!(winograd::reads(&slice) && !winograd::reads(&xs.contiguous()), "a slice is read, NCHW is not");
            let out = tch::no_grad(|| layer.forward(&slice));
            let error = (&out - expected(&slice)).abs().max().double_value(&[]);
            assert!(error < 1e-4, "case {i}: a slice of channels differs by {error:e}");
            let one = xs.narrow(0, 0, 1);
            let out = tch::no_grad(|| layer.forward(&one));
            assert!(out.allclose(&expected(&one), 1e-4, 1e-4, false), "case {i}: one image (oneDNN) differs");
        }
        let conv = Conv2d::new(&vs.root().sub("autocast"), 16, 16, ConvConfig::new(3).bias(true));
        let layer = FusedConv::fold(&conv, None, Activation::Relu).with_padding(Padding::Same);
        let xs = orchard_torch::channels_last(&Tensor::randn([8, 16, 12, 12], cpu));
        let expected = tch::no_grad(|| layer.forward(&xs));
        let half = orchard_torch::autocast::HalfType::BFloat16;
        let autocast = orchard_torch::autocast::Autocast::new(Device::Cpu, half).unwrap();
        let out = tch::no_grad(|| layer.forward(&xs)).to_kind(Kind::Float);
        drop(autocast);
        assert!(out.allclose(&expected, 0.05, 0.05, false), "the fallback's output differs");
    }
}
