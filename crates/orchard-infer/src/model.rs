//! A run's best model loaded back for inference: the architecture and classes recorded in `best.ckpt`, its
//! weights (the EMA weights when the run kept an average: the model as it was evaluated), and the memory
//! layout and pixel normalisation it was validated with, so that predicting its validation fold again
//! reproduces the run's `oof.csv`. The model is kept only in its inference form, made once at load.

use std::path::{Path, PathBuf};

use orchard_data::decode::DecodeError;
use orchard_data::loader::Loader;
use orchard_data::pipeline::{Pipeline, PipelineConfig, Source};
use orchard_files::config::Precision;
use orchard_files::state::BEST;
use orchard_files::RunState;
use orchard_models::weights::checkpoint;
use orchard_models::InferenceModel;
use orchard_torch::autocast::inference_kind;
use orchard_torch::Layout;
use tch::{nn, Device, Tensor};

use crate::predictor::Predictor;
use crate::tta::Tta;
use crate::{InferError, Result};

/// A trained model ready to predict.
pub struct RunModel {
    /// The run directory.
    pub dir: PathBuf,
    /// What the checkpoint recorded: architecture, classes, input size (height, width), configuration.
    pub state: RunState,
    /// The inference form; the eager model and its var store are dropped once it is made.
    model: InferenceModel,
    device: Device,
    layout: Layout,
}

impl RunModel {
    /// Loads `dir/best.ckpt` onto `device`. Every variable of the architecture must be in the checkpoint
    /// with its shape; anything missing or mis-shaped is reported by name.
    pub fn load(dir: &Path, device: Device) -> Result<RunModel> {
        Self::load_in(dir, device, Precision::F32)
    }

    /// [`RunModel::load`] with the inference form in `precision`'s arithmetic (bf16: weights folded in f64
    /// from the f32 checkpoint, then rounded; probabilities come back as f32).
    pub fn load_in(dir: &Path, device: Device, precision: Precision) -> Result<RunModel> {
        let kind = inference_kind(precision, device).map_err(InferError::Config)?;
        let loaded = checkpoint::load::<RunState>(&dir.join(BEST))?;
        let bad = |message: String| InferError::Run { run: dir.to_path_buf(), message };
        let vs = nn::VarStore::new(device);
        let model = orchard_models::build(&loaded.state.arch, &vs.root(), Some(loaded.state.classes.len() as i64))?;
        if loaded.groups.get("model").is_none_or(|g| g.is_empty()) {
            return Err(bad(format!("{BEST} holds no model tensors")));
        }
        loaded
            .restore("model", &vs, |_| false)
            .map_err(|m| bad(format!("{BEST} does not fit {}: {m}", loaded.state.arch)))?;
        let state = loaded.state;
        let layout = if state.config.channels_last { Layout::ChannelsLast } else { Layout::Contiguous };
        if layout == Layout::ChannelsLast {
            let mut variables: Vec<Tensor> = vs.variables().into_values().collect();
            orchard_torch::convolutions_to_channels_last(variables.iter_mut());
        }
        let model = model.inference_in(kind);
        Ok(RunModel { dir: dir.to_path_buf(), state, model, device, layout })
    }

    /// The class names, in output column order.
    pub fn classes(&self) -> &[String] {
        &self.state.classes
    }

    /// The sample pipeline the run validated with (no augmentation, its input size) over `source`.
    pub fn pipeline(&self, source: Source) -> Pipeline {
        let (h, w) = self.state.size;
        Pipeline::new(PipelineConfig { size: (w, h), seed: self.state.config.seed, ..Default::default() }, source)
    }

    /// The model as a predictor, in the run's layout and output function.
    pub fn predictor(&self) -> Predictor<'_> {
        Predictor { model: &self.model, device: self.device, layout: self.layout, softmax: self.state.softmax }
    }

    /// Probabilities of every image `loader` yields, in its order, row-major N×C, averaged over `tta`'s
    /// transforms.
    pub fn predict(&self, loader: &Loader, tta: Tta) -> std::result::Result<Vec<f64>, DecodeError> {
        self.predictor().predict(loader, tta)
    }
}
