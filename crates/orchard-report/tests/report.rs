//! Reports of a small experiment written here with orchard-files' types (no training): every section and
//! chart is on the page, the numbers in it are the ones the predictions give, names from the files are
//! escaped, the page needs nothing beside it; and the same for one training run, for an experiment without
//! the ensemble's `oof.csv` (labelled in-sample) and for a folder that is neither.

use std::path::{Path, PathBuf};

use base64::Engine;
use orchard_data::decode::{decode_bytes, encode_jpeg, DecodeOptions};
use orchard_data::image::RgbImage;
use orchard_files::config::{DataConfig, ScheduleConfig};
use orchard_files::ensemble_summary::{CvScores, FoldScore, MemberScore, Summary};
use orchard_files::experiment_summary::{ExperimentSummary, MemberReport, ENSEMBLE_OOF};
use orchard_files::history::{self, EpochRecord};
use orchard_files::manifest::{Blend, Manifest, MemberModel, PixelNormalization, FORMAT};
use orchard_files::state::{LAST, STATE_TENSOR};
use orchard_files::{Predictions, RunState, Task, TrainConfig, Tta};
use orchard_metrics::{mean_column_auc, Schedule, WarmupCosine};
use orchard_report::{render, write, Options, ReportError};

const CLASSES: [&str; 3] = ["healthy", "rust<x>&", "scab"];
const ROWS: usize = 12;
const MEMBERS: [&str; 2] = ["b0", "m<1>"];

fn classes() -> Vec<String> {
    CLASSES.iter().map(|c| c.to_string()).collect()
}

fn ids(rows: impl Iterator<Item = usize>) -> Vec<String> {
    rows.map(|i| format!("Train_{i}")).collect()
}

/// Row `i` is of class `i % 3`; the ensemble gets all right but row 4 (class 1, given 0.9 for class 2)
/// and row 8 (class 2, given 0.6 for class 0).
fn ensemble_row(i: usize) -> [f64; 3] {
    match i {
        4 => [0.05, 0.05, 0.9],
        8 => [0.6, 0.1, 0.3],
        _ => {
            let mut row = [0.1; 3];
            row[i % 3] = 0.8;
            row
        }
    }
}

/// Member 0 predicts as the ensemble; member 1 gets every row right, less surely.
fn member_row(m: usize, i: usize) -> [f64; 3] {
    if m == 0 {
        return ensemble_row(i);
    }
    let mut row = [0.2; 3];
    row[i % 3] = 0.6;
    row
}

fn predictions(rows: &[usize], row: impl Fn(usize) -> [f64; 3]) -> Predictions {
    let values = rows.iter().flat_map(|&i| row(i)).collect();
    Predictions::new("image_id", classes(), ids(rows.iter().copied()), values)
}

/// A one-hot dataset of 256×192 JPEGs.
fn dataset(dir: &Path) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut csv = format!("image_id,{}\n", CLASSES.join(","));
    for i in 0..ROWS {
        let one_hot: Vec<&str> = (0..3).map(|c| if c == i % 3 { "1" } else { "0" }).collect();
        csv.push_str(&format!("Train_{i},{}\n", one_hot.join(",")));
        let data = (0..256 * 192).flat_map(|p| [(p % 256) as u8, (i * 20) as u8, ((p / 256) % 256) as u8]).collect();
        let jpeg = encode_jpeg(&RgbImage::from_raw(256, 192, data), 90).unwrap();
        std::fs::write(dir.join("images").join(format!("Train_{i}.jpg")), jpeg).unwrap();
    }
    std::fs::write(dir.join("train.csv"), csv).unwrap();
}

/// A checkpoint holding only the run state, as `RunState::read` reads it.
fn checkpoint(path: &Path, state: &RunState) {
    let json = serde_json::to_vec(state).unwrap();
    let header =
        format!("{{\"{STATE_TENSOR}\":{{\"dtype\":\"U8\",\"shape\":[{n}],\"data_offsets\":[0,{n}]}}}}", n = json.len());
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(json);
    std::fs::write(path, bytes).unwrap();
}

/// One unit: its configuration, three epochs of history, its validation predictions and its state.
fn unit(dir: &Path, data: &Path, m: usize, fold: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let schedule = Schedule::WarmupCosine(WarmupCosine { warmup: 1.0, total: 3.0, max: 1e-3, min: 1e-5 });
    let config = TrainConfig {
        out: Some(dir.to_path_buf()),
        epochs: 3,
        data: DataConfig {
            dir: data.to_path_buf(),
            size: Some((32, 32)),
            folds: Some(2),
            fold,
            ..DataConfig::default()
        },
        schedule: ScheduleConfig { function: schedule, per_step: true, per_replica: None },
        ..TrainConfig::default()
    };
    std::fs::write(dir.join("config.toml"), config.to_toml()).unwrap();
    let history: Vec<EpochRecord> = (0..3u32)
        .map(|e| EpochRecord {
            epoch: e,
            lr: schedule.lr(f64::from(e)),
            train_loss: 1.2 - 0.3 * f64::from(e),
            val_loss: Some(1.1 - 0.2 * f64::from(e) + 0.05 * m as f64),
            val_accuracy: Some(0.5),
            val_auc: Some(0.6 + 0.1 * f64::from(e) - 0.02 * fold as f64),
            val_auc_per_class: vec![Some(0.7); 3],
            train_seconds: 2.0,
            val_seconds: 0.5,
            images_per_second: 30.0 + fold as f64,
        })
        .collect();
    history::write(dir, &history, &classes()).unwrap();
    let rows: Vec<usize> = (0..ROWS).filter(|i| i % 2 == fold).collect();
    predictions(&rows, |i| member_row(m, i)).write(&dir.join("oof.csv")).unwrap();
    let state = RunState {
        format: 1,
        arch: "efficientnet_b0".into(),
        classes: classes(),
        size: (32, 32),
        softmax: true,
        epochs_done: 3,
        step: 15,
        best: Some(0.8),
        best_epoch: Some(2),
        epochs_since_best: 0,
        stopped_early: false,
        history,
        optimizer_steps: Default::default(),
        loss_scaler: None,
        replicas: 1,
        config,
    };
    checkpoint(&dir.join(LAST), &state);
}

/// An experiment of two members × two folds in `root/exp`, its dataset in `root/data`.
fn experiment(root: &Path) -> PathBuf {
    let (data, exp) = (root.join("data"), root.join("exp"));
    dataset(&data);
    let all: Vec<usize> = (0..ROWS).collect();
    let truth: Vec<f64> = all.iter().flat_map(|i| (0..3).map(move |c| f64::from(u8::from(c == i % 3)))).collect();
    let auc = |p: &Predictions| mean_column_auc(&truth, &p.values, 3).unwrap();
    let mut reports = Vec::new();
    let mut scores = Vec::new();
    for (m, name) in MEMBERS.iter().enumerate() {
        for fold in 0..2 {
            unit(&exp.join("members").join(name).join(format!("fold{fold}")), &data, m, fold);
        }
        let oof = predictions(&all, |i| member_row(m, i));
        oof.write(&exp.join("members").join(name).join("oof.csv")).unwrap();
        reports.push(MemberReport {
            name: name.to_string(),
            arch: "efficientnet_b0".into(),
            size: Some((32, 32)),
            epochs: 3,
            monitor: "val_auc".into(),
            fold_best: vec![Some(0.8), Some(0.78)],
            oof_auc_without_tta: auc(&oof).mean.map(|a| a - 0.01),
            oof_auc: auc(&oof).mean,
        });
        scores.push(MemberScore { file: name.to_string(), oof: auc(&oof) });
    }
    let ensemble = predictions(&all, ensemble_row);
    ensemble.write(&exp.join(ENSEMBLE_OOF)).unwrap();
    let pooled = auc(&ensemble);
    let summary = ExperimentSummary {
        folds: 2,
        tta: Tta::Flips,
        best_member: Some((MEMBERS[1].to_string(), scores[1].oof.mean.unwrap())),
        ensemble_auc: pooled.mean,
        ensemble: Summary {
            method: "search (greedy, probabilities)".into(),
            classes: classes(),
            files: MEMBERS.iter().map(|m| m.to_string()).collect(),
            members: scores,
            weights: Some(vec![0.25, 0.75]),
            ensemble_oof: Some(pooled.clone()),
            cv: Some(CvScores {
                folds: (0..2).map(|f| FoldScore { fold: f, rows: 6, held_out: pooled.clone() }).collect(),
                mean_of_folds: pooled.mean,
                pooled,
            }),
            correlation: vec![vec![Some(1.0), Some(0.42)], vec![Some(0.42), Some(1.0)]],
            correlation_of: "oof".into(),
            thresholds: None,
        },
        members: reports,
        submission: None,
        compared: vec![],
    };
    summary.write(&exp).unwrap();
    exp
}

/// The `<svg>` ids on the page, in order.
fn svg_ids(page: &str) -> Vec<String> {
    page.split("<svg id=\"").skip(1).map(|s| s[..s.find('"').unwrap()].to_string()).collect()
}

/// The numbers written in the chart with id `id`, in order.
fn chart_numbers(page: &str, id: &str) -> Vec<u64> {
    let start = page.find(&format!("<svg id=\"{id}\"")).unwrap();
    let svg = &page[start..start + page[start..].find("</svg>").unwrap()];
    svg.split("</text>").filter_map(|t| t.rsplit('>').next()?.trim().parse().ok()).collect()
}

#[test]
fn an_experiment_report_has_every_section_chart_and_number() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path());
    let out = exp.join("report.html");
    let options = Options { libtorch: Some("2.13.0+cpu".into()), ..Options::new() };
    let notes = write(&exp, &out, &options).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let page = std::fs::read_to_string(&out).unwrap();

    for section in ["ensemble", "predictions", "training", "gallery", "setup"] {
        assert_eq!(page.matches(&format!("<section id=\"{section}\">")).count(), 1, "section {section}");
    }
    let want = [
        "auc-comparison",
        "weights",
        "tta-gain",
        "correlation",
        "roc-ensemble",
        "roc-m0",
        "roc-m1",
        "confusion-counts",
        "confusion-normalised",
        "lr-m0",
        "loss-m0",
        "auc-m0",
        "lr-m1",
        "loss-m1",
        "auc-m1",
    ];
    assert_eq!(svg_ids(&page), want);
    assert_eq!(page.matches("<svg ").count(), want.len());

    // The confusion matrix of the ensemble's rows, and the scores of class 1 (3 right, 1 given class 2).
    assert_eq!(chart_numbers(&page, "confusion-counts"), [4, 0, 0, 0, 3, 1, 1, 0, 3]);
    let cells = |values: &[&str]| values.iter().map(|v| format!("<td class=\"r\">{v}</td>")).collect::<String>();
    assert!(page.contains(&cells(&["1.000", "0.750", "0.857", "3", "0", "1"])), "class 1's row");
    let confused = page.find("Most confused").unwrap();
    let pairs = &page[confused..];
    let first = format!("<td>rust&lt;x&gt;&amp;</td><td>scab</td>{}", cells(&["1", "25.0%"]));
    let second = format!("<td>scab</td><td>healthy</td>{}", cells(&["1", "25.0%"]));
    assert!(pairs.find(&first).unwrap() < pairs.find(&second).unwrap(), "{pairs}");
    let auc = ExperimentSummary::read(&exp).unwrap().ensemble_auc.unwrap();
    assert!(page.contains(&format!("<div class=\"v\">{auc:.4}</div>")), "the headline shows the cross-validated AUC");
    assert!(page.contains("2.13.0+cpu") && page.contains(env!("CARGO_PKG_VERSION")));

    // The gallery: every row (fewer than 24), the confident mistakes first, thumbnails that decode.
    let tiles: Vec<&str> = page.split("<div class=\"tile ").skip(1).collect();
    assert_eq!(tiles.len(), ROWS);
    assert!(
        tiles[0].starts_with("wrong") && tiles[0].contains("<div class=\"id\">Train_4</div>"),
        "{}",
        &tiles[0][..200]
    );
    assert!(tiles[1].starts_with("wrong") && tiles[1].contains("Train_8") && tiles[2].starts_with("right"));
    let uri = tiles[0].split("src=\"data:image/jpeg;base64,").nth(1).unwrap();
    let jpeg = base64::engine::general_purpose::STANDARD.decode(&uri[..uri.find('"').unwrap()]).unwrap();
    let thumb = decode_bytes(&jpeg, Path::new("thumb"), &DecodeOptions::default()).unwrap();
    assert_eq!((thumb.width, thumb.height), (128, 96));

    // Names from the files are escaped; nothing is fetched from elsewhere.
    assert!(!page.contains("rust<x>") && !page.contains("m<1>"));
    assert!(page.contains("rust&lt;x&gt;&amp;") && page.contains("m&lt;1&gt;"));
    for outside in ["<script", "<link", "src=\"http", "url(http", "@import"] {
        assert!(!page.contains(outside), "{outside}");
    }
    // Written atomically: nothing but the page is left beside it.
    let left: Vec<String> =
        std::fs::read_dir(&exp).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(!left.iter().any(|n| n.ends_with(".tmp")), "{left:?}");
}

#[test]
fn without_the_ensembles_oof_the_manifests_blend_is_drawn_and_called_in_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path());
    std::fs::remove_file(exp.join(ENSEMBLE_OOF)).unwrap();
    let member = |name: &str| MemberModel {
        name: name.into(),
        arch: "efficientnet_b0".into(),
        size: (32, 32),
        normalization: PixelNormalization { mean: [0.0; 3], std: [1.0; 3] },
        softmax: true,
        checkpoints: vec![PathBuf::from("members/x/fold0/best.ckpt")],
    };
    let manifest = Manifest {
        format: FORMAT,
        classes: classes(),
        task: Task::MultiClass,
        tta: Tta::Flips,
        members: MEMBERS.iter().map(|m| member(m)).collect(),
        blend: Blend::Mean { weights: vec![1.0, 0.0] },
    };
    manifest.write(&exp).unwrap();
    let page = render(&exp, &Options::new()).unwrap();
    assert!(page.contains("<span class=\"tag warn\">in-sample</span>"));
    // All the weight on member 0, which predicts as the ensemble did.
    assert_eq!(chart_numbers(&page, "confusion-counts"), [4, 0, 0, 0, 3, 1, 1, 0, 3]);
}

#[test]
fn a_training_run_is_reported_on_its_own_validation_fold() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path());
    let run = exp.join("members/b0/fold1");
    let page = render(&run, &Options::new()).unwrap();
    assert_eq!(svg_ids(&page), ["roc-run", "confusion-counts", "confusion-normalised", "lr-m0", "loss-m0", "auc-m0"]);
    assert!(!page.contains("<section id=\"ensemble\">"));
    // Fold 1 holds the odd rows: 1, 5, 9, 3, 7, 11 and the mistake on row 8 is not among them.
    assert_eq!(page.matches("<div class=\"tile ").count(), 6);
    assert_eq!(chart_numbers(&page, "confusion-counts"), [2, 0, 0, 0, 2, 0, 0, 0, 2]);
    assert!(page.contains("validation fold") && page.contains("1 of 2"));
    // The schedule per step: 5 steps an epoch, the recorded rate of each epoch as a dot.
    let lr = &page[page.find("<svg id=\"lr-m0\"").unwrap()..];
    assert_eq!(lr[..lr.find("</svg>").unwrap()].matches("<circle").count(), 3);
}

#[test]
fn a_folder_that_is_not_a_run_is_refused_and_a_missing_dataset_is_noted() {
    let tmp = tempfile::tempdir().unwrap();
    let err = render(tmp.path(), &Options::new()).unwrap_err();
    assert!(matches!(err, ReportError::NotARun { .. }) && err.is_bad_input(), "{err}");

    let exp = experiment(tmp.path());
    std::fs::rename(tmp.path().join("data"), tmp.path().join("moved")).unwrap();
    let notes = write(&exp, &tmp.path().join("r.html"), &Options::new()).unwrap();
    assert!(notes.iter().any(|n| n.contains("could not be read") || n.contains("not found")), "{notes:?}");
    let page = std::fs::read_to_string(tmp.path().join("r.html")).unwrap();
    assert!(page.contains("Left out of this report") && !page.contains("<section id=\"gallery\">"));
    assert!(svg_ids(&page).contains(&"lr-m1".to_string()) && !svg_ids(&page).contains(&"roc-ensemble".to_string()));
    // Given the dataset's new place, everything is back.
    let options = Options { data: Some(tmp.path().join("moved")), ..Options::new() };
    assert!(render(&exp, &options).unwrap().contains("<section id=\"gallery\">"));
}
