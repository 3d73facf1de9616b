//! Starting weights for a run's backbone. The head is always re-initialised for the run's classes.

use std::path::Path;

use orchard_files::RunState;
use orchard_models::weights::checkpoint::{self, CheckpointError};
use orchard_models::weights::{self, LoadOptions};
use orchard_models::{LayerGroup, ModelSpec};
use tch::{nn, Device};

/// Loads every backbone variable of `vs` (all but `head`'s) from `path`: an Orchard training checkpoint
/// (`best.ckpt`, `last.ckpt`) or any weight file `orchard weights import` reads (Keras HDF5, PyTorch `.pth`,
/// safetensors, a native checkpoint). All or nothing: every missing or mis-shaped tensor is listed.
pub fn load_backbone(vs: &nn::VarStore, spec: &ModelSpec, head: &LayerGroup, path: &Path) -> Result<(), String> {
    match checkpoint::load::<RunState>(path) {
        Ok(loaded) => from_run(vs, head, path, loaded),
        Err(CheckpointError::Format { .. }) => {
            weights::load_file(vs, "", spec, path, LoadOptions { no_top: true, imagenet_statistics: None })
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Whether `path` can start a backbone of `arch`, as a run would load it: into a fresh model on the CPU,
/// thrown away afterwards. The error names every missing or mis-shaped tensor.
pub fn check(arch: &str, path: &Path) -> Result<(), String> {
    let spec = orchard_models::spec(arch).map_err(|e| e.to_string())?;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = orchard_models::build(arch, &vs.root(), Some(1)).map_err(|e| e.to_string())?;
    let head = model.layer_groups().pop().expect("a classifier with a head has a head group");
    load_backbone(&vs, &spec, &head, path)
}

fn from_run(
    vs: &nn::VarStore,
    head: &LayerGroup,
    path: &Path,
    loaded: checkpoint::Loaded<RunState>,
) -> Result<(), String> {
    loaded
        .restore("model", vs, |name| head.contains(name))
        .map(|_| ())
        .map_err(|mismatch| format!("{}: cannot start {} from it: {mismatch}", path.display(), loaded.state.arch))
}
