//! Importing the ELPV solar-cell data set as a Kaggle-style one-hot dataset.
//!
//! Plant Pathology images ship nowhere a build can reach, but PyPI's `elpv-dataset==1.0.0.post1` ships
//! 2,624 real electroluminescence photos of solar cells (300×300 grayscale PNG) with a defect probability
//! in {0, 1/3, 2/3, 1} and a module type (mono/poly) — four classes with a rare one, a real stand-in for leaf
//! disease detection. This module owns turning the package's `data/` folder into the layout
//! [`orchard_data::dataset`] reads for Plant Pathology 2020, so every tool can be exercised end to end on real
//! photos:
//!
//! ```text
//! OUT/train.csv              image_id,functional,possibly_defective,likely_defective,defective
//! OUT/test.csv               image_id
//! OUT/sample_submission.csv  image_id,<classes> (uniform probabilities)
//! OUT/test_labels.csv        the truth for the test ids, same columns as train.csv
//! OUT/metadata.csv           image_id,split,probability,module_type
//! OUT/images/<id>.png        hard links to the package's images (copies across filesystems)
//! OUT/dataset.toml           layout = "onehot", images = "images/{image_id}.png", the class order
//! ```
//!
//! The images are licensed CC BY-NC-SA 4.0: import them into a folder outside the repository, never commit
//! them.
//!
//! The package's `labels.csv` is not comma-separated and has no header: each line is
//! `images/cell0001.png  1.0                 mono` — the image path (relative to the file), the defect
//! probability and the module type, separated by runs of spaces. The parser also accepts commas or tabs and
//! skips a header line, blank lines and `#` comments; anything else malformed is reported with file and line.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use orchard_files::lock::{DirLock, LockError};
use orchard_files::{atomic, table, FileError, Problem};

/// The classes, in target order: defect probability 0, 1/3, 2/3 and 1.
pub const CLASSES: [&str; 4] = ["functional", "possibly_defective", "likely_defective", "defective"];

/// The share of each class (and module type) held out as the test split by default.
pub const DEFAULT_TEST_FRACTION: f64 = 0.25;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ElpvError {
    /// `labels.csv` (or its images) is wrong (every problem listed), or a file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The test fraction is not strictly between 0 and 1.
    #[error("test fraction {0} must be between 0 and 1 (exclusive)")]
    BadFraction(f64),
    /// Another process writes the output folder.
    #[error(transparent)]
    Locked(#[from] LockError),
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> ElpvError + '_ {
    move |source| FileError::Read { path: path.to_path_buf(), source }.into()
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> ElpvError + '_ {
    move |source| FileError::Write { path: path.to_path_buf(), source }.into()
}

/// One line of `labels.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The image's file stem, e.g. `cell0001`.
    pub id: String,
    /// The image path as written in `labels.csv` (relative to its folder).
    pub image: PathBuf,
    /// The defect probability as written.
    pub probability: f64,
    /// The index into [`CLASSES`].
    pub class: usize,
    /// `mono` or `poly`.
    pub module: String,
    /// The 1-based line in `labels.csv`.
    pub line: u64,
}

/// Reads the package's `labels.csv`, reporting every malformed line (with its number) together.
pub fn read_labels(path: &Path) -> Result<Vec<Cell>, ElpvError> {
    let text = orchard_files::input::read_to_string(path, orchard_files::input::TABLE).map_err(read_error(path))?;
    let mut cells = Vec::new();
    let mut problems = Vec::new();
    let mut first_by_id: HashMap<String, u64> = HashMap::new();
    let mut seen_content = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let first_content = !seen_content;
        seen_content = true;
        let fields: Vec<&str> = if trimmed.contains(',') {
            trimmed.split(',').map(str::trim).collect()
        } else {
            trimmed.split_whitespace().collect()
        };
        let problem = |message: String| Problem::new(path, message).at_row(line);
        if fields.len() != 3 {
            problems.push(problem(format!(
                "expected 3 fields (image path, defect probability, module type), found {}",
                fields.len()
            )));
            continue;
        }
        let (image, probability, module) = (fields[0], fields[1], fields[2]);
        let probability = match probability.parse::<f64>() {
            Ok(p) => p,
            Err(_) if first_content => continue, // a header line
            Err(_) => {
                problems.push(
                    problem(format!("defect probability '{probability}' is not a number")).in_column("probability"),
                );
                continue;
            }
        };
        let level = probability * 3.0;
        let class = level.round();
        if !(0.0..=3.0).contains(&class) || (level - class).abs() > 1e-6 {
            problems.push(
                problem(format!("defect probability {probability} is not 0, 1/3, 2/3 or 1")).in_column("probability"),
            );
            continue;
        }
        if module.is_empty() {
            problems.push(problem("empty module type".to_string()).in_column("type"));
            continue;
        }
        let image_path = PathBuf::from(image);
        let plain = !image_path.is_absolute() && image_path.components().all(|c| matches!(c, Component::Normal(_)));
        let is_png = image_path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let Some(id) = image_path.file_stem().and_then(|s| s.to_str()).filter(|_| plain && is_png) else {
            problems.push(problem(format!("'{image}' is not a relative path to a .png file")).in_column("path"));
            continue;
        };
        if let Some(first) = first_by_id.get(id) {
            problems.push(problem(format!("duplicate image id '{id}' (first on line {first})")).in_column("path"));
            continue;
        }
        first_by_id.insert(id.to_string(), line);
        cells.push(Cell {
            id: id.to_string(),
            image: image_path.clone(),
            probability,
            class: class as usize,
            module: module.to_string(),
            line,
        });
    }
    if cells.is_empty() && problems.is_empty() {
        problems.push(Problem::new(path, "no labelled images"));
    }
    if problems.is_empty() {
        Ok(cells)
    } else {
        Err(FileError::Invalid(problems).into())
    }
}

/// What an import wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportSummary {
    /// The output folder.
    pub out: PathBuf,
    /// Images per class over the whole set, in [`CLASSES`] order.
    pub class_counts: [usize; 4],
    /// Images per class in the training split.
    pub train_counts: [usize; 4],
    /// Images per class in the test split.
    pub test_counts: [usize; 4],
    /// Images per module type, sorted by name.
    pub module_counts: Vec<(String, usize)>,
    /// How many images were hard-linked, and how many copied (another filesystem).
    pub linked: usize,
    pub copied: usize,
}

impl ImportSummary {
    /// All images.
    pub fn total(&self) -> usize {
        self.class_counts.iter().sum()
    }

    /// Training images.
    pub fn train(&self) -> usize {
        self.train_counts.iter().sum()
    }

    /// Test images.
    pub fn test(&self) -> usize {
        self.test_counts.iter().sum()
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "imported {} ELPV images into {} ({} train, {} test; {} linked, {} copied)",
            self.total(),
            self.out.display(),
            self.train(),
            self.test(),
            self.linked,
            self.copied
        )?;
        for (c, name) in CLASSES.iter().enumerate() {
            writeln!(
                f,
                "  {name:<18} {:>5}  (train {:>5}, test {:>4})",
                self.class_counts[c], self.train_counts[c], self.test_counts[c]
            )?;
        }
        let modules: Vec<String> = self.module_counts.iter().map(|(m, n)| format!("{m} {n}")).collect();
        writeln!(f, "  module types: {}", modules.join(", "))
    }
}

/// Imports the ELPV data set from the package's `data` folder (`from`, holding `labels.csv` and `images/`)
/// into `out` as a one-hot dataset with a test split stratified by class and module type.
///
/// `test_fraction` of each (class, module type) group goes to the test split, chosen with `seed`; every
/// group of two or more keeps at least one image on each side. Re-importing into the same folder replaces
/// what an earlier import wrote.
pub fn import(from: &Path, out: &Path, test_fraction: f64, seed: u64) -> Result<ImportSummary, ElpvError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(ElpvError::BadFraction(test_fraction));
    }
    let labels = from.join("labels.csv");
    let cells = read_labels(&labels)?;
    let missing: Vec<Problem> = cells
        .iter()
        .filter(|c| !from.join(&c.image).is_file())
        .map(|c| {
            Problem::new(&labels, format!("image {} does not exist", from.join(&c.image).display()))
                .at_row(c.line)
                .in_column("path")
        })
        .collect();
    if !missing.is_empty() {
        return Err(FileError::Invalid(missing).into());
    }

    // The split: per (class, module type) group, a seeded shuffle, the first share to test.
    let mut groups: BTreeMap<(usize, &str), Vec<usize>> = BTreeMap::new();
    for (i, c) in cells.iter().enumerate() {
        groups.entry((c.class, c.module.as_str())).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut is_test = vec![false; cells.len()];
    for members in groups.values_mut() {
        members.shuffle(&mut rng);
        let n = members.len();
        let mut take = (n as f64 * test_fraction).round() as usize;
        if n >= 2 {
            take = take.clamp(1, n - 1);
        } else {
            take = 0;
        }
        for &i in &members[..take] {
            is_test[i] = true;
        }
    }

    // Images first, so the tables never name an image that is not there.
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(write_error(&images))?;
    // One writer per folder: two imports into it would replace each other's images under their tables.
    let _lock = DirLock::acquire(out)?;
    let (mut linked, mut copied) = (0, 0);
    for cell in &cells {
        let src = from.join(&cell.image);
        let dst = images.join(format!("{}.png", cell.id));
        match std::fs::remove_file(&dst) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_error(&dst)(e)),
        }
        if std::fs::hard_link(&src, &dst).is_ok() {
            linked += 1;
        } else {
            std::fs::copy(&src, &dst).map_err(write_error(&dst))?;
            copied += 1;
        }
    }

    let onehot = |class: usize| CLASSES.iter().enumerate().map(move |(c, _)| if c == class { "1" } else { "0" });
    let header: Vec<&str> = std::iter::once("image_id").chain(CLASSES).collect();
    let train: Vec<&Cell> = cells.iter().zip(&is_test).filter(|(_, t)| !**t).map(|(c, _)| c).collect();
    let test: Vec<&Cell> = cells.iter().zip(&is_test).filter(|(_, t)| **t).map(|(c, _)| c).collect();

    write_table(&out.join("train.csv"), &header, train.iter().map(|c| row(&c.id, onehot(c.class))))?;
    write_table(&out.join("test_labels.csv"), &header, test.iter().map(|c| row(&c.id, onehot(c.class))))?;
    write_table(&out.join("test.csv"), &["image_id"], test.iter().map(|c| vec![c.id.clone()]))?;
    let uniform = format!("{}", 1.0 / CLASSES.len() as f64);
    write_table(
        &out.join("sample_submission.csv"),
        &header,
        test.iter().map(|c| row(&c.id, CLASSES.iter().map(|_| uniform.as_str()))),
    )?;
    write_table(
        &out.join("metadata.csv"),
        &["image_id", "split", "probability", "module_type"],
        cells.iter().zip(&is_test).map(|(c, &t)| {
            vec![
                c.id.clone(),
                if t { "test" } else { "train" }.to_string(),
                c.probability.to_string(),
                c.module.clone(),
            ]
        }),
    )?;
    let classes: Vec<String> = CLASSES.iter().map(|c| format!("\"{c}\"")).collect();
    let manifest = format!(
        "# The ELPV solar-cell data set (elpv-dataset 1.0.0.post1), imported by Orchard.\n\
         # Images: CC BY-NC-SA 4.0 - never commit them. Class = defect probability 0, 1/3, 2/3, 1.\n\
         layout = \"onehot\"\n\
         train = \"train.csv\"\n\
         test = \"test.csv\"\n\
         images = \"images/{{image_id}}.png\"\n\
         classes = [{}]\n",
        classes.join(", ")
    );
    write_atomic(&out.join("dataset.toml"), manifest.as_bytes())?;

    let mut summary = ImportSummary {
        out: out.to_path_buf(),
        class_counts: [0; 4],
        train_counts: [0; 4],
        test_counts: [0; 4],
        module_counts: Vec::new(),
        linked,
        copied,
    };
    let mut modules: BTreeMap<&str, usize> = BTreeMap::new();
    for (c, &t) in cells.iter().zip(&is_test) {
        summary.class_counts[c.class] += 1;
        if t {
            summary.test_counts[c.class] += 1;
        } else {
            summary.train_counts[c.class] += 1;
        }
        *modules.entry(&c.module).or_default() += 1;
    }
    summary.module_counts = modules.into_iter().map(|(m, n)| (m.to_string(), n)).collect();
    Ok(summary)
}

fn row<'a>(id: &str, values: impl Iterator<Item = &'a str>) -> Vec<String> {
    std::iter::once(id.to_string()).chain(values.map(str::to_string)).collect()
}

/// Writes a CSV file atomically.
fn write_table(path: &Path, header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<(), ElpvError> {
    table::write(path, header, rows).map_err(write_error(path))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ElpvError> {
    atomic::write(path, bytes).map_err(write_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_package_format_parses() {
        let (_dir, path) = labels(
            "images/cell0001.png  1.0                 mono\n\
             images/cell0002.png  0.3333333333333333  poly\n\
             images/cell0003.png  0.6666666666666666  mono\n\
             images/cell0004.png  0.0                 poly\n",
        );
        let cells = read_labels(&path).unwrap();
        assert_eq!(cells.iter().map(|c| c.class).collect::<Vec<_>>(), [3, 1, 2, 0]);
        assert_eq!(cells[1].id, "cell0002");
        assert_eq!(cells[1].module, "poly");
        assert_eq!(cells[3].line, 4);
    }

    #[test]
    fn commas_a_header_and_blank_lines_are_accepted() {
        let (_dir, path) = labels("path,probability,type\n\nimages/a.png,1.0,mono\n");
        let cells = read_labels(&path).unwrap();
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].line, 3);
    }

    #[test]
    fn every_malformed_line_is_reported_with_its_number() {
        let (_dir, path) = labels(
            "images/a.png 1.0 mono\n\
             images/b.png 0.5 mono\n\
             images/c.png mono\n\
             images/d.png x mono\n\
             ../e.png 0.0 mono\n\
             images/a.png 0.0 poly\n",
        );
        let Err(ElpvError::File(FileError::Invalid(problems))) = read_labels(&path) else {
            panic!("expected problems")
        };
        let rows: Vec<u64> = problems.iter().map(|p| p.row.unwrap()).collect();
        assert_eq!(rows, [2, 3, 4, 5, 6], "{problems:#?}");
        assert!(problems[0].message.contains("not 0, 1/3, 2/3 or 1"));
        assert!(problems[4].message.contains("first on line 1"));
        assert!(problems.iter().all(|p| p.file == path));
    }
}
