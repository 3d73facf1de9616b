//! The gather step, once every unit is complete: per member, the out-of-fold predictions of its fold
//! models merged (`OUT/members/<name>/oof.csv`) and their averaged test predictions
//! (`OUT/members/<name>/test.csv`), both with the experiment's TTA; then the ensemble fitted on the
//! out-of-fold rows (weights searched, with the search cross-validated over the folds), the submission
//! (`OUT/submission.csv`, checked as `orchard submission check` does), the ensemble's out-of-fold
//! predictions (`OUT/oof.csv`, each row by the blend fitted without its fold: what the cross-validated AUC
//! scores, and what a report draws), the summary (`OUT/summary.json`) and the manifest a server loads
//! (`OUT/manifest.json`).

use std::path::{Path, PathBuf};

use orchard_data::dataset::{self, read_truth, truth_of, ImageCheck, LoadOptions, Split};
use orchard_ensemble::aligned::{align, Aligned};
use orchard_ensemble::run::{self, Oof, Outcome};
use orchard_ensemble::submission::{self, Sample, TestIds};
use orchard_files::experiment_summary::{ExperimentSummary, MemberReport, ENSEMBLE_OOF};
use orchard_files::manifest::{Manifest, MemberModel, PixelNormalization, FORMAT};
use orchard_files::state::{BEST, LAST};
use orchard_files::{Predictions, RunState, Task, Truth, Tta};
use orchard_infer::predict::{predict, Options, Target};

use crate::config::Experiment;
use crate::units::{self, Unit, FOLDS};
use crate::{ExperimentError, Result};

/// The submission's file name in the experiment directory.
pub const SUBMISSION: &str = "submission.csv";

/// Predicts, ensembles, writes the submission, the summary and the manifest; every unit must be complete.
pub fn gather(experiment: &Experiment) -> Result<ExperimentSummary> {
    let missing = units::incomplete(experiment)?;
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(u, s)| format!("{} ({s})", experiment.unit_name(*u))).collect();
        return Err(ExperimentError::Units(format!(
            "{} unit(s) are not complete: {}; train them first",
            list.len(),
            list.join(", ")
        )));
    }
    // What a gather killed while writing left behind (the caller holds the experiment's lock).
    orchard_files::atomic::remove_stale(&experiment.out);
    for m in 0..experiment.members.len() {
        orchard_files::atomic::remove_stale(&experiment.member_dir(m));
    }
    let truth = match experiment.skip_bad {
        // The rows every unit dropped, dropped again the same way.
        true => {
            let options = LoadOptions { skip_bad: true, images: ImageCheck::Decode };
            truth_of(&dataset::load(&experiment.data, Split::Train, &options)?.0)
        }
        false => read_truth(&experiment.data)?,
    };
    let device = orchard_torch::device(experiment.predict.device);
    let options = |target| Options {
        target,
        tta: experiment.tta,
        batch: experiment.predict.batch,
        device,
        workers: experiment.predict.workers,
        precision: experiment.predict.precision,
    };

    let mut oof_members = Vec::new();
    let mut test_members = Vec::new();
    let mut reports = Vec::new();
    let mut models = Vec::new();
    for (m, member) in experiment.members.iter().enumerate() {
        let dir = experiment.member_dir(m);
        let units: Vec<Unit> = (0..experiment.folds).map(|fold| Unit { member: m, fold }).collect();
        let runs: Vec<PathBuf> = units.iter().map(|&u| experiment.unit_dir(u)).collect();
        let oof = predict(&runs, &experiment.data, &options(Target::Oof))?;
        let test = predict(&runs, &experiment.data, &options(Target::Test))?;
        let (oof_file, test_file) = (dir.join("oof.csv"), dir.join("test.csv"));
        oof.write(&oof_file)?;
        test.write(&test_file)?;
        let plain = if experiment.tta == Tta::None { oof.clone() } else { merged_oof(&runs)? };
        let mut fold_best = Vec::new();
        for run in &runs {
            fold_best.push(RunState::read(&run.join(LAST))?.best);
        }
        reports.push(MemberReport {
            name: member.name.clone(),
            arch: member.config.model.arch.clone(),
            size: member.config.data.size,
            epochs: member.config.epochs,
            monitor: member.config.monitor.name().to_string(),
            fold_best,
            oof_auc_without_tta: mean_auc(&truth, &oof_file, &plain)?,
            oof_auc: mean_auc(&truth, &oof_file, &oof)?,
        });
        models.push(member_model(experiment, &member.name, &units)?);
        oof_members.push((oof_file, oof));
        test_members.push((test_file, test));
    }

    let oof = align(oof_members)?;
    let test = align(test_members)?;
    let targets = truth.aligned(&oof.files[0], &oof.ids, &oof.classes)?;
    let folds = truth.folds(&experiment.out.join(FOLDS), &oof.ids)?;
    let combiner = experiment.ensemble.combiner()?;
    let oof = Oof { members: oof, truth: targets, folds: Some(folds) };
    let mut outcome = run::run(&combiner, &experiment.ensemble.label(), &test, Some(&oof), truth.task)?;
    let compared = crate::compare::score(&experiment.compare, &test, &oof, truth.task)?;

    let rows = write_submission(experiment, &test, &oof, &mut outcome, truth.task)?;
    if let Some(values) = outcome.held_out_predictions.take() {
        let (ids, classes) = (oof.members.ids.clone(), outcome.predictions.classes.clone());
        Predictions::new(&oof.members.id_column, classes, ids, values).write(&experiment.out.join(ENSEMBLE_OOF))?;
    }
    let manifest = Manifest {
        format: FORMAT,
        classes: test.classes.clone(),
        task: truth.task,
        tta: experiment.tta,
        members: models,
        blend: outcome.blend.clone(),
    };
    manifest
        .check()
        .map_err(|message| ExperimentError::Units(format!("the manifest does not hold together: {message}")))?;
    // The summary names members, not their files.
    let names: Vec<String> = experiment.members.iter().map(|m| m.name.clone()).collect();
    outcome.summary.files = names.clone();
    for (score, name) in outcome.summary.members.iter_mut().zip(&names) {
        score.file = name.clone();
    }
    let best_member =
        reports.iter().filter_map(|r| r.oof_auc.map(|a| (r.name.clone(), a))).max_by(|a, b| a.1.total_cmp(&b.1));
    let ensemble_auc = match &outcome.summary.cv {
        Some(cv) => cv.pooled.mean,
        None => outcome.summary.ensemble_oof.as_ref().and_then(|a| a.mean),
    };
    let summary = ExperimentSummary {
        folds: experiment.folds,
        tta: experiment.tta,
        members: reports,
        best_member,
        ensemble_auc,
        ensemble: outcome.summary,
        submission: Some((SUBMISSION.to_string(), rows)),
        compared,
    };
    summary.write(&experiment.out)?;
    manifest.write(&experiment.out)?;
    Ok(summary)
}

/// A member as the manifest records it: its fold models' checkpoints (relative to the experiment
/// directory), its input size, normalisation and output function as its first fold trained them.
fn member_model(experiment: &Experiment, name: &str, units: &[Unit]) -> Result<MemberModel> {
    let checkpoints: Vec<PathBuf> =
        units.iter().map(|&u| Path::new("members").join(name).join(format!("fold{}", u.fold)).join(BEST)).collect();
    let state = RunState::read(&experiment.out.join(&checkpoints[0]))?;
    let spec = orchard_models::spec(&state.arch).map_err(orchard_infer::InferError::from)?;
    let (mean, std) = spec.normalization.mean_std();
    Ok(MemberModel {
        name: name.to_string(),
        arch: state.arch,
        size: state.size,
        normalization: PixelNormalization { mean, std },
        softmax: state.softmax,
        checkpoints,
    })
}

/// The units' own `oof.csv` files (predicted as they validated, without TTA), concatenated.
fn merged_oof(runs: &[PathBuf]) -> Result<Predictions> {
    let mut merged: Option<Predictions> = None;
    for run in runs {
        let part = Predictions::read(&run.join("oof.csv"))?;
        match &mut merged {
            None => merged = Some(part),
            Some(m) => m.extend(&part),
        }
    }
    Ok(merged.expect("an experiment has at least two folds"))
}

/// Mean column-wise AUC of `p` (read from `file`, for messages) against the truth.
fn mean_auc(truth: &Truth, file: &Path, p: &Predictions) -> Result<Option<f64>> {
    let targets = truth.aligned(file, &p.ids, &p.classes)?;
    Ok(orchard_metrics::mean_column_auc(&targets, &p.values, p.classes.len())
        .map_err(orchard_ensemble::EnsembleError::from)?
        .mean)
}

/// `OUT/submission.csv`: in `sample_submission.csv`'s columns and `test.csv`'s id order when the dataset
/// has them (label lists with thresholds chosen on the out-of-fold rows for a PP2021-style sample), else the
/// combined predictions in the test split's order; then checked. Returns the rows written.
fn write_submission(
    experiment: &Experiment,
    test: &Aligned,
    oof: &Oof,
    outcome: &mut Outcome,
    task: Task,
) -> Result<usize> {
    let path = experiment.out.join(SUBMISSION);
    let sample_file = experiment.data.join("sample_submission.csv");
    if !sample_file.exists() {
        outcome.predictions.write(&path)?;
        return Ok(outcome.predictions.rows());
    }
    let sample = Sample::read(&sample_file)?;
    let test_csv = experiment.data.join("test.csv");
    let test_ids = if test_csv.exists() { TestIds::read(&test_csv)? } else { TestIds::of_sample(&sample) };
    submission::write_outcome(&path, &sample, &test_ids, outcome, Some(oof), &test.files[0], task)?;
    let report = submission::check(&sample, &test_ids, &path, task, Some(&outcome.predictions.classes))?;
    Ok(report.rows)
}
