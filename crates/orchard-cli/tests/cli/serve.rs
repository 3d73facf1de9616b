//! `orchard serve` on a tiny real experiment (two members × two folds, one epoch of 32-pixel images): the
//! real binary listening on loopback, asked by a real HTTP client. Its answers must be the rows gather wrote
//! for the same test images (each member's `test.csv`, the blended `submission.csv`), alone or batched with
//! concurrent requests; bad input must be refused with a JSON error and the right status.

use std::collections::HashMap;
use std::process::Command;

use base64::Engine;
use orchard_files::Predictions;
use serde_json::{json, Value};

use crate::common::{tiny_experiment, Server};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Status, `x-orchard-batch-size` (0 when absent) and JSON body of a request.
fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, usize, Value) {
    let mut response = response.unwrap();
    let batch = response.headers().get("x-orchard-batch-size").map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    let text = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (response.status().as_u16(), batch, json)
}

fn get(base: &str, path: &str) -> (u16, Value) {
    let (status, _, json) = answer(agent().get(format!("{base}{path}")).call());
    (status, json)
}

fn post(base: &str, path: &str, body: &[u8]) -> (u16, usize, Value) {
    answer(agent().post(format!("{base}{path}")).send(body))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{what}: served {got:?}, gather wrote {want:?}");
    }
}

/// A PNG of only a header declaring `w`×`h` RGB pixels.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    drop(encoder.write_header().unwrap());
    out
}

/// `jpeg` with its frame header (SOF0 or SOF2) rewritten to declare `w`×`h` pixels.
fn jpeg_declaring(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out.windows(2).position(|m| m[0] == 0xFF && (m[1] == 0xC0 || m[1] == 0xC2)).expect("a frame header");
    out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    out
}

#[test]
fn serve_answers_what_gather_wrote_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, exp) = tiny_experiment(tmp.path());
    let members = ["mnv2", "lite0"].map(|m| Predictions::read(&exp.join("members").join(m).join("test.csv")).unwrap());
    let submission = Predictions::read(&exp.join("submission.csv")).unwrap();
    let k = submission.classes.len();
    let row = |p: &Predictions, id: &str| {
        let i = p.ids.iter().position(|x| x == id).unwrap();
        p.values[i * k..(i + 1) * k].to_vec()
    };
    let images: Vec<(String, Vec<u8>)> = submission
        .ids
        .iter()
        .map(|id| (id.clone(), std::fs::read(data.join("images").join(format!("{id}.jpg"))).unwrap()))
        .collect();

    let server = Server::start(&exp, &["--max-delay-ms", "50", "--max-body-mb", "1"]);
    let base = server.base.as_str();

    // Metadata and health.
    assert_eq!(get(base, "/v2/health/live"), (200, json!({"live": true})));
    assert_eq!(get(base, "/v2/health/ready"), (200, json!({"ready": true})));
    assert_eq!(get(base, "/v2/models/ensemble/ready"), (200, json!({"name": "ensemble", "ready": true})));
    assert_eq!(get(base, "/v2/models"), (200, json!({"models": ["ensemble"]})));
    let (status, meta) = get(base, "/v2");
    assert_eq!((status, meta["name"].as_str()), (200, Some("orchard")));
    let (status, meta) = get(base, "/v2/models/ensemble");
    assert_eq!(status, 200);
    assert_eq!(meta["inputs"][0]["datatype"], "BYTES");
    assert_eq!(meta["outputs"][0], json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, k]}));
    assert_eq!(meta["parameters"]["classes"], json!(submission.classes));
    let (status, err) = get(base, "/v2/models/other");
    assert_eq!(status, 404);
    assert!(err["error"].as_str().unwrap().contains("other"), "{err}");
    assert_eq!(get(base, "/v2/models/other/ready").0, 404);

    // Each test image alone: the members' rows and the submission's.
    let mut served = HashMap::new();
    for (id, bytes) in &images {
        let (status, batch, answer) = post(base, "/predict?members=true", bytes);
        assert_eq!((status, batch), (200, 1), "{answer}");
        assert_eq!(answer["classes"], json!(submission.classes));
        for (m, name) in ["mnv2", "lite0"].iter().enumerate() {
            close(&floats(&answer["members"][name]), &row(&members[m], id), &format!("{id} member {name}"));
        }
        let p = floats(&answer["probabilities"]);
        close(&p, &row(&submission, id), &format!("{id} ensemble"));
        let best = (0..k).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(answer["label"], json!(submission.classes[best]));
        served.insert(id.clone(), p);
    }

    // Open Inference Protocol: every image in one request, in order.
    let engine = base64::engine::general_purpose::STANDARD;
    let request = json!({"id": "r1", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [images.len()],
        "data": images.iter().map(|(_, b)| engine.encode(b)).collect::<Vec<_>>()}]});
    let (status, batch, answer) = post(base, "/v2/models/ensemble/infer", request.to_string().as_bytes());
    assert_eq!((status, batch), (200, images.len()), "{answer}");
    assert_eq!(answer["id"], "r1");
    let output = &answer["outputs"][0];
    assert_eq!((&output["datatype"], &output["shape"]), (&json!("FP32"), &json!([images.len(), k])));
    let flat = floats(&output["data"]);
    for (i, (id, _)) in images.iter().enumerate() {
        close(&flat[i * k..(i + 1) * k], &served[id], &format!("{id} by infer"));
    }
    let (status, _, _) = post(base, "/v2/models/other/infer", request.to_string().as_bytes());
    assert_eq!(status, 404);

    // Concurrent clients: every answer right, and some shared a forward pass.
    let largest = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (images, served) = (&images, &served);
                scope.spawn(move || {
                    let mut largest = 0;
                    for r in 0..3 {
                        let (id, bytes) = &images[(t + r) % images.len()];
                        let (status, batch, answer) = post(base, "/predict", bytes);
                        assert_eq!(status, 200, "{answer}");
                        close(&floats(&answer["probabilities"]), &served[id], &format!("{id} concurrently"));
                        largest = largest.max(batch);
                    }
                    largest
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).max().unwrap()
    });
    assert!((2..=16).contains(&largest), "largest batch {largest}: requests were not batched");

    // Bad input: a JSON error with a 4xx status, each saying why.
    let refused = |body: &[u8], path: &str, want: u16, says: &str| {
        let (status, _, answer) = post(base, path, body);
        let message = answer["error"].as_str().unwrap_or_else(|| panic!("no error message: {answer}"));
        assert_eq!(status, want, "{message}");
        assert!(message.contains(says), "{message}");
    };
    refused(b"garbage bytes", "/predict", 400, "not a JPEG or PNG");
    let jpeg = &images[0].1;
    refused(&jpeg[..jpeg.len().min(300)], "/predict", 400, "corrupt");
    refused(&png_header(65000, 65000), "/predict", 413, "65000x65000");
    refused(&jpeg_declaring(jpeg, 65000, 65000), "/predict", 413, "65000x65000");
    refused(&vec![0; (1 << 20) + 100_000], "/predict", 413, "length limit");
    refused(b"{not json", "/v2/models/ensemble/infer", 400, "bad inference request");
    let fp32 = json!({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": ["x"]}]});
    refused(fp32.to_string().as_bytes(), "/v2/models/ensemble/infer", 400, "BYTES");
    let not_base64 = json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]});
    refused(not_base64.to_string().as_bytes(), "/v2/models/ensemble/infer", 400, "base64");

    // Still serving after all that; SIGTERM then stops it cleanly.
    assert_eq!(post(base, "/predict", &images[0].1).0, 200);
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "after SIGTERM: {status}");
    assert_eq!(server.lines.next().unwrap().unwrap(), "stopped");
}
