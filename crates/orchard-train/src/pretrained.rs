//! Starting weights for a run's backbone. The head is always re-initialised for the run's classes.

use std::path::Path;

use orchard_models::LayerGroup;
use tch::nn;

use crate::checkpoint;
use crate::trainer::RunState;

/// Copies every backbone variable of `vs` (all but `head`'s) from the model in `path`, an Orchard training
/// checkpoint (`best.ckpt`, `last.ckpt`). All or nothing: every missing or mis-shaped tensor is listed.
pub fn load_backbone(vs: &nn::VarStore, head: &LayerGroup, path: &Path) -> Result<(), String> {
    let loaded = checkpoint::load::<RunState>(path).map_err(|e| e.to_string())?;
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
