//! Everything a report shows, read from the run directory with orchard-files' types: each (member, fold)
//! unit's resolved configuration, per-epoch history and validation predictions; for an experiment also the
//! summary, the manifest, each member's out-of-fold predictions and the ensemble's; and the dataset the run
//! trained on (its labels and image files). What is missing is noted and left out of the page, never fatal:
//! a report of a half-finished run is still worth having.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use orchard_data::dataset::{self, LoadOptions, Split};
use orchard_files::experiment_summary::{ExperimentSummary, ENSEMBLE_OOF, SUMMARY};
use orchard_files::history::{self, EpochRecord, METRICS_JSONL};
use orchard_files::manifest::{Manifest, MANIFEST};
use orchard_files::state::LAST;
use orchard_files::{Predictions, RunState, TrainConfig, Truth};

use crate::ReportError;

/// The validation predictions of one training run.
pub const RUN_OOF: &str = "oof.csv";

/// What kind of directory the report is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `orchard run`'s output: members × folds, gathered into an ensemble.
    Experiment,
    /// One `orchard train` run directory.
    Run,
}

/// One training run: an experiment's (member, fold) unit, or the single run reported on.
#[derive(Clone, Debug)]
pub struct Unit {
    pub member: String,
    /// The validation fold, when the run had one.
    pub fold: Option<usize>,
    pub dir: PathBuf,
    pub config: TrainConfig,
    pub history: Vec<EpochRecord>,
    /// The state in `last.ckpt` (steps taken, replicas, best epoch), when readable.
    pub state: Option<RunState>,
}

/// A member and its units.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub units: Vec<Unit>,
    /// Its out-of-fold predictions as the ensemble used them (with the experiment's TTA), else its units'
    /// validation predictions merged.
    pub oof: Option<Predictions>,
}

/// Predictions of the whole training set (or a run's validation fold) to evaluate against the labels.
#[derive(Clone, Debug)]
pub struct Evaluated {
    /// What they are, for headings: `ensemble`, or the run's name.
    pub name: String,
    pub predictions: Predictions,
    /// False when a blend fitted on these very rows made them (optimistic numbers).
    pub honest: bool,
    /// How they were made, in a sentence.
    pub how: String,
}

/// The dataset the run trained on.
#[derive(Clone, Debug)]
pub struct Data {
    pub root: PathBuf,
    pub truth: Truth,
    /// Image file of each training id.
    pub images: HashMap<String, PathBuf>,
}

/// Everything read.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub dir: PathBuf,
    pub kind: Kind,
    pub members: Vec<Member>,
    pub summary: Option<ExperimentSummary>,
    pub manifest: Option<Manifest>,
    /// The ensemble's (or the run's) predictions to draw ROC curves, the confusion matrix and the gallery of.
    pub evaluated: Option<Evaluated>,
    pub data: Option<Data>,
    /// What could not be read, and so is not in the page.
    pub notes: Vec<String>,
}

impl Loaded {
    /// Every unit, member by member.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.members.iter().flat_map(|m| &m.units)
    }

    /// The directory's name, for the title.
    pub fn title(&self) -> String {
        let dir = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
    }
}

/// Reads the experiment or run in `dir`; `data` overrides the dataset folder its configuration names.
pub fn load(dir: &Path, data: Option<&Path>) -> Result<Loaded, ReportError> {
    let mut notes = Vec::new();
    let kind = if dir.join(SUMMARY).is_file() || dir.join("members").is_dir() {
        Kind::Experiment
    } else if dir.join("config.toml").is_file() {
        Kind::Run
    } else {
        return Err(ReportError::NotARun { path: dir.to_path_buf() });
    };
    let (members, summary, manifest) = match kind {
        Kind::Experiment => {
            let summary = if dir.join(SUMMARY).exists() {
                optional(ExperimentSummary::read(dir), &mut notes, "the summary")
            } else {
                notes.push("the experiment has not been gathered (no summary.json): no ensemble".into());
                None
            };
            // Only needed to blend the members when gather wrote no oof.csv (experiments from before it did).
            let manifest = dir
                .join(MANIFEST)
                .exists()
                .then(|| optional(Manifest::read(dir), &mut notes, "the manifest"))
                .flatten();
            (experiment_members(dir, summary.as_ref(), &mut notes)?, summary, manifest)
        }
        Kind::Run => {
            let name = std::path::absolute(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "run".into());
            let unit = read_unit(dir, &name, &mut notes)?;
            let oof = read_predictions(&dir.join(RUN_OOF), &mut notes);
            (vec![Member { name, units: vec![unit], oof }], None, None)
        }
    };
    let data = dataset_dir(dir, &members, data).and_then(|root| {
        match read_data(&root, dir.join(dataset::SKIPPED).is_file()) {
            Ok(d) => Some(d),
            Err(e) => {
                notes.push(format!(
                    "the dataset {} could not be read ({e}): no ROC curves, confusion or gallery",
                    root.display()
                ));
                None
            }
        }
    });
    if data.is_none() && !notes.iter().any(|n| n.starts_with("the dataset")) {
        notes.push("the dataset was not found (pass --data DIR): no ROC curves, confusion or gallery".into());
    }
    let evaluated = match kind {
        Kind::Experiment => ensemble_predictions(dir, &members, summary.as_ref(), manifest.as_ref(), &mut notes),
        Kind::Run => members[0].oof.clone().map(|predictions| Evaluated {
            name: members[0].name.clone(),
            predictions,
            honest: true,
            how: "the run's validation fold, predicted by its best checkpoint".into(),
        }),
    };
    Ok(Loaded { dir: dir.to_path_buf(), kind, members, summary, manifest, evaluated, data, notes })
}

/// `Some` of a file read, or `None` with a note saying what is missing.
fn optional<T>(read: Result<T, orchard_files::FileError>, notes: &mut Vec<String>, what: &str) -> Option<T> {
    read.map_err(|e| notes.push(format!("{what} could not be read: {e}"))).ok()
}

fn read_predictions(path: &Path, notes: &mut Vec<String>) -> Option<Predictions> {
    if !path.exists() {
        return None;
    }
    optional(Predictions::read(path), notes, &path.display().to_string())
}

/// The members in the summary's order (else the folders under `members/`, sorted), with their fold units.
fn experiment_members(
    dir: &Path,
    summary: Option<&ExperimentSummary>,
    notes: &mut Vec<String>,
) -> Result<Vec<Member>, ReportError> {
    let names: Vec<String> = match summary {
        Some(s) => s.members.iter().map(|m| m.name.clone()).collect(),
        None => {
            let mut names: Vec<String> = std::fs::read_dir(dir.join("members"))
                .map_err(|source| orchard_files::FileError::Read { path: dir.join("members"), source })?
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    };
    let mut members = Vec::new();
    for name in names {
        let member_dir = dir.join("members").join(&name);
        let mut units = Vec::new();
        for fold in 0.. {
            let unit_dir = member_dir.join(format!("fold{fold}"));
            if !unit_dir.join("config.toml").is_file() {
                break;
            }
            units.push(read_unit(&unit_dir, &name, notes)?);
        }
        let oof = read_predictions(&member_dir.join("oof.csv"), notes).or_else(|| merged_oof(&units, notes));
        members.push(Member { name, units, oof });
    }
    Ok(members)
}

/// The units' own validation predictions, concatenated (before gather has run).
fn merged_oof(units: &[Unit], notes: &mut Vec<String>) -> Option<Predictions> {
    let mut merged: Option<Predictions> = None;
    for unit in units {
        let part = read_predictions(&unit.dir.join(RUN_OOF), notes)?;
        match &mut merged {
            None => merged = Some(part),
            Some(m) if m.classes.iter().all(|c| part.classes.contains(c)) => m.extend(&part),
            Some(_) => return None,
        }
    }
    merged
}

fn read_unit(dir: &Path, member: &str, notes: &mut Vec<String>) -> Result<Unit, ReportError> {
    let path = dir.join("config.toml");
    let text = orchard_files::input::read_to_string(&path, orchard_files::input::TEXT)
        .map_err(|source| orchard_files::FileError::Read { path: path.clone(), source })?;
    let config = TrainConfig::from_toml(&text)
        .map_err(|e| orchard_files::FileError::Format { path: path.clone(), message: e.to_string() })?;
    let state = if dir.join(LAST).exists() {
        optional(RunState::read(&dir.join(LAST)), notes, &dir.join(LAST).display().to_string())
    } else {
        None
    };
    let history = if dir.join(METRICS_JSONL).exists() {
        optional(history::read_jsonl(&dir.join(METRICS_JSONL)), notes, "the metrics").unwrap_or_default()
    } else {
        state.as_ref().map(|s| s.history.clone()).unwrap_or_default()
    };
    let fold = config.data.folds.map(|_| config.data.fold);
    Ok(Unit { member: member.to_string(), fold, dir: dir.to_path_buf(), config, history, state })
}

/// The dataset folder: `data` when given, else the first unit's `data.dir`: as it is when absolute or
/// found from here, else taken from where the run was started (the folder that `out` was relative to).
pub fn dataset_dir(dir: &Path, members: &[Member], data: Option<&Path>) -> Option<PathBuf> {
    if let Some(data) = data {
        return Some(data.to_path_buf());
    }
    let unit = members.iter().flat_map(|m| &m.units).next()?;
    let named = &unit.config.data.dir;
    if named.as_os_str().is_empty() {
        return None;
    }
    if named.is_absolute() || named.is_dir() {
        return Some(named.clone());
    }
    let unit_dir = std::path::absolute(&unit.dir).ok()?;
    let started_in = unit.config.out.as_deref().and_then(|out| strip_suffix(&unit_dir, out));
    let candidates =
        started_in.into_iter().chain(std::path::absolute(dir).ok().and_then(|d| d.parent().map(Path::to_path_buf)));
    candidates.map(|base| base.join(named)).find(|p| p.is_dir())
}

/// `path` without the trailing components `suffix` (a relative path), when it ends with them.
fn strip_suffix(path: &Path, suffix: &Path) -> Option<PathBuf> {
    let tail: Vec<Component> = suffix.components().filter(|c| *c != Component::CurDir).collect();
    if tail.is_empty() || tail.iter().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut base = path.to_path_buf();
    for c in tail.iter().rev() {
        if base.file_name() != Some(c.as_os_str()) {
            return None;
        }
        base.pop();
    }
    Some(base)
}

/// The dataset at `root`; `skip_bad` when the experiment dropped rows (its `skipped.csv`), which are then
/// dropped again, found the same way.
fn read_data(root: &Path, skip_bad: bool) -> Result<Data, dataset::DatasetError> {
    let options = match skip_bad {
        true => LoadOptions { skip_bad, images: dataset::ImageCheck::Decode },
        false => LoadOptions::default(),
    };
    let (data, _) = dataset::load(root, Split::Train, &options)?;
    let truth = dataset::truth_of(&data);
    let images = data.samples.into_iter().map(|s| (s.id, s.path)).collect();
    Ok(Data { root: root.to_path_buf(), truth, images })
}

/// The ensemble's out-of-fold predictions: `OUT/oof.csv` when gather wrote it (each row by the blend fitted
/// without its fold), else the manifest's blend (fitted on all rows) applied to the members' out-of-fold
/// predictions, which is in-sample when anything was fitted.
fn ensemble_predictions(
    dir: &Path,
    members: &[Member],
    summary: Option<&ExperimentSummary>,
    manifest: Option<&Manifest>,
    notes: &mut Vec<String>,
) -> Option<Evaluated> {
    let fitted = summary.is_some_and(|s| s.ensemble.cv.is_some());
    if let Some(predictions) = read_predictions(&dir.join(ENSEMBLE_OOF), notes) {
        let how = if fitted {
            "cross-validated: each fold's rows blended by what was fitted on the other folds"
        } else {
            "out-of-fold: the members' out-of-fold predictions combined (nothing fitted)"
        };
        return Some(Evaluated { name: "ensemble".into(), predictions, honest: true, how: how.into() });
    }
    let manifest = manifest?;
    let parts: Option<Vec<&Predictions>> = members.iter().map(|m| m.oof.as_ref()).collect();
    let parts = parts?;
    let ids = parts.first()?.ids.clone();
    let mut matrices = Vec::new();
    for p in &parts {
        if p.rows() != ids.len() || !manifest.classes.iter().all(|c| p.classes.contains(c)) {
            notes.push("the members' out-of-fold predictions do not line up: no ensemble evaluation".into());
            return None;
        }
        matrices.push(p.reordered(&ids, &manifest.classes));
    }
    let slices: Vec<&[f64]> = matrices.iter().map(Vec::as_slice).collect();
    let k = manifest.classes.len();
    let values = match orchard_ensemble::run::apply(&manifest.blend, &slices, k, manifest.task) {
        Ok(v) => v,
        Err(e) => {
            notes.push(format!("the manifest's blend could not be applied: {e}"));
            return None;
        }
    };
    let predictions = Predictions::new(&parts[0].id_column, manifest.classes.clone(), ids, values);
    let how = if fitted {
        "the blend fitted on all out-of-fold rows applied to those same rows (the experiment has no oof.csv of cross-validated rows)"
    } else {
        "out-of-fold: the members' out-of-fold predictions combined (nothing fitted)"
    };
    Some(Evaluated { name: "ensemble".into(), predictions, honest: !fitted, how: how.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_a_run_was_started_from_is_its_directory_less_its_relative_out() {
        let base = strip_suffix(Path::new("/tmp/demo/exp/members/b0/fold0"), Path::new("exp/members/b0/fold0"));
        assert_eq!(base, Some(PathBuf::from("/tmp/demo")));
        assert_eq!(strip_suffix(Path::new("/tmp/demo/exp/fold0"), Path::new("./other/fold0")), None);
        assert_eq!(strip_suffix(Path::new("/tmp/a"), Path::new("../a")), None);
    }
}
