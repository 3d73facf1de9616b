//! `orchard init`: a first experiment file for a dataset, chosen from what the dataset holds, the device
//! it will train on and the weight files the user has, with every choice explained in the file.
//!
//! - [`inspect`]: the dataset read and described (layout, classes, counts, image sizes), its rare classes;
//! - [`choose`] (in `choice`): members, sizes, schedule, folds, TTA and ensemble, each with its reason;
//! - `text`: the commented TOML;
//! - [`init`]: all of it checked before anything is written (the dataset, every weight file loaded into its
//!   architecture, the file not already there), then the file written atomically and read back as an
//!   experiment.

mod choice;
mod text;

use std::path::{Path, PathBuf};

use orchard_data::dataset::{self, describe, Description, ImageCheck, LoadOptions, Split};
use orchard_files::atomic;

pub use choice::{choose, Choice, MemberChoice, Target};

use crate::config::Experiment;
use crate::{ExperimentError, Result};

/// A class below this share of the labelled rows is rare.
pub const RARE: f64 = 0.10;

/// What `orchard init` is asked.
#[derive(Clone, Debug)]
pub struct Request {
    pub data: PathBuf,
    /// The experiment file to write.
    pub file: PathBuf,
    /// Starting weights: (architecture, file), in the order given.
    pub weights: Vec<(String, PathBuf)>,
    pub target: Target,
    /// Replace an existing file.
    pub force: bool,
}

/// What the dataset holds.
#[derive(Clone, Debug)]
pub struct Findings {
    pub description: Description,
    /// Classes below [`RARE`] of the labelled rows: name, rows, share.
    pub rare: Vec<(String, usize, f64)>,
    /// Median image (width, height), when the images were probed.
    pub median_size: Option<(usize, usize)>,
}

/// Reads the training split, every image's header included, and describes it.
pub fn inspect(data: &Path) -> std::result::Result<Findings, dataset::DatasetError> {
    let (train, _) = dataset::load(data, Split::Train, &LoadOptions { skip_bad: false, images: ImageCheck::Header })?;
    let description = describe(&train);
    let labelled = description.labelled.max(1) as f64;
    let rare = (description.class_counts.iter())
        .map(|(c, n)| (c.clone(), *n, *n as f64 / labelled))
        .filter(|(_, _, share)| *share < RARE)
        .collect();
    let median_size = description.images.as_ref().map(|s| (s.width.median, s.height.median));
    Ok(Findings { description, rare, median_size })
}

/// Checks everything, chooses, writes `request.file`; returns what was found and chosen. Nothing is written
/// when anything is wrong, and every problem is reported at once.
pub fn init(request: &Request) -> Result<(Findings, Choice)> {
    let mut problems = Vec::new();
    if request.file.exists() && !request.force {
        problems.push(format!("{} exists; pass --force to replace it", request.file.display()));
    }
    let folder = request.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !folder.is_dir() {
        problems.push(format!("{}: no such folder to write the experiment file in", folder.display()));
    }
    let findings = match inspect(&request.data) {
        Ok(f) => Some(f),
        Err(e) => {
            problems.push(format!("data: {e}"));
            None
        }
    };
    for (arch, path) in &request.weights {
        if let Err(e) = orchard_models::spec(arch) {
            problems.push(format!("--weights {arch}={}: {e}", path.display()));
        } else if let Some(e) = crate::check::weights_problem(arch, path) {
            problems.push(format!("--weights {arch}: {e}"));
        }
    }
    let Some(findings) = findings.filter(|_| problems.is_empty()) else {
        return Err(ExperimentError::Problems { path: request.file.clone(), problems });
    };
    let choice = choose(&findings, &request.weights, request.target);
    let text = text::render(request, &findings, &choice);
    // What is written must read as an experiment; anything else is a bug here, caught before writing.
    Experiment::parse(&text, &request.file)?;
    atomic::write(&request.file, text.as_bytes())
        .map_err(|source| ExperimentError::Io { path: request.file.clone(), source })?;
    Ok((findings, choice))
}
