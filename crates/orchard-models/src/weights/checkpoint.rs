//! Training checkpoints (`best.ckpt`, `last.ckpt`): one safetensors file holding named tensors in groups
//! (`model/…`, `ema/…`, `optim/…`) and a serialisable state as JSON in the byte tensor
//! [`orchard_files::state::STATE_TENSOR`], written atomically (a killed run never leaves a truncated
//! checkpoint under the real name), and [`Loaded::restore`], the one way a checkpoint's tensors are put back
//! into a model: all or nothing, every missing, unexpected or mis-shaped tensor named.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use orchard_files::atomic::PendingFile;
use orchard_files::state::STATE_TENSOR;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use super::assign::{assign, Mismatch, Source};

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a readable checkpoint: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: the checkpoint could not be written: {message}")]
    Write { path: PathBuf, message: String },
}

/// Why writing the checkpoint `path` (through a temporary file) failed, named after `path` itself: the
/// file system's own error when there is one ("No space left on device"), not tch's wrapping of it.
fn write_error(path: &Path, err: tch::TchError) -> CheckpointError {
    match err {
        tch::TchError::SafeTensorError { err: safetensors::SafeTensorError::IoError(source), .. } => {
            CheckpointError::Io { path: path.to_path_buf(), source }
        }
        tch::TchError::Io(source) => CheckpointError::Io { path: path.to_path_buf(), source },
        other => CheckpointError::Write { path: path.to_path_buf(), message: other.to_string() },
    }
}

/// Writes `state` and the tensors of every `(group, tensors)` as `group/name`, atomically.
pub fn save<S: Serialize>(
    path: &Path,
    state: &S,
    groups: &[(&str, Vec<(String, Tensor)>)],
) -> Result<(), CheckpointError> {
    let io_err = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let json = serde_json::to_vec(state).expect("checkpoint state serialises");
    let mut named: Vec<(String, Tensor)> = vec![(STATE_TENSOR.to_string(), Tensor::from_slice(&json))];
    for (group, tensors) in groups {
        for (name, t) in tensors {
            named.push((format!("{group}/{name}"), t.detach().to_device(Device::Cpu).contiguous()));
        }
    }
    let pending = PendingFile::new(path).map_err(io_err)?;
    // libtorch writes by file name, into the temporary, which is then synced and renamed into place.
    Tensor::write_safetensors(&named, pending.path()).map_err(|e| write_error(path, e))?;
    pending.commit().map_err(io_err)
}

/// A loaded checkpoint: its state and its tensors by group.
#[derive(Debug)]
pub struct Loaded<S> {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    pub state: S,
    /// group → (name within the group → tensor).
    pub groups: BTreeMap<String, BTreeMap<String, Tensor>>,
}

impl<S> Loaded<S> {
    /// The tensors of `group`, empty when it has none.
    pub fn group(&self, group: &str) -> BTreeMap<String, Tensor> {
        self.groups
            .get(group)
            .map(|g| g.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect())
            .unwrap_or_default()
    }

    /// Copies the tensors of `group` into the variables of `vs` of the same names, all or nothing: every
    /// variable but those `skip` accepts must be in the group with its shape, and every tensor of the group
    /// must have a variable (unless `skip` accepts its name). Returns the number of variables copied.
    pub fn restore(&self, group: &str, vs: &nn::VarStore, skip: impl Fn(&str) -> bool) -> Result<usize, Mismatch> {
        let sources = self.groups.get(group).into_iter().flatten().map(|(name, tensor)| Source {
            name: name.clone(),
            target: Some(name.clone()),
            tensor: tensor.shallow_clone(),
        });
        assign(vs, "", sources, skip, |_, t, _| t.shallow_clone())
    }
}

/// Reads a checkpoint written by [`save`].
pub fn load<S: DeserializeOwned>(path: &Path) -> Result<Loaded<S>, CheckpointError> {
    let format = |message: String| CheckpointError::Format { path: path.to_path_buf(), message };
    // libtorch opens the file by name: it must be a regular file of a bounded size (a FIFO would hang it).
    orchard_files::input::check(path, orchard_files::input::WEIGHTS)
        .map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
    let tensors = Tensor::read_safetensors(path).map_err(|e| format(e.to_string()))?;
    let mut state = None;
    let mut groups: BTreeMap<String, BTreeMap<String, Tensor>> = BTreeMap::new();
    for (name, t) in tensors {
        if name == STATE_TENSOR {
            if t.kind() != Kind::Uint8 {
                return Err(format(format!("{STATE_TENSOR} is {:?}, not bytes", t.kind())));
            }
            let bytes: Vec<u8> = Vec::try_from(&t).map_err(|e: tch::TchError| format(e.to_string()))?;
            state = Some(serde_json::from_slice(&bytes).map_err(|e| format(format!("state: {e}")))?);
        } else {
            let (group, rest) =
                name.split_once('/').ok_or_else(|| format(format!("tensor {name:?} belongs to no group")))?;
            groups.entry(group.to_string()).or_default().insert(rest.to_string(), t);
        }
    }
    let state = state.ok_or_else(|| format(format!("no {STATE_TENSOR} entry: not an Orchard training checkpoint")))?;
    Ok(Loaded { path: path.to_path_buf(), state, groups })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn round_trip_keeps_state_groups_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        let w = Tensor::from_slice(&[1.5f32, -2.0]).view([1, 2]);
        save(&path, &vec![3u32, 4], &[("model", vec![("a.weight".into(), w.shallow_clone())]), ("ema", vec![])])
            .unwrap();
        let loaded: Loaded<Vec<u32>> = load(&path).unwrap();
        assert_eq!(loaded.state, vec![3, 4]);
        assert!(loaded.group("model")["a.weight"].equal(&w));
        assert!(loaded.group("ema").is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_full_disk_is_reported_as_such_under_the_checkpoints_name() {
        let full = safetensors::SafeTensorError::IoError(io::Error::from_raw_os_error(28));
        let err =
            write_error(Path::new("run/last.ckpt"), tch::TchError::SafeTensorError { path: "x.tmp".into(), err: full });
        assert_eq!(err.to_string(), "run/last.ckpt: No space left on device (os error 28)");
    }

    #[test]
    fn a_truncated_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        save(&path, &1u8, &[("model", vec![("w".into(), Tensor::ones([64], (Kind::Float, Device::Cpu)))])]).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load::<u8>(&path).unwrap_err().to_string();
        assert!(err.contains("last.ckpt"), "{err}");
    }

    #[test]
    fn restoring_is_all_or_nothing_and_names_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("best.ckpt");
        let tensors = vec![
            ("a.weight".to_string(), Tensor::from_slice(&[1.0f32, 2.0])),
            ("head.bias".to_string(), Tensor::from_slice(&[5.0f32])),
        ];
        save(&path, &0u8, &[("model", tensors)]).unwrap();
        let loaded: Loaded<u8> = load(&path).unwrap();

        let vs = nn::VarStore::new(Device::Cpu);
        let a = vs.root().sub("a").zeros("weight", &[2]);
        let head = vs.root().sub("head").zeros("bias", &[3]);
        let err = loaded.restore("model", &vs, |_| false).unwrap_err();
        assert_eq!((err.missing.len(), err.mis_shaped.len()), (0, 1), "{err}");
        assert_eq!(err.mis_shaped[0].orchard, "head.bias");
        assert_eq!(a.sum(Kind::Float).double_value(&[]), 0.0, "nothing was copied");
        assert_eq!(loaded.restore("model", &vs, |name| name.starts_with("head.")).unwrap(), 1);
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [1.0, 2.0]);
        assert_eq!(head.sum(Kind::Float).double_value(&[]), 0.0, "the skipped head keeps its values");
        let err = loaded.restore("ema", &vs, |_| false).unwrap_err();
        assert_eq!(err.missing.len(), 2, "an absent group provides nothing: {err}");
    }
}
