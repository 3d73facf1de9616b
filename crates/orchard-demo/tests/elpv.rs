//! The ELPV import on the real data set: PyPI's `elpv-dataset` package, found through `ORCHARD_ELPV_DIR`,
//! imported and read back with `orchard_data`'s dataset loader.

use std::path::PathBuf;

use orchard_data::dataset::{self, ImageCheck, LoadOptions, Split};
use orchard_data::decode::Format;
use orchard_demo::elpv;

#[test]
fn elpv_import_of_the_installed_package() {
    let Some(from) = std::env::var_os("ORCHARD_ELPV_DIR") else {
        panic!(
            "ORCHARD_ELPV_DIR is not set. Install the data set and point the variable at its data folder:\n  \
             python -m pip install elpv-dataset==1.0.0.post1\n  \
             export ORCHARD_ELPV_DIR=$(python -c 'import elpv_dataset, os; \
             print(os.path.join(os.path.dirname(elpv_dataset.__file__), \"data\"))')"
        );
    };
    let from = PathBuf::from(from);
    assert!(from.join("labels.csv").is_file(), "ORCHARD_ELPV_DIR={} has no labels.csv", from.display());
    let out = tempfile::tempdir().unwrap();
    let summary = elpv::import(&from, out.path(), elpv::DEFAULT_TEST_FRACTION, 2020).unwrap();
    assert_eq!(summary.total(), 2624);
    assert_eq!(summary.class_counts, [1508, 295, 106, 715]);
    assert_eq!(summary.module_counts, [("mono".to_string(), 1074), ("poly".to_string(), 1550)]);
    assert_eq!(summary.linked + summary.copied, 2624);
    for c in 0..4 {
        let share = summary.test_counts[c] as f64 / summary.class_counts[c] as f64;
        assert!((share - 0.25).abs() < 0.02, "class {c}: test share {share}");
    }

    let (train, _) =
        dataset::load(out.path(), Split::Train, &LoadOptions { skip_bad: false, images: ImageCheck::Decode }).unwrap();
    assert_eq!(train.classes, elpv::CLASSES);
    assert_eq!(train.samples.len(), summary.train());
    assert_eq!(train.class_counts(), summary.train_counts);
    let desc = dataset::describe(&train);
    let images = desc.images.unwrap();
    assert_eq!((images.width.min, images.width.max, images.height.min, images.height.max), (300, 300, 300, 300));
    assert_eq!(images.formats, [(Format::Png, summary.train())]);

    let (test, _) = dataset::load(out.path(), Split::Test, &LoadOptions::default()).unwrap();
    assert_eq!(test.samples.len(), summary.test());
    assert!(test.samples.iter().all(|s| s.target.is_empty() && s.path.extension().unwrap() == "png"));

    // test_labels.csv is a one-hot table over the test ids, readable with the train.csv machinery.
    let truth = std::fs::read_to_string(out.path().join("test_labels.csv")).unwrap();
    assert_eq!(truth.lines().next().unwrap(), "image_id,functional,possibly_defective,likely_defective,defective");
    assert_eq!(truth.lines().count(), summary.test() + 1);

    // The split is deterministic for a seed.
    let again = tempfile::tempdir().unwrap();
    let second = elpv::import(&from, again.path(), elpv::DEFAULT_TEST_FRACTION, 2020).unwrap();
    assert_eq!(second, elpv::ImportSummary { out: again.path().to_path_buf(), ..summary.clone() });
    assert_eq!(
        std::fs::read_to_string(out.path().join("test.csv")).unwrap(),
        std::fs::read_to_string(again.path().join("test.csv")).unwrap()
    );
}
