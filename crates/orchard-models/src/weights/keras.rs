//! Keras weights onto Orchard's variables: the one place that knows Keras' weight names and layouts.
//!
//! Keras names a weight by its layer and its own name: Keras 3's `Variable.path` is `<layer>/<weight>`
//! (`block1a_dwconv/kernel`), Keras 2 HDF5 files hold `<layer>/<layer>/<weight>:0`
//! (`block1a_dwconv/block1a_dwconv/depthwise_kernel:0`). Orchard keeps the layer name and uses PyTorch's
//! variable names and layouts:
//!
//! | Keras weight | Orchard variable | layout |
//! |---|---|---|
//! | Conv2D `kernel`, kh×kw×in×out | `weight` | out×in×kh×kw |
//! | DepthwiseConv2D `kernel` / `depthwise_kernel`, kh×kw×C×M | `weight` | C·M×1×kh×kw |
//! | Dense `kernel`, in×out | `weight` | out×in |
//! | `bias` | `bias` | as is |
//! | BatchNormalization `gamma`, `beta`, `moving_mean`, `moving_variance` | `weight`, `bias`, `running_mean`, `running_var` | as is |
//! | Normalization `mean`, `variance`, `count` | the same | as is |
//!
//! Keras 3 calls a depthwise kernel plain `kernel`; a 4-D kernel is read as depthwise when its target variable
//! is shaped C·M×1×kh×kw and a regular convolution's layout does not fit it (the two coincide when they both
//! fit).
//!
//! Keras numbers the layers it names itself per session and per class: a fresh Keras 3 session names
//! Inception-ResNet-v2's convolutions `conv2d`, `conv2d_1`, …, one that built another model first continues the
//! count, and Keras 2 started at `conv2d_1`. Orchard's variables carry a fresh Keras 3 session's names, and [`load`]
//! renumbers the auto-named layers of a weight set by order ([`canonical_layers`]); a lone `normalization_1` is
//! read as `normalization` everywhere.
//!
//! [`load`] is all or nothing: it either copies every variable of the model or reports every missing,
//! unexpected and mis-shaped tensor by name and changes nothing.

use std::collections::{BTreeMap, HashMap};

use tch::{nn, Tensor};

use crate::weights::assign::{assign, Source};

pub use crate::weights::assign::{MisShaped, Mismatch};

/// Errors of loading Keras weights.
#[derive(Debug, thiserror::Error)]
pub enum KerasError {
    #[error("Keras weights do not fit the model, nothing was loaded: {0}")]
    Mismatch(Mismatch),
}

/// A Keras weight's layer and weight names, from either naming scheme.
///
/// `"block1a_dwconv/kernel"` and `"block1a_dwconv/block1a_dwconv/kernel:0"` both give
/// `("block1a_dwconv", "kernel")`; `None` for a name without a `/`.
pub fn split_name(keras: &str) -> Option<(&str, &str)> {
    let (layer, rest) = keras.split_once('/')?;
    let weight = rest.rsplit('/').next().unwrap_or(rest);
    let weight = match weight.rsplit_once(':') {
        Some((w, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => w,
        _ => weight,
    };
    Some((canonical_layer(layer), weight))
}

/// Layer classes whose Keras auto-generated names (`conv2d`, `conv2d_1`, …) Orchard's architectures use.
const AUTO_NAMED: [&str; 2] = ["conv2d", "batch_normalization"];

/// `("conv2d", 12)` for `conv2d_12`, `("conv2d", 0)` for `conv2d`; `None` for a layer Keras did not auto-name.
fn auto_name(layer: &str) -> Option<(&'static str, u64)> {
    AUTO_NAMED.iter().find_map(|&class| match layer.strip_prefix(class)? {
        "" => Some((class, 0)),
        rest => rest
            .strip_prefix('_')
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .map(|n| (class, n)),
    })
}

/// The names a fresh Keras 3 session gives the auto-named layers among `layers` (as [`split_name`] returns
/// them): per class, in the order of their numbers, `conv2d`, `conv2d_1`, `conv2d_2`, …. Only layers whose name
/// changes are in the map.
///
/// Keras builds a model's layers in the same order in every session, so the order of the numbers identifies a
/// layer whatever number the count started from (Keras' own loading of such files goes by order too).
pub fn canonical_layers<'a>(layers: impl IntoIterator<Item = &'a str>) -> HashMap<String, String> {
    let mut by_class: BTreeMap<&str, BTreeMap<u64, &str>> = BTreeMap::new();
    for layer in layers {
        if let Some((class, n)) = auto_name(layer) {
            by_class.entry(class).or_default().insert(n, layer);
        }
    }
    let mut renamed = HashMap::new();
    for (class, layers) in by_class {
        for (rank, layer) in layers.into_values().enumerate() {
            let canonical = if rank == 0 { class.to_string() } else { format!("{class}_{rank}") };
            if canonical != layer {
                renamed.insert(layer.to_string(), canonical);
            }
        }
    }
    renamed
}

/// Strips the session counter off Keras' auto-named layers that Orchard's architectures keep by name.
fn canonical_layer(layer: &str) -> &str {
    match layer.strip_prefix("normalization_") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => "normalization",
        _ => layer,
    }
}

/// The Orchard variable name (relative to the model's path) of a Keras weight taken on its own, `None` for a
/// weight name Orchard has no counterpart for. [`load`] also renumbers auto-named layers across its weight set.
pub fn orchard_name(keras: &str) -> Option<String> {
    orchard_name_renamed(keras, &HashMap::new())
}

/// [`orchard_name`] with the layers in `renamed` (from [`canonical_layers`]) renamed.
fn orchard_name_renamed(keras: &str, renamed: &HashMap<String, String>) -> Option<String> {
    let (layer, weight) = split_name(keras)?;
    let layer = renamed.get(layer).map_or(layer, String::as_str);
    let name = match weight {
        "kernel" | "depthwise_kernel" | "gamma" => "weight",
        "bias" | "beta" => "bias",
        "moving_mean" => "running_mean",
        "moving_variance" => "running_var",
        "mean" | "variance" | "count" => weight,
        _ => return None,
    };
    Some(format!("{layer}.{name}"))
}

/// A Keras tensor in Orchard's layout for a variable shaped `target` (see the module table). The result may
/// still not have the target's shape; the caller compares.
pub fn to_orchard_layout(keras: &str, tensor: &Tensor, target: &[i64]) -> Tensor {
    let weight = split_name(keras).map_or("", |(_, w)| w);
    let depthwise = |t: &Tensor| {
        let s = t.size();
        t.permute([2, 3, 0, 1]).reshape([s[2] * s[3], 1, s[0], s[1]])
    };
    match (weight, tensor.dim()) {
        ("depthwise_kernel", 4) => depthwise(tensor),
        ("kernel", 4) => {
            let conv = tensor.permute([3, 2, 0, 1]);
            if conv.size() != target && depthwise(tensor).size() == target {
                depthwise(tensor)
            } else {
                conv
            }
        }
        ("kernel", 2) => tensor.tr(),
        _ => tensor.shallow_clone(),
    }
}

/// Loads Keras weights, named as Keras names them, into the variables of `vs` whose names start with
/// `prefix` (the path the model was built under, with its trailing `.`; empty for the root). Returns the
/// number of variables loaded; loads nothing on a [`Mismatch`].
pub fn load(
    vs: &nn::VarStore,
    prefix: &str,
    weights: impl IntoIterator<Item = (String, Tensor)>,
) -> Result<usize, KerasError> {
    load_skipping(vs, prefix, weights, |_| false).map_err(KerasError::Mismatch)
}

/// [`load`], leaving out the variables and weights whose Orchard name `skip` accepts (a head kept fresh).
pub fn load_skipping(
    vs: &nn::VarStore,
    prefix: &str,
    weights: impl IntoIterator<Item = (String, Tensor)>,
    skip: impl Fn(&str) -> bool,
) -> Result<usize, Mismatch> {
    let weights: Vec<(String, Tensor)> = weights.into_iter().collect();
    let renamed = canonical_layers(weights.iter().filter_map(|(keras, _)| split_name(keras).map(|(layer, _)| layer)));
    let sources = weights.into_iter().map(|(name, tensor)| Source {
        target: orchard_name_renamed(&name, &renamed),
        name,
        tensor,
    });
    assign(vs, prefix, sources, skip, to_orchard_layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn names_map_from_both_keras_schemes() {
        assert_eq!(orchard_name("block1a_dwconv/kernel").unwrap(), "block1a_dwconv.weight");
        assert_eq!(orchard_name("block1a_dwconv/block1a_dwconv/depthwise_kernel:0").unwrap(), "block1a_dwconv.weight");
        assert_eq!(orchard_name("stem_bn/moving_variance").unwrap(), "stem_bn.running_var");
        assert_eq!(orchard_name("top_bn/top_bn/gamma:0").unwrap(), "top_bn.weight");
        assert_eq!(orchard_name("normalization_3/count").unwrap(), "normalization.count");
        assert_eq!(orchard_name("predictions/bias").unwrap(), "predictions.bias");
        assert_eq!(orchard_name("optimizer/iterations"), None);
        assert_eq!(orchard_name("kernel"), None);
    }

    /// Convolving with the converted kernel gives, at one output position, the sum Keras defines:
    /// `y[o] = Σ_{h,w,i} x[h,w,i] · kernel[h,w,i,o]` (regular) or `y[c·M+m] = Σ_{h,w} x[h,w,c] · kernel[h,w,c,m]`.
    #[test]
    fn kernels_convert_to_layouts_that_compute_what_keras_computes() {
        tch::manual_seed(3);
        let opts = (Kind::Double, Device::Cpu);
        let x_hwc = Tensor::randn([3, 3, 4], opts);
        let x = x_hwc.permute([2, 0, 1]).unsqueeze(0);

        let kernel = Tensor::randn([3, 3, 4, 5], opts);
        let weight = to_orchard_layout("c/kernel", &kernel, &[5, 4, 3, 3]);
        let y = x.conv2d(&weight, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1).view([5]);
        let expected = (x_hwc.unsqueeze(-1) * &kernel).sum_dim_intlist([0i64, 1, 2].as_slice(), false, None::<Kind>);
        assert!(y.allclose(&expected, 1e-10, 1e-10, false));

        let (c, m) = (4, 2);
        let kernel = Tensor::randn([3, 3, c, m], opts);
        for name in ["d/kernel", "d/d/depthwise_kernel:0"] {
            let weight = to_orchard_layout(name, &kernel, &[c * m, 1, 3, 3]);
            let y = x.conv2d(&weight, None::<Tensor>, [1, 1], [0, 0], [1, 1], c).view([c * m]);
            let expected = (x_hwc.unsqueeze(-1) * &kernel).sum_dim_intlist([0i64, 1].as_slice(), false, None::<Kind>);
            assert!(y.allclose(&expected.reshape([c * m]), 1e-10, 1e-10, false), "{name}");
        }

        let dense = Tensor::randn([4, 7], opts);
        assert!(to_orchard_layout("predictions/kernel", &dense, &[7, 4]).equal(&dense.tr()));
    }

    #[test]
    fn auto_named_layers_are_renumbered_by_order_from_any_start() {
        // Keras 2 counted from 1; numbers sort as numbers (10 after 9), and other layers keep their names.
        let layers =
            ["conv2d_1", "conv2d_10", "conv2d_9", "batch_normalization_1", "block35_1_conv", "conv2d_transpose"];
        let renamed = canonical_layers(layers);
        let expected: HashMap<String, String> = [
            ("conv2d_1", "conv2d"),
            ("conv2d_9", "conv2d_1"),
            ("conv2d_10", "conv2d_2"),
            ("batch_normalization_1", "batch_normalization"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(renamed, expected);
        // A fresh session's names are already canonical.
        assert!(canonical_layers(["conv2d", "conv2d_1", "batch_normalization"]).is_empty());

        let vs = nn::VarStore::new(Device::Cpu);
        let zeros = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu));
        let first = vs.root().sub("conv2d").add("weight", zeros(&[2, 1, 1, 1]), true);
        let second = vs.root().sub("conv2d_1").add("weight", zeros(&[3, 2, 1, 1]), true);
        let weights = vec![
            ("conv2d_208/conv2d_208/kernel:0".to_string(), Tensor::full([1, 1, 2, 3], 2.0, (Kind::Float, Device::Cpu))),
            ("conv2d_207/conv2d_207/kernel:0".to_string(), Tensor::full([1, 1, 1, 2], 1.0, (Kind::Float, Device::Cpu))),
        ];
        assert_eq!(load(&vs, "", weights).unwrap(), 2);
        assert_eq!((first.mean(Kind::Float).double_value(&[]), second.mean(Kind::Float).double_value(&[])), (1.0, 2.0));
    }

    #[test]
    fn a_mismatch_names_every_problem_and_loads_nothing() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root().sub("m");
        let a = root.sub("dense").add("weight", Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), true);
        let _ = root.sub("dense").add("bias", Tensor::zeros([2], (Kind::Float, Device::Cpu)), true);
        let _ = root.sub("bn").add("running_mean", Tensor::zeros([2], (Kind::Float, Device::Cpu)), false);
        let ones = |shape: &[i64]| Tensor::ones(shape, (Kind::Float, Device::Cpu));
        let weights = vec![
            ("dense/kernel".to_string(), ones(&[3, 2])),
            ("dense/bias".to_string(), ones(&[5])),
            ("extra/kernel".to_string(), ones(&[1])),
            ("dense/dense/kernel:0".to_string(), ones(&[3, 2])),
        ];
        let KerasError::Mismatch(m) = load(&vs, "m.", weights).unwrap_err();
        assert_eq!(m.missing, ["m.bn.running_mean"]);
        assert_eq!(m.unexpected.len(), 2, "{m}");
        assert!(m.unexpected[0].starts_with("dense/dense/kernel:0") && m.unexpected[1].starts_with("extra/kernel"));
        assert_eq!(
            m.mis_shaped,
            [MisShaped {
                source: "dense/bias".into(),
                orchard: "m.dense.bias".into(),
                expected: vec![2],
                found: vec![5]
            }]
        );
        assert_eq!(a.abs().sum(Kind::Float).double_value(&[]), 0.0, "a failed load changed a variable");

        let weights = vec![
            ("dense/kernel".to_string(), ones(&[3, 2])),
            ("dense/bias".to_string(), ones(&[2])),
            ("bn/moving_mean".to_string(), ones(&[2])),
        ];
        assert_eq!(load(&vs, "m.", weights).unwrap(), 3);
        assert!(a.equal(&ones(&[2, 3])));
    }
}
