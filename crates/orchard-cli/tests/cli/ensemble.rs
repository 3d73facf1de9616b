//! `orchard ensemble`, `orchard score` and `orchard submission check` end to end: real processes on real
//! files, compared with scikit-learn (through `ORCHARD_PYTHON`) and with computations written here.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{cmd, orchard, s, text};

const CLASSES: [&str; 4] = ["healthy", "multiple_diseases", "rust", "scab"];

/// A small deterministic generator (xorshift), so the test needs no random-number crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes `image_id,<classes>` with one row per id.
fn write_csv(path: &Path, ids: &[String], rows: &[Vec<f64>]) {
    let mut text = format!("image_id,{}\n", CLASSES.join(","));
    for (id, row) in ids.iter().zip(rows) {
        text += &format!("{id},{}\n", row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","));
    }
    std::fs::write(path, text).unwrap();
}

/// Reads an `image_id,<classes>` CSV into ids and rows.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let mut fields = line.split(',');
        ids.push(fields.next().unwrap().to_string());
        rows.push(fields.map(|v| v.parse().unwrap()).collect());
    }
    (ids, rows)
}

/// Probabilities that lean towards `label` by `signal`, quantised to `levels` steps (ties), rows summing to 1.
fn noisy_probs(rng: &mut Rng, label: usize, signal: f64, levels: f64) -> Vec<f64> {
    let raw: Vec<f64> = (0..4)
        .map(|c| ((rng.next() + if c == label { signal } else { 0.0 }) * levels).round() / levels + 0.01)
        .collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|v| v / sum).collect()
}

fn labels_of(truth: &[Vec<f64>]) -> Vec<usize> {
    truth.iter().map(|r| r.iter().position(|&v| v == 1.0).unwrap()).collect()
}

#[test]
fn score_equals_scikit_learn_on_random_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(12345);
    let mut cases = Vec::new();
    for case in 0..6 {
        let n = 20 + 37 * case;
        let ids: Vec<String> = (0..n).map(|i| format!("Train_{i}")).collect();
        // Case 0 never has the rare class: its AUC is undefined and left out of the mean.
        let labels: Vec<usize> =
            (0..n).map(|i| if case == 0 { [0, 2, 3][i % 3] } else { (rng.next() * 4.0) as usize }).collect();
        let truth: Vec<Vec<f64>> =
            labels.iter().map(|&l| (0..4).map(|c| if c == l { 1.0 } else { 0.0 }).collect()).collect();
        let pred: Vec<Vec<f64>> = labels.iter().map(|&l| noisy_probs(&mut rng, l, 0.3, [4.0, 1e9][case % 2])).collect();
        let (t, p) = (tmp.path().join(format!("truth{case}.csv")), tmp.path().join(format!("pred{case}.csv")));
        write_csv(&t, &ids, &truth);
        // Rows in another order than the truth's: score aligns by id.
        let mut order: Vec<usize> = (0..n).collect();
        order.reverse();
        write_csv(
            &p,
            &order.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>(),
            &order.iter().map(|&i| pred[i].clone()).collect::<Vec<_>>(),
        );
        cases.push((t, p));
    }
    let input: Vec<Value> = cases.iter().map(|(t, p)| serde_json::json!({"truth": t, "pred": p})).collect();
    let expected = run_python("sklearn_score.py", &Value::from(input));
    for (i, ((t, p), want)) in cases.iter().zip(expected.as_array().unwrap()).enumerate() {
        let out = orchard(&["score", "--truth", s(t), "--pred", s(p)]);
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let value = |key: &str| -> String {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .unwrap_or_else(|| panic!("no {key} in\n{stdout}"))
                .to_string()
        };
        let close = |key: &str, theirs: f64| {
            let ours: f64 = value(key).parse().unwrap();
            assert!((ours - theirs).abs() <= 1e-12, "case {i} {key}: ours {ours} sklearn {theirs}");
        };
        close("mean_auc", want["mean_auc"].as_f64().unwrap());
        close("accuracy", want["accuracy"].as_f64().unwrap());
        close("log_loss", want["log_loss"].as_f64().unwrap());
        for class in CLASSES {
            match want["auc"][class].as_f64() {
                Some(theirs) => close(&format!("auc_{class}"), theirs),
                None => assert_eq!(value(&format!("auc_{class}")), "undefined", "case {i}"),
            }
        }
    }
}

fn run_python(script: &str, input: &Value) -> Value {
    let python = std::env::var_os("ORCHARD_PYTHON").expect("ORCHARD_PYTHON must name a Python with scikit-learn");
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.json");
    std::fs::write(&cases, serde_json::to_vec(input).unwrap()).unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(script);
    let out = Command::new(python).arg(fixture).arg(&cases).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Synth data, stratified folds, and three members' out-of-fold and test predictions of different quality.
struct Experiment {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
    folds: PathBuf,
    oof: Vec<PathBuf>,
    test: Vec<PathBuf>,
}

fn experiment() -> Experiment {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let data = dir.join("data");
    let out = cmd(&format!("data synth --out {} --train 120 --test 15 --size 32x24 --seed 5", s(&data)));
    assert!(out.status.success(), "{}", text(&out));
    let folds = dir.join("folds.csv");
    let out = orchard(&["data", "folds", s(&data), "--k", "3", "--seed", "1", "--out", s(&folds)]);
    assert!(out.status.success(), "{}", text(&out));
    let (ids, truth) = read_csv(&data.join("train.csv"));
    let labels = labels_of(&truth);
    let test_ids: Vec<String> =
        std::fs::read_to_string(data.join("test.csv")).unwrap().lines().skip(1).map(String::from).collect();
    let mut rng = Rng(777);
    let (mut oof, mut test) = (Vec::new(), Vec::new());
    for (m, signal) in [0.6, 0.35, 0.2].into_iter().enumerate() {
        let rows: Vec<Vec<f64>> = labels.iter().map(|&l| noisy_probs(&mut rng, l, signal, 1e9)).collect();
        let test_rows: Vec<Vec<f64>> = test_ids
            .iter()
            .map(|_| {
                let label = (rng.next() * 4.0) as usize;
                noisy_probs(&mut rng, label, signal, 1e9)
            })
            .collect();
        let (o, t) = (dir.join(format!("oof{m}.csv")), dir.join(format!("test{m}.csv")));
        write_csv(&o, &ids, &rows);
        // The test rows written in reverse order: the submission must still follow test.csv.
        write_csv(
            &t,
            &test_ids.iter().rev().cloned().collect::<Vec<_>>(),
            &test_rows.iter().rev().cloned().collect::<Vec<_>>(),
        );
        oof.push(o);
        test.push(t);
    }
    Experiment { _tmp: tmp, dir, data, folds, oof, test }
}

fn ensemble_args<'a>(e: &'a Experiment, method: &'a [&'a str], out: &'a Path, summary: &'a Path) -> Vec<&'a str> {
    let mut args = vec!["ensemble"];
    for (o, t) in e.oof.iter().zip(&e.test) {
        args.extend(["--pred", s(t), "--oof", s(o)]);
    }
    args.extend(method);
    args.extend(["--truth", s(&e.data), "--folds", s(&e.folds), "--out", s(out), "--summary", s(summary)]);
    args
}

#[test]
fn searched_ensemble_writes_a_valid_submission_and_an_honest_summary() {
    let e = experiment();
    let sample = e.data.join("sample_submission.csv");
    let test_csv = e.data.join("test.csv");
    for (method, name) in [
        (&["--method", "search"][..], "greedy"),
        (&["--method", "search", "--search", "simplex", "--seed", "3"], "simplex"),
        (&["--method", "search", "--search-space", "ranks"], "greedy_ranks"),
        (&["--method", "stack"], "stack"),
    ] {
        let (out, summary) = (e.dir.join(format!("sub_{name}.csv")), e.dir.join(format!("summary_{name}.json")));
        let mut args = ensemble_args(&e, method, &out, &summary);
        args.extend(["--sample-submission", s(&sample), "--test", s(&test_csv)]);
        let run = orchard(&args);
        assert!(run.status.success(), "{name}: {}", text(&run));
        assert!(text(&run).contains("cross-validated AUC"), "{}", text(&run));

        let check =
            orchard(&["submission", "check", "--sample", s(&sample), "--test", s(&test_csv), "--pred", s(&out)]);
        assert!(check.status.success(), "{name}: {}", text(&check));
        let (ids, _) = read_csv(&out);
        let test_ids: Vec<String> =
            std::fs::read_to_string(&test_csv).unwrap().lines().skip(1).map(String::from).collect();
        assert_eq!(ids, test_ids, "{name}: rows in test.csv's order");

        let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        let best_member =
            s["members"].as_array().unwrap().iter().map(|m| m["oof"]["mean"].as_f64().unwrap()).fold(0.0, f64::max);
        let cv = s["cv"]["pooled"]["mean"].as_f64().unwrap();
        assert_eq!(s["cv"]["folds"].as_array().unwrap().len(), 3);
        assert!(cv >= best_member - 0.01, "{name}: cross-validated {cv} vs best member {best_member}");
        assert_eq!(s["correlation"].as_array().unwrap().len(), 3);
        assert!(e.dir.join(format!("summary_{name}.txt")).exists());
        if name != "stack" {
            let w: Vec<f64> = s["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12 && w[0] >= w[2], "{name}: {w:?}");
        }
    }
}

/// The weighted mean through the CLI equals the same mean computed here from the files.
#[test]
fn weighted_mean_through_the_cli_equals_the_formula() {
    let e = experiment();
    let (out, summary) = (e.dir.join("weighted.csv"), e.dir.join("weighted.json"));
    let run = orchard(&ensemble_args(&e, &["--method", "weighted", "--weights", "2,1,1"], &out, &summary));
    assert!(run.status.success(), "{}", text(&run));
    let (ids, rows) = read_csv(&out);
    let members: Vec<(Vec<String>, Vec<Vec<f64>>)> = e.test.iter().map(|t| read_csv(t)).collect();
    assert_eq!(ids, members[0].0);
    for (r, row) in rows.iter().enumerate() {
        for (c, got) in row.iter().enumerate() {
            let want = (2.0 * members[0].1[r][c] + members[1].1[r][c] + members[2].1[r][c]) / 4.0;
            assert!((got - want).abs() < 1e-15, "row {r} class {c}: {got} vs {want}");
        }
    }
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["weights"], serde_json::json!([0.5, 0.25, 0.25]));
    assert!(s["cv"].is_null(), "nothing was fitted, so there is nothing to cross-validate");
}

#[test]
fn bad_ensemble_input_exits_with_code_2_and_says_why() {
    let e = experiment();
    let out = e.dir.join("x.csv");
    let summary = e.dir.join("x.json");
    let cases: [(&[&str], &str); 3] = [
        (&["--method", "weighted"], "--weights"),
        (&["--method", "weighted", "--weights", "1,1"], "2 weights for 3 members"),
        (&["--method", "power"], "--power"),
    ];
    for (method, want) in cases {
        let run = orchard(&ensemble_args(&e, method, &out, &summary));
        assert_eq!(run.status.code(), Some(2), "{}", text(&run));
        assert!(text(&run).contains(want), "{want}: {}", text(&run));
    }
    let run = orchard(&["ensemble", "--pred", s(&e.test[0]), "--pred", s(&e.oof[1]), "--out", s(&out)]);
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run).contains("id(s) of") && text(&run).contains("'Test_14'"), "{}", text(&run));
    let run = cmd(&format!(
        "ensemble --pred {} --oof {} --truth {} --method search --out {}",
        s(&e.test[0]),
        s(&e.oof[0]),
        s(&e.data),
        s(&out)
    ));
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run).contains("folds"), "{}", text(&run));
}

#[test]
fn submission_check_rejects_each_bad_case_naming_file_row_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = tmp.path().join("sample_submission.csv");
    let test = tmp.path().join("test.csv");
    std::fs::write(&sample, "image_id,healthy,multiple_diseases,rust,scab\nTest_0,0.25,0.25,0.25,0.25\nTest_1,0.25,0.25,0.25,0.25\nTest_2,0.25,0.25,0.25,0.25\n").unwrap();
    std::fs::write(&test, "image_id\nTest_0\nTest_1\nTest_2\n").unwrap();
    let good =
        "image_id,healthy,multiple_diseases,rust,scab\nTest_0,0.1,0.2,0.3,0.4\nTest_1,1,0,0,0\nTest_2,0.5,0.5,0,0\n";
    let pred = tmp.path().join("sub.csv");
    let check = |csv: &str| {
        std::fs::write(&pred, csv).unwrap();
        orchard(&["submission", "check", "--sample", s(&sample), "--test", s(&test), "--pred", s(&pred)])
    };
    let ok = check(good);
    assert!(ok.status.success(), "{}", text(&ok));
    let bad: [(String, &str); 9] = [
        (good.replace("Test_2,0.5,0.5,0,0\n", ""), "1 id(s) of"),
        (good.replace("Test_2", "Test_1"), "sub.csv:4:image_id: duplicate id 'Test_1' (first on row 3)"),
        (good.to_string() + "Test_9,1,0,0,0\n", "are not in"),
        (good.replace("rust,scab", "scab,rust"), "columns are out of order"),
        (
            good.replace(",scab", "")
                .replace(",0.4\n", "\n")
                .replace("Test_1,1,0,0,0", "Test_1,1,0,0")
                .replace("0.5,0.5,0,0", "0.5,0.5,0"),
            "missing columns [\"scab\"]",
        ),
        (good.replace("0.1,0.2,0.3,0.4", "0.1,0.2,nan,0.4"), "sub.csv:2:rust: NaN is not finite"),
        (good.replace("1,0,0,0", "1.5,0,0,0"), "sub.csv:3:healthy: probability 1.5 is outside [0, 1]"),
        (good.replace("0.5,0.5,0,0", "0.5,0.4,0,0"), "sub.csv:4: row sums to 0.9"),
        (good.replace("0.5,0.5,0,0", "0.5,x,0,0"), "sub.csv:4:multiple_diseases: 'x' is not a number"),
    ];
    for (csv, want) in &bad {
        let out = check(csv);
        assert_eq!(out.status.code(), Some(2), "{want}: {}", text(&out));
        assert!(text(&out).contains(want), "{want} not in:\n{}", text(&out));
    }
    let missing = check(&bad[0].0);
    assert!(text(&missing).contains("'Test_2'"), "the missing id is named: {}", text(&missing));
    let extra = check(&bad[2].0);
    assert!(text(&extra).contains("'Test_9'"), "the extra id is named: {}", text(&extra));
}

/// PP2021-style label lists: thresholds from out-of-fold predictions, labels written and checked.
#[test]
fn multi_label_submissions_get_thresholds_and_label_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut rng = Rng(99);
    let labels = ["complex", "healthy", "rust", "scab"];
    let n = 90;
    let truth: Vec<Vec<bool>> = (0..n)
        .map(|i| {
            let mut row: Vec<bool> = (0..4).map(|_| rng.next() < 0.35).collect();
            if !row.contains(&true) {
                row[i % 4] = true;
            }
            row
        })
        .collect();
    let mut train = "image,labels\n".to_string();
    let mut folds = "image,fold\n".to_string();
    for (i, row) in truth.iter().enumerate() {
        let names: Vec<&str> = (0..4).filter(|&c| row[c]).map(|c| labels[c]).collect();
        train += &format!("img{i}.jpg,{}\n", names.join(" "));
        folds += &format!("img{i}.jpg,{}\n", i % 3);
    }
    std::fs::write(d.join("train.csv"), train).unwrap();
    std::fs::write(d.join("folds.csv"), folds).unwrap();
    std::fs::write(d.join("sample_submission.csv"), "image,labels\nt0.jpg,healthy\nt1.jpg,healthy\nt2.jpg,healthy\n")
        .unwrap();
    let probs = |rng: &mut Rng, row: &[bool]| -> Vec<f64> {
        row.iter().map(|&t| 0.6 * rng.next() + if t { 0.4 } else { 0.0 }).collect()
    };
    let header = format!("image,{}\n", labels.join(","));
    let mut oof = header.clone();
    for (i, row) in truth.iter().enumerate() {
        oof += &format!(
            "img{i}.jpg,{}\n",
            probs(&mut rng, row).iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
        );
    }
    let test = header + "t0.jpg,0.99,0.01,0.99,0.01\nt1.jpg,0.01,0.01,0.01,0.01\nt2.jpg,0.01,0.99,0.01,0.01\n";
    std::fs::write(d.join("oof.csv"), oof).unwrap();
    std::fs::write(d.join("test.csv"), test).unwrap();
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let run = cmd(&format!(
        "ensemble --pred {} --oof {} --truth {} --folds {} --sample-submission {} --out {} --summary {}",
        p("test.csv"),
        p("oof.csv"),
        p("train.csv"),
        p("folds.csv"),
        p("sample_submission.csv"),
        p("sub.csv"),
        p("summary.json")
    ));
    assert!(run.status.success(), "{}", text(&run));
    let sub = std::fs::read_to_string(d.join("sub.csv")).unwrap();
    let lines: Vec<&str> = sub.lines().collect();
    assert_eq!(lines[0], "image,labels");
    assert_eq!(lines[1], "t0.jpg,complex rust");
    assert_eq!(lines[3], "t2.jpg,healthy");
    assert_eq!(lines.len(), 4, "{sub}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["thresholds"].as_array().unwrap().len(), 4);
    let check = cmd(&format!(
        "submission check --sample {} --pred {} --task multi-label --classes {}",
        p("sample_submission.csv"),
        p("sub.csv"),
        labels.join(",")
    ));
    assert!(check.status.success(), "{}", text(&check));
    std::fs::write(d.join("bad.csv"), "image,labels\nt0.jpg,rust rust\nt1.jpg,\nt2.jpg,frog\n").unwrap();
    let check = cmd(&format!(
        "submission check --sample {} --pred {} --task multi-label --classes {}",
        p("sample_submission.csv"),
        p("bad.csv"),
        labels.join(",")
    ));
    assert_eq!(check.status.code(), Some(2));
    let text = text(&check);
    for want in [
        "bad.csv:2:labels: label 'rust' appears twice",
        "bad.csv:3:labels: no label",
        "bad.csv:4:labels: unknown label 'frog'",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
}
