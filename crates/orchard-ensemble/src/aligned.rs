//! Several members' prediction files put on one footing: the same classes (reordered by name to the first
//! file's order) and the same ids (reordered to the first file's order), naming the ids one file has and
//! another lacks.

use std::collections::HashSet;
use std::path::PathBuf;

use orchard_files::predictions::compare_ids;
use orchard_files::{FileError, Predictions, Problem};

use crate::{EnsembleError, Result};

/// Several members' predictions over the same ids and classes.
#[derive(Debug, Clone)]
pub struct Aligned {
    /// The member files, in the order given.
    pub files: Vec<PathBuf>,
    /// Id column name of the first file.
    pub id_column: String,
    /// Class names, in the first file's order.
    pub classes: Vec<String>,
    /// Ids, in the first file's order.
    pub ids: Vec<String>,
    /// One `ids × classes` row-major matrix per member.
    pub members: Vec<Vec<f64>>,
}

impl Aligned {
    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// The members as slices, for the combiners.
    pub fn member_slices(&self) -> Vec<&[f64]> {
        self.members.iter().map(Vec::as_slice).collect()
    }
}

/// Reads the files and aligns them; see [`align`].
pub fn read_aligned(files: &[PathBuf]) -> Result<Aligned> {
    let mut members = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for file in files {
        match Predictions::read(file) {
            Ok(p) => members.push((file.clone(), p)),
            Err(FileError::Invalid(p)) => problems.extend(p),
            Err(other) => return Err(other.into()),
        }
    }
    FileError::fail_on(problems)?;
    align(members)
}

/// Puts members on the first one's classes and ids. Every member must have the same set of classes (in any
/// order) and the same set of ids; all differences are reported together.
pub fn align(members: Vec<(PathBuf, Predictions)>) -> Result<Aligned> {
    let Some((first_file, first)) = members.first() else {
        return Err(EnsembleError::Config("no prediction files given".into()));
    };
    let mut problems = Vec::new();
    for (file, p) in &members[1..] {
        let ours: HashSet<&String> = first.classes.iter().collect();
        let theirs: HashSet<&String> = p.classes.iter().collect();
        if ours != theirs {
            problems.push(
                Problem::new(
                    file,
                    format!(
                        "classes [{}] differ from {}'s [{}]",
                        p.classes.join(", "),
                        first_file.display(),
                        first.classes.join(", ")
                    ),
                )
                .at_row(1),
            );
        }
        problems.extend(compare_ids(first_file, &first.ids, file, &p.ids));
    }
    FileError::fail_on(problems)?;
    let aligned = members.iter().map(|(_, p)| p.reordered(&first.ids, &first.classes)).collect();
    Ok(Aligned {
        files: members.iter().map(|(f, _)| f.clone()).collect(),
        id_column: first.id_column.clone(),
        classes: first.classes.clone(),
        ids: first.ids.clone(),
        members: aligned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member's predictions named `file`, for ids and classes given as comma-separated lists.
    fn member(file: &str, classes: &str, ids: &str, values: &[f64]) -> (PathBuf, Predictions) {
        let list = |text: &str| text.split(',').map(str::to_string).collect::<Vec<_>>();
        (file.into(), Predictions::new("image_id", list(classes), list(ids), values.to_vec()))
    }

    #[test]
    fn align_reorders_classes_and_ids_and_names_differences() {
        let a = member("a.csv", "x,y", "A,B", &[0.1, 0.9, 0.2, 0.8]);
        let b = member("b.csv", "y,x", "B,A", &[0.7, 0.3, 0.6, 0.4]);
        let aligned = align(vec![a.clone(), b]).unwrap();
        assert_eq!(aligned.members[1], [0.4, 0.6, 0.3, 0.7]);
        let c = member("c.csv", "x,z", "A,C", &[0.1, 0.9, 0.2, 0.8]);
        let err = align(vec![a, c]).unwrap_err().to_string();
        assert!(err.contains("c.csv:1: classes [x, z] differ"), "{err}");
        assert!(err.contains("1 id(s) of") && err.contains("are missing: 'B'"), "{err}");
        assert!(err.contains("are not in") && err.contains("'C'"), "{err}");
    }
}
