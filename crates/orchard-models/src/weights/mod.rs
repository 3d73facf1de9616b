//! Weight files in, weight files out: every format a user brings, read into named tensors and loaded into a
//! model all or nothing, and Orchard's native checkpoint.
//!
//! | format | detected by | names | module |
//! |---|---|---|---|
//! | Keras HDF5 (`.h5`, `.weights.h5`), Keras 2 and 3 | HDF5 signature | Keras `<layer>/<weight>` | [`hdf5`] |
//! | PyTorch zip (`torch.save`, PyTorch ≥ 1.6) | zip signature | state-dict keys | [`torch`] |
//! | PyTorch legacy (`_use_new_zipfile_serialization=False`, older files) | pickled magic number | state-dict keys | [`torch`] |
//! | `.safetensors` | its length-prefixed JSON index | as stored | [`native`] |
//! | Orchard native checkpoint | safetensors with an `orchard` header | Orchard's variable names | [`native`] |
//!
//! Formats are told apart by their first bytes, never by the file name. [`load_into`] is the one entry
//! point of every command that takes `--weights`: it maps Keras names and layouts through [`keras`] and takes
//! every other format's names as Orchard's own (torchvision, timm-ResNet and lukemelas keys, which the
//! torch-layout families use as variable names), minus DataParallel's `module.` and PyTorch's batch-norm step
//! counters (`num_batches_tracked`) where the model keeps none. What only some architectures need — timm's
//! keys renamed ([`timm`]), a fix-up after a Keras file — their specs declare ([`crate::ImportRules`]); this
//! module applies whatever the spec says and names no architecture. Nothing in a file is ever executed:
//! pickles go through a reader that only knows the globals a state dict needs.

pub mod assign;
pub mod checkpoint;
pub mod hdf5;
pub mod keras;
pub mod native;
pub mod timm;
pub mod torch;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use orchard_files::input;
use orchard_weightfile::{Dtype, RawTensor};
use tch::{nn, Kind, Tensor};

pub use assign::{MisShaped, Mismatch};
pub use native::NativeHeader;
/// The restricted pickle reader, which lives in the libtorch-free `orchard-weightfile` so it can be fuzzed.
pub use orchard_weightfile::pickle;

use crate::ModelSpec;

/// Why a weight file could not be read or loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a weight file Orchard reads (Keras HDF5, PyTorch zip or legacy .pth, safetensors); it starts with {start}")]
    UnknownFormat { path: PathBuf, start: String },
    #[error("{path}: Keras HDF5: {what}")]
    Hdf5 { path: PathBuf, what: String },
    #[error("{path}: PyTorch file: {source}")]
    Torch { path: PathBuf, source: torch::TorchError },
    #[error("{path}: safetensors: {what}")]
    Safetensors { path: PathBuf, what: String },
    #[error("{path}: the checkpoint is for {file_arch}, not {model_arch}")]
    ArchMismatch { path: PathBuf, file_arch: String, model_arch: String },
    #[error("{path}: the weights do not fit {arch}, nothing was loaded: {mismatch}")]
    Mismatch { path: PathBuf, arch: String, mismatch: Mismatch },
    #[error("{0}")]
    Unsupported(String),
}

/// A weight file's format, as its first bytes tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    KerasHdf5,
    TorchZip,
    TorchLegacy,
    Safetensors,
    /// Safetensors with Orchard's header.
    Native,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::KerasHdf5 => "Keras HDF5",
            Format::TorchZip => "PyTorch (zip)",
            Format::TorchLegacy => "PyTorch (legacy)",
            Format::Safetensors => "safetensors",
            Format::Native => "Orchard checkpoint",
        })
    }
}

impl Format {
    /// Whether names and layouts are Keras' (`<layer>/<weight>`, HWIO kernels) rather than Orchard's.
    pub fn is_keras(self) -> bool {
        self == Format::KerasHdf5
    }
}

/// The format of a file starting with `bytes`; safetensors files count as [`Format::Safetensors`] until their
/// header is read.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(hdf5::SIGNATURE) {
        Some(Format::KerasHdf5)
    } else if bytes.starts_with(b"PK\x03\x04") {
        Some(Format::TorchZip)
    } else if torch::is_legacy(bytes) {
        Some(Format::TorchLegacy)
    } else if native::is_safetensors(bytes) {
        Some(Format::Safetensors)
    } else {
        None
    }
}

/// A weight file read into memory: its tensors in the file's order and dtypes.
#[derive(Debug)]
pub struct WeightFile {
    pub path: PathBuf,
    pub format: Format,
    /// Named as the format names them (see the module table).
    pub tensors: Vec<(String, Tensor)>,
    /// The header of a native checkpoint.
    pub header: Option<NativeHeader>,
}

/// Reads any supported weight file.
pub fn read(path: &Path) -> Result<WeightFile, WeightsError> {
    let io = |source| WeightsError::Io { path: path.to_path_buf(), source };
    // libhdf5 reads an HDF5 file itself (Keras' large files need not be held in memory twice).
    let mut signature = [0u8; 8];
    let mut file = input::open(path, input::WEIGHTS).map_err(io)?;
    let n = std::io::Read::read(&mut file, &mut signature).map_err(io)?;
    if signature[..n] == hdf5::SIGNATURE[..] {
        return Ok(WeightFile {
            path: path.to_path_buf(),
            format: Format::KerasHdf5,
            tensors: hdf5::read(path)?,
            header: None,
        });
    }
    let bytes = input::read(path, input::WEIGHTS).map_err(io)?;
    let Some(format) = sniff(&bytes) else {
        let start = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
        let start = if bytes.is_empty() { "nothing (the file is empty)".to_string() } else { format!("bytes {start}") };
        return Err(WeightsError::UnknownFormat { path: path.to_path_buf(), start });
    };
    let torch_err = |source| WeightsError::Torch { path: path.to_path_buf(), source };
    let (format, tensors, header) = match format {
        Format::KerasHdf5 => unreachable!("HDF5 files are read above"),
        Format::TorchZip => (format, torch::read_zip(&bytes).map_err(torch_err)?, None),
        Format::TorchLegacy => (format, torch::read_legacy(&bytes).map_err(torch_err)?, None),
        Format::Safetensors | Format::Native => {
            let (tensors, header) = native::read(path, &bytes)?;
            match training_model(path, &tensors)? {
                Some((model, header)) => (Format::Native, model, Some(header)),
                None => (if header.is_some() { Format::Native } else { Format::Safetensors }, tensors, header),
            }
        }
    };
    Ok(WeightFile { path: path.to_path_buf(), format, tensors, header })
}

/// The model of an Orchard training checkpoint (`best.ckpt`, `last.ckpt`: safetensors with the run's state
/// and `model/…`, `ema/…`, `optim/…` groups) as a native checkpoint's variables and header, so that every
/// weights command takes what `train --weights` takes; `None` for any other safetensors file.
fn training_model(path: &Path, tensors: &native::Named) -> Result<Option<(native::Named, NativeHeader)>, WeightsError> {
    use orchard_files::state::STATE_TENSOR;
    /// The parts of a run's state that describe its model.
    #[derive(serde::Deserialize)]
    struct Run {
        arch: String,
        classes: Vec<String>,
        size: (i64, i64),
    }
    let Some((_, state)) = tensors.iter().find(|(name, _)| name == STATE_TENSOR) else { return Ok(None) };
    let bad = |what: String| WeightsError::Safetensors { path: path.to_path_buf(), what };
    let bytes = Vec::<u8>::try_from(state).map_err(|e| bad(format!("{STATE_TENSOR}: {e}")))?;
    let run: Run = serde_json::from_slice(&bytes).map_err(|e| bad(format!("{STATE_TENSOR}: {e}")))?;
    let spec = crate::spec(&run.arch).map_err(|e| bad(format!("a training checkpoint of {e}")))?;
    let model: native::Named = (tensors.iter())
        .filter_map(|(name, t)| name.strip_prefix("model/").map(|n| (n.to_string(), t.shallow_clone())))
        .collect();
    let header = NativeHeader { input_size: run.size, ..NativeHeader::new(&spec, Some(run.classes.len() as i64)) };
    Ok(Some((model, header)))
}

/// How to load a file into a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Load the backbone only: the file's head tensors are ignored and the model's head (if any) keeps its
    /// fresh weights. The head is the layer [`crate::HeadSpec::layer`] names.
    pub no_top: bool,
    /// Whether a Keras file holds Keras' ImageNet weights, for architectures whose spec has a Keras fix-up
    /// for them ([`crate::import_rules::KerasFixup`]: Keras' ImageNet files of a model with an input
    /// `Normalization` store ImageNet's standard deviation where the variance belongs); `None` lets the fix-up
    /// tell by the stored statistics.
    pub imagenet_statistics: Option<bool>,
}

/// The Orchard variable name (relative to the model's path) of a tensor named `name` in a file of `format`.
pub fn orchard_name(format: Format, name: &str) -> Option<String> {
    if format.is_keras() {
        keras::orchard_name(name)
    } else {
        Some(name.strip_prefix("module.").unwrap_or(name).to_string())
    }
}

/// The libtorch kind of a stored dtype.
pub fn kind(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::Bool => Kind::Bool,
    }
}

/// Named tensors made from what `orchard-weightfile` read (each a copy of its bytes).
pub fn tensors(raw: Vec<RawTensor>) -> Result<Vec<(String, Tensor)>, String> {
    raw.into_iter()
        .map(|t| {
            let tensor = Tensor::f_from_data_size(&t.data, &t.shape, kind(t.dtype));
            tensor.map(|tensor| (t.name.clone(), tensor)).map_err(|e| format!("tensor {}: {e}", t.name))
        })
        .collect()
}

/// Loads `file` into the variables of `vs` under `prefix` (the path the model of `spec` was built under,
/// with its trailing `.`; empty for the root), all or nothing. Returns the number of variables loaded.
pub fn load_into(
    vs: &nn::VarStore,
    prefix: &str,
    spec: &ModelSpec,
    file: &WeightFile,
    options: LoadOptions,
) -> Result<usize, WeightsError> {
    check_arch(file, spec)?;
    let head = format!("{}.", spec.head.layer);
    let skip = |name: &str| options.no_top && name.starts_with(&head);
    let tensors = file.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone()));
    let result = if file.format.is_keras() {
        keras::load_skipping(vs, prefix, tensors, skip)
    } else {
        let variables = vs.variables();
        let bare = |name: &str| name.strip_prefix("module.").unwrap_or(name).to_string();
        let bare_names: Vec<String> = file.tensors.iter().map(|(n, _)| bare(n)).collect();
        let timm = spec.import.timm.and_then(|layout| timm::renames(layout, bare_names.iter().map(String::as_str)));
        let sources = tensors
            .map(|(name, tensor)| {
                let target = match &timm {
                    Some(renames) => renames.get(&bare(&name)).cloned(),
                    None => orchard_name(file.format, &name),
                };
                assign::Source { target, name, tensor }
            })
            .filter(|s| !is_unused_bookkeeping(s, prefix, &variables));
        assign::assign(vs, prefix, sources, skip, |_, t, _| t.shallow_clone())
    };
    let arch = spec.name.to_string();
    let loaded = result.map_err(|mismatch| WeightsError::Mismatch { path: file.path.clone(), arch, mismatch })?;
    if let (true, Some(fixup)) = (file.format.is_keras(), spec.import.after_keras) {
        fixup.apply(vs, prefix, options.imagenet_statistics);
    }
    Ok(loaded)
}

/// Refuses a native checkpoint written for another architecture than `spec`'s (other formats don't say).
pub fn check_arch(file: &WeightFile, spec: &ModelSpec) -> Result<(), WeightsError> {
    match &file.header {
        Some(header) if header.arch != spec.name => Err(WeightsError::ArchMismatch {
            path: file.path.clone(),
            file_arch: header.arch.clone(),
            model_arch: spec.name.to_string(),
        }),
        _ => Ok(()),
    }
}

/// PyTorch's batch-norm step counter (`<bn>.num_batches_tracked`): bookkeeping that every torchvision and
/// lukemelas file carries and that only steers a momentum-free running average. Orchard's batch norms keep
/// none, so the counter is dropped unless the model has a variable of that name.
const BATCH_NORM_COUNTER: &str = "num_batches_tracked";

fn is_unused_bookkeeping(source: &assign::Source, prefix: &str, variables: &HashMap<String, Tensor>) -> bool {
    match &source.target {
        Some(target) => {
            target.rsplit('.').next() == Some(BATCH_NORM_COUNTER)
                && !variables.contains_key(&format!("{prefix}{target}"))
        }
        None => false,
    }
}

/// Reads `path` and loads it into the model as [`load_into`] does; returns the file read.
pub fn load_file(
    vs: &nn::VarStore,
    prefix: &str,
    spec: &ModelSpec,
    path: &Path,
    options: LoadOptions,
) -> Result<WeightFile, WeightsError> {
    let file = read(path)?;
    load_into(vs, prefix, spec, &file, options)?;
    Ok(file)
}

/// The number of classes of the head `file` holds for an architecture of `spec`: the header's for a native
/// checkpoint, otherwise the length of the head's bias; `None` when the file has no head.
pub fn head_classes(file: &WeightFile, spec: &ModelSpec) -> Option<i64> {
    if let Some(header) = &file.header {
        return header.num_classes;
    }
    let bias = format!("{}.bias", spec.head.layer);
    file.tensors
        .iter()
        .find(|(name, _)| orchard_name(file.format, name).as_deref() == Some(bias.as_str()))
        .and_then(|(_, t)| t.size().first().copied())
}
