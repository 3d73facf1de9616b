//! CSV tables read whole, with the line number of every row, so that every later check can name the file,
//! row and column it complains about; and the text of CSV rows written back.
//!
//! Reading is forgiving about layout and strict about content: fields are trimmed, rows may have any length
//! (a row with the wrong number of fields is reported, not fatal), blank lines are skipped. Structural
//! problems — no header, a column named twice, a row of the wrong length, bytes that are not UTF-8 — are
//! collected with their location: the header's ([`Table::header_problems`]) make the table unusable, a
//! row's ([`Table::row_problems`], one per dropped row) only that row, so a caller can skip bad rows or
//! report them together with problems of its own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::{atomic, input, FileError, Problem};

/// A CSV table: its header and the rows that are well formed.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file, as problems name it.
    pub file: PathBuf,
    /// Column names, trimmed.
    pub headers: Vec<String>,
    /// The well-formed rows (as many fields as the header, all UTF-8), in file order.
    pub rows: Vec<Row>,
    /// Problems of the header row (line 1).
    pub header_problems: Vec<Problem>,
    /// One problem per row left out of [`Table::rows`].
    pub row_problems: Vec<Problem>,
}

/// One data row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// Fields, trimmed, one per header column.
    pub fields: Vec<String>,
}

impl Table {
    /// Reads `path`; problems name the file as `path`. Fails only when the file cannot be read.
    pub fn read(path: &Path) -> Result<Table, FileError> {
        Table::read_as(path, path)
    }

    /// Reads `path`; problems name the file as `shown` (the path as the user gave it).
    pub fn read_as(path: &Path, shown: &Path) -> Result<Table, FileError> {
        let read_err = |source: std::io::Error| FileError::Read { path: shown.to_path_buf(), source };
        let bytes = input::read(path, input::TABLE).map_err(read_err)?;
        let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(bytes.as_slice());
        let mut table = Table {
            file: shown.to_path_buf(),
            headers: Vec::new(),
            rows: Vec::new(),
            header_problems: Vec::new(),
            row_problems: Vec::new(),
        };
        let header = reader.byte_headers().map_err(|e| read_err(csv_io(e)))?.clone();
        for (i, h) in header.iter().enumerate() {
            match std::str::from_utf8(h) {
                Ok(s) => table.headers.push(s.to_string()),
                Err(_) => {
                    let message = format!("header field {} is not UTF-8", i + 1);
                    table.header_problems.push(table.problem(message).at_row(1));
                    table.headers.push(String::from_utf8_lossy(h).into_owned());
                }
            }
        }
        if table.headers.iter().all(String::is_empty) {
            table.header_problems.push(table.problem("empty file: no header row").at_row(1));
        }
        let mut seen = HashSet::new();
        for h in &table.headers {
            if !h.is_empty() && !seen.insert(h.as_str()) {
                let problem = table.problem("column appears twice in the header").at_row(1).in_column(h);
                table.header_problems.push(problem);
            }
        }
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record).map_err(|e| read_err(csv_io(e)))? {
            let line = record.position().map_or(0, |p| first_line(&bytes, p));
            if record.len() == 1 && record[0].is_empty() {
                continue; // a blank line
            }
            match table.fields(&record) {
                Ok(fields) => table.rows.push(Row { line, fields }),
                Err((column, message)) => {
                    let mut problem = table.problem(message).at_row(line);
                    problem.column = column;
                    table.row_problems.push(problem);
                }
            }
        }
        Ok(table)
    }

    /// Reads only the header of `path`; problems name the file as `shown`.
    pub fn read_header(path: &Path, shown: &Path) -> Result<Vec<String>, FileError> {
        let read_err = |source: std::io::Error| FileError::Read { path: shown.to_path_buf(), source };
        let file = input::open(path, input::TABLE).map_err(read_err)?;
        let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(file);
        let headers = reader.byte_headers().map_err(|e| read_err(csv_io(e)))?;
        Ok(headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect())
    }

    /// A record's fields as text, or why it is not a row of this table (with the column at fault).
    fn fields(&self, record: &csv::ByteRecord) -> Result<Vec<String>, (Option<String>, String)> {
        if record.len() != self.headers.len() {
            return Err((None, format!("row has {} fields; the header has {}", record.len(), self.headers.len())));
        }
        let mut fields = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(s) => fields.push(s.to_string()),
                Err(_) => return Err((Some(self.headers[i].clone()), "value is not valid UTF-8".to_string())),
            }
        }
        Ok(fields)
    }

    /// Index of the column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// The id column: `image_id`, else `image`.
    pub fn id_column(&self) -> Option<usize> {
        self.column("image_id").or_else(|| self.column("image"))
    }

    /// A problem located in this file.
    pub fn problem(&self, message: impl Into<String>) -> Problem {
        Problem::new(&self.file, message)
    }

    /// Every structural problem: the header's, then the rows'.
    pub fn problems(&self) -> Vec<Problem> {
        self.header_problems.iter().chain(&self.row_problems).cloned().collect()
    }
}

/// The line a record starts on. The csv reader folds the empty lines before a record into it and reports
/// the first of them; the record itself starts after them.
fn first_line(bytes: &[u8], position: &csv::Position) -> u64 {
    let start = usize::try_from(position.byte()).unwrap_or(bytes.len()).min(bytes.len());
    let skipped = bytes[start..].iter().take_while(|&&b| b == b'\n' || b == b'\r').filter(|&&b| b == b'\n').count();
    position.line() + skipped as u64
}

/// The csv crate's error as an I/O error (it fails only on I/O here: lengths are flexible and UTF-8 is
/// checked field by field).
fn csv_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

/// Writes a whole CSV file, header then rows, atomically.
pub fn write<R: AsRef<[String]>>(
    path: &Path,
    header: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> std::io::Result<()> {
    let mut text = line(header.iter().copied());
    for row in rows {
        text.push_str(&line(row.as_ref().iter().map(String::as_str)));
    }
    atomic::write(path, text.as_bytes())
}

/// One CSV line with its newline, quoting the fields that need it.
pub fn line<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> =
        fields
            .into_iter()
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

/// A number as CSV text: the shortest decimal that reads back as the same `f64`, in exponent form for tiny
/// values (Rust's plain `{}` would spell 1e-300 with 300 zeros).
pub fn number(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-4 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::file;

    fn table(text: &[u8]) -> Table {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "t.csv", text);
        Table::read_as(&path, Path::new("t.csv")).unwrap()
    }

    #[test]
    fn rows_keep_their_lines_and_bad_rows_are_reported_once_each() {
        let t = table(b"image_id, a ,b\nx, 1 ,0\n\ny,1\nz,0,\xff\nw,1,1\n");
        assert_eq!(t.headers, ["image_id", "a", "b"]);
        assert_eq!(
            t.rows,
            [
                Row { line: 2, fields: vec!["x".into(), "1".into(), "0".into()] },
                Row { line: 6, fields: vec!["w".into(), "1".into(), "1".into()] }
            ]
        );
        let problems: Vec<String> = t.row_problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems, ["t.csv:4: row has 2 fields; the header has 3", "t.csv:5:b: value is not valid UTF-8"]);
        assert!(t.header_problems.is_empty());
        assert_eq!(t.id_column(), Some(0));
    }

    #[test]
    fn header_problems_are_kept_apart() {
        let t = table(b"image,a,a,\n");
        assert_eq!(
            t.problems().iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["t.csv:1:a: column appears twice in the header"]
        );
        assert_eq!(table(b"").header_problems[0].to_string(), "t.csv:1: empty file: no header row");
        assert_eq!(table(b"\xfe,b\n").header_problems[0].to_string(), "t.csv:1: header field 1 is not UTF-8");
    }

    #[test]
    fn a_written_table_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.csv");
        write(&path, &["image_id", "note"], [vec!["a".to_string(), "x, y".to_string()]]).unwrap();
        let t = Table::read(&path).unwrap();
        assert_eq!(
            (t.headers.clone(), t.rows[0].fields.clone()),
            (vec!["image_id".to_string(), "note".to_string()], vec!["a".to_string(), "x, y".to_string()])
        );
    }

    #[test]
    fn written_lines_quote_what_needs_it_and_numbers_round_trip() {
        assert_eq!(line(["a", "b,c", "say \"hi\""]), "a,\"b,c\",\"say \"\"hi\"\"\"\n");
        for v in [0.0, 0.25, 1.0, 1e-9, 1e-300, 0.1 + 0.2] {
            assert_eq!(number(v).parse::<f64>().unwrap(), v);
        }
        assert_eq!(number(1e-9), "1e-9");
    }
}
