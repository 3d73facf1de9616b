//! `.safetensors` files, and Orchard's native checkpoint: a safetensors file whose `__metadata__` holds a
//! small JSON header under the key `orchard` (architecture, classes, input size, normalisation, version),
//! with the variables under Orchard's own names.
//!
//! Safetensors is a flat, bounds-checked format (a length-prefixed JSON index, then raw little-endian
//! bytes), so a checkpoint can come from anywhere without running anything, and every other framework's
//! tools read it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, View};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::WeightsError;
use crate::{ModelSpec, Normalization};

/// The `__metadata__` key under which the header lies.
pub const METADATA_KEY: &str = "orchard";

/// What a native checkpoint says about the model its variables belong to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NativeHeader {
    /// Registry name of the architecture, e.g. `resnet50`.
    pub arch: String,
    /// Outputs of the head; `None` for a backbone without one.
    pub num_classes: Option<i64>,
    /// Input size `(height, width)` the model expects.
    pub input_size: (i64, i64),
    /// How 0–255 pixels are scaled before the model.
    pub normalization: Normalization,
    /// The Orchard version that wrote the file.
    pub orchard_version: String,
}

impl NativeHeader {
    /// The header of a model of `spec` with `num_classes` outputs, written by this version of Orchard.
    pub fn new(spec: &ModelSpec, num_classes: Option<i64>) -> Self {
        NativeHeader {
            arch: spec.name.to_string(),
            num_classes,
            input_size: spec.default_size,
            normalization: spec.normalization,
            orchard_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

fn err(path: &Path, what: impl std::fmt::Display) -> WeightsError {
    WeightsError::Safetensors { path: path.to_path_buf(), what: what.to_string() }
}

pub use orchard_weightfile::safetensors::is_safetensors;

/// Tensors with their names, in a file's order.
pub type Named = Vec<(String, Tensor)>;

/// The tensors of a safetensors file in the file's order, dtype kept, and the native header if it has one.
pub fn read(path: &Path, bytes: &[u8]) -> Result<(Named, Option<NativeHeader>), WeightsError> {
    let file = orchard_weightfile::safetensors::read(bytes).map_err(|e| err(path, e))?;
    let header = match file.metadata.get(METADATA_KEY) {
        None => None,
        Some(json) => {
            Some(serde_json::from_str(json).map_err(|e| err(path, format!("__metadata__.{METADATA_KEY}: {e}")))?)
        }
    };
    Ok((super::tensors(file.tensors).map_err(|e| err(path, e))?, header))
}

/// A contiguous CPU tensor as safetensors sees it.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn raw(name: &str, tensor: &Tensor) -> Result<Raw, WeightsError> {
    let t = tensor.to_device(tch::Device::Cpu).contiguous();
    let dtype = Dtype::try_from(t.kind()).map_err(|e| WeightsError::Unsupported(format!("tensor {name}: {e}")))?;
    let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut bytes, t.numel()).map_err(|e| WeightsError::Unsupported(format!("tensor {name}: {e}")))?;
    Ok(Raw { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), bytes })
}

/// The bytes of a safetensors file of `tensors`, with `header` in its metadata when given.
pub fn to_bytes(tensors: &[(String, Tensor)], header: Option<&NativeHeader>) -> Result<Vec<u8>, WeightsError> {
    let raws = tensors.iter().map(|(n, t)| Ok((n.clone(), raw(n, t)?))).collect::<Result<Vec<_>, WeightsError>>()?;
    let metadata = header
        .map(|h| HashMap::from([(METADATA_KEY.to_string(), serde_json::to_string(h).expect("the header serialises"))]));
    safetensors::tensor::serialize(raws.iter().map(|(n, r)| (n.as_str(), r)), &metadata)
        .map_err(|e| WeightsError::Unsupported(format!("{e:?}")))
}

/// Writes a native checkpoint atomically: a temporary file beside `path`, renamed over it when complete.
pub fn write(path: &Path, tensors: &[(String, Tensor)], header: &NativeHeader) -> Result<(), WeightsError> {
    let bytes = to_bytes(tensors, Some(header))?;
    orchard_files::atomic::write(path, &bytes).map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })
}

/// The Kind of a safetensors dtype, for reports.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "f32",
        Kind::Double => "f64",
        Kind::Half => "f16",
        Kind::BFloat16 => "bf16",
        Kind::Int64 => "i64",
        Kind::Int => "i32",
        Kind::Int16 => "i16",
        Kind::Int8 => "i8",
        Kind::Uint8 => "u8",
        Kind::Bool => "bool",
        _ => "other",
    }
}
