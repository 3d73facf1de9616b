//! The folder layout: one folder per class (`ROOT/<class>/` or `ROOT/train/<class>/`), an optional
//! `test/` beside them.

use std::path::{Path, PathBuf};

use super::layout::{is_hidden, is_image_file, read_dir_sorted, Config};
use super::validate::{Candidate, Collected};
use super::{DatasetError, Problem, Report, Split, MANIFEST};

/// Reads the folder-per-class layout.
pub(super) fn collect_folders(config: &Config, split: Split, report: &mut Report) -> Result<Collected, DatasetError> {
    let root = &config.root;
    let train_dir = root.join(&config.train);
    let train_shown = config.shown(&config.train);
    let mut fatal = Vec::new();

    // Classes: the manifest's, else the training folder's subfolders, sorted.
    let mut folder_classes = Vec::new();
    if train_dir.is_dir() {
        for entry in read_dir_sorted(&train_dir)? {
            if entry.is_dir() && !is_hidden(&entry) && !(config.train.as_os_str().is_empty() && is_reserved(&entry)) {
                folder_classes.push(file_name(&entry));
            }
        }
    }
    let classes = match &config.classes {
        Some(listed) => {
            for name in &folder_classes {
                if !listed.contains(name) {
                    fatal.push(Problem::new(
                        train_shown.join(name),
                        format!("folder '{name}' is not one of the classes in {MANIFEST}"),
                    ));
                }
            }
            listed.clone()
        }
        None => folder_classes,
    };
    if classes.is_empty() {
        fatal.push(Problem::new(&train_shown, "no class folders"));
    }

    let (dir_rel, dir) = match split {
        Split::Train => (config.train.clone(), train_dir),
        Split::Test => {
            let rel = config.test.clone().unwrap_or_else(|| PathBuf::from("test"));
            let dir = root.join(&rel);
            if !dir.is_dir() {
                return Err(DatasetError::NoTestSplit {
                    root: root.clone(),
                    reason: format!("{} is not a folder", config.shown(&rel).display()),
                });
            }
            (rel, dir)
        }
    };
    let dir_shown = config.shown(&dir_rel);
    let mut candidates = Vec::new();
    let mut other_files = 0usize;
    let add = |file: &Path, id: String, class: Option<&str>, candidates: &mut Vec<Candidate>| {
        let mut c = Candidate::new(&dir_shown.join(&id), None);
        c.id = Some(id);
        c.path = Some(file.to_path_buf());
        c.labels = class.map(|c| vec![c.to_string()]);
        candidates.push(c);
    };
    for entry in read_dir_sorted(&dir)? {
        if is_hidden(&entry) {
            continue;
        }
        if entry.is_dir() {
            let class = file_name(&entry);
            if split == Split::Train && config.train.as_os_str().is_empty() && is_reserved(&entry) {
                continue;
            }
            if split == Split::Test && !classes.contains(&class) {
                fatal.push(Problem::new(dir_shown.join(&class), format!("folder '{class}' is not a known class")));
                continue;
            }
            let mut nested = 0usize;
            for file in read_dir_sorted(&entry)? {
                if is_hidden(&file) {
                    continue;
                }
                if is_image_file(&file) {
                    add(&file, format!("{class}/{}", file_name(&file)), Some(&class), &mut candidates);
                } else {
                    nested += 1;
                }
            }
            other_files += nested;
        } else if is_image_file(&entry) {
            if split == Split::Test {
                add(&entry, file_name(&entry), None, &mut candidates);
            } else {
                other_files += 1;
            }
        } else {
            other_files += 1;
        }
    }
    if other_files > 0 {
        report.notes.push(format!(
            "{}: ignored {other_files} entries that are not images in class folders (or not folders at the top)",
            dir_shown.display()
        ));
    }
    Ok(Collected { classes: Some(classes), candidates, fatal, source: dir_shown })
}

/// Folders that are never classes when class folders sit directly in the root.
fn is_reserved(path: &Path) -> bool {
    matches!(file_name(path).as_str(), "test" | "test_images")
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
