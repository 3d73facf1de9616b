//! Units of work: one (member, fold) training run each, in `OUT/members/<name>/fold<i>`, all on the one fold
//! assignment in `OUT/folds.csv`.
//!
//! A unit's status comes from its `last.ckpt` alone (its state, read without the tensors): *complete* when
//! it has trained its configured epochs or stopped early, *partial* when it has a checkpoint short of that,
//! *missing* otherwise. Training a unit resumes a partial one from its checkpoint (the trainer refuses if
//! the member's settings changed meanwhile, except the epoch budget and patience), so an interrupted
//! experiment continues where it stopped and never redoes a finished unit.

use std::fmt;
use std::path::PathBuf;

use orchard_data::dataset::{self, DatasetError, ImageCheck, LoadOptions, Split};
use orchard_files::lock::DirLock;
use orchard_files::state::LAST;
use orchard_files::{folds, RunState, TrainConfig};
use orchard_train::progress::Progress;
use orchard_train::replicas::Replicas;

use crate::config::Experiment;
use crate::{ExperimentError, Result};

/// One (member, fold) pair, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    pub member: usize,
    pub fold: usize,
}

/// How far a unit has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// No checkpoint yet.
    Missing,
    /// A checkpoint after `done` of `epochs` epochs.
    Partial { done: u32, epochs: u32 },
    /// Trained to the end (or stopped early) after `done` epochs.
    Complete { done: u32 },
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Missing => f.write_str("not started"),
            Status::Partial { done, epochs } => write!(f, "{done}/{epochs} epochs"),
            Status::Complete { done } => write!(f, "complete ({done} epochs)"),
        }
    }
}

/// The file that records the fold of every training image.
pub const FOLDS: &str = "folds.csv";

impl Experiment {
    /// Every unit, member by member, fold by fold.
    pub fn units(&self) -> Vec<Unit> {
        (0..self.members.len()).flat_map(|member| (0..self.folds).map(move |fold| Unit { member, fold })).collect()
    }

    /// `OUT/members/<name>`.
    pub fn member_dir(&self, member: usize) -> PathBuf {
        self.out.join("members").join(&self.members[member].name)
    }

    /// `OUT/members/<name>/fold<i>`.
    pub fn unit_dir(&self, unit: Unit) -> PathBuf {
        self.member_dir(unit.member).join(format!("fold{}", unit.fold))
    }

    /// `<name>/<fold>`, as `--only` takes it.
    pub fn unit_name(&self, unit: Unit) -> String {
        format!("{}/{}", self.members[unit.member].name, unit.fold)
    }

    /// The unit `MEMBER/FOLD` names.
    pub fn find_unit(&self, name: &str) -> Result<Unit> {
        let unknown = |why: String| ExperimentError::Units(format!("unit {name:?}: {why}"));
        let (member, fold) = name.rsplit_once('/').ok_or_else(|| unknown("expected MEMBER/FOLD, e.g. b0/2".into()))?;
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        let member = names
            .iter()
            .position(|n| *n == member)
            .ok_or_else(|| unknown(format!("no member {member:?} (members: {})", names.join(", "))))?;
        let fold = fold
            .parse()
            .ok()
            .filter(|f| *f < self.folds)
            .ok_or_else(|| unknown(format!("fold must be 0 to {}", self.folds - 1)))?;
        Ok(Unit { member, fold })
    }

    /// The unit's training configuration: the member's, on this fold of `folds.csv`, in its directory.
    pub fn unit_config(&self, unit: Unit) -> TrainConfig {
        let mut config = self.members[unit.member].config.clone();
        config.data.fold = unit.fold;
        config.data.folds_csv = Some(self.out.join(FOLDS));
        config.out = Some(self.unit_dir(unit));
        config
    }

    /// The unit's status, from its `last.ckpt`.
    pub fn status(&self, unit: Unit) -> Result<Status> {
        let last = self.unit_dir(unit).join(LAST);
        if !last.exists() {
            return Ok(Status::Missing);
        }
        let state = RunState::read(&last)?;
        let epochs = self.members[unit.member].config.epochs;
        Ok(if state.stopped_early || state.epochs_done >= epochs {
            Status::Complete { done: state.epochs_done }
        } else {
            Status::Partial { done: state.epochs_done, epochs }
        })
    }
}

/// Locks the experiment's directory for this process (creating it), before anything is written there: the
/// whole experiment's writer (`orchard run` without `--only`, `--gather`) holds it while it runs. A unit's
/// own process (`--only`) locks only the unit's directory (the trainer does), so units of one experiment
/// train at once in separate processes or on separate machines sharing the directory. Call it after
/// [`check`], so that bad data is reported before anything is created.
pub fn lock(experiment: &Experiment) -> Result<DirLock> {
    let out = &experiment.out;
    std::fs::create_dir_all(out).map_err(|source| ExperimentError::Io { path: out.clone(), source })?;
    Ok(DirLock::acquire(out)?)
}

/// The experiment's training data, read and checked by [`check`] (every image decoded), and the fold
/// assignment it makes; [`train`] hands it to each unit, so a run decodes its images for validation once.
pub struct Checked {
    dataset: dataset::Dataset,
    report: dataset::Report,
    assignment: Vec<usize>,
}

/// Reads the experiment's data and decodes every training and test image, creating nothing, so that a bad
/// one is reported before any directory exists (with `skip_bad`, the training rows dropped are kept for
/// `OUT/skipped.csv`; the test split's rows are never dropped, as the submission needs every one).
pub fn check(experiment: &Experiment) -> Result<Checked> {
    let options = LoadOptions { skip_bad: experiment.skip_bad, images: ImageCheck::Decode };
    let (dataset, report) = dataset::load(&experiment.data, Split::Train, &options)?;
    let test = LoadOptions { skip_bad: false, images: ImageCheck::Decode };
    match dataset::load(&experiment.data, Split::Test, &test) {
        Ok(_) | Err(DatasetError::NoTestSplit { .. }) => {} // the gather step says so, after training
        Err(e) => return Err(e.into()),
    }
    let assignment = folds::assign(&dataset.targets(), experiment.folds, experiment.seed)?;
    Ok(Checked { dataset, report, assignment })
}

/// Creates the experiment's directory and its fold assignment, or checks that the one already there is the
/// one this experiment makes (same data, folds and seed): units trained on different folds would make the
/// out-of-fold predictions meaningless.
pub fn prepare(experiment: &Experiment, checked: &Checked) -> Result<()> {
    let Checked { dataset, report, assignment } = checked;
    let out = &experiment.out;
    std::fs::create_dir_all(out).map_err(|source| ExperimentError::Io { path: out.clone(), source })?;
    dataset::write_skipped(&out.join(dataset::SKIPPED), report)?;
    let path = out.join(FOLDS);
    if path.exists() {
        if folds::read_csv(&path, &dataset.ids())? != *assignment {
            return Err(ExperimentError::Units(format!(
                "{} holds another fold assignment than folds = {}, seed = {} make on {}: the units there were trained on it; \
                 choose another out directory",
                path.display(),
                experiment.folds,
                experiment.seed,
                experiment.data.display()
            )));
        }
        return Ok(());
    }
    let ids: Vec<&str> = dataset.samples.iter().map(|s| s.id.as_str()).collect();
    folds::write_csv(&path, &ids, assignment)?;
    Ok(())
}

/// What [`train`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trained {
    /// The unit was already complete; nothing was touched.
    AlreadyComplete,
    /// The unit was trained from scratch or resumed, to completion.
    Trained { resumed_from: u32, epochs_done: u32 },
}

/// Trains `unit` to completion: nothing when complete, from its checkpoint when partial; as one of several
/// data-parallel `replicas` when given (every replica calls this for the same units in the same order).
/// [`prepare`] must have run with `checked`, whose training split the unit trains on (not read again).
pub fn train(
    experiment: &Experiment,
    checked: &Checked,
    unit: Unit,
    progress: &mut dyn Progress,
    replicas: Option<Replicas>,
) -> Result<Trained> {
    let resumed_from = match experiment.status(unit)? {
        Status::Complete { .. } => return Ok(Trained::AlreadyComplete),
        Status::Partial { done, .. } => done,
        Status::Missing => 0,
    };
    let dir = experiment.unit_dir(unit);
    let loaded = Some((checked.dataset.clone(), checked.report.clone()));
    let summary = orchard_train::train_on(experiment.unit_config(unit), &dir, true, progress, replicas, loaded)
        .map_err(|source| ExperimentError::Unit { unit: experiment.unit_name(unit), source })?;
    Ok(Trained::Trained { resumed_from, epochs_done: summary.epochs_done })
}

/// The units that are not complete, with their status.
pub fn incomplete(experiment: &Experiment) -> Result<Vec<(Unit, Status)>> {
    let mut out = Vec::new();
    for unit in experiment.units() {
        let status = experiment.status(unit)?;
        if !matches!(status, Status::Complete { .. }) {
            out.push((unit, status));
        }
    }
    Ok(out)
}
