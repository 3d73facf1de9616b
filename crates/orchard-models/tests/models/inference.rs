//! The inference form of every registered model (batch norms folded, activations and residual sums fused)
//! against the eager model in evaluation mode: the same logits within the 1e-4 relative, with random
//! weights and batch-norm statistics far from a fresh layer's, in both memory layouts, on an odd input side
//! (where TF's "same" padding is symmetric) and an even one (where stride-2 layers pad one side more).

use orchard_models::{build, names};
use orchard_torch::Layout;
use tch::{nn, Device, Kind, Tensor};

use crate::{relative_error, F32_TOLERANCE};

/// Draws every batch norm's scale, offset and running statistics, EfficientNet's input statistics and every
/// bias afresh, so that folding them is exercised (a fresh model's are ones and zeros). Scales stay at most
/// about 1.4 times the standard deviation: larger gains compound over EfficientNet-B7's 55 blocks until f32
/// itself loses 1e-4 of the logits, in the eager model as much as in the inference form.
fn randomise_statistics(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (name, t) in vs.variables() {
            let uniform = |lo: f64, hi: f64| Tensor::rand(t.size(), (Kind::Float, Device::Cpu)) * (hi - lo) + lo;
            let drawn = if name.ends_with("running_var") {
                uniform(0.5, 1.5)
            } else if name.ends_with("running_mean") || (t.dim() == 1 && name.ends_with("bias")) {
                Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.2
            } else if t.dim() == 1 && name.ends_with("weight") {
                uniform(0.5, 1.0)
            } else if name.ends_with("normalization.mean") {
                uniform(0.3, 0.6)
            } else if name.ends_with("normalization.variance") {
                uniform(0.04, 0.08)
            } else {
                continue;
            };
            t.shallow_clone().copy_(&drawn);
        }
    });
}

/// The largest relative difference between the eager and the inference logits of `name` over both layouts
/// and both input sides.
fn inference_error(name: &str) -> f64 {
    tch::manual_seed(11);
    let spec = orchard_models::spec(name).unwrap();
    let sides: [i64; 2] = if spec.min_size > 64 { [spec.min_size, spec.min_size + 1] } else { [64, 65] };
    let mut worst = 0.0f64;
    for layout in [Layout::Contiguous, Layout::ChannelsLast] {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build(name, &vs.root().sub("m"), Some(5)).unwrap();
        randomise_statistics(&vs);
        if layout == Layout::ChannelsLast {
            let mut variables: Vec<Tensor> = vs.variables().into_values().collect();
            orchard_torch::convolutions_to_channels_last(variables.iter_mut());
        }
        let inference = model.inference();
        for side in sides {
            let xs = match spec.normalization {
                orchard_models::Normalization::Raw => {
                    Tensor::rand([2, 3, side, side], (Kind::Float, Device::Cpu)) * 255.0
                }
                _ => Tensor::randn([2, 3, side, side], (Kind::Float, Device::Cpu)),
            };
            let xs = if layout == Layout::ChannelsLast { orchard_torch::channels_last(&xs) } else { xs };
            let eager = tch::no_grad(|| model.forward_t(&xs, false));
            let fused = inference.forward(&xs);
            assert_eq!(fused.size(), eager.size(), "{name}");
            let error = relative_error(&fused, &eager);
            assert!(error < F32_TOLERANCE, "{name}, {layout:?}, side {side}: relative error {error:e}");
            worst = worst.max(error);
        }
    }
    worst
}

fn check(name: &str) {
    let error = inference_error(name);
    println!("{name}: largest relative error {error:.2e}");
}

crate::tests! { check:
    efficientnet_b0: "efficientnet_b0";
    efficientnet_b1: "efficientnet_b1";
    efficientnet_b2: "efficientnet_b2";
    efficientnet_b3: "efficientnet_b3";
    efficientnet_b4: "efficientnet_b4";
    efficientnet_b5: "efficientnet_b5";
    efficientnet_b6: "efficientnet_b6";
    efficientnet_b7: "efficientnet_b7";
    resnet50_v2: "resnet50_v2";
    resnet101_v2: "resnet101_v2";
    resnet152_v2: "resnet152_v2";
    inception_resnet_v2: "inception_resnet_v2";
    resnet50: "resnet50";
    resnet101: "resnet101";
    resnet152: "resnet152";
    mobilenet_v2: "mobilenet_v2";
    efficientnet_lite0: "efficientnet_lite0";
    efficientnet_lite1: "efficientnet_lite1";
    efficientnet_lite2: "efficientnet_lite2";
    efficientnet_lite3: "efficientnet_lite3";
    efficientnet_lite4: "efficientnet_lite4";
}

/// Every registered model has a row above.
#[test]
fn every_registered_model_is_checked() {
    let source = include_str!("inference.rs");
    for name in names() {
        assert!(source.contains(&format!("    {name}: \"{name}\";")), "{name} has no inference test");
    }
}

/// A model without a head gives the pooled features, as the eager one does.
#[test]
fn a_model_without_a_head_gives_its_pooled_features() {
    tch::manual_seed(12);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = build("mobilenet_v2", &vs.root(), None).unwrap();
    randomise_statistics(&vs);
    let xs = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    let eager = tch::no_grad(|| model.forward_t(&xs, false));
    let fused = model.inference().forward(&xs);
    assert_eq!(fused.size(), [2, 1280]);
    assert!(relative_error(&fused, &eager) < F32_TOLERANCE);
}

/// In f64 oneDNN's fused kernels do not run: the folded convolutions go through libtorch's own, the path a
/// GPU takes. Folding itself is exact up to f64 rounding there.
#[test]
fn the_libtorch_fallback_folds_exactly_in_f64() {
    for name in
        ["efficientnet_b0", "resnet50_v2", "inception_resnet_v2", "resnet50", "mobilenet_v2", "efficientnet_lite0"]
    {
        tch::manual_seed(13);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = build(name, &vs.root(), Some(3)).unwrap();
        randomise_statistics(&vs);
        vs.double();
        let side = orchard_models::spec(name).unwrap().min_size.max(64);
        let xs = Tensor::rand([2, 3, side, side], (Kind::Double, Device::Cpu)) * 2.0 - 1.0;
        let eager = tch::no_grad(|| model.forward_t(&xs, false));
        let fused = model.inference().forward(&xs);
        assert_eq!(fused.kind(), Kind::Double);
        let error = relative_error(&fused, &eager);
        assert!(error < crate::F64_TOLERANCE, "{name}: relative error {error:e}");
    }
}

/// The bf16 form (weights folded in f64, then rounded; oneDNN's bf16 kernels on CPUs with AVX-512 BF16 or
/// AMX, libtorch's elsewhere) takes f32 inputs and gives f32 logits within bf16's rounding of the f32 model's:
/// a relative error above f32's (it does compute in bf16) and below 5e-2 (8 bits of mantissa over a few dozen
/// layers).
#[test]
fn the_bf16_form_gives_f32_logits_within_bf16_rounding() {
    for name in
        ["efficientnet_b0", "resnet50_v2", "inception_resnet_v2", "resnet50", "mobilenet_v2", "efficientnet_lite0"]
    {
        tch::manual_seed(14);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build(name, &vs.root(), Some(5)).unwrap();
        randomise_statistics(&vs);
        let mut variables: Vec<Tensor> = vs.variables().into_values().collect();
        orchard_torch::convolutions_to_channels_last(variables.iter_mut());
        let spec = orchard_models::spec(name).unwrap();
        let side = spec.min_size.max(64) + 1;
        let xs = match spec.normalization {
            orchard_models::Normalization::Raw => Tensor::rand([2, 3, side, side], (Kind::Float, Device::Cpu)) * 255.0,
            _ => Tensor::randn([2, 3, side, side], (Kind::Float, Device::Cpu)),
        };
        let xs = orchard_torch::channels_last(&xs);
        let eager = tch::no_grad(|| model.forward_t(&xs, false));
        let bf16 = model.inference_in(Kind::BFloat16).forward(&xs);
        assert_eq!(bf16.kind(), Kind::Float, "{name}");
        let error = relative_error(&bf16, &eager);
        assert!(error > F32_TOLERANCE && error < 5e-2, "{name}: relative error {error:e}");
        println!("{name}: bf16 relative error {error:.2e}");
    }
}
