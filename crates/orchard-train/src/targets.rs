//! Soft targets for self-distillation: a prediction CSV (`image_id` and one probability column per class, in
//! any order) replacing the labels of the images it lists.

use std::collections::HashMap;
use std::path::Path;

use orchard_data::dataset::Dataset;
use orchard_files::Predictions;

/// Replaces `targets[i]` by the row for sample `i`'s id; every problem names the file, row and column.
pub fn apply_soft_targets(path: &Path, dataset: &Dataset, targets: &mut [Vec<f32>]) -> Result<(), String> {
    let soft = Predictions::read(path).map_err(|e| e.to_string())?;
    let file = path.display();
    if let Some(missing) = dataset.classes.iter().find(|c| !soft.classes.contains(c)) {
        return Err(format!("{file}:1: no column for class {missing:?}"));
    }
    let index: HashMap<&str, usize> = dataset.samples.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let unknown: Vec<&str> = soft.ids.iter().map(String::as_str).filter(|id| !index.contains_key(id)).collect();
    if let Some(id) = unknown.first() {
        return Err(format!("{file}: {} image_id(s) are not in the dataset, the first {id:?}", unknown.len()));
    }
    let values = soft.reordered(&soft.ids, &dataset.classes);
    for (id, row) in soft.ids.iter().zip(values.chunks_exact(dataset.classes.len().max(1))) {
        targets[index[id.as_str()]] = row.iter().map(|&v| v as f32).collect();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use orchard_data::dataset::{Layout, Sample, Split, Task};

    use super::*;

    fn dataset() -> Dataset {
        let sample = |id: &str, target: Vec<f32>| Sample::new(id, format!("images/{id}.jpg"), target);
        Dataset {
            root: "data".into(),
            layout: Layout::OneHot,
            task: Task::MultiClass,
            split: Split::Train,
            classes: vec!["a".into(), "b".into()],
            samples: vec![sample("x", vec![1.0, 0.0]), sample("y", vec![0.0, 1.0])],
        }
    }

    #[test]
    fn listed_images_get_their_row_in_the_dataset_class_order_and_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soft.csv");
        let mut targets: Vec<Vec<f32>> = dataset().samples.iter().map(|s| s.target.clone()).collect();
        std::fs::write(&path, "image_id,b,a\ny,0.75,0.25\n").unwrap();
        apply_soft_targets(&path, &dataset(), &mut targets).unwrap();
        assert_eq!(targets, [vec![1.0, 0.0], vec![0.25, 0.75]], "y replaced, x kept");
        for (text, want) in [
            ("image_id,a\ny,1\n", "soft.csv:1: no column for class \"b\""),
            ("image_id,a,b\nz,0.5,0.5\n", "1 image_id(s) are not in the dataset, the first \"z\""),
            ("image_id,a,b\ny,0.5,1.5\n", "soft.csv:2:b: probability 1.5 is outside [0, 1]"),
            ("image_id,a,b\ny,0.5,0.5\ny,0.5,0.5\n", "soft.csv:3:image_id: duplicate id 'y' (first on row 2)"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = apply_soft_targets(&path, &dataset(), &mut targets).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
