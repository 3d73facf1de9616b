//! `skipped.csv`: the rows `--skip-bad` dropped and why, written where the run (or the folds file) it
//! shaped is, so that what a model was not trained on is on record beside it.

use std::path::Path;

use orchard_files::{table, FileError};

use super::Report;

/// The file name of the record in a run or experiment directory.
pub const SKIPPED: &str = "skipped.csv";

/// Writes `image_id,image,source,reason`, one line per problem of every dropped row (`source` is where the
/// row is: `file:row:column`), atomically; writes nothing and removes nothing when nothing was dropped.
pub fn write_skipped(path: &Path, report: &Report) -> Result<(), FileError> {
    if report.skipped.is_empty() {
        return Ok(());
    }
    let rows = report.skipped.iter().flat_map(|s| {
        s.problems.iter().map(move |p| {
            let mut source = p.file.display().to_string();
            if let Some(row) = p.row {
                source.push_str(&format!(":{row}"));
            }
            if let Some(column) = &p.column {
                source.push_str(&format!(":{column}"));
            }
            let image = s.image.as_ref().map(|i| i.display().to_string()).unwrap_or_default();
            [s.id.clone().unwrap_or_default(), image, source, p.message.clone()]
        })
    });
    table::write(path, &["image_id", "image", "source", "reason"], rows)
        .map_err(|source| FileError::Write { path: path.to_path_buf(), source })
}
