//! The schedules against independent computations: the notebook's `lrfn` run verbatim in Python, and torch's
//! `OneCycleLR`. Needs `ORCHARD_PYTHON` (a Python with torch).

mod common;

use orchard_metrics::{OneCycle, Reference};
use serde_json::json;

/// The notebook's function, verbatim apart from taking its constants as arguments.
const LRFN: &str = r#"
import json, sys
cfg = json.load(open(sys.argv[1]))
out = []
for c in cfg["reference"]:
    LR_START, LR_MAX, LR_MIN = c["start"], c["lr_max_per_replica"] * c["replicas"], c["min"]
    LR_RAMPUP_EPOCHS, LR_SUSTAIN_EPOCHS, LR_EXP_DECAY = c["rampup"], c["sustain"], c["decay"]
    def lrfn(epoch):
        if epoch < LR_RAMPUP_EPOCHS:
            lr = (LR_MAX - LR_START) / LR_RAMPUP_EPOCHS * epoch + LR_START
        elif epoch < LR_RAMPUP_EPOCHS + LR_SUSTAIN_EPOCHS:
            lr = LR_MAX
        else:
            lr = (LR_MAX - LR_MIN) * LR_EXP_DECAY**(epoch - LR_RAMPUP_EPOCHS - LR_SUSTAIN_EPOCHS) + LR_MIN
        return lr
    out.append([lrfn(e) for e in range(c["epochs"])])
print(json.dumps(out))
"#;

const ONE_CYCLE: &str = r#"
import json, sys, warnings
import torch
warnings.simplefilter("ignore")
cfg = json.load(open(sys.argv[1]))
out = []
for c in cfg["one_cycle"]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=c["max"])
    kw = {k: c[k] for k in ("pct_start", "div_factor", "final_div_factor") if k in c}
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c["max"], total_steps=c["total"], **kw)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(c["total"] - 1):
        opt.step(); sched.step(); lrs.append(sched.get_last_lr()[0])
    out.append(lrs)
print(json.dumps(out))
"#;

fn assert_close(ours: f64, theirs: f64, rel: f64, what: &str) {
    assert!((ours - theirs).abs() <= rel * theirs.abs(), "{what}: ours {ours:e} reference {theirs:e}");
}

#[test]
fn reference_schedule_equals_the_notebooks_lrfn() {
    // (start, max per replica, min, rampup, sustain, decay, replicas)
    let configs = [
        (1e-5, 1e-4, 1e-5, 15u32, 3u32, 0.8, 1u32),
        (1e-5, 1e-4, 1e-5, 15, 3, 0.8, 8),
        (3e-6, 2.5e-4, 1e-6, 5, 0, 0.7, 8),
        (1e-4, 1e-3, 2e-5, 1, 4, 0.95, 2),
    ];
    let input = json!({"reference": configs.iter().map(|&(start, max, min, rampup, sustain, decay, replicas)| json!({
        "start": start, "lr_max_per_replica": max, "min": min, "rampup": rampup, "sustain": sustain,
        "decay": decay, "replicas": replicas, "epochs": 60})).collect::<Vec<_>>()});
    let expected = common::run_python(LRFN, &input);
    for (i, &(start, max, min, rampup, sustain, decay, replicas)) in configs.iter().enumerate() {
        let schedule = if i < 2 {
            Reference::keras_notebook(replicas)
        } else {
            Reference {
                start,
                max: max * f64::from(replicas),
                min,
                rampup_epochs: rampup.into(),
                sustain_epochs: sustain.into(),
                exp_decay: decay,
            }
        };
        for (epoch, want) in expected[i].as_array().unwrap().iter().enumerate() {
            assert_close(
                schedule.lr(epoch as f64),
                want.as_f64().unwrap(),
                1e-15,
                &format!("config {i} epoch {epoch}"),
            );
        }
    }
}

#[test]
fn one_cycle_equals_torch() {
    let configs = [
        json!({"total": 100, "max": 0.1}),
        json!({"total": 37, "max": 3e-3}),
        json!({"total": 1000, "max": 1e-3, "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}),
    ];
    let expected = common::run_python(ONE_CYCLE, &json!({"one_cycle": configs}));
    for (i, c) in configs.iter().enumerate() {
        let mut s = OneCycle::new(c["total"].as_f64().unwrap(), c["max"].as_f64().unwrap());
        if let Some(p) = c.get("pct_start") {
            s.pct_start = p.as_f64().unwrap();
            s.div_factor = c["div_factor"].as_f64().unwrap();
            s.final_div_factor = c["final_div_factor"].as_f64().unwrap();
        }
        let lrs = expected[i].as_array().unwrap();
        assert_eq!(lrs.len() as f64, s.total);
        for (step, want) in lrs.iter().enumerate() {
            assert_close(s.lr(step as f64), want.as_f64().unwrap(), 1e-12, &format!("config {i} step {step}"));
        }
    }
}
