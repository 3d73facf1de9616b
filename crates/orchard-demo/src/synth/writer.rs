//! The dataset on disk: the settings, the class balance, and the images and CSV files [`generate`] writes.

use std::path::{Path, PathBuf};

use orchard_data::decode::{encode_jpeg, DecodeError, MAX_PIXELS};
use orchard_files::lock::{DirLock, LockError};
use orchard_files::{atomic, table};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{mix, render, CLASSES, REFERENCE_COUNTS};

/// What [`generate`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    /// The dataset folder; created if missing. Files of the same names are replaced, others are left alone.
    pub out: PathBuf,
    /// The number of training images (`Train_0` …).
    pub train: usize,
    /// The number of test images (`Test_0` …).
    pub test: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Seeds everything: the same seed writes byte-identical files.
    pub seed: u64,
    /// JPEG quality, 1–100.
    pub quality: i32,
}

impl Default for SynthConfig {
    /// 400 training and 100 test images of 512×341 pixels (the reference's 3:2 aspect ratio at a quarter
    /// of its 2048×1365 size), seed 0, JPEG quality 90, written to `synth-plant-pathology`.
    fn default() -> Self {
        Self {
            out: PathBuf::from("synth-plant-pathology"),
            train: 400,
            test: 100,
            width: 512,
            height: 341,
            seed: 0,
            quality: 90,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthSummary {
    /// Training images per class, in [`CLASSES`] order.
    pub train_counts: [usize; 4],
    /// Test images.
    pub test: usize,
}

/// Why [`generate`] failed; file errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synthetic dataset settings: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot encode JPEG: {source}")]
    Encode { path: PathBuf, source: DecodeError },
    /// Another process writes the output folder.
    #[error(transparent)]
    Locked(#[from] LockError),
}

impl SynthError {
    /// True when the settings are wrong or another writer holds the folder (the CLI exits with code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            SynthError::Config(_) => true,
            SynthError::Locked(e) => !matches!(e, LockError::Io { .. }),
            SynthError::Io { .. } | SynthError::Encode { .. } => false,
        }
    }
}

/// The two halves of the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    Train,
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "Train",
            Split::Test => "Test",
        }
    }

    fn id(self, index: usize) -> String {
        format!("{}_{index}", self.prefix())
    }

    /// The seed passed to [`render`] for this split's images.
    fn image_seed(self, seed: u64) -> u64 {
        mix(seed, self as u64 * 2 + 1)
    }

    /// The seed of the shuffle that orders this split's labels.
    fn label_seed(self, seed: u64) -> u64 {
        mix(seed, self as u64 * 2 + 2)
    }
}

/// Splits `n` images into classes in the reference balance ([`REFERENCE_COUNTS`]).
///
/// Each class gets the integer part of its exact share, and the images left over go one each to the
/// classes with the largest fractional parts (ties to the earlier class). When `n ≥ 4`, a class left
/// empty then takes one image from the largest class, so every class is present. `class_counts(1821)`
/// is the reference itself.
pub fn class_counts(n: usize) -> [usize; 4] {
    let total: u128 = REFERENCE_COUNTS.iter().sum::<usize>() as u128;
    let mut counts = [0usize; 4];
    let mut remainders = [0u128; 4];
    for class in 0..4 {
        let share = n as u128 * REFERENCE_COUNTS[class] as u128;
        counts[class] = (share / total) as usize;
        remainders[class] = share % total;
    }
    let left = n - counts.iter().sum::<usize>();
    let mut order = [0, 1, 2, 3];
    order.sort_by(|&a, &b| remainders[b].cmp(&remainders[a]).then(a.cmp(&b)));
    for &class in order.iter().take(left) {
        counts[class] += 1;
    }
    if n >= 4 {
        while let Some(empty) = counts.iter().position(|&c| c == 0) {
            let largest = (0..4).max_by_key(|&c| (counts[c], std::cmp::Reverse(c))).unwrap_or(0);
            counts[largest] -= 1;
            counts[empty] += 1;
        }
    }
    counts
}

/// The classes of a split's images, in id order: [`class_counts`] of each, shuffled with the seed.
fn split_labels(n: usize, seed: u64, split: Split) -> Vec<usize> {
    let mut labels: Vec<usize> =
        class_counts(n).iter().enumerate().flat_map(|(class, &k)| std::iter::repeat_n(class, k)).collect();
    labels.shuffle(&mut ChaCha8Rng::seed_from_u64(split.label_seed(seed)));
    labels
}

/// Writes a synthetic Plant Pathology 2020 dataset into `config.out` (see the [module docs](super)).
///
/// Images are rendered in parallel on rayon's pool; the CSV files are written after every image is in
/// place, so a folder with a `train.csv` has all its images.
///
/// # Errors
/// [`SynthError::Config`] for a size below 8×8 or above [`MAX_PIXELS`], or a quality outside 1–100;
/// otherwise the first file that could not be created or written, by path.
pub fn generate(config: &SynthConfig) -> Result<SynthSummary, SynthError> {
    validate(config)?;
    let images = config.out.join("images");
    std::fs::create_dir_all(&images).map_err(|source| SynthError::Io { path: images.clone(), source })?;
    // One writer per folder: a second `data synth` into it would mix two datasets' images and tables.
    let _lock = DirLock::acquire(&config.out)?;

    let train = split_labels(config.train, config.seed, Split::Train);
    let test = split_labels(config.test, config.seed, Split::Test);
    let jobs: Vec<(Split, usize, usize)> = train
        .iter()
        .enumerate()
        .map(|(i, &c)| (Split::Train, i, c))
        .chain(test.iter().enumerate().map(|(i, &c)| (Split::Test, i, c)))
        .collect();
    jobs.par_iter().try_for_each(|&(split, index, class)| {
        let path = images.join(format!("{}.jpg", split.id(index)));
        let image = render(class, config.width, config.height, split.image_seed(config.seed), index as u64);
        let bytes =
            encode_jpeg(&image, config.quality).map_err(|source| SynthError::Encode { path: path.clone(), source })?;
        write_atomic(&path, &bytes)
    })?;

    let header = ["image_id", CLASSES[0], CLASSES[1], CLASSES[2], CLASSES[3]];
    let one_hot = |split: Split, labels: &[usize]| -> Vec<Vec<String>> {
        labels
            .iter()
            .enumerate()
            .map(|(i, &class)| {
                let mut row = vec![split.id(i)];
                row.extend((0..4).map(|c| if c == class { "1" } else { "0" }.to_string()));
                row
            })
            .collect()
    };
    write_csv(&config.out.join("train.csv"), &header, one_hot(Split::Train, &train))?;
    write_csv(&config.out.join("test.csv"), &["image_id"], (0..test.len()).map(|i| vec![Split::Test.id(i)]).collect())?;
    let uniform = (0..test.len()).map(|i| {
        let mut row = vec![Split::Test.id(i)];
        row.extend(std::iter::repeat_n("0.25".to_string(), 4));
        row
    });
    write_csv(&config.out.join("sample_submission.csv"), &header, uniform.collect())?;
    write_csv(&config.out.join("test_labels.csv"), &header, one_hot(Split::Test, &test))?;

    Ok(SynthSummary { train_counts: class_counts(config.train), test: config.test })
}

fn validate(config: &SynthConfig) -> Result<(), SynthError> {
    let (w, h) = (config.width, config.height);
    if w < 8 || h < 8 {
        return Err(SynthError::Config(format!("image size {w}x{h} is below the 8x8 minimum")));
    }
    if w.checked_mul(h).is_none_or(|pixels| pixels > MAX_PIXELS) {
        return Err(SynthError::Config(format!("image size {w}x{h} is larger than the {MAX_PIXELS}-pixel limit")));
    }
    if !(1..=100).contains(&config.quality) {
        return Err(SynthError::Config(format!("JPEG quality {} is outside 1..=100", config.quality)));
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it to `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SynthError> {
    atomic::write(path, bytes).map_err(|source| SynthError::Io { path: path.to_owned(), source })
}

fn write_csv(path: &Path, header: &[&str], rows: Vec<Vec<String>>) -> Result<(), SynthError> {
    table::write(path, header, rows).map_err(|source| SynthError::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use orchard_data::decode::decode_file;

    use super::*;

    fn small(out: &Path, seed: u64) -> SynthConfig {
        SynthConfig { out: out.to_owned(), train: 13, test: 6, width: 64, height: 43, seed, quality: 85 }
    }

    /// Every file under `dir`, by path relative to it, with its bytes.
    fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let name = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                    out.insert(name, std::fs::read(&path).unwrap());
                }
            }
        }
        out
    }

    fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
        let mut reader = csv::Reader::from_path(path).unwrap();
        let header = reader.headers().unwrap().iter().map(String::from).collect();
        let rows = reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
        (header, rows)
    }

    #[test]
    fn class_counts_follow_the_reference() {
        assert_eq!(class_counts(1821), REFERENCE_COUNTS);
        assert_eq!(class_counts(0), [0, 0, 0, 0]);
        assert_eq!(class_counts(1), [0, 0, 1, 0]);
        assert_eq!(class_counts(4), [1, 1, 1, 1]);
        assert_eq!(class_counts(10), [3, 1, 3, 3]);
        assert_eq!(class_counts(3642), REFERENCE_COUNTS.map(|c| 2 * c));
        for n in 0..2000 {
            let counts = class_counts(n);
            assert_eq!(counts.iter().sum::<usize>(), n, "n = {n}");
            if n >= 4 {
                assert!(counts.iter().all(|&c| c >= 1), "n = {n}: {counts:?}");
            }
            // Within one of the exact share, except where a class was topped up to 1.
            for class in 0..4 {
                let exact = n as f64 * REFERENCE_COUNTS[class] as f64 / 1821.0;
                assert!(
                    (counts[class] as f64 - exact).abs() < 1.0 || counts[class] == 1 || n < 30,
                    "n = {n}: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_pictures() {
        let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(&small(a.path(), 7)).unwrap();
        generate(&small(b.path(), 7)).unwrap();
        generate(&small(c.path(), 8)).unwrap();
        let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
        assert_eq!(fa.len(), 4 + 13 + 6 + 1, "tables, images and the free lock file");
        assert!(fa == fb, "the same seed wrote different files");
        assert_eq!(fa.keys().collect::<Vec<_>>(), fc.keys().collect::<Vec<_>>());
        for (name, bytes) in &fa {
            if name.ends_with(".jpg") {
                assert_ne!(bytes, &fc[name], "{name} is the same for seeds 7 and 8");
            }
        }
        // Rendering is independent of generate's thread scheduling and of the other images.
        let image = render(2, 64, 43, Split::Train.image_seed(7), 3);
        assert_eq!(image, render(2, 64, 43, Split::Train.image_seed(7), 3));
        assert_ne!(image, render(2, 64, 43, Split::Train.image_seed(7), 4));
        assert_ne!(image, render(2, 64, 43, Split::Test.image_seed(7), 3));
    }

    #[test]
    fn writes_the_plant_pathology_layout() {
        let dir = tempfile::tempdir().unwrap();
        let config = small(&dir.path().join("new").join("folder"), 3);
        let summary = generate(&config).unwrap();
        assert_eq!(summary, SynthSummary { train_counts: class_counts(13), test: 6 });
        let out = &config.out;
        let header: Vec<String> =
            ["image_id", "healthy", "multiple_diseases", "rust", "scab"].map(String::from).to_vec();

        let (h, train) = read_csv(&out.join("train.csv"));
        assert_eq!(h, header);
        assert_eq!(train.len(), 13);
        let mut counts = [0; 4];
        for (i, row) in train.iter().enumerate() {
            assert_eq!(row[0], format!("Train_{i}"));
            let hot: Vec<usize> = (0..4).filter(|&c| row[1 + c] == "1").collect();
            assert_eq!(hot.len(), 1, "{row:?}");
            assert!(row[1..].iter().all(|v| v == "0" || v == "1"), "{row:?}");
            counts[hot[0]] += 1;
            let image = decode_file(&out.join("images").join(format!("Train_{i}.jpg")), &Default::default()).unwrap();
            assert_eq!((image.width, image.height), (64, 43));
        }
        assert_eq!(counts, summary.train_counts);

        let (h, test) = read_csv(&out.join("test.csv"));
        assert_eq!(h, vec!["image_id".to_string()]);
        assert_eq!(
            test.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
            (0..6).map(|i| format!("Test_{i}")).collect::<Vec<_>>()
        );
        let (h, submission) = read_csv(&out.join("sample_submission.csv"));
        assert_eq!(h, header);
        for (i, row) in submission.iter().enumerate() {
            assert_eq!(row, &[format!("Test_{i}"), "0.25".into(), "0.25".into(), "0.25".into(), "0.25".into()]);
        }
        let (h, truth) = read_csv(&out.join("test_labels.csv"));
        assert_eq!(h, header);
        let mut test_counts = [0; 4];
        for (i, row) in truth.iter().enumerate() {
            assert_eq!(row[0], format!("Test_{i}"));
            let hot: Vec<usize> = (0..4).filter(|&c| row[1 + c] == "1").collect();
            assert_eq!(hot.len(), 1, "{row:?}");
            test_counts[hot[0]] += 1;
            assert!(out.join("images").join(format!("Test_{i}.jpg")).is_file());
        }
        assert_eq!(test_counts, class_counts(6));
    }

    #[test]
    fn leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        generate(&small(dir.path(), 1)).unwrap();
        // A second run over the first replaces files in place.
        generate(&small(dir.path(), 2)).unwrap();
        let mut expected: Vec<String> =
            ["train.csv", "test.csv", "sample_submission.csv", "test_labels.csv", orchard_files::lock::LOCK_FILE]
                .map(String::from)
                .to_vec();
        expected.extend((0..13).map(|i| format!("images/Train_{i}.jpg")));
        expected.extend((0..6).map(|i| format!("images/Test_{i}.jpg")));
        expected.sort();
        assert_eq!(files(dir.path()).into_keys().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn rejects_bad_settings_and_names_unwritable_paths() {
        let dir = tempfile::tempdir().unwrap();
        let bad = |f: fn(&mut SynthConfig)| {
            let mut config = small(dir.path(), 0);
            f(&mut config);
            generate(&config).unwrap_err()
        };
        assert!(matches!(bad(|c| c.width = 4), SynthError::Config(_)));
        assert!(matches!(bad(|c| c.quality = 0), SynthError::Config(_)));
        assert!(matches!(bad(|c| c.quality = 101), SynthError::Config(_)));
        assert!(matches!(bad(|c| c.height = MAX_PIXELS), SynthError::Config(_)));
        // `out` under a regular file cannot be created.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let error = generate(&small(&file.join("out"), 0)).unwrap_err();
        assert!(matches!(error, SynthError::Io { .. }), "{error}");
        assert!(error.to_string().contains("file"), "{error}");
    }
}
