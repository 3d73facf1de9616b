//! How it all was set up and what it cost: the versions and devices, each unit's timings (epoch times,
//! images per second), and each member's resolved configuration as its runs saved it.

use std::collections::BTreeSet;

use super::Section;
use crate::html::{escape, number, Table};
use crate::load::Loaded;
use crate::Options;

/// The section.
pub fn section(loaded: &Loaded, options: &Options) -> Section {
    let mut body = String::from("<h3>Versions and devices</h3>");
    let mut t = Table::new(&[]);
    let devices: BTreeSet<String> =
        loaded.units().map(|u| format!("{} ({:?})", u.config.device, u.config.precision).to_lowercase()).collect();
    let replicas: BTreeSet<usize> = loaded.units().filter_map(|u| u.state.as_ref().map(|s| s.replicas)).collect();
    let replicas: Vec<String> = replicas.iter().map(usize::to_string).collect();
    let rows = [
        ("Orchard", env!("CARGO_PKG_VERSION").to_string()),
        (
            "libtorch",
            options.libtorch.clone().unwrap_or_else(|| "not known to the program that wrote this report".into()),
        ),
        ("device (precision)", devices.into_iter().collect::<Vec<_>>().join(", ")),
        ("data-parallel replicas", if replicas.is_empty() { "–".into() } else { replicas.join(", ") }),
        ("run directory", loaded.dir.display().to_string()),
        ("dataset", loaded.data.as_ref().map_or_else(|| "not found".into(), |d| d.root.display().to_string())),
    ];
    for (k, v) in rows {
        t.row(vec![escape(k), escape(&v)]);
    }
    body.push_str(&t.html());

    body.push_str("<h3>Timings</h3>");
    let mut t = Table::new(&[
        "member",
        "fold",
        "epochs",
        "best epoch",
        "images/s",
        "train s/epoch",
        "validation s/epoch",
        "total min",
    ])
    .right_from(2);
    for unit in loaded.units() {
        let n = unit.history.len() as f64;
        let mean = |f: fn(&orchard_files::history::EpochRecord) -> f64| {
            (n > 0.0).then(|| unit.history.iter().map(f).sum::<f64>() / n)
        };
        let total: f64 = unit.history.iter().map(|r| r.train_seconds + r.val_seconds).sum();
        t.row(vec![
            escape(&unit.member),
            unit.fold.map_or_else(|| "–".into(), |f| f.to_string()),
            unit.history.len().to_string(),
            unit.state.as_ref().and_then(|s| s.best_epoch).map_or_else(|| "–".into(), |e| e.to_string()),
            number(mean(|r| r.images_per_second), 1),
            number(mean(|r| r.train_seconds), 1),
            number(mean(|r| r.val_seconds), 2),
            number(Some(total / 60.0), 2),
        ]);
    }
    body.push_str(&t.html());

    body.push_str("<h3>Configuration</h3><p class=\"note\">Each member's resolved configuration, as its first fold saved it \
                   (<code>config.toml</code>; the folds differ only in <code>out</code> and <code>data.fold</code>).</p><div class=\"configs\">");
    for member in &loaded.members {
        if let Some(unit) = member.units.first() {
            body.push_str(&format!(
                "<div><strong>{}</strong><pre>{}</pre></div>",
                escape(&member.name),
                escape(&unit.config.to_toml())
            ));
        }
    }
    body.push_str("</div>");
    if let Some(summary) = &loaded.summary {
        body.push_str(&format!("<h3>Summary</h3><pre>{}</pre>", escape(&summary.text())));
    }
    Section { id: "setup", title: "Setup".into(), body }
}
