//! Prediction CSVs: `image_id` (or `image`) then one probability column per class, one row per image.
//!
//! This is the currency between the stages: training writes each run's validation predictions (`oof.csv`),
//! prediction writes a member's out-of-fold and test files, ensembling combines them, distillation turns
//! them into soft targets. Reading validates everything at once, each problem naming file, row and column:
//! the id column, class columns present and distinct, ids non-empty and unique, every value a finite number
//! in [0, 1].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::table::{self, Table};
use crate::{atomic, FileError, Problem};

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
    /// Predictions from parts.
    ///
    /// # Panics
    /// When `values` does not hold `ids.len() × classes.len()` numbers: the callers compute all three.
    pub fn new(id_column: &str, classes: Vec<String>, ids: Vec<String>, values: Vec<f64>) -> Self {
        assert_eq!(values.len(), ids.len() * classes.len(), "{} ids × {} classes", ids.len(), classes.len());
        Predictions { id_column: id_column.to_string(), classes, ids, values }
    }

    /// Number of rows (images).
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Reads and validates a prediction CSV; every problem is reported together.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let (predictions, problems, _) = Self::parse(path)?;
        FileError::fail_on(problems)?;
        Ok(predictions)
    }

    /// Reads a prediction CSV, returning what could be read (bad values as NaN) with every problem found
    /// and the file line of every row (header = line 1), for callers that add checks of their own before
    /// reporting.
    pub fn parse(path: &Path) -> Result<(Self, Vec<Problem>, Vec<u64>), FileError> {
        let table = Table::read(path)?;
        let mut problems = table.problems();
        let id_column = table.headers.first().cloned().unwrap_or_default();
        if id_column != "image_id" && id_column != "image" {
            let message = format!("the first column must be image_id (or image), found '{id_column}'");
            problems.push(table.problem(message).at_row(1));
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
                values.push(parse_probability(field).unwrap_or_else(|message| {
                    problems.push(table.problem(message).at_row(row.line).in_column(class));
                    f64::NAN
                }));
            }
        }
        let lines = table.rows.iter().map(|row| row.line).collect();
        Ok((Predictions { id_column, classes, ids, values }, problems, lines))
    }

    /// The CSV text: header, then one row per id.
    pub fn to_csv(&self) -> String {
        let mut out =
            table::line(std::iter::once(self.id_column.as_str()).chain(self.classes.iter().map(String::as_str)));
        for (id, row) in self.ids.iter().zip(self.values.chunks_exact(self.classes.len().max(1))) {
            let values: Vec<String> = row.iter().map(|&v| table::number(v)).collect();
            out.push_str(&table::line(std::iter::once(id.as_str()).chain(values.iter().map(String::as_str))));
        }
        out
    }

    /// Writes the predictions as CSV, atomically.
    pub fn write(&self, path: &Path) -> Result<(), FileError> {
        atomic::write(path, self.to_csv().as_bytes())
            .map_err(|source| FileError::Write { path: path.to_path_buf(), source })
    }

    /// The values reordered to `ids` (rows) and `classes` (columns), both of which must be permutations of
    /// (or subsets of) this file's.
    ///
    /// # Panics
    /// When an id or class is not in the file; [`compare_ids`] checks ids first.
    pub fn reordered(&self, ids: &[String], classes: &[String]) -> Vec<f64> {
        let k = self.classes.len();
        let row_of: HashMap<&str, usize> = self.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let cols: Vec<usize> =
            classes.iter().map(|c| self.classes.iter().position(|x| x == c).expect("same classes")).collect();
        let mut out = Vec::with_capacity(ids.len() * cols.len());
        for id in ids {
            let r = row_of[id.as_str()];
            out.extend(cols.iter().map(|&c| self.values[r * k + c]));
        }
        out
    }

    /// Appends `other`'s rows (its columns reordered to these classes, which it must have).
    pub fn extend(&mut self, other: &Predictions) {
        self.values.extend(other.reordered(&other.ids, &self.classes));
        self.ids.extend(other.ids.iter().cloned());
    }
}

/// A value of a probability column: a finite number in [0, 1].
pub fn parse_probability(field: &str) -> Result<f64, String> {
    match field.parse::<f64>() {
        Err(_) => Err(format!("'{field}' is not a number")),
        Ok(v) if !v.is_finite() => Err(format!("{v} is not finite")),
        Ok(v) if !(0.0..=1.0).contains(&v) => Err(format!("probability {v} is outside [0, 1]")),
        Ok(v) => Ok(v),
    }
}

/// The ids of column `col`, checking each is non-empty and unique (a repeat names the first row).
pub fn read_ids(table: &Table, col: usize, problems: &mut Vec<Problem>) -> Vec<String> {
    let name = table.headers.get(col).cloned().unwrap_or_default();
    let mut first_row: HashMap<&str, u64> = HashMap::new();
    let mut ids = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let id = row.fields[col].as_str();
        if id.is_empty() {
            problems.push(table.problem("empty id").at_row(row.line).in_column(&name));
        } else if let Some(first) = first_row.get(id) {
            let message = format!("duplicate id '{id}' (first on row {first})");
            problems.push(table.problem(message).at_row(row.line).in_column(&name));
        } else {
            first_row.insert(id, row.line);
        }
        ids.push(id.to_string());
    }
    ids
}

/// Problems for `file` whose id set differs from the reference's: the reference ids it lacks and the ids it
/// has that the reference does not, each named (up to ten) and counted.
pub fn compare_ids(reference: &Path, reference_ids: &[String], file: &Path, ids: &[String]) -> Vec<Problem> {
    let theirs: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let ours: HashSet<&str> = reference_ids.iter().map(String::as_str).collect();
    let missing: Vec<&str> = reference_ids.iter().map(String::as_str).filter(|id| !theirs.contains(id)).collect();
    let extra: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !ours.contains(id)).collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        let message =
            format!("{} id(s) of {} are missing: {}", missing.len(), reference.display(), name_some(&missing));
        problems.push(Problem::new(file, message));
    }
    if !extra.is_empty() {
        let message = format!("{} id(s) are not in {}: {}", extra.len(), reference.display(), name_some(&extra));
        problems.push(Problem::new(file, message));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::file;

    #[test]
    fn reads_writes_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "a.csv", "image_id,x,y\nTest_0,0.25,0.75\nTest_1,1e-9,1\n");
        let p = Predictions::read(&path).unwrap();
        assert_eq!(p.classes, ["x", "y"]);
        assert_eq!(p.values, [0.25, 0.75, 1e-9, 1.0]);
        let out = dir.path().join("b.csv");
        p.write(&out).unwrap();
        assert_eq!(Predictions::read(&out).unwrap(), p);
        let mut joined = p.clone();
        joined.extend(&Predictions::new("image_id", vec!["y".into(), "x".into()], vec!["T2".into()], vec![0.9, 0.1]));
        assert_eq!((joined.ids.len(), &joined.values[4..]), (3, &[0.1, 0.9][..]));
    }

    #[test]
    fn every_problem_names_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "bad.csv", "image_id,x,y\nA,0.5,nan\nB,1.5,0\nA,0.1,0.9\nC,oops,0\nD,0.5\n");
        let err = Predictions::read(&path).unwrap_err().to_string();
        for want in [
            "bad.csv:2:y: NaN is not finite",
            "bad.csv:3:x: probability 1.5 is outside [0, 1]",
            "bad.csv:4:image_id: duplicate id 'A' (first on row 2)",
            "bad.csv:5:x: 'oops' is not a number",
            "bad.csv:6: row has 2 fields; the header has 3",
        ] {
            assert!(err.contains(want), "{want} not in:\n{err}");
        }
        let path = file(&dir, "noid.csv", "id,x\nA,0.5\n");
        assert!(Predictions::read(&path)
            .unwrap_err()
            .to_string()
            .contains("noid.csv:1: the first column must be image_id"));
    }

    #[test]
    fn id_differences_are_named_and_counted() {
        let ids = |n: usize, from: usize| (from..from + n).map(|i| format!("i{i}")).collect::<Vec<_>>();
        let problems = compare_ids(Path::new("ref.csv"), &ids(13, 0), Path::new("p.csv"), &ids(1, 20));
        assert_eq!(problems.len(), 2);
        assert!(
            problems[0].message.starts_with("13 id(s) of ref.csv are missing: 'i0'")
                && problems[0].message.ends_with("and 3 more")
        );
        assert_eq!(problems[1].message, "1 id(s) are not in ref.csv: 'i20'");
    }
}
