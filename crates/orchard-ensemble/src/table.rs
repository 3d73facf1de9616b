//! A CSV file read whole, with the line number of every row, so that every later check can name the file,
//! row and column it complains about. Structural problems (no header, a repeated column name, a row with the
//! wrong number of fields, bytes that are not UTF-8) are collected, not fatal: callers report them together
//! with their own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::{EnsembleError, Problem, Result};

/// A CSV table: header and the rows that have as many fields as the header.
#[derive(Debug, Clone)]
pub struct Table {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// Column names, trimmed.
    pub headers: Vec<String>,
    /// The well-formed rows, in file order.
    pub rows: Vec<Row>,
}

/// One data row.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// Fields, trimmed, one per header column.
    pub fields: Vec<String>,
}

impl Table {
    /// Index of the column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// A problem located in this file.
    pub fn problem(&self, message: impl Into<String>) -> Problem {
        Problem::new(&self.file, message)
    }
}

/// Reads `path`; returns the table and the structural problems found in it. Fails only when the file
/// cannot be read at all.
pub fn read(path: &Path) -> Result<(Table, Vec<Problem>)> {
    let read_err = |source: std::io::Error| EnsembleError::Read { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(file);
    let mut problems = Vec::new();
    let headers: Vec<String> = match reader.byte_headers() {
        Ok(h) => h.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect(),
        Err(e) => return Err(read_err(std::io::Error::other(e))),
    };
    let mut table = Table { file: path.to_path_buf(), headers, rows: Vec::new() };
    if table.headers.iter().all(String::is_empty) {
        problems.push(table.problem("empty file: no header row").at_row(1));
    }
    let mut seen = HashSet::new();
    for h in &table.headers {
        if !seen.insert(h.as_str()) {
            problems.push(table.problem("column appears twice in the header").at_row(1).in_column(h));
        }
    }
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(read_err(std::io::Error::other(e))),
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        if record.len() != table.headers.len() {
            let message = format!("row has {} fields; the header has {}", record.len(), table.headers.len());
            problems.push(table.problem(message).at_row(line));
            continue;
        }
        match record.iter().map(|f| std::str::from_utf8(f).map(str::to_string)).collect() {
            Ok(fields) => table.rows.push(Row { line, fields }),
            Err(_) => problems.push(table.problem("row is not valid UTF-8").at_row(line)),
        }
    }
    Ok((table, problems))
}
