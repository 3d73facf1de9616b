//! A run's best model loaded back for inference: the architecture and classes recorded in `best.ckpt`, its
//! weights (the EMA weights when the run kept an average: the model as it was evaluated), and the memory
//! layout and pixel normalisation it was validated with, so that predicting its validation fold again
//! reproduces the run's `oof.csv`.

use std::path::{Path, PathBuf};

use orchard_data::loader::Loader;
use orchard_data::pipeline::{Pipeline, PipelineConfig, Source};
use orchard_models::Classifier;
use orchard_torch::Layout;
use orchard_train::checkpoint;
use orchard_train::loss::Loss;
use orchard_train::RunState;
use tch::{nn, Device, Kind, Tensor};

use crate::tta::Tta;
use crate::{InferError, Result};

/// The file of a run directory that holds the model to predict with.
pub const BEST: &str = "best.ckpt";

/// A trained model ready to predict.
pub struct RunModel {
    /// The run directory.
    pub dir: PathBuf,
    /// What the checkpoint recorded: architecture, classes, input size (height, width), configuration.
    pub state: RunState,
    _vs: nn::VarStore,
    model: Classifier,
    device: Device,
    layout: Layout,
    /// Turns logits into probabilities: softmax rows or independent sigmoids, as the run trained.
    probabilities: Loss,
}

impl RunModel {
    /// Loads `dir/best.ckpt` onto `device`. Every variable of the architecture must be in the checkpoint
    /// with its shape; anything missing or mis-shaped is reported by name.
    pub fn load(dir: &Path, device: Device) -> Result<RunModel> {
        let loaded = checkpoint::load::<RunState>(&dir.join(BEST))?;
        let state = loaded.state;
        let bad = |message: String| InferError::Run { run: dir.to_path_buf(), message };
        let vs = nn::VarStore::new(device);
        let model = orchard_models::build(&state.arch, &vs.root(), Some(state.classes.len() as i64))?;
        let saved = loaded.groups.get("model").ok_or_else(|| bad(format!("{BEST} holds no model tensors")))?;
        let mut problems = Vec::new();
        let layout = if state.config.channels_last { Layout::ChannelsLast } else { Layout::Contiguous };
        for (name, mut var) in vs.variables() {
            match saved.get(&name) {
                None => problems.push(format!("{name} is missing")),
                Some(t) if t.size() != var.size() => problems.push(format!("{name} is {:?} in {BEST}, {:?} in {}", t.size(), var.size(), state.arch)),
                Some(t) => tch::no_grad(|| {
                    var.copy_(t);
                    if layout == Layout::ChannelsLast && var.dim() == 4 {
                        var.set_data(&channels_last(&var));
                    }
                }),
            }
        }
        if !problems.is_empty() {
            return Err(bad(format!("{BEST} does not fit {}: {}", state.arch, problems.join("; "))));
        }
        let probabilities = Loss { softmax: state.softmax, label_smoothing: 0.0, class_weights: None };
        Ok(RunModel { dir: dir.to_path_buf(), state, _vs: vs, model, device, layout, probabilities })
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

    /// Probabilities of every image `loader` yields, in its order, row-major N×C, averaged over `tta`'s
    /// transforms.
    pub fn predict(&self, loader: &Loader, tta: Tta) -> Result<Vec<f64>> {
        let normalization = self.model.spec().normalization;
        let mut out = Vec::new();
        for batch in loader.epoch(0) {
            let xs = orchard_torch::images(&batch?, normalization, self.device, self.layout);
            let probs = tch::no_grad(|| self.predict_tensor(&xs, tta));
            out.extend(Vec::<f64>::try_from(probs.to_kind(Kind::Double).to_device(Device::Cpu).flatten(0, -1)).expect("f64 probabilities"));
        }
        Ok(out)
    }

    /// Probabilities for a batch of normalised images (N×3×H×W), averaged over `tta`'s transforms.
    pub fn predict_tensor(&self, xs: &Tensor, tta: Tta) -> Tensor {
        crate::tta::average(xs, tta, self.layout, |x| self.probabilities.probabilities(&self.model.forward_t(x, false)))
    }
}

pub use orchard_torch::channels_last;
