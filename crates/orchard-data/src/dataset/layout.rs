//! Which layout a dataset folder is in: its optional `dataset.toml`, or detection from its files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use orchard_files::table::Table;
use serde::Deserialize;

use super::{io_error, DatasetError, Layout, Task, IMAGE_EXTENSIONS, MANIFEST};

/// The contents of `dataset.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    layout: Option<Layout>,
    task: Option<Task>,
    train: Option<String>,
    test: Option<String>,
    images: Option<String>,
    test_images: Option<String>,
    classes: Option<Vec<String>>,
}

/// Everything decided before reading any rows.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) root: PathBuf,
    pub(super) layout: Layout,
    pub(super) task: Task,
    /// The training table (or folder), relative to the root.
    pub(super) train: PathBuf,
    /// The test table (or folder) named in the manifest.
    pub(super) test: Option<PathBuf>,
    pub(super) images: Option<String>,
    pub(super) test_images: Option<String>,
    pub(super) classes: Option<Vec<String>>,
    /// The manifest's path as shown to the user, when there is one.
    pub(super) manifest: Option<PathBuf>,
}

impl Config {
    pub(super) fn resolve(root: &Path) -> Result<Config, DatasetError> {
        if !root.is_dir() {
            return Err(DatasetError::Io {
                path: root.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            });
        }
        let manifest_path = root.join(MANIFEST);
        let (manifest, manifest_shown) = if present(&manifest_path) {
            let text = orchard_files::input::read_to_string(&manifest_path, orchard_files::input::TEXT)
                .map_err(io_error(&manifest_path))?;
            let manifest: Manifest = toml::from_str(&text).map_err(|e| DatasetError::Manifest {
                path: shown(root, Path::new(MANIFEST)),
                message: e.to_string(),
            })?;
            (manifest, Some(shown(root, Path::new(MANIFEST))))
        } else {
            (Manifest::default(), None)
        };
        let manifest_error =
            |message: String| DatasetError::Manifest { path: shown(root, Path::new(MANIFEST)), message };

        if let Some(classes) = &manifest.classes {
            let mut seen = BTreeSet::new();
            for c in classes {
                if c.trim().is_empty() {
                    return Err(manifest_error("classes: empty class name".into()));
                }
                if !seen.insert(c.as_str()) {
                    return Err(manifest_error(format!("classes: '{c}' is listed twice")));
                }
            }
            if classes.is_empty() {
                return Err(manifest_error("classes: the list is empty".into()));
            }
        }

        let layout = match manifest.layout {
            Some(layout) => layout,
            None => detect(root, manifest.train.as_deref())?,
        };
        let default_train = match layout {
            Layout::Folders if root.join("train").is_dir() => "train",
            Layout::Folders => "",
            _ => "train.csv",
        };
        let train = PathBuf::from(manifest.train.clone().unwrap_or_else(|| default_train.to_string()));
        let task = match (layout, manifest.task) {
            (Layout::OneHot, task) => task.unwrap_or(Task::MultiClass),
            (Layout::MultiLabel, None | Some(Task::MultiLabel)) => Task::MultiLabel,
            (Layout::SingleLabel | Layout::Folders, None | Some(Task::MultiClass)) => Task::MultiClass,
            (layout, Some(task)) => {
                return Err(manifest_error(format!("task \"{task}\" does not fit layout \"{layout}\"")));
            }
        };
        Ok(Config {
            root: root.to_path_buf(),
            layout,
            task,
            train,
            test: manifest.test.map(PathBuf::from),
            images: manifest.images,
            test_images: manifest.test_images,
            classes: manifest.classes,
            manifest: manifest_shown,
        })
    }

    /// A path below the root as the user should see it.
    pub(super) fn shown(&self, rel: &Path) -> PathBuf {
        shown(&self.root, rel)
    }
}

/// `root/rel`, without a leading `./` when the user gave `.`.
pub(super) fn shown(root: &Path, rel: &Path) -> PathBuf {
    if root.as_os_str().is_empty() || root == Path::new(".") {
        rel.to_path_buf()
    } else if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Decides the layout of a dataset without a manifest (or whose manifest names no layout).
pub(super) fn detect(root: &Path, train: Option<&str>) -> Result<Layout, DatasetError> {
    let table = root.join(train.unwrap_or("train.csv"));
    if present(&table) && !table.is_dir() {
        return Ok(layout_from_header(&Table::read_header(&table, &table)?));
    }
    let tree = match train {
        Some(dir) => root.join(dir),
        None if root.join("train").is_dir() => root.join("train"),
        None => root.to_path_buf(),
    };
    if tree.is_dir() && has_class_folders(&tree)? {
        return Ok(Layout::Folders);
    }
    Err(DatasetError::Undetected {
        root: root.to_path_buf(),
        reason: format!(
            "found neither {} nor class folders with images; add a {MANIFEST} naming the layout",
            train.unwrap_or("train.csv")
        ),
    })
}

/// The layout a training table's header implies: `labels` → multi-label, `label` → single-label, otherwise
/// one-hot (whose validation then reports a missing `image_id`).
pub(super) fn layout_from_header(headers: &[String]) -> Layout {
    if headers.iter().any(|h| h == "labels") {
        Layout::MultiLabel
    } else if headers.iter().any(|h| h == "label") {
        Layout::SingleLabel
    } else {
        Layout::OneHot
    }
}

fn has_class_folders(dir: &Path) -> Result<bool, DatasetError> {
    for entry in read_dir_sorted(dir)? {
        if entry.is_dir() && !is_hidden(&entry) && read_dir_sorted(&entry)?.iter().any(|p| is_image_file(p)) {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        entries.push(entry.map_err(io_error(dir))?.path());
    }
    entries.sort();
    Ok(entries)
}

pub(super) fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Whether anything is at `path` (a FIFO, a device, a dangling or looping symlink as much as a file): a user
/// file that is there is read, and reading it says what is wrong with it, rather than it being passed over.
pub(super) fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Whether `path` is named like an image and is not a folder (whatever else it is, reading it will say).
pub(super) fn is_image_file(path: &Path) -> bool {
    present(path)
        && !path.is_dir()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_detected_from_headers() {
        let h = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(layout_from_header(&h("image_id,healthy,rust")), Layout::OneHot);
        assert_eq!(layout_from_header(&h("image,label")), Layout::SingleLabel);
        assert_eq!(layout_from_header(&h("image,labels")), Layout::MultiLabel);
        assert_eq!(layout_from_header(&h("id,healthy")), Layout::OneHot);
        assert_eq!("single-label".parse::<Layout>().unwrap(), Layout::SingleLabel);
        assert!("csv".parse::<Layout>().is_err());
    }
}
