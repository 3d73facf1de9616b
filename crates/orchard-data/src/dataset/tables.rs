//! The table layouts (one-hot, single-label, multi-label): a CSV read into candidate samples, each row
//! carrying its own problems, and the one-hot class order checked against `sample_submission.csv`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use orchard_files::table::Table;

use super::layout::{present, Config};
use super::template::{Part, Template};
use super::validate::{Candidate, Collected};
use super::{DatasetError, Layout, Problem, Report, Split, Task, MANIFEST};

/// The folder the `image` layouts keep images in by default: `train_images/` (Plant Pathology 2021) when it
/// exists, else `images/`; for the test split `test_images/` when it exists.
fn default_image_dir(root: &Path, split: Split) -> &'static str {
    match split {
        Split::Test if root.join("test_images").is_dir() => "test_images",
        _ if root.join("train_images").is_dir() && split == Split::Train => "train_images",
        _ => "images",
    }
}

/// Reads the one-hot, single-label and multi-label layouts.
pub(super) fn collect_table(config: &Config, split: Split, report: &mut Report) -> Result<Collected, DatasetError> {
    let mut fatal = Vec::new();
    let root = &config.root;

    // The class order (one-hot; other layouts learn classes from labels unless the manifest lists them).
    let sample_submission = root.join("sample_submission.csv");
    let classes = match config.layout {
        Layout::OneHot => onehot_classes(config, &sample_submission, &mut fatal)?,
        _ => config.classes.clone(),
    };

    // Which table to read.
    let table_rel = match split {
        Split::Train => config.train.clone(),
        Split::Test => match &config.test {
            Some(t) => t.clone(),
            None if present(&root.join("test.csv")) => PathBuf::from("test.csv"),
            None if present(&sample_submission) => PathBuf::from("sample_submission.csv"),
            None => {
                return Err(DatasetError::NoTestSplit {
                    root: root.clone(),
                    reason: "neither test.csv nor sample_submission.csv exists".into(),
                })
            }
        },
    };
    let table_path = root.join(&table_rel);
    if !present(&table_path) {
        return Err(DatasetError::Io {
            path: config.shown(&table_rel),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let table = Table::read_as(&table_path, &config.shown(&table_rel))?;
    fatal.extend(table.header_problems.iter().cloned());

    // The columns this layout needs.
    let id_name = match config.layout {
        Layout::OneHot => "image_id",
        _ => "image",
    };
    let id_index = table.id_column();
    if id_index.is_none() {
        fatal.push(
            Problem::new(
                &table.file,
                format!("the header has no {id_name} column (found: {})", table.headers.join(",")),
            )
            .at_row(1)
            .in_column(id_name),
        );
    }
    let label_name = match config.layout {
        Layout::SingleLabel => "label",
        Layout::MultiLabel => "labels",
        _ => "",
    };
    let labelled = split == Split::Train;
    let mut class_indices: Vec<(String, usize)> = Vec::new();
    let mut label_index = None;
    if labelled {
        match config.layout {
            Layout::OneHot => {
                for class in classes.iter().flatten() {
                    match table.column(class) {
                        Some(i) => class_indices.push((class.clone(), i)),
                        None => fatal.push(
                            Problem::new(&table.file, "the header has no column for this class")
                                .at_row(1)
                                .in_column(class),
                        ),
                    }
                }
            }
            _ => {
                label_index = table.column(label_name);
                if label_index.is_none() {
                    fatal.push(
                        Problem::new(&table.file, format!("the header has no {label_name} column"))
                            .at_row(1)
                            .in_column(label_name),
                    );
                }
            }
        }
    }
    let used: BTreeSet<usize> =
        id_index.into_iter().chain(label_index).chain(class_indices.iter().map(|(_, i)| *i)).collect();
    let ignored: Vec<&str> = table
        .headers
        .iter()
        .enumerate()
        .filter(|(i, h)| !used.contains(i) && !h.is_empty())
        .map(|(_, h)| h.as_str())
        .collect();
    let listing_only = split == Split::Test && table_rel == Path::new("sample_submission.csv");
    if !ignored.is_empty() && !listing_only {
        report.notes.push(format!("{}: ignored columns {}", table.file.display(), ignored.join(", ")));
    }

    // The image-path template.
    let template_text = match split {
        Split::Train => config.images.as_deref(),
        Split::Test => config.test_images.as_deref().or(config.images.as_deref()),
    };
    let template = match (template_text, id_index) {
        (Some(text), _) => {
            let origin = config.manifest.clone().unwrap_or_else(|| config.shown(Path::new(MANIFEST)));
            let key = if split == Split::Test && config.test_images.is_some() { "test_images" } else { "images" };
            match Template::parse(text, &table.headers, &origin, key) {
                Ok(t) => Some(t),
                Err(p) => {
                    fatal.push(p);
                    None
                }
            }
        }
        (None, Some(id)) => {
            let mut parts = Vec::new();
            let default_jpg = match config.layout {
                Layout::OneHot => {
                    parts.push(Part::Text("images/".into()));
                    parts.push(Part::Column(id));
                    parts.push(Part::Text(".jpg".into()));
                    false
                }
                _ => {
                    parts.push(Part::Text(format!("{}/", default_image_dir(root, split))));
                    parts.push(Part::Column(id));
                    true
                }
            };
            Some(Template { parts, default_jpg })
        }
        (None, None) => None,
    };

    let (id_index, template) = match (id_index, template) {
        (Some(id_index), Some(template)) if fatal.is_empty() => (id_index, template),
        // Without the columns that say what a row means, row checks would only repeat the header problems.
        _ => return Ok(Collected { classes, candidates: Vec::new(), fatal, source: table.file }),
    };
    let id_column = table.headers[id_index].clone();

    let mut candidates = Vec::with_capacity(table.rows.len() + table.row_problems.len());
    // A ragged or undecodable row cannot be read column by column: its one problem is all it carries.
    for problem in &table.row_problems {
        let mut c = Candidate::new(&table.file, problem.row);
        c.problems.push(problem.clone());
        candidates.push(c);
    }
    for row in &table.rows {
        let mut c = Candidate::new(&table.file, Some(row.line));
        c.id_column = Some(id_column.clone());
        let id = row.fields[id_index].clone();
        if id.is_empty() {
            c.problem(Some(&id_column), "empty id");
        } else {
            c.id = Some(id);
            match template.render(&row.fields, &table.headers) {
                Ok(p) => c.path = Some(root.join(p)),
                Err((column, message)) => c.problem(column.as_deref(), format!("no image path: {message}")),
            }
        }
        if labelled {
            match (config.layout, label_index) {
                (Layout::OneHot, _) => onehot_row(&mut c, &row.fields, &class_indices, config.task),
                (_, None) => {} // a missing label column is a fatal problem reported above
                (_, Some(label_index)) => {
                    let column = label_name;
                    let value = &row.fields[label_index];
                    c.label_column = Some(column.to_string());
                    if config.layout == Layout::SingleLabel {
                        if value.is_empty() {
                            c.problem(Some(column), "empty label");
                        } else {
                            c.labels = Some(vec![value.clone()]);
                        }
                    } else {
                        let tokens: Vec<String> = value.split_whitespace().map(str::to_string).collect();
                        if tokens.is_empty() {
                            c.problem(Some(column), "no labels");
                        } else {
                            c.labels = Some(tokens);
                        }
                    }
                }
            }
        }
        candidates.push(c);
    }
    Ok(Collected { classes, candidates, fatal, source: table.file })
}

/// Checks one one-hot row and sets its labels.
fn onehot_row(c: &mut Candidate, fields: &[String], classes: &[(String, usize)], task: Task) {
    let mut hot = Vec::new();
    let mut valid = true;
    for (class, i) in classes {
        let value = fields[*i].as_str();
        match value.parse::<f64>() {
            Ok(1.0) => hot.push(class.clone()),
            Ok(0.0) => {}
            _ => {
                valid = false;
                c.problem(Some(class), format!("value '{value}' is not 0 or 1"));
            }
        }
    }
    if !valid {
        return;
    }
    if task == Task::MultiClass && hot.len() != 1 {
        let column = (!hot.is_empty()).then(|| hot.join(","));
        c.problem(column.as_deref(), format!("row is not one-hot (sum {})", hot.len()));
        return;
    }
    c.labels = Some(hot);
}

/// The one-hot class order: the manifest's, else `sample_submission.csv`'s, else `train.csv`'s header; checks
/// that `sample_submission.csv`, when present, has the same classes as the training table.
fn onehot_classes(
    config: &Config,
    sample_submission: &Path,
    fatal: &mut Vec<Problem>,
) -> Result<Option<Vec<String>>, DatasetError> {
    let train_path = config.root.join(&config.train);
    let train_shown = config.shown(&config.train);
    let train_header = if present(&train_path) { Some(Table::read_header(&train_path, &train_shown)?) } else { None };
    let id_of = |h: &[String]| h.iter().position(|c| c == "image_id").or_else(|| h.iter().position(|c| c == "image"));
    let train_classes: Option<Vec<String>> = train_header.as_ref().map(|h| {
        let id = id_of(h);
        h.iter().enumerate().filter(|(i, c)| Some(*i) != id && !c.is_empty()).map(|(_, c)| c.clone()).collect()
    });
    let submission = if present(sample_submission) {
        let shown = config.shown(Path::new("sample_submission.csv"));
        let header = Table::read_header(sample_submission, &shown)?;
        let id = id_of(&header);
        if id.is_none() {
            fatal.push(Problem::new(&shown, "the header has no image_id column").at_row(1).in_column("image_id"));
        }
        let columns: Vec<String> = header
            .iter()
            .enumerate()
            .filter(|(i, c)| Some(*i) != id && !c.is_empty())
            .map(|(_, c)| c.clone())
            .collect();
        Some((shown, columns))
    } else {
        None
    };

    // What the training table's classes are: the manifest narrows them, otherwise all non-id columns.
    let reference: Option<(PathBuf, Vec<String>)> = match (&config.classes, &train_classes) {
        // Columns beyond the listed classes are reported as ignored by the table reader.
        (Some(listed), Some(_)) => Some((train_shown.clone(), listed.clone())),
        (None, Some(columns)) => {
            if columns.is_empty() {
                fatal.push(Problem::new(&train_shown, "the header has no class columns").at_row(1));
            }
            Some((train_shown.clone(), columns.clone()))
        }
        (Some(listed), None) => Some((config.manifest.clone().unwrap_or_default(), listed.clone())),
        (None, None) => None,
    };

    match (submission, reference) {
        (Some((shown, columns)), Some((origin, classes))) => {
            let missing: Vec<&str> = classes.iter().filter(|c| !columns.contains(c)).map(String::as_str).collect();
            let extra: Vec<&str> = columns.iter().filter(|c| !classes.contains(c)).map(String::as_str).collect();
            if !missing.is_empty() || !extra.is_empty() {
                let mut message = format!(
                    "columns [{}] differ from the classes of {} [{}]",
                    columns.join(","),
                    origin.display(),
                    classes.join(",")
                );
                if !missing.is_empty() {
                    message.push_str(&format!("; missing {}", missing.join(",")));
                }
                if !extra.is_empty() {
                    message.push_str(&format!("; extra {}", extra.join(",")));
                }
                fatal.push(Problem::new(&shown, message).at_row(1));
                // Keep the training table's classes, so its rows are not blamed for the mismatch as well.
                return Ok(Some(classes));
            }
            Ok(Some(if config.classes.is_some() { classes } else { columns }))
        }
        (Some((_, columns)), None) => Ok(Some(columns)),
        (None, Some((_, classes))) => Ok(Some(classes)),
        (None, None) => {
            fatal.push(Problem::new(
                train_shown,
                "cannot determine the classes: no training table, sample_submission.csv or classes in dataset.toml",
            ));
            Ok(None)
        }
    }
}
