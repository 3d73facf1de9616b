//! The recomputed convolutions keep one tensor fewer for the backward than the nodes they replace: the
//! convolution's input. A test binary of its own: tests running beside it would allocate too.

use orchard_torch::fused_conv::PostOp;
use orchard_torch::fused_train::{self, Running};
use orchard_torch::memory::allocated;
use orchard_torch::recomputed_conv::{self, ConvGeometry};
use tch::{Device, Kind, Tensor};

/// Bytes `forward` leaves held (its output and what autograd keeps for the backward), its inputs excluded; a
/// first call makes what libraries allocate once (MKL's buffers).
fn held(forward: impl Fn() -> Tensor) -> (f64, Tensor) {
    drop(forward());
    let before = allocated(Device::Cpu).unwrap().current as f64;
    let out = forward();
    (allocated(Device::Cpu).unwrap().current as f64 - before, out)
}

#[test]
fn the_convolutions_input_is_not_kept_for_the_backward() {
    let options = (Kind::Float, Device::Cpu);
    let channels = 64;
    let x = orchard_torch::channels_last(&Tensor::randn([2, channels, 128, 128], options)).set_requires_grad(true);
    let depthwise = orchard_torch::channels_last(&Tensor::randn([channels, 1, 3, 3], options)).set_requires_grad(true);
    if !recomputed_conv::applies(&x, &depthwise) {
        eprintln!("skipped: this CPU lacks AVX2 or FMA");
        return;
    }
    let bytes = (x.numel() * 4) as f64; // 8 MiB: the input, the intermediate and the output alike
    let (bias, stats) = (Tensor::zeros([channels], options).set_requires_grad(true), Tensor::ones([channels], options));
    let running = || Running { mean: &stats, var: &stats, keep: 0.9, unbiased: false };
    let geometry = ConvGeometry { stride: 1, pads: [1; 4], groups: channels };

    let (unfused, out) = held(|| {
        let y = fused_train::bn_act(&x, None, &bias, running(), 1e-3, PostOp::Swish).unwrap();
        y.conv2d(&depthwise, None::<&Tensor>, [1, 1], [1, 1], [1, 1], channels)
    });
    drop(out);
    let (recomputed, out) = held(|| {
        recomputed_conv::bn_act_conv(&x, None, &bias, running(), 1e-3, PostOp::Swish, &depthwise, geometry).unwrap()
    });
    assert!(unfused >= 1.9 * bytes, "the unfused pair holds its output and the intermediate: {unfused} bytes");
    assert!(recomputed < 1.1 * bytes, "the recomputed node holds only its output: {recomputed} bytes");
    drop(out);

    let gates = Tensor::rand([2, channels, 1, 1], options).set_requires_grad(true);
    let project =
        orchard_torch::channels_last(&Tensor::randn([channels, channels, 1, 1], options)).set_requires_grad(true);
    let (unfused, out) = held(|| {
        let y = fused_train::channel_scale(&x, &gates).unwrap();
        y.conv2d(&project, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1)
    });
    drop(out);
    let (recomputed, _out) = held(|| recomputed_conv::scaled_conv(&x, &gates, &project).unwrap());
    assert!(unfused >= 1.9 * bytes, "the gated product and its convolution: {unfused} bytes");
    assert!(recomputed < 1.1 * bytes, "the recomputed node: {recomputed} bytes");
}
