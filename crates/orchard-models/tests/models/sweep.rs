//! A sweep over every registered model: parameter counts exactly as Keras counts them, and one training
//! step's forward and backward pass at a small input.

use orchard_models::{build, names};
use tch::{nn, Device, Kind, Tensor};

use crate::all_finite;

/// REFERENCE.md's parameter counts (Keras applications with `weights=None`, torchvision's ResNet v1.5 and
/// MobileNetV2): with a 1000-class top, and without (`include_top=False, pooling="avg"`). Counted the Keras way:
/// trainable weights, batch-norm moving means and variances, and EfficientNet's input Normalization (3 means,
/// 3 variances, 1 count).
const REFERENCE_COUNTS: &[(&str, i64, i64)] = &[
    ("efficientnet_b0", 5_330_571, 4_049_571),
    ("efficientnet_b1", 7_856_239, 6_575_239),
    ("efficientnet_b2", 9_177_569, 7_768_569),
    ("efficientnet_b3", 12_320_535, 10_783_535),
    ("efficientnet_b4", 19_466_823, 17_673_823),
    ("efficientnet_b5", 30_562_527, 28_513_527),
    ("efficientnet_b6", 43_265_143, 40_960_143),
    ("efficientnet_b7", 66_658_687, 64_097_687),
    ("resnet50_v2", 25_613_800, 23_564_800),
    ("resnet101_v2", 44_675_560, 42_626_560),
    ("resnet152_v2", 60_380_648, 58_331_648),
    ("inception_resnet_v2", 55_873_736, 54_336_736),
    ("resnet50", 25_610_152, 23_561_152),
    ("resnet101", 44_654_504, 42_605_504),
    ("resnet152", 60_344_232, 58_295_232),
    ("mobilenet_v2", 3_538_984, 2_257_984),
    // The tensors of PyPI's weight files for Lite0-2, and timm's tf_efficientnet_lite3/4 for Lite3/4 (both
    // checked against the files and timm themselves in torch_parity).
    ("efficientnet_lite0", 4_694_024, 3_413_024),
    ("efficientnet_lite1", 5_470_344, 4_189_344),
    ("efficientnet_lite2", 6_150_168, 4_869_168),
    ("efficientnet_lite3", 8_273_768, 6_992_768),
    ("efficientnet_lite4", 13_118_936, 11_837_936),
];

/// The sweep's input side and the side of the feature map it gives: 64 → 2 for the stride-32 networks;
/// Inception-ResNet-v2 needs Keras' minimum of 75, where its valid convolutions and poolings leave 1×1.
const SWEEP_SIZES: &[(&str, i64, i64)] = &[("inception_resnet_v2", 75, 1)];
const DEFAULT_SWEEP_SIZE: (i64, i64) = (64, 2);

/// Every number a var store holds: Keras' `count_params()` on the same model.
fn keras_count(vs: &nn::VarStore) -> i64 {
    vs.variables().values().map(|t| t.numel() as i64).sum()
}

/// One sweep, so that each model is built only twice: without a head (its count), and with a 1000-class head
/// under a sub-path, as an ensemble member would be (its count, its layer groups, which must hold every
/// variable exactly once, then a training step's forward and backward pass and two evaluation passes at 2×3×64×64, or
/// the model's [`SWEEP_SIZES`] entry).
#[test]
fn every_registered_model_has_the_reference_parameter_counts_and_trains() {
    tch::manual_seed(0);
    let batch = 2;
    for name in names() {
        let (size, feature_size) =
            SWEEP_SIZES.iter().find(|(n, ..)| *n == name).map_or(DEFAULT_SWEEP_SIZE, |&(_, s, f)| (s, f));
        let start = std::time::Instant::now();
        let &(_, with_top, without_top) = REFERENCE_COUNTS
            .iter()
            .find(|(n, ..)| *n == name)
            .unwrap_or_else(|| panic!("{name} is registered but has no reference parameter count here"));
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build(name, &vs.root(), None).unwrap();
        assert_eq!(keras_count(&vs), without_top, "{name} without top");
        assert_eq!(model.num_classes(), None);
        drop(model);

        let vs = nn::VarStore::new(Device::Cpu);
        let model = build(name, &vs.root().sub("member"), Some(1000)).unwrap();
        assert_eq!(keras_count(&vs), with_top, "{name} with a 1000-class top");
        let groups = model.layer_groups();
        for var in vs.variables().keys() {
            let owners: Vec<&str> = groups.iter().filter(|g| g.contains(var)).map(|g| g.name.as_str()).collect();
            assert_eq!(owners.len(), 1, "{name}: {var} is in layer groups {owners:?}");
        }
        let spec = model.spec();
        let xs = Tensor::rand([batch, 3, size, size], (Kind::Float, Device::Cpu)) * 255.0;

        let logits = model.forward_t(&xs, true);
        assert_eq!(logits.size(), [batch, 1000], "{name}");
        logits.cross_entropy_for_logits(&Tensor::from_slice(&[0i64, 999])).backward();
        for (var, t) in vs.variables() {
            if t.requires_grad() {
                let grad = t.grad();
                assert!(grad.defined(), "{name}: no gradient for {var}");
                assert!(all_finite(&grad), "{name}: non-finite gradient for {var}");
            }
        }

        // Evaluation: the feature map's size, and no randomness (nor batch-norm updates) between passes.
        let features = tch::no_grad(|| model.backbone().forward_features(&xs, false));
        assert_eq!(features.size(), [batch, spec.num_features, feature_size, feature_size], "{name}");
        let (a, b) = tch::no_grad(|| (model.forward_t(&xs, false), model.forward_t(&xs, false)));
        assert!(a.equal(&b), "{name}: evaluation is not deterministic");
        assert!(all_finite(&a), "{name}: non-finite logits");
        println!("{name}: {:.1} s", start.elapsed().as_secs_f64());
    }
}
