//! `orchard run --dry-run`: an experiment checked ([`crate::check`]) and planned without training or
//! writing anything: its units with their status, and for each member what a unit will take, measured on
//! the device the member would train on ([`orchard_train::estimate`]): memory (the model's state and the
//! activations at its batch and input size) and time per epoch, with the time left for its units.

use std::fmt;
use std::path::PathBuf;

use orchard_data::dataset::{describe, Description};
use orchard_train::estimate::{self, Estimate};

use crate::check::{check, Checked};
use crate::config::Experiment;
use crate::units::{Status, Unit};
use crate::{bytes_text, duration_text, ExperimentError, Result};

/// Images decoded per member to time the input pipeline.
const DECODED: usize = 4;

/// What a run of the experiment would do and take.
#[derive(Clone, Debug)]
pub struct DryRun {
    pub file: PathBuf,
    pub data: Description,
    pub test_images: usize,
    pub folds: usize,
    pub seed: u64,
    /// Validation images of each fold.
    pub fold_sizes: Vec<usize>,
    pub out: PathBuf,
    pub out_exists: bool,
    pub weight_files: usize,
    /// `MEMBER/FOLD` and its status, in training order.
    pub units: Vec<(String, Status)>,
    pub members: Vec<MemberPlan>,
}

/// One member's share of the plan.
#[derive(Clone, Debug)]
pub struct MemberPlan {
    pub name: String,
    pub arch: String,
    pub epochs: u32,
    pub estimate: Estimate,
    /// Seconds of one epoch of each fold's unit.
    pub epoch_seconds: Vec<f64>,
    /// Epochs its units have still to train, and their seconds.
    pub remaining_epochs: u32,
    pub remaining_seconds: f64,
}

/// Checks the experiment, then measures every member; problems of either kind come back together.
pub fn dry_run(experiment: &Experiment) -> Result<DryRun> {
    let Checked { train, test_images, folds, weight_files } = check(experiment)?;
    let fold_sizes: Vec<usize> = (0..experiment.folds).map(|f| folds.iter().filter(|&&x| x == f).count()).collect();
    let images: Vec<PathBuf> = train.samples.iter().take(DECODED).map(|s| s.path.clone()).collect();
    let mut units = Vec::new();
    for unit in experiment.units() {
        units.push((experiment.unit_name(unit), experiment.status(unit)?));
    }
    let mut members = Vec::new();
    let mut problems = Vec::new();
    for (m, member) in experiment.members.iter().enumerate() {
        let config = &member.config;
        let estimate = match estimate::measure(config, train.classes.len(), &images) {
            Ok(e) => e,
            Err(e) => {
                problems
                    .push(format!("member {:?}: a training step of {} failed: {e}", member.name, config.model.arch));
                continue;
            }
        };
        let workers = config.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let epoch_seconds: Vec<f64> = fold_sizes
            .iter()
            .map(|&val| estimate.epoch_seconds(train.len() - val, val, workers, config.data.cache))
            .collect();
        let (mut remaining_epochs, mut remaining_seconds) = (0, 0.0);
        for (fold, seconds) in epoch_seconds.iter().enumerate() {
            let left = match experiment.status(Unit { member: m, fold })? {
                Status::Missing => config.epochs,
                Status::Partial { done, epochs } => epochs.saturating_sub(done),
                Status::Complete { .. } => 0,
            };
            remaining_epochs += left;
            remaining_seconds += f64::from(left) * seconds;
        }
        members.push(MemberPlan {
            name: member.name.clone(),
            arch: config.model.arch.clone(),
            epochs: config.epochs,
            estimate,
            epoch_seconds,
            remaining_epochs,
            remaining_seconds,
        });
    }
    if !problems.is_empty() {
        return Err(ExperimentError::Problems { path: experiment.file.clone(), problems });
    }
    Ok(DryRun {
        file: experiment.file.clone(),
        data: describe(&train),
        test_images,
        folds: experiment.folds,
        seed: experiment.seed,
        fold_sizes,
        out: experiment.out.clone(),
        out_exists: experiment.out.exists(),
        weight_files,
        units,
        members,
    })
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dry run of {}: everything checked, nothing trained or written", self.file.display())?;
        write!(f, "data: {}", self.data)?;
        writeln!(f, "test split: {} images", self.test_images)?;
        let sizes: Vec<String> = self.fold_sizes.iter().map(usize::to_string).collect();
        writeln!(
            f,
            "folds: {} (seed {}), stratified; validation images per fold: {}",
            self.folds,
            self.seed,
            sizes.join(", ")
        )?;
        let out =
            if self.out_exists { "exists; finished units are kept" } else { "does not exist yet; a run creates it" };
        writeln!(f, "out: {} ({out})", self.out.display())?;
        match self.weight_files {
            0 => writeln!(f, "weight files: none (every member starts from scratch)")?,
            n => writeln!(f, "weight files: {n}, each loaded into its architecture: every tensor fits")?,
        }
        let todo = self.units.iter().filter(|(_, s)| !matches!(s, Status::Complete { .. })).count();
        writeln!(f, "units: {} ({} to train)", self.units.len(), todo)?;
        for (name, status) in &self.units {
            writeln!(f, "  {name:<16} {status}")?;
        }
        self.estimates(f)
    }
}

impl DryRun {
    /// The table of estimates, how they were measured, and the total.
    fn estimates(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.members.first() else { return Ok(()) };
        let (device, how) = match first.estimate.device {
            tch::Device::Cuda(i) => {
                (format!("cuda:{i}"), "the CUDA allocator's peak over a step, above what was allocated before it")
            }
            _ => ("the CPU".to_string(), "the heap bytes autograd holds after the forward pass"),
        };
        writeln!(
            f,
            "estimates per unit, measured on {device}: training steps of 1 and 2 images at each member's input size after a \
             warm-up, scaled to its batch and epoch; activations = {how}; state = weights, gradients, optimizer \
             moments and EMA, counted"
        )?;
        let width = self.members.iter().map(|m| m.name.len()).max().unwrap_or(0).max(6);
        writeln!(
            f,
            "  {:<width$}  {:<20}  {:>9}  {:>5}  {:>7}  {:>9}  {:>11}  {:>9}  {:>9}  left",
            "member", "arch", "size", "batch", "params", "state", "activations", "memory", "epoch"
        )?;
        let mut total = 0.0;
        for m in &self.members {
            let e = &m.estimate;
            let epoch = m.epoch_seconds.iter().sum::<f64>() / m.epoch_seconds.len().max(1) as f64;
            total += m.remaining_seconds;
            writeln!(
                f,
                "  {:<width$}  {:<20}  {:>9}  {:>5}  {:>6.1}M  {:>9}  {:>11}  {:>9}  {:>9}  {} ({} epochs)",
                m.name,
                m.arch,
                format!("{}x{}", e.size.1, e.size.0),
                e.batch,
                e.numbers as f64 / 1e6,
                bytes_text(e.state_bytes),
                bytes_text(e.activation_bytes),
                bytes_text(e.total_bytes()),
                duration_text(epoch),
                duration_text(m.remaining_seconds),
                m.remaining_epochs
            )?;
        }
        writeln!(f, "time left, units one after another: about {}", duration_text(total))
    }
}
