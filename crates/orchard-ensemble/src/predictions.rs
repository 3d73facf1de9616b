//! Prediction CSVs: `image_id` (or `image`) then one probability column per class, one row per image.
//!
//! This is the currency between training (which writes a member's out-of-fold and test predictions) and
//! everything in this crate. Reading validates everything at once, each problem naming file, row and
//! column: the id column, class columns present and distinct, ids non-empty and unique, every value a
//! finite number in [0, 1]. [`align`] then puts several members on one footing: the same classes (reordered
//! by name to the first file's order) and the same ids (reordered to the first file's order), naming the
//! ids one file has and another lacks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::atomic::{self, format_value};
use crate::table::{self, Table};
use crate::{EnsembleError, Problem, Result};

/// How many ids a missing/extra report names before it only counts.
const NAMED_IDS: usize = 10;

/// One prediction file in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Name of the id column: `image_id` (Kaggle PP2020) or `image` (PP2021).
    pub id_column: String,
    /// Class names, in column order.
    pub classes: Vec<String>,
    /// Image ids, in row order.
    pub ids: Vec<String>,
    /// `ids.len() × classes.len()` probabilities, row-major.
    pub values: Vec<f64>,
}

impl Predictions {
    /// Predictions from parts; `values` must hold `ids.len() × classes.len()` numbers.
    pub fn new(id_column: &str, classes: Vec<String>, ids: Vec<String>, values: Vec<f64>) -> Result<Self> {
        if values.len() != ids.len() * classes.len() {
            return Err(EnsembleError::Config(format!(
                "{} values for {} ids × {} classes",
                values.len(),
                ids.len(),
                classes.len()
            )));
        }
        Ok(Predictions { id_column: id_column.to_string(), classes, ids, values })
    }

    /// Number of rows (images).
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Reads and validates a prediction CSV; every problem is reported together.
    pub fn read(path: &Path) -> Result<Self> {
        let (predictions, problems) = Self::parse(path)?;
        if problems.is_empty() {
            Ok(predictions)
        } else {
            Err(EnsembleError::Invalid(problems))
        }
    }

    /// Reads a prediction CSV, returning what could be read (bad values as NaN) with every problem found,
    /// for callers that add checks of their own before reporting.
    pub fn parse(path: &Path) -> Result<(Self, Vec<Problem>)> {
        let (table, mut problems) = table::read(path)?;
        let id_column = table.headers.first().cloned().unwrap_or_default();
        if id_column != "image_id" && id_column != "image" {
            problems.push(
                table.problem(format!("the first column must be image_id (or image), found '{id_column}'")).at_row(1),
            );
        }
        let classes: Vec<String> = table.headers.iter().skip(1).cloned().collect();
        if classes.is_empty() {
            problems.push(table.problem("no class columns after the id column").at_row(1));
        }
        for class in classes.iter().filter(|c| c.is_empty()) {
            problems.push(table.problem("empty class name in the header").at_row(1).in_column(class));
        }
        let ids = read_ids(&table, 0, &mut problems);
        let mut values = Vec::with_capacity(table.rows.len() * classes.len());
        for row in &table.rows {
            for (class, field) in classes.iter().zip(&row.fields[1..]) {
                values.push(match parse_probability(field) {
                    Ok(v) => v,
                    Err(message) => {
                        problems.push(table.problem(message).at_row(row.line).in_column(class));
                        f64::NAN
                    }
                });
            }
        }
        Ok((Predictions { id_column, classes, ids, values }, problems))
    }

    /// The CSV text: header, then one row per id.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        out.push_str(&csv_line(std::iter::once(self.id_column.as_str()).chain(self.classes.iter().map(String::as_str))));
        for (id, row) in self.ids.iter().zip(self.values.chunks_exact(self.classes.len().max(1))) {
            let fields: Vec<String> = std::iter::once(id.clone()).chain(row.iter().map(|&v| format_value(v))).collect();
            out.push_str(&csv_line(fields.iter().map(String::as_str)));
        }
        out
    }

    /// Writes the predictions as CSV, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        atomic::write(path, self.to_csv().as_bytes())
    }

    /// The values reordered to `ids` (rows) and `classes` (columns), both of which must be permutations of
    /// this file's (as [`align`] checks).
    pub fn reordered(&self, ids: &[String], classes: &[String]) -> Vec<f64> {
        let k = self.classes.len();
        let row_of: HashMap<&str, usize> = self.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let cols: Vec<usize> = classes.iter().map(|c| self.classes.iter().position(|x| x == c).expect("same classes")).collect();
        let mut out = Vec::with_capacity(ids.len() * cols.len());
        for id in ids {
            let r = row_of[id.as_str()];
            out.extend(cols.iter().map(|&c| self.values[r * k + c]));
        }
        out
    }
}

/// A value of a probability column: a finite number in [0, 1].
fn parse_probability(field: &str) -> std::result::Result<f64, String> {
    match field.parse::<f64>() {
        Err(_) => Err(format!("'{field}' is not a number")),
        Ok(v) if !v.is_finite() => Err(format!("{v} is not finite")),
        Ok(v) if !(0.0..=1.0).contains(&v) => Err(format!("probability {v} is outside [0, 1]")),
        Ok(v) => Ok(v),
    }
}

/// The ids of column `col`, checking each is non-empty and unique (a repeat names the first row).
pub(crate) fn read_ids(table: &Table, col: usize, problems: &mut Vec<Problem>) -> Vec<String> {
    let name = table.headers.get(col).cloned().unwrap_or_default();
    let mut first_row: HashMap<&str, u64> = HashMap::new();
    let mut ids = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let id = row.fields[col].as_str();
        if id.is_empty() {
            problems.push(table.problem("empty id").at_row(row.line).in_column(&name));
        } else if let Some(first) = first_row.get(id) {
            problems.push(table.problem(format!("duplicate id '{id}' (first on row {first})")).at_row(row.line).in_column(&name));
        } else {
            first_row.insert(id, row.line);
        }
        ids.push(id.to_string());
    }
    ids
}

/// One CSV line, quoting fields that need it.
pub(crate) fn csv_line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = fields
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_string()
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

/// Problems for `file` whose id set differs from the reference's: the reference ids it lacks (named, up to
/// ten) and the ids it has that the reference does not (also named).
pub fn compare_ids(reference: &Path, reference_ids: &[String], file: &Path, ids: &[String]) -> Vec<Problem> {
    let theirs: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let ours: HashSet<&str> = reference_ids.iter().map(String::as_str).collect();
    let missing: Vec<&str> = reference_ids.iter().map(String::as_str).filter(|id| !theirs.contains(id)).collect();
    let extra: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !ours.contains(id)).collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(Problem::new(
            file,
            format!("{} id(s) of {} are missing: {}", missing.len(), reference.display(), name_some(&missing)),
        ));
    }
    if !extra.is_empty() {
        problems.push(Problem::new(
            file,
            format!("{} id(s) are not in {}: {}", extra.len(), reference.display(), name_some(&extra)),
        ));
    }
    problems
}

/// The first few ids, quoted, and how many more there are.
fn name_some(ids: &[&str]) -> String {
    let named: Vec<String> = ids.iter().take(NAMED_IDS).map(|id| format!("'{id}'")).collect();
    match ids.len().saturating_sub(NAMED_IDS) {
        0 => named.join(", "),
        more => format!("{} and {more} more", named.join(", ")),
    }
}

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
            Err(EnsembleError::Invalid(p)) => problems.extend(p),
            Err(other) => return Err(other),
        }
    }
    if !problems.is_empty() {
        return Err(EnsembleError::Invalid(problems));
    }
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
            problems.push(Problem::new(
                file,
                format!("classes [{}] differ from {}'s [{}]", p.classes.join(", "), first_file.display(), first.classes.join(", ")),
            )
            .at_row(1));
        }
        problems.extend(compare_ids(first_file, &first.ids, file, &p.ids));
    }
    if !problems.is_empty() {
        return Err(EnsembleError::Invalid(problems));
    }
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

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_writes_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.csv", "image_id,x,y\nTest_0,0.25,0.75\nTest_1,1e-9,1\n");
        let p = Predictions::read(&path).unwrap();
        assert_eq!(p.classes, ["x", "y"]);
        assert_eq!(p.values, [0.25, 0.75, 1e-9, 1.0]);
        let out = dir.path().join("b.csv");
        p.write(&out).unwrap();
        assert_eq!(Predictions::read(&out).unwrap(), p);
    }

    #[test]
    fn every_problem_names_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bad.csv", "image_id,x,y\nA,0.5,nan\nB,1.5,0\nA,0.1,0.9\nC,oops,0\nD,0.5\n");
        let err = Predictions::read(&path).unwrap_err().to_string();
        for want in ["bad.csv:2:y: NaN is not finite", "bad.csv:3:x: probability 1.5 is outside [0, 1]",
            "bad.csv:4:image_id: duplicate id 'A' (first on row 2)", "bad.csv:5:x: 'oops' is not a number",
            "bad.csv:6: row has 2 fields; the header has 3"] {
            assert!(err.contains(want), "{want} not in:\n{err}");
        }
        let path = write(dir.path(), "noid.csv", "id,x\nA,0.5\n");
        assert!(Predictions::read(&path).unwrap_err().to_string().contains("noid.csv:1: the first column must be image_id"));
    }

    #[test]
    fn align_reorders_classes_and_ids_and_names_differences() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.csv", "image_id,x,y\nA,0.1,0.9\nB,0.2,0.8\n");
        let b = write(dir.path(), "b.csv", "image_id,y,x\nB,0.7,0.3\nA,0.6,0.4\n");
        let aligned = read_aligned(&[a.clone(), b]).unwrap();
        assert_eq!(aligned.members[1], [0.4, 0.6, 0.3, 0.7]);
        let c = write(dir.path(), "c.csv", "image_id,x,z\nA,0.1,0.9\nC,0.2,0.8\n");
        let err = read_aligned(&[a, c]).unwrap_err().to_string();
        assert!(err.contains("c.csv:1: classes [x, z] differ"), "{err}");
        assert!(err.contains("1 id(s) of") && err.contains("are missing: 'B'"), "{err}");
        assert!(err.contains("are not in") && err.contains("'C'"), "{err}");
    }
}
