//! Soft targets for self-distillation: a CSV of `image_id` and one probability column per class (in any
//! order) replacing the labels of the images it lists.

use std::collections::HashMap;
use std::path::Path;

use orchard_data::dataset::Dataset;

/// Replaces `targets[i]` by the row for sample `i`'s id; every problem names the file, row and column.
pub fn apply_soft_targets(path: &Path, dataset: &Dataset, targets: &mut [Vec<f32>]) -> Result<(), String> {
    let file = path.display();
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_path(path).map_err(|e| format!("{file}: {e}"))?;
    let headers: Vec<String> = reader.headers().map_err(|e| format!("{file}: {e}"))?.iter().map(str::to_string).collect();
    if headers.first().map(String::as_str) != Some("image_id") {
        return Err(format!("{file}:1: the first column must be image_id, found {:?}", headers.first()));
    }
    let columns: Vec<usize> = dataset
        .classes
        .iter()
        .map(|c| headers.iter().position(|h| h == c).ok_or_else(|| format!("{file}:1: no column for class {c:?}")))
        .collect::<Result<_, _>>()?;
    let index: HashMap<&str, usize> = dataset.samples.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut seen = vec![false; dataset.len()];
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| format!("{file}:{line}: {e}"))?;
        let id = record.get(0).unwrap_or_default();
        let &i = index.get(id).ok_or_else(|| format!("{file}:{line}: image_id {id:?} is not in the dataset"))?;
        if std::mem::replace(&mut seen[i], true) {
            return Err(format!("{file}:{line}: image_id {id:?} is listed twice"));
        }
        let mut values = Vec::with_capacity(columns.len());
        for (&col, class) in columns.iter().zip(&dataset.classes) {
            let cell = record.get(col).unwrap_or_default();
            let v: f32 = cell.parse().map_err(|_| format!("{file}:{line}:{class}: {cell:?} is not a number"))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{file}:{line}:{class}: {v} is not a probability"));
            }
            values.push(v);
        }
        targets[i] = values;
    }
    Ok(())
}
