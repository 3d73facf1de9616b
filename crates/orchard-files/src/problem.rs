//! One thing wrong with a user's file, located as precisely as the input allows, and the list of them that
//! every reader reports at once, so that one run tells the user everything to fix.

use std::fmt;
use std::path::PathBuf;

/// One problem in a file.
///
/// Displays as `file:row:column: message` (`train.csv:17:healthy: row is not one-hot (sum 2)`), leaving out
/// what is unknown; without a row but with a column it reads `file: column NAME: message`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The file at fault, as the user should see it (the folder they named joined with the file name).
    pub file: PathBuf,
    /// The 1-based line number in `file` (the header is line 1).
    pub row: Option<u64>,
    /// The column (or class name) at fault.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem with a whole file.
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Problem { file: file.into(), row: None, column: None, message: message.into() }
    }

    /// The same problem, located at a 1-based line.
    pub fn at_row(mut self, row: u64) -> Self {
        self.row = Some(row);
        self
    }

    /// The same problem, located at a column.
    pub fn in_column(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (self.row, &self.column) {
            (Some(row), Some(column)) => write!(f, ":{row}:{column}")?,
            (Some(row), None) => write!(f, ":{row}")?,
            (None, Some(column)) => write!(f, ": column {column}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// Formats a list of problems as a count line followed by one problem per line.
pub fn format_problems(problems: &[Problem]) -> String {
    let mut out = match problems.len() {
        1 => "1 problem:".to_string(),
        n => format!("{n} problems:"),
    };
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_what_is_unknown() {
        let p = Problem::new("train.csv", "row is not one-hot (sum 2)").at_row(17).in_column("healthy");
        assert_eq!(p.to_string(), "train.csv:17:healthy: row is not one-hot (sum 2)");
        assert_eq!(Problem::new("train.csv", "no samples").to_string(), "train.csv: no samples");
        assert_eq!(Problem::new("a.csv", "x").at_row(3).to_string(), "a.csv:3: x");
        assert_eq!(Problem::new("a.csv", "x").in_column("rust").to_string(), "a.csv: column rust: x");
    }

    #[test]
    fn lists_start_with_a_count() {
        let problems = [Problem::new("a", "one").at_row(2), Problem::new("a", "two").at_row(3)];
        assert_eq!(format_problems(&problems), "2 problems:\n  a:2: one\n  a:3: two");
        assert_eq!(format_problems(&problems[..1]), "1 problem:\n  a:2: one");
    }
}
