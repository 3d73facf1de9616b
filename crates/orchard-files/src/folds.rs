//! Folds: which samples validate which fold. The stratified k-fold assignment, the `folds.csv` file that
//! pins it down, and the rule by which a run's settings pick its training and validation samples.
//!
//! Out-of-fold predictions feed ensembling and self-distillation, so every fold must see the rare classes
//! (Plant Pathology 2020's `multiple_diseases` is 5% of the data) in their true proportion, and the
//! assignment must be reproducible from a seed and storable, so that models trained days apart, in other
//! processes or on other machines, agree on what they never saw.
//!
//! * Multi-class data is stratified per class: each class's samples are shuffled with the seed and dealt
//!   round-robin, the dealing position carrying over from one class to the next, so every fold holds
//!   ⌊n_c/k⌋ or ⌈n_c/k⌉ samples of every class c and fold sizes differ by at most one.
//! * Multi-label data uses iterative stratification (Sechidis, Tsoumakas & Vlahavas 2011, "On the
//!   stratification of multi-label data"): the rarest remaining label is placed first, each of its samples
//!   going to the fold that most lacks that label, ties broken by the fold that most lacks samples, then by
//!   the seeded random generator. Label counts per fold come out within about one of exact; fold sizes,
//!   which the algorithm only uses to break ties, can differ by a few percent.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::DataConfig;
use crate::table::{self, Table};
use crate::{FileError, Problem, Task};

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
    /// The fold list and the samples differ in length.
    #[error("{folds} fold indices for {samples} samples")]
    LengthMismatch { folds: usize, samples: usize },
    /// A fold index is not below the number of samples (when writing).
    #[error("fold index {fold} of sample '{id}' is out of range")]
    OutOfRange { id: String, fold: usize },
    /// A folds file holds another number of folds than the settings say.
    #[error("the folds file has {found} folds, the configuration says data.folds = {k}")]
    CountMismatch { found: usize, k: usize },
    /// A folds file is wrong (every problem listed), or could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
}

/// What stratification needs of a labelled dataset: each sample's id (for messages) and target vector.
#[derive(Clone, Debug)]
pub struct Targets<'a> {
    pub task: Task,
    /// The number of classes (the length of every target).
    pub classes: usize,
    /// `(id, target)` per sample, in sample order; an empty target is an unlabelled sample.
    pub samples: Vec<(&'a str, &'a [f32])>,
}

impl Targets<'_> {
    /// The indices of the classes set in sample `i`'s target.
    fn set(&self, i: usize) -> Vec<usize> {
        self.samples[i].1.iter().enumerate().filter(|(_, &v)| v > 0.5).map(|(c, _)| c).collect()
    }
}

/// Assigns each sample to one of `k` folds, stratified by its classes.
///
/// Returns the fold index (0..k) of every sample, in sample order. The result depends only on the targets,
/// `k` and `seed`.
pub fn assign(targets: &Targets, k: usize, seed: u64) -> Result<Vec<usize>, FoldError> {
    let n = targets.samples.len();
    if k < 2 || k > n {
        return Err(FoldError::BadK { k, n });
    }
    let mut labels = Vec::with_capacity(n);
    for (i, &(id, target)) in targets.samples.iter().enumerate() {
        if target.is_empty() {
            return Err(FoldError::Unlabelled { id: id.to_string() });
        }
        let set = targets.set(i);
        if targets.task == Task::MultiClass && set.len() != 1 {
            return Err(FoldError::NotOneHot { id: id.to_string(), set: set.len() });
        }
        labels.push(set);
    }
    let classes = targets.classes.max(labels.iter().flatten().map(|&c| c + 1).max().unwrap_or(0));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut folds = match targets.task {
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
pub fn class_counts(targets: &Targets, folds: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut counts = vec![vec![0; targets.classes]; k];
    for (i, &fold) in folds.iter().enumerate().take(targets.samples.len()) {
        if let Some(row) = counts.get_mut(fold) {
            for c in targets.set(i) {
                if let Some(n) = row.get_mut(c) {
                    *n += 1;
                }
            }
        }
    }
    counts
}

/// Writes `image_id,fold` for every id, atomically.
pub fn write_csv(path: &Path, ids: &[&str], folds: &[usize]) -> Result<(), FoldError> {
    if folds.len() != ids.len() {
        return Err(FoldError::LengthMismatch { folds: folds.len(), samples: ids.len() });
    }
    if let Some((id, &fold)) = ids.iter().zip(folds).find(|(_, &f)| f >= ids.len()) {
        return Err(FoldError::OutOfRange { id: id.to_string(), fold });
    }
    let rows = ids.iter().zip(folds).map(|(id, fold)| [id.to_string(), fold.to_string()]);
    table::write(path, &["image_id", "fold"], rows)
        .map_err(|source| FileError::Write { path: path.to_path_buf(), source }.into())
}

/// Reads a folds file written by [`write_csv`] (or by hand) and returns the fold of each of `ids`.
///
/// Every problem is reported together, each naming file, row and column: an id not among `ids`, an id
/// listed twice, a fold that is not a number below the sample count, an id without a fold, fold numbers with
/// gaps (folds must be 0..k), and fewer than two folds.
pub fn read_csv(path: &Path, ids: &[String]) -> Result<Vec<usize>, FoldError> {
    read_csv_without(path, ids, &[])
}

/// [`read_csv`] for a dataset that dropped the rows `dropped` (`--skip-bad`): their rows in the file are
/// passed over, as if the file had been written without them.
pub fn read_csv_without(path: &Path, ids: &[String], dropped: &[String]) -> Result<Vec<usize>, FoldError> {
    let table = Table::read(path)?;
    let mut problems = table.problems();
    let id_name =
        if table.column("image").is_some() && table.column("image_id").is_none() { "image" } else { "image_id" };
    let id_col = table.column(id_name);
    let fold_col = table.column("fold");
    for (col, name) in [(id_col, "image_id"), (fold_col, "fold")] {
        if col.is_none() {
            problems.push(table.problem(format!("the header has no {name} column")).at_row(1).in_column(name));
        }
    }
    let (Some(id_col), Some(fold_col)) = (id_col, fold_col) else {
        return Err(FileError::Invalid(problems).into());
    };

    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let dropped: HashSet<&str> = dropped.iter().map(String::as_str).collect();
    let mut folds: Vec<Option<(usize, u64)>> = vec![None; ids.len()];
    for row in table.rows.iter().filter(|row| !dropped.contains(row.fields[id_col].as_str())) {
        let (id, value) = (&row.fields[id_col], &row.fields[fold_col]);
        let sample = index.get(id.as_str()).copied();
        if sample.is_none() {
            let message = format!("unknown id '{id}': not in the dataset");
            problems.push(table.problem(message).at_row(row.line).in_column(id_name));
        }
        let limit = (ids.len(), "the dataset has", "samples");
        let fold = fold_number(&table, value, row.line, limit).map_err(|p| problems.push(p)).ok();
        if let (Some(i), Some(fold)) = (sample, fold) {
            match folds[i] {
                Some((_, first)) => {
                    let message = format!("duplicate id '{id}' (first on row {first})");
                    problems.push(table.problem(message).at_row(row.line).in_column(id_name));
                }
                None => folds[i] = Some((fold, row.line)),
            }
        }
    }

    const LISTED: usize = 20;
    let missing: Vec<&str> = ids.iter().zip(&folds).filter(|(_, f)| f.is_none()).map(|(id, _)| id.as_str()).collect();
    for id in missing.iter().take(LISTED) {
        problems.push(table.problem(format!("missing id '{id}': the sample has no fold")).in_column(id_name));
    }
    if missing.len() > LISTED {
        let message = format!("{} more samples have no fold", missing.len() - LISTED);
        problems.push(table.problem(message).in_column(id_name));
    }
    if problems.is_empty() {
        problems.extend(numbering(&table, folds.iter().flatten().map(|(f, _)| *f)));
    }
    FileError::fail_on(problems)?;
    Ok(folds.into_iter().map(|f| f.map_or(0, |(f, _)| f)).collect())
}

/// The number of folds in a folds file, its largest fold + 1, for a run that names the file but not the
/// count (which then trained on every row without validating). The folds are checked as [`read_csv`] checks
/// them: numbers, numbered 0..k without gaps, at least two; the ids are checked against the dataset when the
/// run reads the file.
pub fn count_csv(path: &Path) -> Result<usize, FoldError> {
    let table = Table::read(path)?;
    let mut problems = table.problems();
    let Some(fold_col) = table.column("fold") else {
        problems.push(table.problem("the header has no fold column").at_row(1).in_column("fold"));
        return Err(FileError::Invalid(problems).into());
    };
    let limit = (table.rows.len(), "the file has", "rows");
    let folds: Vec<usize> = (table.rows.iter())
        .filter_map(|row| {
            fold_number(&table, &row.fields[fold_col], row.line, limit).map_err(|p| problems.push(p)).ok()
        })
        .collect();
    if problems.is_empty() {
        problems.extend(numbering(&table, folds.iter().copied()));
    }
    FileError::fail_on(problems)?;
    Ok(folds.iter().max().map_or(0, |m| m + 1))
}

/// A folds file's fold `value` on `line`, which must be a whole number below `limit.0` (`limit.1` and
/// `limit.2` say what that counts, for the message).
fn fold_number(table: &Table, value: &str, line: u64, limit: (usize, &str, &str)) -> Result<usize, Problem> {
    let (max, has, what) = limit;
    let problem = |message: String| table.problem(message).at_row(line).in_column("fold");
    match value.parse::<usize>() {
        Ok(f) if f < max => Ok(f),
        Ok(f) => Err(problem(format!("fold {f} is out of range ({has} {max} {what})"))),
        Err(_) => Err(problem(format!("fold '{value}' is not a non-negative integer"))),
    }
}

/// What is wrong with the numbering of `folds` (each below the file's row count): folds 0..k must all hold
/// rows, and k must be at least 2.
fn numbering(table: &Table, folds: impl Iterator<Item = usize>) -> Vec<Problem> {
    let mut sizes: Vec<usize> = Vec::new();
    for f in folds {
        if sizes.len() <= f {
            sizes.resize(f + 1, 0);
        }
        sizes[f] += 1;
    }
    let k = sizes.len();
    let mut problems = Vec::new();
    let empty: Vec<String> = (0..k).filter(|&f| sizes[f] == 0).map(|f| f.to_string()).collect();
    if !empty.is_empty() {
        let message = format!("folds {} have no samples (folds must be numbered 0..{k})", empty.join(", "));
        problems.push(table.problem(message).in_column("fold"));
    }
    if k < 2 {
        problems.push(table.problem("fewer than two folds").in_column("fold"));
    }
    problems
}

/// The training and validation samples (indices into `targets.samples`) of a run with these data settings:
/// without `data.folds` every sample trains and none validates; otherwise the fold `data.fold` of the
/// assignment in `data.folds_csv`, or of the one `seed` makes, validates. Prediction uses the same rule to
/// find a run's validation fold again. `dropped` are the ids the dataset dropped (`data.skip_bad`), whose
/// rows in `data.folds_csv` are passed over.
pub fn split(
    data: &DataConfig,
    seed: u64,
    targets: &Targets,
    dropped: &[String],
) -> Result<(Vec<usize>, Vec<usize>), FoldError> {
    let n = targets.samples.len();
    let Some(k) = data.folds else { return Ok(((0..n).collect(), Vec::new())) };
    let folds = match &data.folds_csv {
        Some(path) => {
            let ids: Vec<String> = targets.samples.iter().map(|(id, _)| id.to_string()).collect();
            read_csv_without(path, &ids, dropped)?
        }
        None => assign(targets, k, seed)?,
    };
    let found = folds.iter().max().map_or(0, |m| m + 1);
    if found != k {
        return Err(FoldError::CountMismatch { found, k });
    }
    let (val, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| folds[i] == data.fold);
    Ok((train, val))
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

    #[test]
    fn the_split_follows_the_settings_and_a_file_with_other_folds_is_refused() {
        let one_hot = |c: usize| -> Vec<f32> { (0..2).map(|i| if i == c { 1.0 } else { 0.0 }).collect() };
        let rows: Vec<(String, Vec<f32>)> = (0..10).map(|i| (format!("s{i}"), one_hot(i % 2))).collect();
        let targets = Targets {
            task: Task::MultiClass,
            classes: 2,
            samples: rows.iter().map(|(id, t)| (id.as_str(), t.as_slice())).collect(),
        };
        let all = split(&DataConfig::default(), 0, &targets, &[]).unwrap();
        assert_eq!((all.0.len(), all.1.len()), (10, 0));
        let data = DataConfig { folds: Some(5), fold: 2, ..DataConfig::default() };
        let (train, val) = split(&data, 7, &targets, &[]).unwrap();
        let assignment = assign(&targets, 5, 7).unwrap();
        assert_eq!(val, (0..10).filter(|&i| assignment[i] == 2).collect::<Vec<_>>());
        assert_eq!(train.len() + val.len(), 10);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("folds.csv");
        let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        write_csv(&file, &ids, &(0..10).map(|i| i % 3).collect::<Vec<_>>()).unwrap();
        let data = DataConfig { folds_csv: Some(file), ..data };
        let err = split(&data, 7, &targets, &[]).unwrap_err().to_string();
        assert_eq!(err, "the folds file has 3 folds, the configuration says data.folds = 5");
    }

    #[test]
    fn rows_of_dropped_ids_are_passed_over_and_other_unknown_ids_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("folds.csv");
        std::fs::write(&file, "image_id,fold\na,0\nbad,1\nb,1\nc,0\nd,1\n").unwrap();
        let ids: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let err = read_csv(&file, &ids).unwrap_err().to_string();
        assert!(err.contains(":3:") && err.contains("unknown id 'bad'"), "{err}");
        assert_eq!(read_csv_without(&file, &ids, &["bad".to_string()]).unwrap(), vec![0, 1, 0, 1]);
        let err = read_csv_without(&file, &ids[..3], &["bad".to_string()]).unwrap_err().to_string();
        assert!(err.contains("unknown id 'd'"), "{err}");
    }
}
