//! `skipped.csv`: the rows `--skip-bad` dropped and why, written where the run (or the folds file) it
//! shaped is, so that what a model was not trained on is on record beside it.

use std::path::Path;

use orchard_files::table::{self, Table};
use orchard_files::{FileError, Problem};

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

/// The ids a `skipped.csv` lists (each once, in file order; rows without an id, which had none to drop,
/// are passed over).
pub fn read_skipped(path: &Path) -> Result<Vec<String>, FileError> {
    let table = Table::read(path)?;
    let Some(col) = table.column("image_id") else {
        let message = format!("not a skipped.csv: the header has no image_id column ({})", table.headers.join(","));
        return Err(FileError::Invalid(vec![Problem::new(path, message).at_row(1)]));
    };
    let mut seen = std::collections::HashSet::new();
    let ids = table.rows.iter().map(|row| row.fields[col].clone());
    Ok(ids.filter(|id| !id.is_empty() && seen.insert(id.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Skipped;

    #[test]
    fn what_is_written_reads_back_as_ids_and_another_table_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SKIPPED);
        let problem = |m: &str| Problem::new("train.csv", m).at_row(3);
        let skipped = |id: Option<&str>, problems| Skipped { id: id.map(String::from), image: None, problems };
        let report = Report {
            skipped: vec![
                skipped(Some("a"), vec![problem("corrupt"), problem("again")]),
                skipped(None, vec![problem("no id")]),
                skipped(Some("b"), vec![problem("named pipe")]),
            ],
            notes: vec![],
        };
        write_skipped(&path, &report).unwrap();
        assert_eq!(read_skipped(&path).unwrap(), ["a", "b"]);
        std::fs::write(&path, "image,fold\nx,1\n").unwrap();
        let err = read_skipped(&path).unwrap_err().to_string();
        assert!(err.contains("no image_id column"), "{err}");
    }
}
