//! A dataset's labels as the truth that predictions are scored against: a dataset folder's training split,
//! or a truth CSV file (which `orchard-files` reads).

use std::path::Path;

use orchard_files::Truth;

use super::{load, Dataset, DatasetError, Layout, LoadOptions, Split};

/// Reads the truth at `path`: a dataset folder in any layout (its training split; images must exist), or a
/// truth CSV (Kaggle one-hot, `image,label` or `image,labels`).
pub fn read_truth(path: &Path) -> Result<Truth, DatasetError> {
    read_truth_with(path, &LoadOptions::default())
}

/// [`read_truth`], a dataset folder loaded with `options` (`skip_bad`: its rows without an image left out).
pub fn read_truth_with(path: &Path, options: &LoadOptions) -> Result<Truth, DatasetError> {
    if !path.is_dir() {
        return Ok(Truth::read_csv(path)?);
    }
    let (data, _) = load(path, Split::Train, options)?;
    Ok(truth_of(&data))
}

/// The labels of a loaded (training) split, named after its root folder; for callers that need the samples'
/// images too, such as a report's gallery.
pub fn truth_of(data: &Dataset) -> Truth {
    Truth {
        file: data.root.clone(),
        values: data.samples.iter().flat_map(|s| s.target.iter().map(|&t| f64::from(t))).collect(),
        ids: data.ids(),
        classes: data.classes.clone(),
        task: data.task,
        from_labels: matches!(data.layout, Layout::SingleLabel | Layout::MultiLabel | Layout::Folders),
        left_out: Vec::new(),
    }
}
