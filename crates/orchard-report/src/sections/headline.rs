//! The top of the page: what this is and the numbers that matter most, large. For an experiment: the
//! ensemble's cross-validated AUC beside its best member's, the gain, and the optimistic in-sample figure;
//! for a run: its best validation AUC.

use crate::html::{escape, number};
use crate::load::{Kind, Loaded};

fn card(key: &str, value: &str, class: &str) -> String {
    format!(
        "<div class=\"card {class}\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
        escape(key),
        escape(value)
    )
}

/// The header's HTML.
pub fn html(loaded: &Loaded) -> String {
    let mut cards = Vec::new();
    let units: usize = loaded.members.iter().map(|m| m.units.len()).sum();
    match (loaded.kind, &loaded.summary) {
        (Kind::Experiment, Some(s)) => {
            let cv = s.ensemble.cv.is_some();
            let label = if cv { "ensemble AUC (cross-validated)" } else { "ensemble AUC (out-of-fold)" };
            cards.push(card(label, &number(s.ensemble_auc, 4), ""));
            if let Some((name, auc)) = &s.best_member {
                cards.push(card(&format!("best member: {name}"), &format!("{auc:.4}"), ""));
                if let Some(e) = s.ensemble_auc {
                    let gain = e - auc;
                    cards.push(card(
                        "ensemble − best member",
                        &format!("{gain:+.4}"),
                        if gain >= 0.0 { "good" } else { "bad" },
                    ));
                }
            }
            if cv {
                let in_sample = s.ensemble.ensemble_oof.as_ref().and_then(|a| a.mean);
                cards.push(card("in-sample (optimistic)", &number(in_sample, 4), ""));
            }
            cards.push(card("members × folds", &format!("{} × {}", s.members.len(), s.folds), ""));
            cards.push(card("TTA", &s.tta.to_string(), ""));
        }
        (Kind::Experiment, None) => {
            cards.push(card("members", &loaded.members.len().to_string(), ""));
            cards.push(card("units trained", &units.to_string(), ""));
        }
        (Kind::Run, _) => {
            if let Some(unit) = loaded.units().next() {
                let best = unit
                    .history
                    .iter()
                    .filter_map(|r| r.val_auc)
                    .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))));
                cards.push(card("best validation AUC", &number(best, 4), ""));
                cards.push(card("epochs", &unit.history.len().to_string(), ""));
                cards.push(card("architecture", &unit.config.model.arch, ""));
                if let Some(fold) = unit.fold {
                    cards.push(card(
                        "validation fold",
                        &format!("{fold} of {}", unit.config.data.folds.unwrap_or(0)),
                        "",
                    ));
                }
            }
        }
    }
    if let (Some(data), Some(e)) = (&loaded.data, &loaded.evaluated) {
        cards.push(card("classes", &data.truth.classes.len().to_string(), ""));
        cards.push(card("rows evaluated", &e.predictions.rows().to_string(), ""));
    }
    let what = match loaded.kind {
        Kind::Experiment => "experiment",
        Kind::Run => "training run",
    };
    format!(
        "<header class=\"top\"><h1>Orchard report: {}</h1><div class=\"sub\">{what} · {} · Orchard {}</div><div class=\"cards\">{}</div></header>",
        escape(&loaded.title()),
        escape(&loaded.dir.display().to_string()),
        env!("CARGO_PKG_VERSION"),
        cards.join("")
    )
}
