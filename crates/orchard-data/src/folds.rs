//! Stratified k-fold assignment, and the `folds.csv` file that pins it down.
//!
//! This module owns which samples validate which fold. Out-of-fold predictions feed ensembling and
//! self-distillation, so every fold must see the rare classes (Plant Pathology 2020's `multiple_diseases` is
//! 5% of the data) in their true proportion, and the assignment must be reproducible from a seed and
//! storable, so that models trained days apart agree on what they never saw.
//!
//! * Multi-class data is stratified per class: each class's samples are shuffled with the seed and dealt
//!   round-robin, the dealing position carrying over from one class to the next, so every fold holds
//!   ⌊n_c/k⌋ or ⌈n_c/k⌉ samples of every class c and fold sizes differ by at most one.
//! * Multi-label data uses iterative stratification (Sechidis, Tsoumakas & Vlahavas 2011, "On the
//!   stratification of multi-label data"): the rarest remaining label is placed first, each of its samples
//!   going to the fold that most lacks that label, ties broken by the fold that most lacks samples, then by
//!   the seeded random generator. Label counts per fold come out within about one of exact; fold sizes,
//!   which the algorithm only uses to break ties, can differ by a few percent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dataset::{format_problems, Dataset, Problem, Task};

/// Why folds could not be made, written or read.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// `k` is below 2 or above the number of samples.
    #[error("cannot split {n} samples into {k} folds: k must be at least 2 and at most the number of samples")]
    BadK { k: usize, n: usize },
    /// A sample has no target (test splits cannot be stratified).
    #[error("sample '{id}' has no target: folds are made on labelled data")]
    Unlabelled { id: String },
    /// A multi-class sample whose target does not set exactly one class.
    #[error("sample '{id}' sets {set} classes; a multi-class target sets exactly one")]
    NotOneHot { id: String, set: usize },
    /// The fold list and the dataset differ in length.
    #[error("{folds} fold indices for {samples} samples")]
    LengthMismatch { folds: usize, samples: usize },
    /// A fold index is not below the number of samples (when writing).
    #[error("fold index {fold} of sample '{id}' is out of range")]
    OutOfRange { id: String, fold: usize },
    /// A folds file is wrong; every problem found is listed.
    #[error("{}", format_problems(.0))]
    Invalid(Vec<Problem>),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Assigns each sample of a labelled dataset to one of `k` folds, stratified by its classes.
///
/// Returns the fold index (0..k) of every sample, in sample order. The result depends only on the dataset's
/// targets, `k` and `seed`.
pub fn assign(dataset: &Dataset, k: usize, seed: u64) -> Result<Vec<usize>, FoldError> {
    let n = dataset.samples.len();
    if k < 2 || k > n {
        return Err(FoldError::BadK { k, n });
    }
    let mut labels = Vec::with_capacity(n);
    for sample in &dataset.samples {
        if !sample.is_labelled() {
            return Err(FoldError::Unlabelled { id: sample.id.clone() });
        }
        let set: Vec<usize> = sample.class_indices().collect();
        if dataset.task == Task::MultiClass && set.len() != 1 {
            return Err(FoldError::NotOneHot { id: sample.id.clone(), set: set.len() });
        }
        labels.push(set);
    }
    let classes = dataset.classes.len().max(labels.iter().flatten().map(|&c| c + 1).max().unwrap_or(0));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut folds = match dataset.task {
        Task::MultiClass => {
            let single: Vec<usize> = labels.iter().map(|l| l[0]).collect();
            stratify_single(&single, classes, k, &mut rng)
        }
        Task::MultiLabel => stratify_iterative(&labels, classes, k, &mut rng),
    };
    fill_empty_folds(&mut folds, k);
    Ok(folds)
}

/// Per-class round-robin dealing: `class_of[i]` is sample i's class.
fn stratify_single(class_of: &[usize], classes: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut members = vec![Vec::new(); classes];
    for (i, &c) in class_of.iter().enumerate() {
        members[c].push(i);
    }
    let mut folds = vec![0; class_of.len()];
    let mut next = 0;
    for class in &mut members {
        class.shuffle(rng);
        for &i in class.iter() {
            folds[i] = next;
            next = (next + 1) % k;
        }
    }
    folds
}

/// Iterative stratification (Sechidis et al. 2011, algorithm 1) with equal fold proportions.
///
/// Desired counts are kept multiplied by `k` so they stay exact integers: fold f wants `n_l/k` more samples
/// of label l, stored as `n_l − k·(samples of l already in f)`.
fn stratify_iterative(labels: &[Vec<usize>], classes: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let n = labels.len();
    const UNSET: usize = usize::MAX;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);

    let mut members = vec![Vec::new(); classes];
    for &i in &order {
        for &l in &labels[i] {
            members[l].push(i);
        }
    }
    let mut remaining: Vec<usize> = members.iter().map(Vec::len).collect();
    let ki = k as i64;
    let mut want: Vec<i64> = vec![n as i64; k];
    let mut want_label: Vec<Vec<i64>> = members.iter().map(|m| vec![m.len() as i64; k]).collect();
    let mut folds = vec![UNSET; n];

    while let Some(fewest) = remaining.iter().copied().filter(|&r| r > 0).min() {
        let rarest: Vec<usize> = (0..classes).filter(|&l| remaining[l] == fewest).collect();
        let label = rarest[rng.random_range(0..rarest.len())];
        for &i in &members[label] {
            if folds[i] != UNSET {
                continue;
            }
            let fold = pick_fold(&want_label[label], &want, rng);
            folds[i] = fold;
            want[fold] -= ki;
            for &l in &labels[i] {
                want_label[l][fold] -= ki;
                remaining[l] -= 1;
            }
        }
    }
    // Samples with no label at all go where samples are most wanted.
    let uniform = vec![0i64; k];
    for &i in &order {
        if folds[i] == UNSET {
            let fold = pick_fold(&uniform, &want, rng);
            folds[i] = fold;
            want[fold] -= ki;
        }
    }
    folds
}

/// The fold that most wants the label; ties go to the fold that most wants samples, then to chance.
fn pick_fold(want_label: &[i64], want: &[i64], rng: &mut ChaCha8Rng) -> usize {
    let best_label = want_label.iter().copied().max().unwrap_or(0);
    let tied: Vec<usize> = (0..want.len()).filter(|&f| want_label[f] == best_label).collect();
    let best = tied.iter().map(|&f| want[f]).max().unwrap_or(0);
    let tied: Vec<usize> = tied.into_iter().filter(|&f| want[f] == best).collect();
    if tied.len() == 1 {
        tied[0]
    } else {
        tied[rng.random_range(0..tied.len())]
    }
}

/// Guarantees every fold at least one sample (only degenerate inputs need it), moving the last samples of the
/// largest fold.
fn fill_empty_folds(folds: &mut [usize], k: usize) {
    loop {
        let mut sizes = vec![0usize; k];
        for &f in folds.iter() {
            sizes[f] += 1;
        }
        let Some(empty) = sizes.iter().position(|&s| s == 0) else { return };
        let largest = (0..k).max_by_key(|&f| (sizes[f], std::cmp::Reverse(f))).unwrap_or(0);
        if sizes[largest] < 2 {
            return;
        }
        if let Some(i) = folds.iter().rposition(|&f| f == largest) {
            folds[i] = empty;
        }
    }
}

/// How many samples of each class every fold holds: `result[fold][class]`.
pub fn class_counts(dataset: &Dataset, folds: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut counts = vec![vec![0; dataset.classes.len()]; k];
    for (sample, &fold) in dataset.samples.iter().zip(folds) {
        if let Some(row) = counts.get_mut(fold) {
            for c in sample.class_indices() {
                if let Some(n) = row.get_mut(c) {
                    *n += 1;
                }
            }
        }
    }
    counts
}

/// Writes `image_id,fold` for every sample, atomically (a temporary file in the same folder, then renamed).
pub fn write_csv(path: &Path, dataset: &Dataset, folds: &[usize]) -> Result<(), FoldError> {
    if folds.len() != dataset.samples.len() {
        return Err(FoldError::LengthMismatch { folds: folds.len(), samples: dataset.samples.len() });
    }
    if let Some((sample, &fold)) = dataset.samples.iter().zip(folds).find(|(_, &f)| f >= dataset.len()) {
        return Err(FoldError::OutOfRange { id: sample.id.clone(), fold });
    }
    let io = |source: std::io::Error| FoldError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    {
        let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(tmp.as_file()));
        let csv_io = |e: csv::Error| io(std::io::Error::other(e));
        writer.write_record(["image_id", "fold"]).map_err(csv_io)?;
        for (sample, fold) in dataset.samples.iter().zip(folds) {
            writer.write_record([sample.id.as_str(), &fold.to_string()]).map_err(csv_io)?;
        }
        writer.flush().map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Reads a folds file written by [`write_csv`] (or by hand) back onto `dataset`'s samples.
///
/// Every problem is reported together, each naming file, row and column: an id the dataset does not have, an
/// id listed twice, a fold that is not a number below the sample count, a sample of the dataset without a
/// fold, fold numbers with gaps (folds must be 0..k), and fewer than two folds.
pub fn read_csv(path: &Path, dataset: &Dataset) -> Result<Vec<usize>, FoldError> {
    let io = |source: std::io::Error| FoldError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(file);
    let csv_io = |e: csv::Error| io(std::io::Error::other(e));
    let headers: Vec<String> = reader.headers().map_err(csv_io)?.iter().map(str::to_string).collect();
    let mut problems = Vec::new();
    let id_name = if headers.iter().any(|h| h == "image") && !headers.iter().any(|h| h == "image_id") {
        "image"
    } else {
        "image_id"
    };
    let id_col = headers.iter().position(|h| h == id_name);
    let fold_col = headers.iter().position(|h| h == "fold");
    for (col, name) in [(id_col, "image_id"), (fold_col, "fold")] {
        if col.is_none() {
            problems.push(Problem::new(path, format!("the header has no {name} column")).at_row(1).in_column(name));
        }
    }
    let (Some(id_col), Some(fold_col)) = (id_col, fold_col) else {
        return Err(FoldError::Invalid(problems));
    };

    let index: HashMap<&str, usize> = dataset.samples.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut folds: Vec<Option<(usize, u64)>> = vec![None; dataset.samples.len()];
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let row = e.position().map(|p| p.line());
                let mut p = Problem::new(path, format!("unreadable row: {e}"));
                p.row = row;
                problems.push(p);
                continue;
            }
        };
        let row = record.position().map_or(0, |p| p.line());
        if record.len() != headers.len() {
            problems.push(
                Problem::new(path, format!("row has {} fields; the header has {}", record.len(), headers.len()))
                    .at_row(row),
            );
            continue;
        }
        let id = &record[id_col];
        let value = &record[fold_col];
        let sample = index.get(id).copied();
        if sample.is_none() {
            problems.push(
                Problem::new(path, format!("unknown id '{id}': not in the dataset")).at_row(row).in_column(id_name),
            );
        }
        let fold = match value.parse::<usize>() {
            Ok(f) if f < dataset.samples.len() => Some(f),
            Ok(f) => {
                problems.push(
                    Problem::new(path, format!("fold {f} is out of range (the dataset has {} samples)", dataset.len()))
                        .at_row(row)
                        .in_column("fold"),
                );
                None
            }
            Err(_) => {
                problems.push(
                    Problem::new(path, format!("fold '{value}' is not a non-negative integer"))
                        .at_row(row)
                        .in_column("fold"),
                );
                None
            }
        };
        if let (Some(i), Some(fold)) = (sample, fold) {
            match folds[i] {
                Some((_, first)) => problems.push(
                    Problem::new(path, format!("duplicate id '{id}' (first on row {first})"))
                        .at_row(row)
                        .in_column(id_name),
                ),
                None => folds[i] = Some((fold, row)),
            }
        }
    }

    const LISTED: usize = 20;
    let missing: Vec<&str> =
        dataset.samples.iter().zip(&folds).filter(|(_, f)| f.is_none()).map(|(s, _)| s.id.as_str()).collect();
    for id in missing.iter().take(LISTED) {
        problems.push(Problem::new(path, format!("missing id '{id}': the sample has no fold")).in_column(id_name));
    }
    if missing.len() > LISTED {
        problems.push(
            Problem::new(path, format!("{} more samples have no fold", missing.len() - LISTED)).in_column(id_name),
        );
    }
    let k = folds.iter().flatten().map(|(f, _)| f + 1).max().unwrap_or(0);
    if problems.is_empty() {
        let mut sizes = vec![0usize; k];
        for (f, _) in folds.iter().flatten() {
            sizes[*f] += 1;
        }
        let empty: Vec<String> = (0..k).filter(|&f| sizes[f] == 0).map(|f| f.to_string()).collect();
        if !empty.is_empty() {
            problems.push(
                Problem::new(
                    path,
                    format!("folds {} have no samples (folds must be numbered 0..{k})", empty.join(", ")),
                )
                .in_column("fold"),
            );
        }
        if k < 2 {
            problems.push(Problem::new(path, "fewer than two folds").in_column("fold"));
        }
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(FoldError::Invalid(problems));
    }
    Ok(folds.into_iter().map(|f| f.map_or(0, |(f, _)| f)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_label_dealing_is_balanced_per_class_and_overall() {
        let class_of: Vec<usize> = (0..103)
            .map(|i| {
                if i < 7 {
                    0
                } else if i < 50 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let folds = stratify_single(&class_of, 3, 5, &mut ChaCha8Rng::seed_from_u64(1));
        let mut sizes = [0usize; 5];
        let mut per = [[0usize; 3]; 5];
        for (i, &f) in folds.iter().enumerate() {
            sizes[f] += 1;
            per[f][class_of[i]] += 1;
        }
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        for (c, n) in [(0, 7), (1, 43), (2, 53)] {
            for row in &per {
                assert!(row[c] == n / 5 || row[c] == n.div_ceil(5), "class {c}: {per:?}");
            }
        }
    }

    #[test]
    fn iterative_stratification_places_every_sample_once() {
        let labels: Vec<Vec<usize>> = (0..40).map(|i| if i % 4 == 0 { vec![] } else { vec![i % 3] }).collect();
        let folds = stratify_iterative(&labels, 3, 4, &mut ChaCha8Rng::seed_from_u64(9));
        assert!(folds.iter().all(|&f| f < 4));
        let unlabelled: Vec<usize> = (0..40).filter(|i| i % 4 == 0).map(|i| folds[i]).collect();
        let mut per = [0; 4];
        for f in unlabelled {
            per[f] += 1;
        }
        assert!(per.iter().all(|&n| n >= 2), "unlabelled samples spread: {per:?}");
    }

    #[test]
    fn empty_folds_are_filled_from_the_largest() {
        let mut folds = vec![0, 0, 0, 1];
        fill_empty_folds(&mut folds, 3);
        let mut sizes = [0; 3];
        for f in &folds {
            sizes[*f] += 1;
        }
        assert!(sizes.iter().all(|&s| s > 0), "{folds:?}");
    }
}
