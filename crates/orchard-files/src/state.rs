//! What a training checkpoint records besides its tensors: the run's state, saved as JSON inside the
//! checkpoint (a safetensors file) under the byte tensor [`STATE_TENSOR`]. Everything that reads a run —
//! resuming it, predicting with it, an experiment's unit status, a report, a server — starts here, and
//! [`RunState::read`] reads it without loading the tensors (or libtorch): a `last.ckpt` with optimizer
//! moments can weigh hundreds of megabytes.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::history::EpochRecord;
use crate::FileError;

/// The name of the tensor that carries the JSON state in a checkpoint.
pub const STATE_TENSOR: &str = "__orchard_state__";
/// The checkpoint of the best epoch: the model as evaluated (EMA weights when the run kept an average).
pub const BEST: &str = "best.ckpt";
/// The checkpoint of the last epoch: everything needed to resume.
pub const LAST: &str = "last.ckpt";
/// The version of [`RunState`] this build writes.
pub const FORMAT: u32 = 1;

/// A run's state at the end of an epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Checkpoint format version.
    pub format: u32,
    pub arch: String,
    pub classes: Vec<String>,
    /// Input size (height, width).
    pub size: (usize, usize),
    /// Whether outputs are softmax rows (multi-class) or independent sigmoids (multi-label).
    pub softmax: bool,
    /// Epochs completed; the next epoch to run.
    pub epochs_done: u32,
    /// Optimizer steps taken.
    pub step: u64,
    pub best: Option<f64>,
    pub best_epoch: Option<u32>,
    pub epochs_since_best: u32,
    /// Set when early stopping ended the run.
    pub stopped_early: bool,
    pub history: Vec<EpochRecord>,
    /// Steps taken per optimizer parameter (Adam's bias correction).
    pub optimizer_steps: BTreeMap<String, u64>,
    /// The f16 loss scaler's state.
    pub loss_scaler: Option<LossScaler>,
    /// Data-parallel replicas of the epochs run last (1 on one device; older runs record none).
    #[serde(default = "one")]
    pub replicas: usize,
    pub config: TrainConfig,
}

fn one() -> usize {
    1
}

impl RunState {
    /// Reads the state of a checkpoint without its tensors.
    ///
    /// The file is safetensors: an 8-byte little-endian header length, a JSON header giving each tensor's
    /// byte range after the header, then the data.
    pub fn read(path: &Path) -> Result<RunState, FileError> {
        let format = |message: String| FileError::Format { path: path.to_path_buf(), message };
        let io_err = |source| FileError::Read { path: path.to_path_buf(), source };
        let mut file = crate::input::open(path, crate::input::WEIGHTS).map_err(io_err)?;
        // Lengths in the file are claims: each is checked against the file's size before anything that
        // large is allocated.
        let size = file.metadata().map_err(io_err)?.len();
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(|e| format(format!("no safetensors header: {e}")))?;
        let len = u64::from_le_bytes(len);
        if len > 100 << 20 {
            return Err(format(format!("a header of {len} bytes: not a checkpoint")));
        }
        if len > size.saturating_sub(8) {
            return Err(format(format!(
                "truncated header: {len} bytes announced, {} in the file",
                size.saturating_sub(8)
            )));
        }
        let mut header = vec![0u8; len as usize];
        file.read_exact(&mut header).map_err(|e| format(format!("truncated header: {e}")))?;
        let header: serde_json::Value = serde_json::from_slice(&header).map_err(|e| format(format!("header: {e}")))?;
        let range = header[STATE_TENSOR]["data_offsets"]
            .as_array()
            .and_then(|r| Some((r.first()?.as_u64()?, r.get(1)?.as_u64()?)));
        let Some((start, end)) = range.filter(|(a, b)| a <= b && b - a < 100 << 20) else {
            return Err(format(format!("no {STATE_TENSOR} entry: not an Orchard training checkpoint")));
        };
        let at = start.checked_add(8 + len).filter(|&at| at <= size && end - start <= size - at);
        let Some(at) = at else {
            let data = size.saturating_sub(8 + len);
            return Err(format(format!("truncated state: bytes {start}..{end} of {data} bytes of data")));
        };
        let mut bytes = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(at)).map_err(io_err)?;
        file.read_exact(&mut bytes).map_err(|e| format(format!("truncated state: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| format(format!("state: {e}")))
    }
}

/// Dynamic loss scaling for f16 training (PyTorch's `GradScaler` policy): the loss is multiplied by `scale`
/// before the backward pass so that small gradients survive f16, and the gradients divided by it before the
/// step; a step whose gradients overflowed is skipped and halves the scale, and `growth_interval` good steps
/// in a row double it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Consecutive steps without overflow.
    pub good_steps: u64,
    pub growth_interval: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler { scale: 65536.0, good_steps: 0, growth_interval: 2000 }
    }
}

impl LossScaler {
    /// Moves the scale after a step whose gradients were all `finite` (or not).
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file holding the JSON `state` as the state tensor, after a dummy tensor.
    fn checkpoint(state: &[u8]) -> Vec<u8> {
        let header = format!(
            "{{\"w\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}},\"{STATE_TENSOR}\":{{\"dtype\":\"U8\",\"shape\":[{}],\"data_offsets\":[4,{}]}}}}",
            state.len(),
            4 + state.len()
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(1.5f32.to_le_bytes());
        bytes.extend(state);
        bytes
    }

    fn state() -> RunState {
        RunState {
            format: FORMAT,
            arch: "mobilenet_v2".into(),
            classes: vec!["a".into(), "b".into()],
            size: (32, 48),
            softmax: true,
            epochs_done: 2,
            step: 10,
            best: Some(0.75),
            best_epoch: Some(1),
            epochs_since_best: 1,
            stopped_early: false,
            history: Vec::new(),
            optimizer_steps: BTreeMap::new(),
            loss_scaler: None,
            replicas: 1,
            config: TrainConfig::default(),
        }
    }

    #[test]
    fn the_state_is_read_without_the_tensors_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        let bytes = checkpoint(&serde_json::to_vec(&state()).unwrap());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(RunState::read(&path).unwrap(), state());
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = RunState::read(&path).unwrap_err().to_string();
        assert!(err.contains("last.ckpt") && err.contains("truncated state"), "{err}");
        std::fs::write(&path, &bytes[..6]).unwrap();
        assert!(RunState::read(&path).unwrap_err().to_string().contains("no safetensors header"));
        let header_only = checkpoint(b"{}");
        std::fs::write(&path, header_only).unwrap();
        assert!(RunState::read(&path).unwrap_err().to_string().contains("state: missing field"));
    }

    #[test]
    fn lengths_past_the_end_of_the_file_are_refused_before_allocating_or_seeking() {
        // A 40-byte file announcing a 100 MB header used to allocate the 100 MB first; a state range near
        // u64::MAX overflowed the seek offset (a panic with overflow checks).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        let mut bytes = ((100u64 << 20) - 1).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{\"__orchard_state__\": {}}");
        std::fs::write(&path, &bytes).unwrap();
        let err = RunState::read(&path).unwrap_err().to_string();
        assert!(err.contains("last.ckpt") && err.contains("truncated header: 104857599 bytes announced"), "{err}");
        let far = u64::MAX - 4;
        let header =
            format!("{{\"{STATE_TENSOR}\":{{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[{far},{}]}}}}", far + 4);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(b"null");
        std::fs::write(&path, &bytes).unwrap();
        let err = RunState::read(&path).unwrap_err().to_string();
        assert!(err.contains("truncated state: bytes 18446744073709551611.."), "{err}");
    }

    #[test]
    fn overflow_halves_the_scale_and_good_steps_grow_it() {
        let mut s = LossScaler { scale: 8.0, good_steps: 0, growth_interval: 2 };
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (4.0, 0));
        s.update(true);
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (8.0, 0));
        let mut floor = LossScaler { scale: 1.0, ..LossScaler::default() };
        floor.update(false);
        assert_eq!(floor.scale, 1.0);
    }
}
