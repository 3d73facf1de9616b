//! Dataset layouts, validation and folds, on fixture datasets built in temporary folders with tiny real JPEG
//! and PNG images.

use std::path::{Path, PathBuf};

use orchard_data::dataset::{
    self, Dataset, DatasetError, ImageCheck, Layout, LoadOptions, Problem, Sample, Split, Task,
};
use orchard_data::decode::{self, Format};
use orchard_data::image::RgbImage;
use orchard_files::folds::{self, FoldError};
use orchard_files::FileError;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A dataset under construction in a temporary folder.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture { dir: tempfile::tempdir().unwrap() }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn file(&self, rel: &str, contents: &str) -> &Self {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    fn bytes(&self, rel: &str, contents: &[u8]) -> &Self {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    fn jpeg(&self, rel: &str) -> &Self {
        self.bytes(rel, &decode::encode_jpeg(&RgbImage::new(8, 8), 90).unwrap())
    }

    /// An 8×8 JPEG at each of `rels`.
    fn jpegs(&self, rels: &[&str]) -> &Self {
        rels.iter().fold(self, |f, rel| f.jpeg(rel))
    }

    fn jpeg_sized(&self, rel: &str, w: usize, h: usize) -> &Self {
        self.bytes(rel, &decode::encode_jpeg(&RgbImage::new(w, h), 90).unwrap())
    }

    fn png(&self, rel: &str, w: u32, h: u32) -> &Self {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, w, h);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(&vec![128u8; (w * h) as usize]).unwrap();
        }
        self.bytes(rel, &out)
    }

    fn load(&self, split: Split) -> Result<(Dataset, dataset::Report), DatasetError> {
        dataset::load(self.root(), split, &LoadOptions::default())
    }

    fn load_with(
        &self,
        split: Split,
        skip_bad: bool,
        decode: bool,
    ) -> Result<(Dataset, dataset::Report), DatasetError> {
        let images = if decode { ImageCheck::Decode } else { ImageCheck::Exists };
        dataset::load(self.root(), split, &LoadOptions { skip_bad, images })
    }

    /// Loads the training split, expecting it to be invalid, and returns the problems.
    fn problems(&self) -> Vec<Problem> {
        self.problems_with(false)
    }

    fn problems_with(&self, check_images: bool) -> Vec<Problem> {
        match self.load_with(Split::Train, false, check_images) {
            Err(DatasetError::Invalid(problems)) => problems,
            Err(other) => panic!("expected Invalid, got {other}"),
            Ok((d, _)) => panic!("expected problems, loaded {} samples", d.samples.len()),
        }
    }
}

/// Asserts that a problem with exactly this location exists and returns it.
fn expect<'a>(
    problems: &'a [Problem],
    file: &Path,
    row: Option<u64>,
    column: Option<&str>,
    needle: &str,
) -> &'a Problem {
    problems
        .iter()
        .find(|p| p.file == file && p.row == row && p.column.as_deref() == column && p.message.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no problem at {}:{row:?}:{column:?} containing '{needle}' in:\n{}",
                file.display(),
                problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
            )
        })
}

fn sample<'a>(d: &'a Dataset, id: &str) -> &'a Sample {
    d.samples.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no sample {id}"))
}

// ---------------------------------------------------------------------------------------------------------
// Layouts that load.

/// A Plant Pathology 2020 style dataset: train.csv columns in a different order from sample_submission.csv.
fn pp2020() -> Fixture {
    let f = Fixture::new();
    f.file(
        "train.csv",
        "image_id,rust,scab,healthy,multiple_diseases\n\
         Train_0,0,0,1,0\n\
         Train_1,1,0,0,0\n\
         Train_2, 0 ,1,0,0\n\
         Train_3,0,0,0,1\n\
         Train_4,0,0,1,0\n",
    )
    .file("test.csv", "image_id\nTest_0\nTest_1\n")
    .file("sample_submission.csv", "image_id,healthy,multiple_diseases,rust,scab\nTest_0,0.25,0.25,0.25,0.25\n");
    for i in 0..5 {
        f.jpeg_sized(&format!("images/Train_{i}.jpg"), 8 + i * 8, 16);
    }
    f.jpeg("images/Test_0.jpg").jpeg("images/Test_1.jpg");
    f
}

#[test]
fn onehot_layout_takes_the_class_order_of_sample_submission() {
    let f = pp2020();
    let (d, report) = f.load(Split::Train).unwrap();
    assert_eq!(d.layout, Layout::OneHot);
    assert_eq!(d.task, Task::MultiClass);
    assert_eq!(d.classes, ["healthy", "multiple_diseases", "rust", "scab"]);
    assert_eq!(d.samples.len(), 5);
    assert_eq!(sample(&d, "Train_0").target, [1.0, 0.0, 0.0, 0.0]);
    assert_eq!(sample(&d, "Train_1").target, [0.0, 0.0, 1.0, 0.0]);
    assert_eq!(sample(&d, "Train_2").target, [0.0, 0.0, 0.0, 1.0], "whitespace is trimmed");
    assert_eq!(sample(&d, "Train_3").target, [0.0, 1.0, 0.0, 0.0]);
    assert_eq!(sample(&d, "Train_3").path, f.path("images/Train_3.jpg"));
    assert!(report.skipped.is_empty() && report.notes.is_empty(), "{report:?}");
    assert!(d.samples.iter().all(|s| s.info.is_none()), "images are not probed unless asked");

    let (test, _) = f.load(Split::Test).unwrap();
    assert_eq!(test.classes, d.classes);
    assert_eq!(test.samples.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["Test_0", "Test_1"]);
    assert!(test.samples.iter().all(|s| s.target.is_empty()));
    assert_eq!(test.samples[1].path, f.path("images/Test_1.jpg"));
}

#[test]
fn onehot_layout_without_sample_submission_keeps_the_header_order() {
    let f = pp2020();
    std::fs::remove_file(f.path("sample_submission.csv")).unwrap();
    let (d, _) = f.load(Split::Train).unwrap();
    assert_eq!(d.classes, ["rust", "scab", "healthy", "multiple_diseases"]);
    assert_eq!(sample(&d, "Train_0").target, [0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn describe_counts_classes_and_image_sizes_when_probed() {
    let f = pp2020();
    let (d, _) = f.load_with(Split::Train, false, true).unwrap();
    let desc = dataset::describe(&d);
    assert_eq!(desc.samples, 5);
    assert_eq!(
        desc.class_counts,
        [("healthy".to_string(), 2), ("multiple_diseases".into(), 1), ("rust".into(), 1), ("scab".into(), 1)]
    );
    let images = desc.images.clone().expect("probed");
    assert_eq!(images.probed, 5);
    assert_eq!((images.width.min, images.width.median, images.width.max), (8, 24, 40));
    assert_eq!((images.height.min, images.height.max), (16, 16));
    assert_eq!(images.formats, [(Format::Jpeg, 5)]);
    let text = desc.to_string();
    assert!(text.contains("multiple_diseases") && text.contains("JPEG 5"), "{text}");

    let (unprobed, _) = f.load(Split::Train).unwrap();
    assert!(dataset::describe(&unprobed).images.is_none());
}

#[test]
fn single_label_layout_appends_jpg_only_when_the_value_has_no_extension() {
    let f = Fixture::new();
    f.file("train.csv", "image,label\nabc.jpg,cat\ndef,dog\nghi.png,cat\n")
        .jpeg("images/abc.jpg")
        .jpeg("images/def.jpg")
        .png("images/ghi.png", 4, 4);
    let (d, _) = f.load_with(Split::Train, false, true).unwrap();
    assert_eq!(d.layout, Layout::SingleLabel);
    assert_eq!(d.task, Task::MultiClass);
    assert_eq!(d.classes, ["cat", "dog"]);
    assert_eq!(sample(&d, "abc.jpg").path, f.path("images/abc.jpg"));
    assert_eq!(sample(&d, "def").path, f.path("images/def.jpg"));
    assert_eq!(sample(&d, "def").target, [0.0, 1.0]);
    assert_eq!(sample(&d, "ghi.png").info.unwrap().format, Format::Png);
}

#[test]
fn multi_label_layout_reads_plant_pathology_2021() {
    let f = Fixture::new();
    f.file(
        "train.csv",
        "image,labels\n\
         800113bb65efe69e.jpg,healthy\n\
         8002cb321f8bfcdf.jpg,scab frog_eye_leaf_spot complex\n\
         80070f7fb5e2ccaa.jpg,scab\n\
         80077517781fb94f.jpg,  rust  complex \n",
    )
    .file("sample_submission.csv", "image,labels\n85f8cb619c66b863.jpg,healthy\n");
    for id in ["800113bb65efe69e", "8002cb321f8bfcdf", "80070f7fb5e2ccaa", "80077517781fb94f"] {
        f.jpeg(&format!("train_images/{id}.jpg"));
    }
    f.jpeg("test_images/85f8cb619c66b863.jpg");
    let (d, _) = f.load(Split::Train).unwrap();
    assert_eq!(d.layout, Layout::MultiLabel);
    assert_eq!(d.task, Task::MultiLabel);
    assert_eq!(d.classes, ["complex", "frog_eye_leaf_spot", "healthy", "rust", "scab"]);
    assert_eq!(sample(&d, "8002cb321f8bfcdf.jpg").target, [1.0, 1.0, 0.0, 0.0, 1.0]);
    assert_eq!(sample(&d, "80077517781fb94f.jpg").target, [1.0, 0.0, 0.0, 1.0, 0.0]);
    assert_eq!(sample(&d, "80070f7fb5e2ccaa.jpg").path, f.path("train_images/80070f7fb5e2ccaa.jpg"));

    // The test split: sample_submission.csv lists the ids, test_images/ holds them.
    let (test, _) = f.load(Split::Test).unwrap();
    assert_eq!(test.classes, d.classes);
    assert_eq!(test.samples.len(), 1);
    assert_eq!(test.samples[0].path, f.path("test_images/85f8cb619c66b863.jpg"));
    assert!(test.samples[0].target.is_empty());
}

#[test]
fn folder_layout_reads_class_folders_in_the_root() {
    let f = Fixture::new();
    f.jpeg("healthy/a.jpg").jpeg("healthy/b.JPEG").png("rust/c.png", 4, 4).file("rust/notes.txt", "x");
    let (d, report) = f.load(Split::Train).unwrap();
    assert_eq!(d.layout, Layout::Folders);
    assert_eq!(d.classes, ["healthy", "rust"]);
    assert_eq!(
        d.samples.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["healthy/a.jpg", "healthy/b.JPEG", "rust/c.png"]
    );
    assert_eq!(sample(&d, "rust/c.png").target, [0.0, 1.0]);
    assert_eq!(sample(&d, "rust/c.png").path, f.path("rust/c.png"));
    assert!(report.notes.iter().any(|n| n.contains("ignored 1")), "the text file is mentioned: {report:?}");
}

#[test]
fn folder_layout_reads_train_and_test_folders() {
    let f = Fixture::new();
    f.jpeg("train/scab/1.jpg").jpeg("train/rust/2.jpg").jpeg("test/9.jpg").jpeg("test/rust/8.jpg");
    let (d, _) = f.load(Split::Train).unwrap();
    assert_eq!(d.classes, ["rust", "scab"]);
    assert_eq!(sample(&d, "scab/1.jpg").path, f.path("train/scab/1.jpg"));
    let (test, _) = f.load(Split::Test).unwrap();
    assert_eq!(test.classes, ["rust", "scab"]);
    assert_eq!(sample(&test, "9.jpg").target, Vec::<f32>::new(), "loose test images are unlabelled");
    assert_eq!(sample(&test, "rust/8.jpg").target, [1.0, 0.0], "test class folders are labelled");
}

#[test]
fn manifest_overrides_layout_template_and_class_order() {
    let f = Fixture::new();
    f.file(
        "dataset.toml",
        "layout = \"onehot\"\n\
         train = \"labels/train.csv\"\n\
         test = \"labels/test.csv\"\n\
         images = \"pics/{site}/{image_id}.png\"\n\
         test_images = \"hidden/{image_id}.png\"\n\
         classes = [\"scab\", \"healthy\"]\n",
    )
    .file("labels/train.csv", "image_id,site,healthy,scab\na,north,1,0\nb,south,0,1\n")
    .file("labels/test.csv", "image_id\nt\n")
    .png("pics/north/a.png", 2, 2)
    .png("pics/south/b.png", 2, 2)
    .png("hidden/t.png", 2, 2);
    let (d, report) = f.load(Split::Train).unwrap();
    assert_eq!(d.classes, ["scab", "healthy"]);
    assert_eq!(sample(&d, "a").target, [0.0, 1.0]);
    assert_eq!(sample(&d, "b").path, f.path("pics/south/b.png"));
    assert!(report.notes.iter().any(|n| n.contains("ignored columns site")), "{report:?}");
    let (test, _) = f.load(Split::Test).unwrap();
    assert_eq!(test.samples[0].path, f.path("hidden/t.png"));
}

#[test]
fn manifest_can_make_onehot_columns_multi_label() {
    let f = Fixture::new();
    f.file("dataset.toml", "task = \"multi-label\"\n")
        .file("train.csv", "image_id,rust,scab\na,1,1\nb,0,1\nc,1,0\n")
        .jpegs(&["images/a.jpg", "images/b.jpg", "images/c.jpg"]);
    let (d, _) = f.load(Split::Train).unwrap();
    assert_eq!(d.task, Task::MultiLabel);
    assert_eq!(sample(&d, "a").target, [1.0, 1.0]);
}

#[test]
fn a_malformed_manifest_is_an_error_naming_it() {
    let f = pp2020();
    f.file("dataset.toml", "layout = \"spreadsheet\"\n");
    let err = f.load(Split::Train).unwrap_err();
    assert!(matches!(err, DatasetError::Manifest { .. }), "{err}");
    assert!(err.to_string().contains("dataset.toml"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// Problems: every one located, all reported together.

#[test]
fn every_row_problem_in_one_file_is_reported_together() {
    let f = Fixture::new();
    f.file(
        "train.csv",
        "image_id,healthy,rust,scab\n\
         a,1,0,0\n\
         b,1,1,0\n\
         c,0,0,0\n\
         d,0,2,0\n\
         e,0,yes,1\n\
         a,0,1,0\n\
         f,0,0\n\
         g,0,0,1\n\
         h,0,1,0\n",
    );
    for id in ["a", "b", "c", "d", "e", "f", "h"] {
        f.jpeg(&format!("images/{id}.jpg"));
    }
    let train = f.path("train.csv");
    let problems = f.problems();
    let p = expect(&problems, &train, Some(3), Some("healthy,rust"), "not one-hot (sum 2)");
    assert_eq!(p.to_string(), format!("{}:3:healthy,rust: row is not one-hot (sum 2)", train.display()));
    expect(&problems, &train, Some(4), None, "not one-hot (sum 0)");
    expect(&problems, &train, Some(5), Some("rust"), "value '2' is not 0 or 1");
    expect(&problems, &train, Some(6), Some("rust"), "value 'yes' is not 0 or 1");
    expect(&problems, &train, Some(7), Some("image_id"), "duplicate id 'a' (first seen on row 2)");
    expect(&problems, &train, Some(8), None, "row has 3 fields; the header has 4");
    expect(&problems, &train, Some(9), Some("image_id"), "images/g.jpg does not exist");
    assert_eq!(problems.len(), 7, "{problems:#?}");
    let err = f.load(Split::Train).unwrap_err().to_string();
    assert!(err.starts_with("7 problems:"), "{err}");
    assert_eq!(err.lines().count(), 8, "{err}");
}

#[test]
fn a_missing_image_is_found_without_probing_and_an_unreadable_one_with_probing() {
    let f = pp2020();
    f.bytes("images/Train_1.jpg", b"this is not a jpeg");
    std::fs::remove_file(f.path("images/Train_4.jpg")).unwrap();
    let train = f.path("train.csv");
    let quick = f.problems();
    assert_eq!(quick.len(), 1, "existence only: {quick:#?}");
    expect(&quick, &train, Some(6), Some("image_id"), "does not exist");
    let probed = f.problems_with(true);
    assert_eq!(probed.len(), 2, "{probed:#?}");
    expect(&probed, &train, Some(3), Some("image_id"), "unreadable image");
    expect(&probed, &train, Some(6), Some("image_id"), "does not exist");
}

#[test]
fn unknown_labels_are_reported_against_the_manifest_classes() {
    let f = Fixture::new();
    f.file("dataset.toml", "classes = [\"cat\", \"dog\"]\n")
        .file("train.csv", "image,label\na.jpg,cat\nb.jpg,dgo\nc.jpg,dog\nd.jpg,\n")
        .jpegs(&["images/a.jpg", "images/b.jpg", "images/c.jpg", "images/d.jpg"]);
    let train = f.path("train.csv");
    let problems = f.problems();
    expect(&problems, &train, Some(3), Some("label"), "unknown label 'dgo'");
    expect(&problems, &train, Some(5), Some("label"), "empty label");
    assert_eq!(problems.len(), 2, "{problems:#?}");

    let m = Fixture::new();
    m.file("dataset.toml", "classes = [\"healthy\", \"scab\", \"rust\"]\n")
        .file("train.csv", "image,labels\na.jpg,scab rust\nb.jpg,scab powdery_mildew\nc.jpg,healthy\nd.jpg,   \n")
        .jpegs(&["train_images/a.jpg", "train_images/b.jpg", "train_images/c.jpg", "train_images/d.jpg"]);
    let problems = m.problems();
    let train = m.path("train.csv");
    expect(&problems, &train, Some(3), Some("labels"), "unknown label 'powdery_mildew'");
    expect(&problems, &train, Some(5), Some("labels"), "no labels");
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

#[test]
fn a_missing_id_column_is_a_header_problem() {
    let f = Fixture::new();
    f.file("train.csv", "id,healthy,rust\na,1,0\n");
    let problems = f.problems();
    expect(&problems, &f.path("train.csv"), Some(1), Some("image_id"), "no image_id column");

    let s = Fixture::new();
    s.file("train.csv", "file,label\na.jpg,cat\n");
    expect(&s.problems(), &s.path("train.csv"), Some(1), Some("image"), "no image column");
}

#[test]
fn sample_submission_columns_must_equal_the_train_classes() {
    let f = pp2020();
    f.file("sample_submission.csv", "image_id,healthy,rust,scab,powdery\n");
    let problems = f.problems();
    let p = expect(&problems, &f.path("sample_submission.csv"), Some(1), None, "differ from the classes");
    assert!(p.message.contains("missing multiple_diseases") && p.message.contains("extra powdery"), "{p}");
    assert_eq!(problems.len(), 1);
}

#[test]
fn a_test_table_needs_an_id_column_and_may_carry_extra_columns() {
    let f = pp2020();
    f.file("test.csv", "name\nTest_0\n");
    let err = f.load(Split::Test).unwrap_err();
    let DatasetError::Invalid(problems) = err else { panic!("{err}") };
    expect(&problems, &f.path("test.csv"), Some(1), Some("image_id"), "no image_id column");

    f.file("test.csv", "image_id,width\nTest_0,2048\n");
    let (test, report) = f.load(Split::Test).unwrap();
    assert_eq!(test.samples.len(), 1);
    assert!(report.notes.iter().any(|n| n.contains("ignored columns width")), "{report:?}");
}

#[test]
fn a_template_naming_an_unknown_column_is_a_manifest_problem() {
    let f = pp2020();
    f.file("dataset.toml", "images = \"images/{id}.jpg\"\n");
    let problems = f.problems();
    expect(&problems, &f.path("dataset.toml"), None, Some("id"), "names a column the table does not have");
}

#[test]
fn an_empty_dataset_and_a_class_without_examples_are_reported() {
    let f = Fixture::new();
    f.file("train.csv", "image_id,healthy,rust\n");
    expect(&f.problems(), &f.path("train.csv"), None, None, "no samples");

    let g = Fixture::new();
    g.file("train.csv", "image_id,healthy,rust,scab\na,1,0,0\nb,0,0,1\n").jpeg("images/a.jpg").jpeg("images/b.jpg");
    let problems = g.problems();
    let p = expect(&problems, &g.path("train.csv"), None, Some("rust"), "class has no examples");
    assert_eq!(p.to_string(), format!("{}: column rust: class has no examples", g.path("train.csv").display()));
    assert_eq!(problems.len(), 1);

    let h = Fixture::new();
    h.file("dataset.toml", "classes = [\"cat\", \"dog\", \"owl\"]\n")
        .file("train.csv", "image,label\na.jpg,cat\nb.jpg,dog\n");
    h.jpeg("images/a.jpg").jpeg("images/b.jpg");
    expect(&h.problems(), &h.path("train.csv"), None, Some("owl"), "class has no examples");
}

#[test]
fn folder_problems_name_the_image_file() {
    let f = Fixture::new();
    f.jpeg("train/healthy/a.jpg").bytes("train/healthy/broken.jpg", b"nope").jpeg("train/rust/b.jpg");
    let problems = f.problems_with(true);
    expect(&problems, &f.path("train/healthy/broken.jpg"), None, None, "unreadable image");
    assert_eq!(problems.len(), 1);

    let g = Fixture::new();
    g.file("dataset.toml", "classes = [\"healthy\"]\n").jpeg("train/healthy/a.jpg").jpeg("train/rust/b.jpg");
    expect(&g.problems(), &g.path("train/rust"), None, None, "not one of the classes");
}

#[test]
fn skip_bad_drops_and_counts_bad_rows() {
    let f = pp2020();
    // Bad: Train_1 sets two classes, Train_9 has no image, the second Train_0 repeats an id.
    let rows = ["Train_0,1,0,0,0", "Train_1,0,0,1,1", "Train_2,0,0,0,1", "Train_3,0,1,0,0", "Train_9,0,0,1,0"];
    let rows = [&rows[..], &["Train_4,0,0,1,0", "Train_0,1,0,0,0"]].concat();
    f.file("train.csv", &format!("image_id,healthy,multiple_diseases,rust,scab\n{}\n", rows.join("\n")));
    let (d, report) = f.load_with(Split::Train, true, false).unwrap();
    assert_eq!(
        d.samples.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["Train_0", "Train_2", "Train_3", "Train_4"]
    );
    assert_eq!(report.skipped.len(), 3);
    let ids: Vec<Option<&str>> = report.skipped.iter().map(|s| s.id.as_deref()).collect();
    assert_eq!(ids, [Some("Train_1"), Some("Train_9"), Some("Train_0")]);
    let train = f.path("train.csv");
    let skipped = report.skipped_problems();
    assert_eq!(skipped.len(), 3);
    expect(&skipped, &train, Some(3), Some("rust,scab"), "not one-hot");
    expect(&skipped, &train, Some(6), Some("image_id"), "does not exist");
    expect(&skipped, &train, Some(8), Some("image_id"), "duplicate id 'Train_0'");
}

#[test]
fn skip_bad_still_fails_on_header_problems_emptiness_and_lost_classes() {
    // The only multiple_diseases row is bad: dropping it leaves the class without examples.
    let f = pp2020();
    f.file(
        "train.csv",
        "image_id,healthy,multiple_diseases,rust,scab\nTrain_0,1,0,0,0\nTrain_1,0,0,1,0\nTrain_2,0,0,0,1\nTrain_3,0,1,0,1\n",
    );
    let Err(DatasetError::Invalid(problems)) = f.load_with(Split::Train, true, false) else { panic!() };
    expect(&problems, &f.path("train.csv"), None, Some("multiple_diseases"), "class has no examples");

    let g = Fixture::new();
    g.file("train.csv", "image_id,healthy\na,1\n");
    g.file("sample_submission.csv", "image_id,sick\n");
    assert!(matches!(g.load_with(Split::Train, true, false), Err(DatasetError::Invalid(_))));

    let h = Fixture::new();
    h.file("train.csv", "image_id,healthy\na,1\nb,1\n");
    let Err(DatasetError::Invalid(problems)) = h.load_with(Split::Train, true, false) else { panic!() };
    expect(&problems, &h.path("train.csv"), None, None, "no samples left after skipping 2 bad rows");
}

#[test]
fn a_folder_without_any_dataset_is_undetected() {
    let f = Fixture::new();
    f.file("README", "nothing here");
    assert!(matches!(f.load(Split::Train), Err(DatasetError::Undetected { .. })));
    let g = pp2020();
    std::fs::remove_file(g.path("test.csv")).unwrap();
    std::fs::remove_file(g.path("sample_submission.csv")).unwrap();
    assert!(matches!(g.load(Split::Test), Err(DatasetError::NoTestSplit { .. })));
}

// ---------------------------------------------------------------------------------------------------------
// Folds.

/// A multi-class dataset with the given class sizes (no files needed: folds only read targets).
fn multiclass(sizes: &[usize]) -> Dataset {
    let classes: Vec<String> = (0..sizes.len()).map(|c| format!("c{c}")).collect();
    let mut samples = Vec::new();
    for (c, &n) in sizes.iter().enumerate() {
        for i in 0..n {
            let mut target = vec![0.0; sizes.len()];
            target[c] = 1.0;
            samples.push(Sample::new(format!("s{c}_{i}"), format!("images/s{c}_{i}.jpg"), target));
        }
    }
    // Interleave so classes are not contiguous in the table.
    samples.shuffle(&mut ChaCha8Rng::seed_from_u64(99));
    Dataset { root: ".".into(), layout: Layout::OneHot, task: Task::MultiClass, split: Split::Train, classes, samples }
}

#[test]
fn multiclass_folds_hold_every_class_within_one_of_exact() {
    // Plant Pathology 2020's train counts: healthy 516, multiple_diseases 91, rust 622, scab 592.
    let d = multiclass(&[516, 91, 622, 592]);
    for k in [2, 3, 5, 7] {
        let folds = folds::assign(&d.targets(), k, 42).unwrap();
        assert_eq!(folds.len(), d.samples.len());
        let counts = folds::class_counts(&d.targets(), &folds, k);
        for (c, &n) in [516usize, 91, 622, 592].iter().enumerate() {
            let exact = n as f64 / k as f64;
            for fold in &counts {
                assert!((fold[c] as f64 - exact).abs() < 1.0, "k={k} class {c}: {counts:?}");
            }
        }
        let sizes: Vec<usize> = counts.iter().map(|f| f.iter().sum()).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "k={k}: {sizes:?}");
    }
}

#[test]
fn folds_are_deterministic_for_a_seed_and_differ_between_seeds() {
    let d = multiclass(&[30, 12, 40]);
    let a = folds::assign(&d.targets(), 5, 7).unwrap();
    assert_eq!(a, folds::assign(&d.targets(), 5, 7).unwrap());
    assert_ne!(a, folds::assign(&d.targets(), 5, 8).unwrap());
    let m = multilabel(300, 3);
    let a = folds::assign(&m.targets(), 4, 7).unwrap();
    assert_eq!(a, folds::assign(&m.targets(), 4, 7).unwrap());
    assert_ne!(a, folds::assign(&m.targets(), 4, 8).unwrap());
}

/// A multi-label dataset with labels of very different frequencies that co-occur.
fn multilabel(n: usize, seed: u64) -> Dataset {
    let classes: Vec<String> = ["healthy", "scab", "rust", "complex", "frog_eye", "powdery"].map(String::from).into();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let samples = (0..n)
        .map(|i| {
            let mut t = vec![0.0f32; 6];
            if rng.random_bool(0.3) {
                t[0] = 1.0;
            } else {
                t[1] = if rng.random_bool(0.5) { 1.0 } else { 0.0 };
                t[2] = if rng.random_bool(0.3) { 1.0 } else { 0.0 };
                t[3] = if t[1] + t[2] > 1.5 || rng.random_bool(0.08) { 1.0 } else { 0.0 };
                t[4] = if t[1] > 0.5 && rng.random_bool(0.3) { 1.0 } else { 0.0 };
                t[5] = if rng.random_bool(0.05) { 1.0 } else { 0.0 };
                if t.iter().all(|&v| v == 0.0) {
                    t[1] = 1.0;
                }
            }
            Sample::new(format!("m{i}"), format!("train_images/m{i}.jpg"), t)
        })
        .collect();
    Dataset {
        root: ".".into(),
        layout: Layout::MultiLabel,
        task: Task::MultiLabel,
        split: Split::Train,
        classes,
        samples,
    }
}

/// The largest |count − n_label/k| over all folds and labels.
fn worst_deviation(d: &Dataset, folds: &[usize], k: usize) -> f64 {
    let totals = d.class_counts();
    let counts = folds::class_counts(&d.targets(), folds, k);
    let mut worst = 0.0f64;
    for fold in &counts {
        for (c, &n) in fold.iter().enumerate() {
            worst = worst.max((n as f64 - totals[c] as f64 / k as f64).abs());
        }
    }
    worst
}

#[test]
fn iterative_stratification_keeps_label_proportions_close() {
    let k = 5;
    const TOLERANCE: f64 = 1.5;
    let d = multilabel(600, 1);
    let totals = d.class_counts();
    assert!(totals.iter().all(|&n| n >= 20), "every label is present: {totals:?}");
    for seed in 0..5 {
        let folds = folds::assign(&d.targets(), k, seed).unwrap();
        let worst = worst_deviation(&d, &folds, k);
        assert!(worst <= TOLERANCE, "seed {seed}: a label is {worst} samples off its share");
        let mut sizes = vec![0usize; k];
        for &f in &folds {
            sizes[f] += 1;
        }
        // The algorithm balances labels first; fold sizes stay within a few percent.
        assert!(sizes.iter().all(|&s| s.abs_diff(600 / k) <= 12), "seed {seed}: fold sizes {sizes:?}");
    }
    // The tolerance has teeth: plain random splits break it.
    let mut broken = 0;
    for seed in 0..5 {
        let mut order: Vec<usize> = (0..600).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut random = vec![0; 600];
        for (pos, &i) in order.iter().enumerate() {
            random[i] = pos % k;
        }
        if worst_deviation(&d, &random, k) > TOLERANCE {
            broken += 1;
        }
    }
    assert!(broken >= 4, "random splits should usually exceed the tolerance ({broken}/5 did)");
}

#[test]
fn fold_counts_must_fit_the_data_and_need_labels() {
    let d = multiclass(&[3, 2]);
    assert!(matches!(folds::assign(&d.targets(), 1, 0), Err(FoldError::BadK { k: 1, n: 5 })));
    assert!(matches!(folds::assign(&d.targets(), 6, 0), Err(FoldError::BadK { k: 6, n: 5 })));
    assert!(folds::assign(&d.targets(), 5, 0).is_ok());
    let mut unlabelled = d.clone();
    unlabelled.samples[0].target.clear();
    assert!(matches!(folds::assign(&unlabelled.targets(), 2, 0), Err(FoldError::Unlabelled { .. })));
}

#[test]
fn folds_csv_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let d = multiclass(&[20, 7, 13]);
    let folds = folds::assign(&d.targets(), 4, 3).unwrap();
    let path = dir.path().join("folds.csv");
    folds::write_csv(&path, &d.ids().iter().map(String::as_str).collect::<Vec<_>>(), &folds).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("image_id,fold\n"), "{text}");
    assert_eq!(folds::read_csv(&path, &d.ids()).unwrap(), folds);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
}

#[test]
fn folds_csv_errors_name_file_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = multiclass(&[2, 2]);
    let ids: Vec<&str> = d.samples.iter().map(|s| s.id.as_str()).collect();
    let path = dir.path().join("folds.csv");
    std::fs::write(
        &path,
        format!("image_id,fold\n{},0\nnobody,1\n{},x\n{},99\n{},1\n", ids[0], ids[1], ids[2], ids[0]),
    )
    .unwrap();
    let Err(FoldError::File(FileError::Invalid(problems))) = folds::read_csv(&path, &d.ids()) else {
        panic!("expected problems")
    };
    expect(&problems, &path, Some(3), Some("image_id"), "unknown id 'nobody'");
    expect(&problems, &path, Some(4), Some("fold"), "'x' is not a non-negative integer");
    expect(&problems, &path, Some(5), Some("fold"), "fold 99 is out of range");
    expect(&problems, &path, Some(6), Some("image_id"), "first on row 2");
    for id in &ids[1..] {
        expect(&problems, &path, None, Some("image_id"), &format!("missing id '{id}'"));
    }
    assert_eq!(problems.len(), 7, "{problems:#?}");

    std::fs::write(&path, "image,split\na,0\n").unwrap();
    let Err(FoldError::File(FileError::Invalid(problems))) = folds::read_csv(&path, &d.ids()) else { panic!() };
    expect(&problems, &path, Some(1), Some("fold"), "no fold column");

    let gap = format!("image_id,fold\n{},0\n{},0\n{},2\n{},2\n", ids[0], ids[1], ids[2], ids[3]);
    std::fs::write(&path, gap).unwrap();
    let Err(FoldError::File(FileError::Invalid(problems))) = folds::read_csv(&path, &d.ids()) else { panic!() };
    expect(&problems, &path, None, Some("fold"), "folds 1 have no samples");
}

// ---------------------------------------------------------------------------------------------------------
// CSV edge cases.

#[test]
fn a_byte_order_mark_and_crlf_line_ends_are_tolerated() {
    let f = Fixture::new();
    f.file("train.csv", "\u{feff}image_id,healthy,rust\r\na,1,0\r\nb,0,1\r\n")
        .jpeg("images/a.jpg")
        .jpeg("images/b.jpg");
    let (d, _) = f.load(Split::Train).unwrap();
    assert_eq!(d.classes, ["healthy", "rust"]);
    assert_eq!(sample(&d, "b").target, [0.0, 1.0]);
}

#[test]
fn a_column_named_twice_is_a_header_problem() {
    let f = Fixture::new();
    f.file("train.csv", "image_id,healthy,rust,healthy\na,1,0,0\n").jpeg("images/a.jpg");
    expect(&f.problems(), &f.path("train.csv"), Some(1), Some("healthy"), "appears twice");
}
