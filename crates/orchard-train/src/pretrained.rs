//! Starting weights for a run's backbone. The head is always re-initialised for the run's classes.

use std::path::Path;

use orchard_models::weights::{self, LoadOptions};
use orchard_models::{LayerGroup, ModelSpec};
use tch::nn;

use crate::checkpoint::{self, CheckpointError};
use crate::trainer::RunState;

/// Loads every backbone variable of `vs` (all but `head`'s) from `path`: an Orchard training checkpoint
/// (`best.ckpt`, `last.ckpt`) or any weight file `orchard weights import` reads (Keras HDF5, PyTorch `.pth`,
/// safetensors, a native checkpoint). All or nothing: every missing or mis-shaped tensor is listed.
pub fn load_backbone(vs: &nn::VarStore, spec: &ModelSpec, head: &LayerGroup, path: &Path) -> Result<(), String> {
    match checkpoint::load::<RunState>(path) {
        Ok(loaded) => from_run(vs, head, path, loaded),
        Err(CheckpointError::Format { .. }) => weights::load_file(vs, "", spec, path, LoadOptions { no_top: true, imagenet_statistics: None })
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn from_run(vs: &nn::VarStore, head: &LayerGroup, path: &Path, loaded: checkpoint::Loaded<RunState>) -> Result<(), String> {
    let source = loaded.group("model");
    let mut problems = Vec::new();
    let mut pairs = Vec::new();
    for (name, t) in vs.variables() {
        if head.contains(&name) {
            continue;
        }
        match source.get(&name) {
            None => problems.push(format!("missing: {name}")),
            Some(s) if s.size() != t.size() => problems.push(format!("mis-shaped: {name} is {:?} in the file, {:?} in the model", s.size(), t.size())),
            Some(s) => pairs.push((t, s.shallow_clone())),
        }
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(format!("{}: cannot start {} from it:\n  {}", path.display(), loaded.state.arch, problems.join("\n  ")));
    }
    tch::no_grad(|| {
        for (t, s) in pairs {
            t.detach().copy_(&s);
        }
    });
    Ok(())
}
