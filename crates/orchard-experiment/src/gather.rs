//! The gather step, once every unit is complete: per member, the out-of-fold predictions of its fold
//! models merged (`OUT/members/<name>/oof.csv`) and their averaged test predictions
//! (`OUT/members/<name>/test.csv`), both with the experiment's TTA; then the ensemble fitted on the
//! out-of-fold rows (weights searched, with the search cross-validated over the folds), the submission
//! (`OUT/submission.csv`, checked as `orchard submission check` does) and the summary.

use std::path::{Path, PathBuf};

use orchard_ensemble::predictions::{align, Aligned, Predictions};
use orchard_ensemble::run::{self, Oof};
use orchard_ensemble::submission::{self, Format, Sample, TestIds};
use orchard_ensemble::truth::Truth;
use orchard_infer::predict::{predict, Options, Target};
use orchard_infer::tta::Tta;
use orchard_train::{checkpoint, RunState};

use crate::config::Experiment;
use crate::summary::{ExperimentSummary, MemberReport};
use crate::units::{self, Unit, FOLDS};
use crate::{ExperimentError, Result};

/// The submission's file name in the experiment directory.
pub const SUBMISSION: &str = "submission.csv";

/// Predicts, ensembles, writes the submission and the summary; every unit must be complete.
pub fn gather(experiment: &Experiment) -> Result<ExperimentSummary> {
    let missing = units::incomplete(experiment)?;
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(u, s)| format!("{} ({s})", experiment.unit_name(*u))).collect();
        return Err(ExperimentError::Units(format!("{} unit(s) are not complete: {}; train them first", list.len(), list.join(", "))));
    }
    let truth = Truth::read(&experiment.data)?;
    let device = experiment.predict.device.as_deref().unwrap_or("auto");
    let device = orchard_torch::parse_device(device).map_err(|m| ExperimentError::File { path: experiment.file.clone(), message: format!("[predict] device: {m}") })?;
    let options = |target| Options { target, tta: experiment.tta, batch: experiment.predict.batch, device, workers: experiment.predict.workers };

    let mut oof_members = Vec::new();
    let mut test_members = Vec::new();
    let mut reports = Vec::new();
    for (m, member) in experiment.members.iter().enumerate() {
        let dir = experiment.member_dir(m);
        let runs: Vec<PathBuf> = (0..experiment.folds).map(|fold| experiment.unit_dir(Unit { member: m, fold })).collect();
        let oof = predict(&runs, &experiment.data, &options(Target::Oof))?;
        let test = predict(&runs, &experiment.data, &options(Target::Test))?;
        let (oof_file, test_file) = (dir.join("oof.csv"), dir.join("test.csv"));
        oof.write(&oof_file)?;
        test.write(&test_file)?;
        let plain = if experiment.tta == Tta::None { oof.clone() } else { merged_oof(&runs)? };
        let mut fold_best = Vec::new();
        for run in &runs {
            fold_best.push(checkpoint::load_state::<RunState>(&run.join("last.ckpt"))?.best);
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

    let submission = write_submission(experiment, &test, &oof, &outcome.predictions, outcome.oof_predictions.as_deref(), truth.task)?;
    outcome.summary.thresholds = submission.thresholds;
    // The summary names members, not their files.
    let names: Vec<String> = experiment.members.iter().map(|m| m.name.clone()).collect();
    outcome.summary.files = names.clone();
    for (score, name) in outcome.summary.members.iter_mut().zip(&names) {
        score.file = name.clone();
    }
    let best_member = reports
        .iter()
        .filter_map(|r| r.oof_auc.map(|a| (r.name.clone(), a)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
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
        submission: Some((SUBMISSION.to_string(), submission.rows)),
    };
    summary.write(&experiment.out)?;
    Ok(summary)
}

/// The units' own `oof.csv` files (predicted as they validated, without TTA), concatenated.
fn merged_oof(runs: &[PathBuf]) -> Result<Predictions> {
    let mut merged: Option<Predictions> = None;
    for run in runs {
        let part = Predictions::read(&run.join("oof.csv"))?;
        match &mut merged {
            None => merged = Some(part),
            Some(m) => {
                let values = part.reordered(&part.ids, &m.classes);
                m.ids.extend(part.ids);
                m.values.extend(values);
            }
        }
    }
    Ok(merged.expect("an experiment has at least two folds"))
}

/// Mean column-wise AUC of `p` (read from `file`, for messages) against the truth.
fn mean_auc(truth: &Truth, file: &Path, p: &Predictions) -> Result<Option<f64>> {
    let targets = truth.aligned(file, &p.ids, &p.classes)?;
    Ok(orchard_metrics::mean_column_auc(&targets, &p.values, p.classes.len()).map_err(orchard_ensemble::EnsembleError::from)?.mean)
}

/// What writing the submission produced.
struct Written {
    rows: usize,
    thresholds: Option<Vec<submission::Threshold>>,
}

/// `OUT/submission.csv`: in `sample_submission.csv`'s columns and `test.csv`'s id order when the dataset
/// has them (label lists with thresholds chosen on the out-of-fold rows for a PP2021-style sample), else the
/// combined predictions in the test split's order; then checked.
fn write_submission(
    experiment: &Experiment,
    test: &Aligned,
    oof: &Oof,
    predictions: &Predictions,
    oof_predictions: Option<&[f64]>,
    task: orchard_data::dataset::Task,
) -> Result<Written> {
    let path = experiment.out.join(SUBMISSION);
    let sample_file = experiment.data.join("sample_submission.csv");
    if !sample_file.exists() {
        predictions.write(&path)?;
        return Ok(Written { rows: predictions.rows(), thresholds: None });
    }
    let sample = Sample::read(&sample_file)?;
    let test_csv = experiment.data.join("test.csv");
    let test_ids = if test_csv.exists() { TestIds::read(&test_csv)? } else { TestIds::of_sample(&sample) };
    let thresholds = match (&sample.format, oof_predictions) {
        (Format::Labels { .. }, Some(values)) => Some(submission::choose_thresholds(values, &oof.truth, test.n_classes())),
        _ => None,
    };
    submission::write(&path, &sample, &test_ids, predictions, &test.files[0], task, thresholds.as_deref())?;
    let report = submission::check(&sample, &test_ids, &path, task, Some(&predictions.classes))?;
    Ok(Written { rows: report.rows, thresholds })
}
