//! `orchard bench serve` on a tiny real experiment: it starts the batched and the batch-1 server itself,
//! measures both, opens idle connections, writes its table, and leaves no server behind; against a running
//! server with --url; and refuses bad arguments before starting anything. Speeds are printed, never asserted:
//! only that every figure is there and makes sense.

use std::path::Path;

use crate::common::{cmd, ok, orchard, s, text, tiny_experiment, Server};

/// A table row: concurrency, server, median req/s, gain (empty but on the batched row), p50, p95, p99 (ms),
/// mean batch, errors.
struct Row {
    concurrency: usize,
    server: String,
    rate: f64,
    gain: Option<f64>,
    percentiles: [f64; 3],
    mean_batch: f64,
    errors: usize,
}

fn table(out: &str) -> Vec<Row> {
    let number = |cell: &str| cell.split_whitespace().next().unwrap().trim_end_matches('×').parse::<f64>().unwrap();
    out.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix('|')?.split('|').map(str::trim).collect();
            let concurrency = cells[0].parse().ok()?;
            Some(Row {
                concurrency,
                server: cells[1].to_string(),
                rate: number(cells[2]),
                gain: (!cells[3].is_empty()).then(|| number(cells[3])),
                percentiles: [number(cells[4]), number(cells[5]), number(cells[6])],
                mean_batch: number(cells[7]),
                errors: cells[8].parse().unwrap(),
            })
        })
        .collect()
}

fn check_row(row: &Row, out: &str) {
    let [p50, p95, p99] = row.percentiles;
    assert!(row.rate > 0.0 && row.rate.is_finite(), "{out}");
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99 && p99.is_finite(), "{out}");
    assert_eq!(row.errors, 0, "{out}");
    assert!((1.0..=row.concurrency as f64).contains(&row.mean_batch), "{out}");
}

/// The processes still running `orchard serve` on `dir`.
fn servers_on(dir: &Path) -> usize {
    let dir = s(dir);
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.contains(&&b"serve"[..]) && args.contains(&dir.as_bytes())
        })
        .count()
}

#[test]
fn bench_serve_measures_both_servers_and_idle_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, exp) = tiny_experiment(tmp.path());
    let mut images: Vec<_> = std::fs::read_dir(data.join("images")).unwrap().map(|e| e.unwrap().path()).collect();
    images.sort();
    let image = s(&images[0]);
    let md = tmp.path().join("bench.md");
    let small = ["--requests", "8", "--warmup", "2", "--rounds", "2"];
    let args = [&["bench", "serve", s(&exp), "--image", image, "--concurrency", "1,4"][..], &small[..]].concat();
    let out = orchard(&[&args[..], &["--idle", "50", "--device", "cpu", "--out", s(&md)]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(servers_on(&exp), 0, "the bench's servers stopped with it");

    let rows = table(&stdout);
    let got: Vec<(usize, &str)> = rows.iter().map(|r| (r.concurrency, r.server.as_str())).collect();
    assert_eq!(got, [(1, "max batch 16"), (1, "max batch 1"), (4, "max batch 16"), (4, "max batch 1")], "{stdout}");
    for row in &rows {
        check_row(row, &stdout);
        let batched = row.server == "max batch 16";
        assert_eq!(row.gain.is_some_and(|g| g > 0.0 && g.is_finite()), batched, "{stdout}");
        if !batched {
            assert_eq!(row.mean_batch, 1.0, "{stdout}");
        }
    }
    for server in ["max batch 16", "max batch 1"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("- {server}: "))).expect("a memory line");
        assert!(line.contains("MiB once listening") && !line.contains("unknown"), "{line}");
    }
    let idle = stdout.lines().find(|l| l.starts_with("idle connections: ")).expect("the idle line");
    assert!(idle.contains("50 of 50 opened to max batch 16"), "{idle}");
    assert!(idle.contains("/predict meanwhile: 200"), "{idle}");
    assert!(idle.contains("KiB per connection") && idle.contains("VmHWM") && !idle.contains("unknown"), "{idle}");
    let files: Vec<usize> = idle
        .split("open files ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(files[1] >= files[0] + 50, "the server accepted the idle connections: {idle}");
    assert_eq!(std::fs::read_to_string(&md).unwrap(), stdout, "--out holds the printed table");

    // A running server, given by --url: one row per concurrency, no gain, no memory.
    let server = Server::start(&exp, &[]);
    let out = ok(&[
        &["bench", "serve", "--url", &server.base, "--image", image, "--concurrency", "2", "--idle", "5"][..],
        &small[..],
    ]
    .concat());
    let rows = table(&out);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!((rows[0].server.as_str(), rows[0].gain), (server.base.as_str(), None), "{out}");
    check_row(&rows[0], &out);
    assert!(out.contains("idle connections: 5 of 5") && out.contains("memory not known"), "{out}");
}

#[test]
fn bench_serve_refuses_bad_arguments_before_starting_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (exp, image, text_file) = (dir.join("exp"), dir.join("a.jpg"), dir.join("a.txt"));
    std::fs::create_dir(&exp).unwrap();
    std::fs::write(&image, [0xFF, 0xD8, 0xFF, 0xE0]).unwrap();
    std::fs::write(&text_file, "not an image").unwrap();
    let (e, i) = (s(&exp), s(&image));
    let cases = [
        (format!("bench serve {e} --image {}", s(&dir.join("missing.jpg"))), "--image"),
        (format!("bench serve {e} --image {}", s(&text_file)), "--image"),
        (format!("bench serve {e} --image {i} --concurrency 1,0"), "--concurrency"),
        (format!("bench serve {e} --image {i} --concurrency 8 --requests 4"), "--requests"),
        (format!("bench serve {e} --image {i} --rounds 0"), "--rounds"),
        (format!("bench serve {e} --image {i} --max-batch 1"), "--max-batch"),
        (format!("bench serve {e} --image {i}"), "EXPERIMENT_DIR"),
        (format!("bench serve --image {i}"), "EXPERIMENT_DIR"),
        (format!("bench serve --url https://127.0.0.1:1 --image {i}"), "--url"),
        (format!("bench serve {e} --url http://127.0.0.1:1 --image {i}"), "--url"),
        (format!("bench serve --url http://127.0.0.1:1 --max-batch 4 --image {i}"), "--max-batch"),
    ];
    for (line, names) in &cases {
        let out = cmd(line);
        assert_eq!(out.status.code(), Some(2), "{line}: {}", text(&out));
        assert!(text(&out).contains(names), "{line}: {}", text(&out));
    }
    // Past the checks, a manifest the server refuses: its exit code 2 is the bench's.
    std::fs::write(exp.join("manifest.json"), "{}").unwrap();
    let out = cmd(&format!("bench serve {e} --image {i} --out {}", s(&dir.join("no/such/folder.md"))));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--out"), "{}", text(&out));
    let out = cmd(&format!("bench serve {e} --image {i} --idle 0"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("did not start"), "{}", text(&out));
    assert_eq!(servers_on(&exp), 0);
}
