//! The page's sections, each in its own module, in the order a person reads them: the headline numbers,
//! how the ensemble compares with its members, what its predictions get right and wrong, how each member
//! trained, the images it gets most wrong, and how it all was set up.

pub mod ensemble;
pub mod evaluation;
pub mod gallery;
pub mod headline;
pub mod setup;
pub mod training;

use crate::evaluate::{self, Scored};
use crate::load::{Kind, Loaded};
use crate::{Options, ReportError};

/// One section: its anchor, heading and HTML body.
#[derive(Clone, Debug)]
pub struct Section {
    pub id: &'static str,
    pub title: String,
    pub body: String,
}

/// Every section that has something to show.
pub fn all(loaded: &Loaded, options: &Options) -> Result<Vec<Section>, ReportError> {
    let scored = evaluated_scored(loaded);
    let mut out = Vec::new();
    if loaded.kind == Kind::Experiment {
        out.extend(ensemble::section(loaded)?);
    }
    out.extend(evaluation::section(loaded, scored.as_ref())?);
    out.push(training::section(loaded)?);
    out.extend(gallery::section(loaded, scored.as_ref(), options.gallery));
    out.push(setup::section(loaded, options));
    Ok(out)
}

/// The ensemble's (or run's) predictions against the labels, when both are there.
pub fn evaluated_scored(loaded: &Loaded) -> Option<Scored> {
    let (evaluated, data) = (loaded.evaluated.as_ref()?, loaded.data.as_ref()?);
    evaluate::score(&evaluated.predictions, &data.truth).map(|(s, _)| s)
}

/// The id of member `m`'s charts: `m0`, `m1`, … (names come from user files; ids must be plain).
pub fn member_id(m: usize) -> String {
    format!("m{m}")
}
