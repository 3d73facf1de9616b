//! The synthetic Plant Pathology dataset must need a model that looks at local texture.
//!
//! `orchard_demo::synth` hides its classes in small lesions placed anywhere on the leaf, under lighting
//! that swamps an image's mean colour, so that a demo or a test trained on it shows a real model at
//! work. This test guards the easy half of that calibration: a logistic regression on 16×16
//! thumbnails (what averaging the picture keeps) must score a mean one-vs-rest ROC AUC below 0.8. A
//! control run of the same regression on features that do carry the label must score above 0.9, so a
//! broken pipeline (labels misaligned, probabilities of the wrong class, AUC miscomputed) fails the
//! test instead of passing it. The other half, that a CNN at 128×128 pixels does solve it, needs
//! libtorch and is checked where the training loop is.
//!
//! scikit-learn runs in the Python named by `ORCHARD_PYTHON` (scripts/test.sh sets it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use orchard_data::decode::{decode_file, DecodeOptions};
use orchard_data::resize::{resize, Filter};
use orchard_demo::synth::{class_counts, generate, SynthConfig, CLASSES};

const IMAGES: usize = 600;
const THUMBNAIL: usize = 16;

fn python() -> PathBuf {
    PathBuf::from(
        std::env::var("ORCHARD_PYTHON").expect(
            "ORCHARD_PYTHON must name a Python with numpy and scikit-learn (scripts/test.sh sets it; or `source scripts/setup.sh`)",
        ),
    )
}

/// Five-fold cross-validated logistic regression on standardised features, scored by mean one-vs-rest
/// ROC AUC; prints one JSON line.
const SCRIPT: &str = r#"
import sys, json, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.preprocessing import StandardScaler

data = np.loadtxt(sys.argv[1], delimiter=",")
y, X = data[:, 0].astype(int), data[:, 1:]

def mean_auc(features):
    p = cross_val_predict(LogisticRegression(max_iter=2000), StandardScaler().fit_transform(features), y, cv=5, method="predict_proba")
    per_class = [roc_auc_score(y == k, p[:, k]) for k in range(4)]
    return float(np.mean(per_class)), per_class

# The control: the same thumbnails plus noisy copies of the one-hot label.
control = np.hstack([X, np.eye(4)[y] + np.random.default_rng(0).normal(0.0, 0.3, (len(y), 4))])
thumbnails, per_class = mean_auc(X)
control_auc, control_per_class = mean_auc(control)
print(json.dumps({"thumbnails": thumbnails, "per_class": per_class, "control": control_auc, "control_per_class": control_per_class}))
"#;

/// The labels of `train.csv`, in row order, with the image ids.
fn read_labels(path: &Path) -> Vec<(String, usize)> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    assert_eq!(reader.headers().unwrap().iter().skip(1).collect::<Vec<_>>(), CLASSES);
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            let hot: Vec<usize> = (0..4).filter(|&c| &record[1 + c] == "1").collect();
            assert_eq!(hot.len(), 1, "{record:?}");
            (record[0].to_string(), hot[0])
        })
        .collect()
}

/// The number following `"key":` in a flat JSON object.
fn json_number(json: &str, key: &str) -> f64 {
    let at = json.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key} in {json}")) + key.len() + 3;
    let rest = json[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().unwrap_or_else(|e| panic!("{key} in {json}: {e}"))
}

#[test]
fn a_linear_model_on_16x16_thumbnails_cannot_tell_the_classes_apart() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    let config =
        SynthConfig { out: out.clone(), train: IMAGES, test: 0, width: 160, height: 107, seed: 2020, quality: 90 };
    let started = std::time::Instant::now();
    let summary = generate(&config).unwrap();
    eprintln!("generated {IMAGES} images in {:.1?}", started.elapsed());
    assert_eq!(summary.train_counts, class_counts(IMAGES));

    // Thumbnails by area average, one row per image: the label, then 16×16×3 pixel values.
    let labels = read_labels(&out.join("train.csv"));
    assert_eq!(labels.len(), IMAGES);
    let features_path = dir.path().join("features.csv");
    let mut features = std::io::BufWriter::new(std::fs::File::create(&features_path).unwrap());
    let mut thumbnails = Vec::new();
    for (id, label) in &labels {
        let image = decode_file(&out.join("images").join(format!("{id}.jpg")), &DecodeOptions::default()).unwrap();
        assert_eq!((image.width, image.height), (160, 107));
        let thumbnail = resize(&image, THUMBNAIL, THUMBNAIL, Filter::Box);
        let row: Vec<String> =
            std::iter::once(label.to_string()).chain(thumbnail.data.iter().map(u8::to_string)).collect();
        writeln!(features, "{}", row.join(",")).unwrap();
        thumbnails.push(thumbnail.data);
    }
    features.flush().unwrap();
    drop(features);
    // The thumbnails are pictures, not a constant: the pixel at the centre varies across images.
    let centre = (THUMBNAIL / 2 * THUMBNAIL + THUMBNAIL / 2) * 3 + 1;
    let greens: std::collections::BTreeSet<u8> = thumbnails.iter().map(|t| t[centre]).collect();
    assert!(greens.len() > 50, "only {} distinct centre values in {IMAGES} thumbnails", greens.len());

    eprintln!("thumbnails after {:.1?}", started.elapsed());
    // One BLAS thread: the test harness already runs tests side by side, and oversubscribed BLAS threads
    // make this small regression tens of times slower.
    let output = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&features_path)
        .envs([("OMP_NUM_THREADS", "1"), ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "scikit-learn failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let thumbnails_auc = json_number(&stdout, "thumbnails");
    let control_auc = json_number(&stdout, "control");
    eprintln!("scikit-learn after {:.1?}: {}", started.elapsed(), stdout.trim());

    assert!(
        control_auc > 0.9,
        "the control (thumbnails + noisy labels) scored only {control_auc:.3}: the pipeline is broken\n{stdout}"
    );
    assert!(
        thumbnails_auc < 0.8,
        "logistic regression on {THUMBNAIL}x{THUMBNAIL} thumbnails scored a mean AUC of {thumbnails_auc:.3}: the classes show in the \
         mean colour, and the dataset no longer needs a model that sees the lesions\n{stdout}"
    );
}
