//! Checkpoint files: one safetensors file holding named tensors in groups (`model/…`, `ema/…`, `optim/…`)
//! and the run's state as JSON in a byte tensor, written atomically (a temporary file in the same folder,
//! synced, then renamed), so a killed run never leaves a truncated checkpoint under the real name.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Name of the tensor that carries the JSON state.
const STATE: &str = "__orchard_state__";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a readable checkpoint: {message}")]
    Format { path: PathBuf, message: String },
}

/// Writes `state` and the tensors of every `(group, tensors)` as `group/name`, atomically.
pub fn save<S: Serialize>(path: &Path, state: &S, groups: &[(&str, Vec<(String, Tensor)>)]) -> Result<(), CheckpointError> {
    let io_err = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let json = serde_json::to_vec(state).expect("checkpoint state serialises");
    let mut named: Vec<(String, Tensor)> = vec![(STATE.to_string(), Tensor::from_slice(&json))];
    for (group, tensors) in groups {
        for (name, t) in tensors {
            named.push((format!("{group}/{name}"), t.detach().to_device(Device::Cpu).contiguous()));
        }
    }
    let tmp = tempfile::Builder::new().prefix(".ckpt-").suffix(".tmp").tempfile_in(dir).map_err(io_err)?;
    Tensor::write_safetensors(&named, tmp.path())
        .map_err(|e| CheckpointError::Format { path: tmp.path().to_path_buf(), message: e.to_string() })?;
    fs::File::open(tmp.path()).and_then(|f| f.sync_all()).map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// A loaded checkpoint: its state and its tensors by group.
#[derive(Debug)]
pub struct Loaded<S> {
    pub state: S,
    /// group → (name within the group → tensor).
    pub groups: BTreeMap<String, BTreeMap<String, Tensor>>,
}

impl<S> Loaded<S> {
    /// The tensors of `group`, empty when it has none.
    pub fn group(&self, group: &str) -> BTreeMap<String, Tensor> {
        self.groups.get(group).map(|g| g.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect()).unwrap_or_default()
    }
}

/// Reads a checkpoint written by [`save`].
pub fn load<S: DeserializeOwned>(path: &Path) -> Result<Loaded<S>, CheckpointError> {
    let format = |message: String| CheckpointError::Format { path: path.to_path_buf(), message };
    if !path.exists() {
        return Err(CheckpointError::Io { path: path.to_path_buf(), source: io::ErrorKind::NotFound.into() });
    }
    let tensors = Tensor::read_safetensors(path).map_err(|e| format(e.to_string()))?;
    let mut state = None;
    let mut groups: BTreeMap<String, BTreeMap<String, Tensor>> = BTreeMap::new();
    for (name, t) in tensors {
        if name == STATE {
            if t.kind() != Kind::Uint8 {
                return Err(format(format!("{STATE} is {:?}, not bytes", t.kind())));
            }
            let bytes: Vec<u8> = Vec::try_from(&t).map_err(|e: tch::TchError| format(e.to_string()))?;
            state = Some(serde_json::from_slice(&bytes).map_err(|e| format(format!("state: {e}")))?);
        } else {
            let (group, rest) = name.split_once('/').ok_or_else(|| format(format!("tensor {name:?} belongs to no group")))?;
            groups.entry(group.to_string()).or_default().insert(rest.to_string(), t);
        }
    }
    let state = state.ok_or_else(|| format(format!("no {STATE} entry: not an Orchard training checkpoint")))?;
    Ok(Loaded { state, groups })
}

/// Reads only the state of a checkpoint written by [`save`], without its tensors: a cheap look at a run's
/// progress (a `last.ckpt` with optimizer moments can weigh hundreds of megabytes).
///
/// The file is safetensors: an 8-byte little-endian header length, a JSON header giving each tensor's byte
/// range after the header, then the data.
pub fn load_state<S: DeserializeOwned>(path: &Path) -> Result<S, CheckpointError> {
    use std::io::{Read, Seek, SeekFrom};
    let format = |message: String| CheckpointError::Format { path: path.to_path_buf(), message };
    let io_err = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| format(format!("no safetensors header: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(format(format!("a header of {len} bytes: not a checkpoint")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| format(format!("truncated header: {e}")))?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|e| format(format!("header: {e}")))?;
    let range = header[STATE]["data_offsets"].as_array().and_then(|r| Some((r.first()?.as_u64()?, r.get(1)?.as_u64()?)));
    let Some((start, end)) = range.filter(|(a, b)| a <= b && b - a < 100 << 20) else {
        return Err(format(format!("no {STATE} entry: not an Orchard training checkpoint")));
    };
    let mut bytes = vec![0u8; (end - start) as usize];
    file.seek(SeekFrom::Start(8 + len + start)).map_err(io_err)?;
    file.read_exact(&mut bytes).map_err(|e| format(format!("truncated state: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| format(format!("state: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_state_groups_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        let w = Tensor::from_slice(&[1.5f32, -2.0]).view([1, 2]);
        save(&path, &vec![3u32, 4], &[("model", vec![("a.weight".into(), w.shallow_clone())]), ("ema", vec![])]).unwrap();
        let loaded: Loaded<Vec<u32>> = load(&path).unwrap();
        assert_eq!(loaded.state, vec![3, 4]);
        assert_eq!(load_state::<Vec<u32>>(&path).unwrap(), vec![3, 4], "the state alone");
        assert!(loaded.group("model")["a.weight"].equal(&w));
        assert!(loaded.group("ema").is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left behind");
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
        fs::write(&path, &bytes[..6]).unwrap();
        let err = load_state::<u8>(&path).unwrap_err().to_string();
        assert!(err.contains("last.ckpt") && err.contains("no safetensors header"), "{err}");
    }
}
