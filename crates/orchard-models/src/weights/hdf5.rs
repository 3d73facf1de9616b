//! Keras HDF5 weight files, in the three layouts Keras has written, read through libhdf5 (`hdf5-metno`).
//!
//! | layout | where a weight lives | its name |
//! |---|---|---|
//! | Keras 2 (and Keras 3 legacy) full model `.h5` | `model_weights/<layer>/<weight name>` | `weight_names` attribute of the layer group, e.g. `block1a_dwconv/depthwise_kernel:0` |
//! | Keras 2 weights-only `.h5` | `<layer>/<weight name>` | the same |
//! | Keras 3 `.weights.h5` | `layers/<group>/vars/<i>` (nested models: `layers/<model>/layers/<group>/…`) | not stored: the group is named after the layer's class (`batch_normalization_3`), the `vars` group's `name` attribute holds the layer's name, and the index is the weight's place in the class's weight list |
//!
//! Every weight comes out named `<layer>/<weight>` (Keras 3's `Variable.path`, which
//! [`keras::load`](super::keras::load) maps), in the file's layer order, dtype kept.

use std::path::Path;

use hdf5::types::{FixedAscii, FixedUnicode, FloatSize, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5_metno as hdf5;
use tch::{Kind, Tensor};

use super::WeightsError;

/// HDF5's file signature, at offset 0 (or 512, 1024, … after a user block).
pub const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

fn err(path: &Path, what: impl std::fmt::Display) -> WeightsError {
    WeightsError::Hdf5 { path: path.to_path_buf(), what: what.to_string() }
}

/// Every weight of a Keras HDF5 file, named `<layer>/<weight>`.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, WeightsError> {
    let file = hdf5::File::open(path).map_err(|e| err(path, e))?;
    let mut out = Vec::new();
    if file.link_exists("layers") || file.link_exists("_layer_checkpoint_dependencies") {
        read_keras3(path, &file, &mut out)?;
    } else {
        let root = if file.link_exists("model_weights") { "model_weights" } else { "/" };
        let root = file.group(root).map_err(|e| err(path, e))?;
        read_keras2(path, &root, &mut out)?;
    }
    if out.is_empty() {
        return Err(err(
            path,
            "no Keras weights found (neither model_weights/, layer groups with weight_names, nor layers/*/vars)",
        ));
    }
    Ok(out)
}

/// Keras 2 layout: layer groups named by `layer_names`, each listing its datasets in `weight_names`.
fn read_keras2(path: &Path, root: &hdf5::Group, out: &mut Vec<(String, Tensor)>) -> Result<(), WeightsError> {
    let layers = match string_list(root, "layer_names") {
        Some(names) => names,
        None => root.member_names().map_err(|e| err(path, e))?,
    };
    for layer in layers {
        let Ok(group) = root.group(&layer) else {
            continue;
        };
        let weights = match string_list(&group, "weight_names") {
            Some(names) => names,
            None => datasets_under(&group, "").map_err(|e| err(path, e))?,
        };
        let nested = is_nested_model(&weights);
        for weight in weights {
            let dataset = group.dataset(&weight).map_err(|e| err(path, format!("{layer}/{weight}: {e}")))?;
            let tensor = read_dataset(&dataset).map_err(|e| err(path, format!("{layer}/{weight}: {e}")))?;
            out.push((keras2_name(&layer, &weight, nested), tensor));
        }
    }
    Ok(())
}

/// Whether a layer group's weights belong to several inner layers: a model nested as a layer.
fn is_nested_model(weights: &[String]) -> bool {
    let owners: std::collections::HashSet<&str> = weights.iter().filter_map(|w| w.rsplit('/').nth(1)).collect();
    owners.len() > 1
}

/// `<layer>/<weight>` from a Keras 2 weight name, without TensorFlow's `:0`: the layer group's name and the
/// weight's last component (TensorFlow's name scope can differ from the layer: `conv2d_1_1/kernel:0` in
/// layer `conv2d_1`), or in a nested model the inner layer's name.
fn keras2_name(layer: &str, weight: &str, nested: bool) -> String {
    let weight =
        weight.rsplit_once(':').filter(|(_, i)| i.bytes().all(|b| b.is_ascii_digit())).map_or(weight, |(w, _)| w);
    let mut parts = weight.rsplit('/');
    let leaf = parts.next().unwrap_or(weight);
    let owner = if nested { parts.next().unwrap_or(layer) } else { layer };
    format!("{owner}/{leaf}")
}

/// Paths of every dataset under `group`, relative to it.
fn datasets_under(group: &hdf5::Group, prefix: &str) -> hdf5::Result<Vec<String>> {
    let mut names = Vec::new();
    for member in group.member_names()? {
        let path = format!("{prefix}{member}");
        if let Ok(sub) = group.group(&member) {
            names.extend(datasets_under(&sub, &format!("{path}/"))?);
        } else {
            names.push(path);
        }
    }
    Ok(names)
}

/// Keras 3 layout: `layers/<group>/vars/<i>`, recursively through nested models' `layers`.
fn read_keras3(path: &Path, container: &hdf5::Group, out: &mut Vec<(String, Tensor)>) -> Result<(), WeightsError> {
    for list in ["layers", "_layer_checkpoint_dependencies"] {
        let Ok(layers) = container.group(list) else {
            continue;
        };
        for key in layers.member_names().map_err(|e| err(path, e))? {
            let group = layers.group(&key).map_err(|e| err(path, e))?;
            if let Ok(vars) = group.group("vars") {
                let layer = string_attr(&vars, "name").unwrap_or_else(|| key.clone());
                let mut tensors = Vec::new();
                for i in 0.. {
                    let Ok(dataset) = vars.dataset(&i.to_string()) else {
                        break;
                    };
                    tensors.push(read_dataset(&dataset).map_err(|e| err(path, format!("{list}/{key}/vars/{i}: {e}")))?);
                }
                let names = keras3_weight_names(&key, &tensors);
                out.extend(tensors.into_iter().zip(names).map(|(t, w)| (format!("{layer}/{w}"), t)));
            }
            read_keras3(path, &group, out)?;
        }
    }
    Ok(())
}

/// The names of a Keras 3 layer's weights, which the file stores only by index: from the layer's class
/// (the group key, `batch_normalization_3`) and, where a class's list depends on its options, the shapes.
/// Unknown layers keep the index as the name, which [`keras::load`](super::keras::load) reports.
fn keras3_weight_names(group_key: &str, tensors: &[Tensor]) -> Vec<String> {
    let class = group_key.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('_');
    let names: &[&str] = match (class, tensors.len()) {
        ("batch_normalization", 4) => &["gamma", "beta", "moving_mean", "moving_variance"],
        // BatchNormalization(scale=False), as InceptionResNetV2 uses it; center=False alone is rare.
        ("batch_normalization", 3) => &["beta", "moving_mean", "moving_variance"],
        ("batch_normalization", 2) => &["moving_mean", "moving_variance"],
        ("normalization", 3) => &["mean", "variance", "count"],
        ("conv1d" | "conv2d" | "conv3d" | "depthwise_conv2d" | "dense" | "conv2d_transpose", 1 | 2) => {
            &["kernel", "bias"]
        }
        ("layer_normalization", 2) => &["gamma", "beta"],
        _ => &[],
    };
    (0..tensors.len()).map(|i| names.get(i).map_or_else(|| i.to_string(), |n| n.to_string())).collect()
}

/// A dataset as a tensor of its own dtype (f16 read through f32, without the crate's f16 feature).
fn read_dataset(dataset: &hdf5::Dataset) -> hdf5::Result<Tensor> {
    let shape: Vec<i64> = dataset.shape().iter().map(|&d| d as i64).collect();
    let dtype = dataset.dtype()?;
    let tensor = match dtype.to_descriptor() {
        Ok(TypeDescriptor::Float(FloatSize::U8)) => Tensor::from_slice(&dataset.read_raw::<f64>()?),
        Ok(TypeDescriptor::Float(_)) => Tensor::from_slice(&dataset.read_raw::<f32>()?),
        Ok(TypeDescriptor::Integer(IntSize::U8) | TypeDescriptor::Unsigned(_)) => {
            Tensor::from_slice(&dataset.read_raw::<i64>()?)
        }
        Ok(TypeDescriptor::Integer(_)) => Tensor::from_slice(&dataset.read_raw::<i32>()?),
        Ok(TypeDescriptor::Boolean) => Tensor::from_slice(&dataset.read_raw::<bool>()?),
        Ok(other) => return Err(format!("unsupported dtype {other}").into()),
        Err(_) if dtype.size() == 2 => Tensor::from_slice(&dataset.read_raw::<f32>()?).to_kind(Kind::Half),
        Err(e) => return Err(e),
    };
    Ok(tensor.reshape(shape))
}

/// A string attribute, if `obj` has it.
fn string_attr(obj: &hdf5::Location, name: &str) -> Option<String> {
    string_list(obj, name).and_then(|v| v.into_iter().next())
}

/// An attribute holding strings (fixed or variable length, ASCII or UTF-8), as Keras writes `layer_names`
/// and `weight_names`; Keras splits one too large for an object header into `name0`, `name1`, ….
fn string_list(obj: &hdf5::Location, name: &str) -> Option<Vec<String>> {
    if let Ok(attr) = obj.attr(name) {
        return read_strings(&attr);
    }
    let mut all = Vec::new();
    for i in 0.. {
        let Ok(attr) = obj.attr(&format!("{name}{i}")) else {
            break;
        };
        all.extend(read_strings(&attr)?);
    }
    (!all.is_empty()).then_some(all)
}

fn read_strings(attr: &hdf5::Attribute) -> Option<Vec<String>> {
    let descriptor = attr.dtype().ok()?.to_descriptor().ok()?;
    let strings: Vec<String> = match descriptor {
        TypeDescriptor::FixedAscii(_) => {
            attr.read_raw::<FixedAscii<1024>>().ok()?.iter().map(|s| s.as_str().to_string()).collect()
        }
        TypeDescriptor::FixedUnicode(_) => {
            attr.read_raw::<FixedUnicode<1024>>().ok()?.iter().map(|s| s.as_str().to_string()).collect()
        }
        TypeDescriptor::VarLenAscii => {
            attr.read_raw::<VarLenAscii>().ok()?.iter().map(|s| s.as_str().to_string()).collect()
        }
        TypeDescriptor::VarLenUnicode => {
            attr.read_raw::<VarLenUnicode>().ok()?.iter().map(|s| s.as_str().to_string()).collect()
        }
        _ => return None,
    };
    Some(strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras2_names_take_the_layer_group_or_a_nested_models_inner_layer() {
        assert_eq!(
            keras2_name("block1a_dwconv", "block1a_dwconv/depthwise_kernel:0", false),
            "block1a_dwconv/depthwise_kernel"
        );
        assert_eq!(keras2_name("conv2d_1", "conv2d_1_1/kernel:0", false), "conv2d_1/kernel");
        assert_eq!(keras2_name("base_model", "stem_conv/kernel:0", true), "stem_conv/kernel");
        assert_eq!(keras2_name("stem_bn", "stem_bn/gamma", false), "stem_bn/gamma");
        assert_eq!(keras2_name("dense", "kernel:0", false), "dense/kernel");
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_nested_model(&names(&["stem_conv/kernel:0", "stem_bn/gamma:0"])));
        assert!(!is_nested_model(&names(&["conv2d_1_1/kernel:0", "conv2d_1_1/bias:0"])));
    }

    #[test]
    fn keras3_weights_are_named_by_class_and_count() {
        let t = |n| (0..n).map(|_| Tensor::zeros([1], (Kind::Float, tch::Device::Cpu))).collect::<Vec<_>>();
        assert_eq!(keras3_weight_names("batch_normalization_12", &t(4))[3], "moving_variance");
        assert_eq!(keras3_weight_names("batch_normalization", &t(3)), ["beta", "moving_mean", "moving_variance"]);
        assert_eq!(keras3_weight_names("depthwise_conv2d_3", &t(1)), ["kernel"]);
        assert_eq!(keras3_weight_names("normalization", &t(3))[2], "count");
        assert_eq!(keras3_weight_names("my_layer", &t(2)), ["0", "1"]);
    }
}
