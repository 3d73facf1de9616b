//! Everything a run of an experiment would trip over, found before anything is trained or written and
//! reported together, so one pass tells the user all there is to fix: the dataset (every image decoded)
//! and its test split, the fold assignment (and the one an earlier run left in the experiment
//! directory), and each member's architecture, input size, device, class weights, soft targets and starting
//! weights, loaded into the architecture as a run would load them. Nothing is created.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use orchard_data::dataset::{self, Dataset, ImageCheck, LoadOptions, Split};
use orchard_files::config::Precision;
use orchard_files::{folds, input};
use orchard_torch::unavailable;

use crate::config::{Experiment, Member};
use crate::units::FOLDS;
use crate::{ExperimentError, Result};

/// What a successful check read: the training split (its images probed), the size of the test split, and
/// the fold of every training image.
#[derive(Clone, Debug)]
pub struct Checked {
    pub train: Dataset,
    pub test_images: usize,
    pub folds: Vec<usize>,
    /// Distinct weight files loaded and found to fit.
    pub weight_files: usize,
}

/// Checks `experiment`; every problem found comes back at once in [`ExperimentError::Problems`].
pub fn check(experiment: &Experiment) -> Result<Checked> {
    let mut problems = Vec::new();
    let probe = LoadOptions { skip_bad: experiment.skip_bad, images: ImageCheck::Decode };
    let train = match dataset::load(&experiment.data, Split::Train, &probe) {
        Ok((train, _)) => Some(train),
        Err(e) => {
            problems.push(format!("data: {e}"));
            None
        }
    };
    let test_images = match &train {
        Some(_) => match dataset::load(&experiment.data, Split::Test, &LoadOptions { skip_bad: false, ..probe }) {
            Ok((test, _)) => test.len(),
            Err(e) => {
                problems.push(format!("the test split (the gather step predicts it): {e}"));
                0
            }
        },
        None => 0,
    };
    let assignment = train.as_ref().and_then(|train| fold_assignment(experiment, train, &mut problems));
    problems.extend(out_dir(&experiment.out));
    problems.extend(devices(experiment));
    let mut weights = BTreeMap::new();
    for member in &experiment.members {
        let classes = train.as_ref().map(|t| t.classes.len());
        for problem in check_member(member, classes, &mut weights) {
            problems.push(format!("member {:?}: {problem}", member.name));
        }
    }
    match (train, assignment) {
        (Some(train), Some(folds)) if problems.is_empty() => {
            Ok(Checked { train, test_images, folds, weight_files: weights.len() })
        }
        _ => Err(ExperimentError::Problems { path: experiment.file.clone(), problems }),
    }
}

/// The experiment's fold assignment, which must agree with one an earlier run wrote.
fn fold_assignment(experiment: &Experiment, train: &Dataset, problems: &mut Vec<String>) -> Option<Vec<usize>> {
    let assignment = match folds::assign(&train.targets(), experiment.folds, experiment.seed) {
        Ok(a) => a,
        Err(e) => {
            problems.push(format!("folds = {}: {e}", experiment.folds));
            return None;
        }
    };
    let written = experiment.out.join(FOLDS);
    if written.is_file() {
        match folds::read_csv(&written, &train.ids()) {
            Ok(existing) if existing == assignment => {}
            Ok(_) => problems.push(format!(
                "{} holds another fold assignment than folds = {}, seed = {} make: its units were trained on it; \
                 choose another out directory",
                written.display(),
                experiment.folds,
                experiment.seed
            )),
            Err(e) => problems.push(format!("{}: {e}", written.display())),
        }
    }
    Some(assignment)
}

/// A problem with the experiment directory: it must be a folder or not exist yet.
fn out_dir(out: &Path) -> Option<String> {
    (out.exists() && !out.is_dir()).then(|| format!("out {}: not a folder", out.display()))
}

/// What `orchard run` checks before it creates or trains anything, reported together: every device the
/// experiment names that this machine lacks (libtorch would panic at the first tensor), and the
/// architecture, input size, soft targets and starting weights (loaded as a run would load them) of the
/// `members` (indices) about to train, so that a mistake in the last member does not wait for the first to
/// train. The dataset and the folds are checked as the run prepares them.
pub fn check_members(experiment: &Experiment, members: &[usize]) -> Result<()> {
    let mut problems = devices(experiment);
    let mut weights = BTreeMap::new();
    for member in members.iter().filter_map(|&m| experiment.members.get(m)) {
        for problem in check_member(member, None, &mut weights) {
            problems.push(format!("member {:?}: {problem}", member.name));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(ExperimentError::Problems { path: experiment.file.clone(), problems }),
    }
}

/// The devices of the members and of `[predict]` that this machine lacks, each naming its owner, and a
/// `[predict]` precision its device cannot run.
fn devices(experiment: &Experiment) -> Vec<String> {
    let members = experiment.members.iter().map(|m| (format!("member {:?}", m.name), m.config.device));
    let mut problems: Vec<String> = std::iter::once(("[predict]".to_string(), experiment.predict.device))
        .chain(members)
        .filter_map(|(who, device)| unavailable(device).map(|p| format!("{who}: {p}")))
        .collect();
    let predict = &experiment.predict;
    if predict.precision == Precision::F16
        && unavailable(predict.device).is_none()
        && orchard_torch::device(predict.device) == tch::Device::Cpu
    {
        problems.push(format!(
            "[predict]: precision = \"f16\" runs on CUDA only, and device = \"{}\" predicts on the CPU here; \
             use \"bf16\" or \"f32\"",
            predict.device
        ));
    }
    problems
}

/// A member's problems, without its name. `classes` is the dataset's number of classes when it loaded;
/// `weights` remembers the weight files already loaded, per architecture, and what loading them said.
fn check_member(
    member: &Member,
    classes: Option<usize>,
    weights: &mut BTreeMap<(String, PathBuf), Option<String>>,
) -> Vec<String> {
    let config = &member.config;
    let arch = &config.model.arch;
    let mut problems = Vec::new();
    let spec = match orchard_models::spec(arch) {
        Ok(spec) => spec,
        Err(e) => return vec![format!("model.arch: {e}")],
    };
    let (h, w) = config.data.size.unwrap_or((spec.default_size.0 as usize, spec.default_size.1 as usize));
    if let Err(e) = spec.check_input(h as i64, w as i64) {
        problems.push(format!("data.size {w}x{h}: {e}"));
    }
    if let (Some(classes), Some(class_weights)) = (classes, &config.loss.class_weights) {
        if class_weights.len() != classes {
            problems.push(format!("loss.class_weights has {} values for {classes} classes", class_weights.len()));
        }
    }
    if let Some(soft) = &config.data.soft_targets {
        if let Some(why) = unreadable(soft, input::TABLE) {
            problems.push(format!("data.soft_targets {}: {why}", soft.display()));
        }
    }
    if let Some(path) = &config.model.weights {
        let key = (arch.clone(), path.clone());
        let outcome = weights.entry(key).or_insert_with(|| load_weights(arch, path));
        problems.extend(outcome.clone());
    }
    problems
}

/// Why the file at `path` cannot be read as a user's file of its kind (`bound`), if it cannot: missing, not a
/// regular file (a FIFO would hang the run), or too large.
fn unreadable(path: &Path, bound: input::Bound) -> Option<String> {
    match input::check(path, bound) {
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("no such file".into()),
        Err(e) => Some(e.to_string()),
    }
}

/// Why the weight file at `path` cannot start `arch`, if it cannot.
fn load_weights(arch: &str, path: &Path) -> Option<String> {
    weights_problem(arch, path).map(|e| format!("model.weights {e}"))
}

/// Lines of a mismatch listed; the rest are counted.
const LISTED: usize = 6;

/// Why the weight file at `path` cannot start a backbone of `arch` (naming the file), if it cannot: loaded
/// as a run would load it. A long list of mismatched tensors is cut short, the mis-shaped first, with the
/// command that shows them all.
pub fn weights_problem(arch: &str, path: &Path) -> Option<String> {
    if let Some(why) = unreadable(path, input::WEIGHTS) {
        return Some(format!("{}: {why}", path.display()));
    }
    let message = orchard_train::pretrained::check(arch, path).err()?;
    let mut lines: Vec<String> = message.lines().map(|l| format!("    {}", l.trim_start())).collect();
    lines[0] = lines[0].trim_start().to_string();
    // Mis-shaped tensors say the most (the file is for this architecture, at another width): first.
    lines[1..].sort_by_key(|l| !l.trim_start().starts_with("mis-shaped"));
    if lines.len() > LISTED + 1 {
        let more = lines.len() - LISTED - 1;
        lines.truncate(LISTED + 1);
        lines.push(format!(
            "    ... {more} more: `orchard weights inspect {}` lists the file's tensors",
            path.display()
        ));
    }
    Some(lines.join("\n"))
}
