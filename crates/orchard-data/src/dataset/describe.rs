//! A summary of a loaded dataset: sizes, class balance and image sizes (`orchard data check`).

use std::fmt;
use std::path::PathBuf;

use super::{Dataset, Layout, Split, Task};
use crate::decode::{Format, ImageInfo};

/// Minimum, median and maximum of a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spread {
    pub min: usize,
    pub median: usize,
    pub max: usize,
}

impl Spread {
    fn of(mut values: Vec<usize>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        Some(Spread { min: values[0], median: values[values.len() / 2], max: values[values.len() - 1] })
    }
}

/// Image-size statistics over the probed images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageStats {
    /// How many images were probed.
    pub probed: usize,
    pub width: Spread,
    pub height: Spread,
    /// How many images of each format, most common first.
    pub formats: Vec<(Format, usize)>,
}

/// A summary of a dataset: sizes, class balance and image sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct Description {
    pub root: PathBuf,
    pub layout: Layout,
    pub task: Task,
    pub split: Split,
    /// The number of samples.
    pub samples: usize,
    /// How many samples carry a target.
    pub labelled: usize,
    /// Per class (in class order): the name and how many samples have it set.
    pub class_counts: Vec<(String, usize)>,
    /// For multi-label data, how many samples carry each number of labels (index = number of labels).
    pub labels_per_sample: Vec<usize>,
    /// Image sizes and formats, when the images were probed ([`LoadOptions::images`]).
    pub images: Option<ImageStats>,
}

/// Summarises a loaded dataset: per-class counts, and image-size statistics when the images were probed.
pub fn describe(dataset: &Dataset) -> Description {
    let labelled = dataset.samples.iter().filter(|s| s.is_labelled()).count();
    let counts = dataset.class_counts();
    let class_counts = dataset.classes.iter().cloned().zip(counts).collect();
    let mut labels_per_sample = Vec::new();
    if dataset.task == Task::MultiLabel {
        for s in dataset.samples.iter().filter(|s| s.is_labelled()) {
            let n = s.class_indices().count();
            if labels_per_sample.len() <= n {
                labels_per_sample.resize(n + 1, 0);
            }
            labels_per_sample[n] += 1;
        }
    }
    let infos: Vec<ImageInfo> = dataset.samples.iter().filter_map(|s| s.info).collect();
    let images = (!infos.is_empty()).then(|| {
        let mut formats: Vec<(Format, usize)> = Vec::new();
        for info in &infos {
            match formats.iter_mut().find(|(f, _)| *f == info.format) {
                Some((_, n)) => *n += 1,
                None => formats.push((info.format, 1)),
            }
        }
        formats.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let zero = Spread { min: 0, median: 0, max: 0 };
        ImageStats {
            probed: infos.len(),
            width: Spread::of(infos.iter().map(|i| i.width).collect()).unwrap_or(zero),
            height: Spread::of(infos.iter().map(|i| i.height).collect()).unwrap_or(zero),
            formats,
        }
    });
    Description {
        root: dataset.root.clone(),
        layout: dataset.layout,
        task: dataset.task,
        split: dataset.split,
        samples: dataset.samples.len(),
        labelled,
        class_counts,
        labels_per_sample,
        images,
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({} split): layout {}, {} task, {} samples ({} labelled), {} classes",
            self.root.display(),
            self.split,
            self.layout,
            self.task,
            self.samples,
            self.labelled,
            self.class_counts.len()
        )?;
        let width = self.class_counts.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
        if self.labelled > 0 {
            for (class, n) in &self.class_counts {
                let share = 100.0 * *n as f64 / self.labelled as f64;
                writeln!(f, "  {class:<width$}  {n:>7}  {share:5.1}%")?;
            }
        } else {
            writeln!(
                f,
                "  classes: {}",
                self.class_counts.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ")
            )?;
        }
        if !self.labels_per_sample.is_empty() {
            let parts: Vec<String> = self
                .labels_per_sample
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            writeln!(f, "  labels per sample: {}", parts.join(", "))?;
        }
        match &self.images {
            Some(s) => {
                let formats: Vec<String> = s.formats.iter().map(|(fmt, n)| format!("{fmt} {n}")).collect();
                writeln!(
                    f,
                    "  images: {} probed ({}); width min/median/max {}/{}/{}; height {}/{}/{}",
                    s.probed,
                    formats.join(", "),
                    s.width.min,
                    s.width.median,
                    s.width.max,
                    s.height.min,
                    s.height.median,
                    s.height.max
                )?;
            }
            None => writeln!(f, "  images: not probed (load with image checks for sizes)")?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_upper_median() {
        assert_eq!(Spread::of(vec![3, 1, 2]), Some(Spread { min: 1, median: 2, max: 3 }));
        assert_eq!(Spread::of(vec![4, 1]), Some(Spread { min: 1, median: 4, max: 4 }));
        assert_eq!(Spread::of(vec![]), None);
    }
}
