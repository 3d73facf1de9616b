//! `orchard report` on a tiny real experiment (two members × two folds, 2 epochs of 32-pixel images, run
//! from its own folder with relative paths, as a user runs it), then the page rendered by headless
//! Chromium: the screenshot must be a page of many colours from top to bottom, and the rendered DOM must
//! hold every chart. The screenshot is kept as `target/test-artifacts/report.png`. Chromium is required:
//! without it the test fails and says how to install it.

use std::path::{Path, PathBuf};
use std::process::Command;

use orchard_files::experiment_summary::{ExperimentSummary, ENSEMBLE_OOF};
use orchard_files::Predictions;
use orchard_metrics::mean_column_auc;

use crate::common::{ok, s, synth, text};

/// The charts of the report of an experiment of `members` members with a searched blend, in page order:
/// the ensemble's, the ROC curves of the ensemble and each member, the confusion matrices, then each
/// member's schedule, loss and AUC.
pub fn charts(members: usize) -> Vec<String> {
    let mut ids: Vec<String> =
        ["auc-comparison", "weights", "tta-gain", "correlation", "roc-ensemble"].map(String::from).into();
    ids.extend((0..members).map(|m| format!("roc-m{m}")));
    ids.extend(["confusion-counts".into(), "confusion-normalised".into()]);
    ids.extend((0..members).flat_map(|m| ["lr", "loss", "auc"].map(|kind| format!("{kind}-m{m}"))));
    ids
}

/// The Chromium on PATH; the test fails without one.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: this test renders the report in it (Debian: apt-get install -y chromium)"
            )
        })
}

/// Headless Chromium on `page` with `args`, a fresh profile each time, nothing fetched.
pub fn render(page: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where tests leave what a person may want to look at: `target/test-artifacts`.
pub fn artifacts() -> PathBuf {
    // The binary is target/<profile>/orchard, whichever target directory the build used.
    let target = Path::new(env!("CARGO_BIN_EXE_orchard")).parent().unwrap().parent().unwrap();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The ids of the `<svg>` elements of a serialised DOM, in order.
pub fn svg_ids(dom: &str) -> Vec<String> {
    dom.split("<svg")
        .skip(1)
        .map(|tag| {
            let tag = &tag[..tag.find('>').unwrap()];
            let id = tag.split("id=\"").nth(1).unwrap_or("");
            id[..id.find('"').unwrap_or(0)].to_string()
        })
        .collect()
}

/// Checks a screenshot is a page, not a blank: many colours, and ink (pixels darker than the page's
/// near-white background) in every eighth of its height.
pub fn check_screenshot(png_file: &Path) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_file).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    assert!(info.bit_depth == png::BitDepth::Eight && channels >= 3, "{:?} {:?}", info.color_type, info.bit_depth);
    let (width, height) = (info.width as usize, info.height as usize);
    assert_eq!((width, height), (1280, 4000));
    let mut colours = std::collections::HashSet::new();
    let mut ink_per_band = [0usize; 8];
    for y in 0..height {
        for x in 0..width {
            let p = &pixels[(y * width + x) * channels..][..3];
            colours.insert((p[0], p[1], p[2]));
            if p.iter().any(|&c| c < 235) {
                ink_per_band[y * 8 / height] += 1;
            }
        }
    }
    assert!(colours.len() > 2000, "only {} distinct colours: a blank or broken page", colours.len());
    let band = width * height / 8;
    for (i, ink) in ink_per_band.iter().enumerate() {
        assert!(*ink > band / 50, "band {i} of 8 is nearly empty: {ink} of {band} pixels drawn");
    }
}

#[test]
fn an_experiment_report_renders_every_chart_in_chromium() {
    chromium(); // first, so that a machine without it fails at once, saying why
    let tmp = tempfile::tempdir().unwrap();
    synth(&tmp.path().join("data"), 24, 4, "48", 5);
    let experiment = "data = \"data\"\nout = \"exp\"\nfolds = 2\nseed = 3\ntta = \"flips\"\n\
        [ensemble]\nmethod = \"search\"\n\
        [defaults]\nepochs = 2\nbatch = 8\nworkers = 1\nbatch_norm_momentum = 0.9\n\
        [defaults.schedule]\nper_step = true\n\
        [defaults.schedule.function]\nkind = \"warmup_cosine\"\nwarmup = 1.0\ntotal = 2.0\nmax = 0.002\nmin = 0.00002\n\
        [[member]]\nname = \"mnv2\"\narch = \"mobilenet_v2\"\nsize = 32\n\
        [[member]]\nname = \"lite0\"\narch = \"efficientnet_lite0\"\nsize = 32\n";
    std::fs::write(tmp.path().join("experiment.toml"), experiment).unwrap();
    // Run from the experiment's folder, as the example is: its paths are relative to it.
    let run = Command::new(env!("CARGO_BIN_EXE_orchard"))
        .args(["run", "experiment.toml", "--quiet"])
        .current_dir(tmp.path())
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let exp = tmp.path().join("exp");
    assert!(
        text(&run).contains(&format!("report: {}", Path::new("exp").join("report.html").display())),
        "{}",
        text(&run)
    );
    assert!(exp.join("report.html").is_file());

    // Gather's out-of-fold predictions of the ensemble are the rows its cross-validated AUC scores.
    let summary = ExperimentSummary::read(&exp).unwrap();
    let oof = Predictions::read(&exp.join(ENSEMBLE_OOF)).unwrap();
    assert_eq!(oof.rows(), 24);
    let truth = orchard_data::dataset::read_truth(&tmp.path().join("data")).unwrap();
    let targets = truth.aligned(&exp.join(ENSEMBLE_OOF), &oof.ids, &oof.classes).unwrap();
    let auc = mean_column_auc(&targets, &oof.values, oof.classes.len()).unwrap().mean.unwrap();
    let cv = summary.ensemble.cv.as_ref().unwrap().pooled.mean.unwrap();
    assert!((auc - cv).abs() < 1e-12, "oof.csv scores {auc}, the summary's cross-validated AUC is {cv}");

    // From elsewhere, the dataset is found from where the run was started.
    let page = tmp.path().join("report.html");
    let printed = ok(&["report", s(&exp), "--out", s(&page)]);
    assert_eq!(printed.trim(), format!("wrote {}", page.display()), "no warnings: {printed}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(&format!("{cv:.4}")) && html.contains("2.13"), "headline AUC and libtorch version");

    let dom = render(&page, &["--dump-dom"]);
    assert_eq!(svg_ids(&dom), charts(2), "every chart, once, in order");
    assert_eq!(dom.matches("<img src=\"data:image/jpeg;base64,").count(), 24, "the gallery holds every row");
    assert!(dom.contains("<section id=\"gallery\">") && dom.contains("<section id=\"setup\">"));
    let shot = artifacts().join("report.png");
    let _ = std::fs::remove_file(&shot);
    render(&page, &["--window-size=1280,4000", &format!("--screenshot={}", shot.display())]);
    check_screenshot(&shot);

    // One training run on its own: its schedule, curves and validation predictions.
    let unit = exp.join("members/lite0/fold1");
    let printed = ok(&["report", s(&unit)]);
    assert!(printed.contains(s(&unit.join("report.html"))), "{printed}");
    let dom = render(&unit.join("report.html"), &["--dump-dom"]);
    assert_eq!(svg_ids(&dom), ["roc-run", "confusion-counts", "confusion-normalised", "lr-m0", "loss-m0", "auc-m0"]);
    assert_eq!(dom.matches("<div class=\"tile ").count(), 12, "fold 1's twelve validation images");

    // Not a run: refused as bad input.
    let out = crate::common::orchard(&["report", s(&tmp.path().join("data"))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not an experiment directory"), "{}", text(&out));
}
