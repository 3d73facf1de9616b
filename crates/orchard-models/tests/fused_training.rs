//! A training step through the fused batch norm + activation node (`orchard_torch::fused_train::bn_act`), and
//! the convolutions that make their input again in the backward (`orchard_torch::recomputed_conv`), against the same
//! step through libtorch's batch norm and activation, both measured against the step in f64: the fused step's
//! logits, parameter gradients and moved running statistics are as close to f64's as libtorch's own f32 step
//! is. One model per activation and batch-norm family: Keras' SiLU (biased running variance), torchvision's
//! ReLU6 and ReLU (unbiased), ResNet v2's pre-activations and Inception-ResNet-v2's scale-less batch norms
//! (with its merged opening convolutions and its residual sums as one node, `fused_train::residual`).
//!
//! Winograd's training convolutions (`orchard_torch::winograd_train`) are off in those cases and on in one of
//! their own (ResNet50V2, whose first stage they run). Their transforms round more than a direct convolution
//! (Inception-ResNet-v2's logits at 75: 2.3e-4 of their norm against f64, libtorch's 3.9e-5), and in these
//! small random networks, whose last batch norms see four values a channel, that much flips a ReLU near zero
//! at the top (`conv_7b_bn`) now and then, which moves every gradient below by a few per cent: the node's own
//! tests check its values and gradients layer by layer instead.
//!
//! A test binary of its own: building a model draws from libtorch's global generator, which no other test
//! may draw from meanwhile, and the cases take turns ([`TURN`]).

use std::sync::Mutex;

use orchard_models::{build, Classifier};
use tch::{nn, Device, Kind, Tensor};

/// Held by each case for its whole run.
static TURN: Mutex<()> = Mutex::new(());

/// `name` with the same weights every time, in `kind` (f64: contiguous, f32: channels-last), without dropout
/// or stochastic depth, so that a training step draws no random numbers.
fn model(name: &str, kind: Kind) -> (nn::VarStore, Classifier) {
    tch::manual_seed(5);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut model = build(name, &vs.root().sub("m"), Some(4)).unwrap();
    if model.set_regularization(Some(0.0), Some(0.0)).is_err() {
        model.set_regularization(Some(0.0), None).unwrap();
    }
    if kind == Kind::Double {
        vs.double();
    } else {
        let mut variables: Vec<Tensor> = vs.variables().into_values().collect();
        orchard_torch::convolutions_to_channels_last(variables.iter_mut());
    }
    (vs, model)
}

/// The logits, then every parameter gradient and running statistic (by name) after one training step of
/// `name` in `kind` on `xs`, in f64.
fn step(name: &str, kind: Kind, xs: &Tensor) -> Vec<(String, Tensor)> {
    let (vs, model) = model(name, kind);
    let xs = match kind {
        Kind::Double => xs.to_kind(Kind::Double).contiguous(),
        _ => orchard_torch::channels_last(xs),
    };
    let logits = model.forward_t(&xs, true);
    (&logits * Tensor::linspace(-1.0, 1.0, 4, (kind, Device::Cpu))).sum(kind).backward();
    let mut state: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| match n.contains("running_") {
            true => (n, t.detach()),
            false => (format!("{n} gradient"), t.grad()),
        })
        .filter(|(_, t)| t.defined())
        .map(|(n, t)| (n, t.to_kind(Kind::Double).contiguous()))
        .collect();
    state.sort_by(|a, b| a.0.cmp(&b.0));
    state.insert(0, ("logits".into(), logits.detach().to_kind(Kind::Double)));
    state
}

fn check(name: &str, side: i64) {
    check_with(name, side, false);
}

/// The comparison, with Winograd's training convolutions on (`winograd`: they must run) or off.
fn check_with(name: &str, side: i64, winograd: bool) {
    use orchard_torch::winograd_train;
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    if !orchard_torch::fused_train::available() || (winograd && !orchard_torch::winograd::available()) {
        eprintln!("{name}: skipped, this CPU lacks AVX2 or FMA (or AVX-512F for Winograd)");
        return;
    }
    tch::manual_seed(4);
    let xs = Tensor::randn([4, 3, side, side], (Kind::Float, Device::Cpu));
    let exact = step(name, Kind::Double, &xs);
    let runs = winograd_train::runs();
    let fused = match winograd {
        true => step(name, Kind::Float, &xs),
        false => winograd_train::direct(|| step(name, Kind::Float, &xs)),
    };
    assert_eq!(winograd, winograd_train::runs() > runs, "{name}: Winograd's training convolutions ran");
    let plain = winograd_train::direct(|| orchard_torch::fused_train::unfused(|| step(name, Kind::Float, &xs)));
    assert_eq!((fused.len(), plain.len()), (exact.len(), exact.len()), "{name}");
    // The logits, then the gradients and running statistics as one vector each way: the norm of the error
    // against f64 relative to f64's norm (the worst single tensor of a randomly initialised network with a
    // few values per channel in its last stages is dominated by rounding noise, in both steps alike).
    let errors = |got: &[(String, Tensor)], range: std::ops::Range<usize>| {
        let (mut diff, mut norm) = (0.0, 0.0);
        for i in range {
            let e = &exact[i].1;
            diff += (&got[i].1 - e).square().sum(Kind::Double).double_value(&[]);
            norm += e.square().sum(Kind::Double).double_value(&[]);
        }
        (diff / norm).sqrt()
    };
    let parts = [("logits", 0..1), ("gradients and statistics", 1..exact.len())];
    for (what, range) in parts {
        let (f, p) = (errors(&fused, range.clone()), errors(&plain, range));
        println!("{name}: {what}: fused {f:.2e} against f64, libtorch's f32 {p:.2e}");
        assert!(f <= 2.0 * p + 1e-6, "{name}: {what}: fused {f:.2e} against f64, libtorch's f32 {p:.2e}");
    }
}

#[test]
fn efficientnet_b0_trains_alike_fused() {
    check("efficientnet_b0", 64);
}

#[test]
fn mobilenet_v2_trains_alike_fused() {
    check("mobilenet_v2", 64);
}

#[test]
fn resnet50_trains_alike_fused() {
    check("resnet50", 64);
}

#[test]
fn resnet50_v2_trains_alike_fused() {
    check("resnet50_v2", 64);
}

#[test]
fn inception_resnet_v2_trains_alike_fused() {
    check("inception_resnet_v2", 75);
}

/// ResNet50V2 at 64 with Winograd's training convolutions: its first stage's 3×3 layers (16², four images:
/// 1024 output pixels) run by the node.
#[test]
fn resnet50_v2_trains_alike_with_winograd() {
    check_with("resnet50_v2", 64, true);
}
