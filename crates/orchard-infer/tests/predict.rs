//! Predictions from real runs trained on `orchard data synth` images: out-of-fold predictions reproduce the
//! run's own `oof.csv`, fold models average on the test split, dihedral TTA is exactly invariant on a
//! transformed image set, and flips TTA does not lower the out-of-fold AUC of a model trained with flips.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use orchard_data::decode::{decode_file, DecodeOptions};
use orchard_data::image::{Dihedral, RgbImage};
use orchard_demo::synth::{generate, SynthConfig};
use orchard_files::Predictions;
use orchard_files::TrainConfig;
use orchard_infer::model::RunModel;
use orchard_infer::predict::{predict, Options, Target};
use orchard_infer::tta::Tta;
use orchard_metrics::schedule::Schedule;
use orchard_torch::Layout;
use orchard_train::progress::Silent;
use orchard_train::train;
use tch::{Device, Kind, Tensor};

/// Training draws from libtorch's global generator; tests that train take turns.
static TORCH_RNG: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn synth(dir: &Path, train: usize, test: usize, (width, height): (usize, usize), seed: u64) -> PathBuf {
    let out = dir.join("data");
    generate(&SynthConfig { out: out.clone(), train, test, width, height, seed, quality: 90 }).unwrap();
    out
}

/// EfficientNet-B0 from scratch, constant learning rate, EMA, K folds, as a run's `config.toml` says it.
fn config(data: &Path, (h, w): (usize, usize), epochs: u32, folds: usize, fold: usize) -> TrainConfig {
    TrainConfig::from_toml(&format!(
        "epochs = {epochs}\nbatch = 8\neval_batch = 5\nworkers = 2\nema = 0.9\nbatch_norm_momentum = 0.9\n\
         [data]\ndir = {data:?}\nsize = [{h}, {w}]\nfolds = {folds}\nfold = {fold}\n\
         [schedule.function]\nkind = \"constant\"\nlr = 0.001\n"
    ))
    .unwrap()
}

fn mean_auc(data: &Path, p: &Predictions) -> f64 {
    let truth = orchard_data::dataset::read_truth(data).unwrap();
    assert_eq!(truth.classes, p.classes);
    let row = |id: &String| truth.ids.iter().position(|t| t == id).unwrap();
    let t: Vec<f64> = p.ids.iter().flat_map(|id| truth.values[row(id) * 4..row(id) * 4 + 4].to_vec()).collect();
    orchard_metrics::mean_column_auc(&t, &p.values, p.classes.len()).unwrap().mean.unwrap()
}

#[test]
fn out_of_fold_predictions_reproduce_the_runs_oof_csv_and_fold_models_average_on_the_test_split() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    // A non-square input (32 high, 48 wide) checks that height and width reach the pipeline the same way in
    // training and in prediction.
    let data = synth(tmp.path(), 18, 5, (72, 48), 4);
    let runs: Vec<PathBuf> = (0..2).map(|f| tmp.path().join(format!("fold{f}"))).collect();
    for (fold, run) in runs.iter().enumerate() {
        train(config(&data, (32, 48), 1, 3, fold), run, false, &mut Silent).unwrap();
    }
    let model = RunModel::load(&runs[0], Device::Cpu).unwrap();
    assert_eq!(model.state.size, (32, 48));

    let oof = predict(&runs, &data, &Options::new(Target::Oof)).unwrap();
    let mut expected_ids = Vec::new();
    let mut expected_values = Vec::new();
    for run in &runs {
        let own = Predictions::read(&run.join("oof.csv")).unwrap();
        expected_ids.extend(own.ids);
        expected_values.extend(own.values);
    }
    assert_eq!(oof.ids, expected_ids, "the runs' validation folds, in order");
    assert_eq!(oof.values, expected_values, "bit for bit what the runs computed when they validated");
    assert_eq!(oof.classes, ["healthy", "multiple_diseases", "rust", "scab"]);

    // The same run twice validates the same images twice: refused, naming an image and both runs.
    let err = predict(&[runs[0].clone(), runs[0].clone()], &data, &Options::new(Target::Oof)).unwrap_err().to_string();
    assert!(err.contains("is also in the validation fold of") && err.contains("fold0"), "{err}");

    // Test predictions of several runs are the mean of each run's.
    let test = predict(&runs, &data, &Options::new(Target::Test)).unwrap();
    let single: Vec<Predictions> =
        runs.iter().map(|r| predict(std::slice::from_ref(r), &data, &Options::new(Target::Test)).unwrap()).collect();
    assert_eq!(test.ids, ["Test_0", "Test_1", "Test_2", "Test_3", "Test_4"]);
    for (i, v) in test.values.iter().enumerate() {
        let want = (single[0].values[i] + single[1].values[i]) / 2.0;
        assert!((v - want).abs() <= 1e-15, "entry {i}: {v} vs {want}");
    }
    assert_ne!(single[0].values, single[1].values, "two different models");
    for row in test.values.chunks_exact(4) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }

    // A run directory without a model names the file it looked for.
    let err = predict(&[tmp.path().join("nowhere")], &data, &Options::new(Target::Test)).unwrap_err().to_string();
    assert!(err.contains("nowhere/best.ckpt"), "{err}");
}

/// Writes `images` as PNGs (lossless) in the one-hot layout with a manifest, train and test tables
/// listing the same ids.
fn png_dataset(dir: &Path, images: &[(String, RgbImage)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(dir.join("dataset.toml"), "images = \"images/{image_id}.png\"\n").unwrap();
    let mut train = String::from("image_id,healthy,multiple_diseases,rust,scab\n");
    let mut test = String::from("image_id\n");
    for (i, (id, image)) in images.iter().enumerate() {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, image.width as u32, image.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header().unwrap().write_image_data(&image.data).unwrap();
        std::fs::write(dir.join("images").join(format!("{id}.png")), bytes).unwrap();
        let hot: Vec<&str> = (0..4).map(|c| if c == i % 4 { "1" } else { "0" }).collect();
        train.push_str(&format!("{id},{}\n", hot.join(",")));
        test.push_str(&format!("{id}\n"));
    }
    std::fs::write(dir.join("train.csv"), train).unwrap();
    std::fs::write(dir.join("test.csv"), test).unwrap();
    dir.to_path_buf()
}

#[test]
fn dihedral_tta_is_exactly_invariant_under_the_symmetries_of_the_square() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    // Images at exactly the model's input size, stored losslessly: transforming the files transforms the
    // input tensors exactly.
    let data = synth(tmp.path(), 12, 10, (32, 32), 5);
    let run = tmp.path().join("run");
    train(config(&data, (32, 32), 1, 3, 0), &run, false, &mut Silent).unwrap();

    let originals: Vec<(String, RgbImage)> = (0..10)
        .map(|i| {
            (
                format!("Test_{i}"),
                decode_file(&data.join(format!("images/Test_{i}.jpg")), &DecodeOptions::default()).unwrap(),
            )
        })
        .collect();
    // Each image gets another element of D4 (the identity included), so a batch mixes them.
    let transformed: Vec<(String, RgbImage)> = originals
        .iter()
        .enumerate()
        .map(|(i, (id, image))| (id.clone(), image.transformed(Dihedral::all()[(i + 3) % 8])))
        .collect();
    let a = png_dataset(&tmp.path().join("a"), &originals);
    let b = png_dataset(&tmp.path().join("b"), &transformed);

    let options = |tta| Options { tta, ..Options::new(Target::Test) };
    let (pa, pb) = (
        predict(std::slice::from_ref(&run), &a, &options(Tta::Dihedral)).unwrap(),
        predict(std::slice::from_ref(&run), &b, &options(Tta::Dihedral)).unwrap(),
    );
    assert_eq!(pa.ids, pb.ids);
    assert_eq!(pa.values, pb.values, "dihedral TTA: the same probabilities, bit for bit");
    // Not vacuous: without TTA (or with flips only, for the transposed images) the predictions differ.
    let none = (
        predict(std::slice::from_ref(&run), &a, &options(Tta::None)).unwrap(),
        predict(std::slice::from_ref(&run), &b, &options(Tta::None)).unwrap(),
    );
    assert_ne!(none.0.values, none.1.values);
    let flips = (
        predict(std::slice::from_ref(&run), &a, &options(Tta::Flips)).unwrap(),
        predict(std::slice::from_ref(&run), &b, &options(Tta::Flips)).unwrap(),
    );
    let row = |p: &Predictions, i: usize| p.values[i * 4..i * 4 + 4].to_vec();
    for i in 0..10 {
        let d = Dihedral::all()[(i + 3) % 8];
        assert_eq!(
            row(&flips.0, i) == row(&flips.1, i),
            !d.transpose,
            "image {i} under {d:?}: flips cover exactly the non-transposes"
        );
    }

    // The same at the tensor level, on a whole batch of random images and every element of D4.
    let model = RunModel::load(&run, Device::Cpu).unwrap();
    let xs = orchard_torch::channels_last(&Tensor::randn([6, 3, 32, 32], (Kind::Float, Device::Cpu)));
    let base = model.predictor().predict_tensor(&xs, Tta::Dihedral);
    for d in Dihedral::all() {
        let moved = orchard_infer::tta::apply(&xs, d, Layout::ChannelsLast);
        assert!(model.predictor().predict_tensor(&moved, Tta::Dihedral).equal(&base), "{d:?}");
    }
}

#[test]
fn flips_tta_does_not_lower_the_out_of_fold_auc_of_a_model_trained_with_flips() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    // A small run that learns the synth lesions (smaller ones stay near chance): MobileNetV2 at 64 px, 200
    // training and 200 validation images, 8 epochs of warm-up + cosine; about 40 s on two cores.
    let data = synth(tmp.path(), 400, 0, (128, 128), 7);
    let mut c = config(&data, (64, 64), 8, 2, 0);
    assert!(c.augment.flip_x && c.augment.flip_y, "the default augmentation is the reference's flips");
    c.model.arch = "mobilenet_v2".into();
    c.batch = 16;
    c.eval_batch = None;
    c.ema = None;
    c.schedule.function = Schedule::WarmupCosine(orchard_metrics::schedule::WarmupCosine {
        warmup: 1.0,
        total: 8.0,
        max: 2e-3,
        min: 2e-5,
    });
    let run = tmp.path().join("run");
    train(c, &run, false, &mut Silent).unwrap();
    let auc = |tta| {
        mean_auc(
            &data,
            &predict(std::slice::from_ref(&run), &data, &Options { tta, ..Options::new(Target::Oof) }).unwrap(),
        )
    };
    let (none, flips, dihedral) = (auc(Tta::None), auc(Tta::Flips), auc(Tta::Dihedral));
    eprintln!("out-of-fold mean AUC: none {none:.4}, flips {flips:.4}, dihedral {dihedral:.4}");
    assert!(none > 0.65, "the model learned the lesions: {none}");
    assert!(flips >= none, "flips TTA lowered the AUC: {none} -> {flips}");
}
