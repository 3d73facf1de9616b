//! The experiment file `orchard init` writes: what was found and chosen as comments at the top, then the
//! settings, each non-obvious one with its reason beside it.

use std::fmt::Write;
use std::path::Path;

use orchard_metrics::schedule::Schedule;
use toml::Value;

use super::{Choice, Findings, Request, Target};

/// A TOML string.
fn quoted(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

fn path(p: &Path) -> String {
    quoted(&p.display().to_string())
}

/// `text` as comment lines of at most 110 characters, the first starting with `first`, the others with
/// `next`.
fn wrap(text: &str, first: &str, next: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    for word in text.split(' ') {
        if line.len() + word.len() > 110 && line.len() > next.len() {
            out += line.trim_end();
            out.push('\n');
            line = next.to_string();
        }
        line += word;
        line.push(' ');
    }
    out += line.trim_end();
    out.push('\n');
    out
}

/// The whole file.
pub fn render(request: &Request, findings: &Findings, choice: &Choice) -> String {
    let file = request.file.display();
    let stem = request.file.file_stem().map_or_else(|| "experiment".into(), |s| s.to_string_lossy().into_owned());
    let mut s = String::new();
    let _ = writeln!(s, "# An experiment written by `orchard init` for {}.", request.data.display());
    let _ =
        writeln!(s, "# Check it without training (paths, data, weights, memory, time): orchard run {file} --dry-run");
    let _ = writeln!(s, "# Train, predict, ensemble and write the submission:             orchard run {file}");
    let _ = writeln!(s, "# Relative paths start from the folder orchard runs in.\n#\n# What the dataset holds:");
    for line in findings.description.to_string().lines() {
        let _ = writeln!(s, "#   {line}");
    }
    if findings.rare.is_empty() {
        let _ = writeln!(s, "#   no rare class (every class has at least {:.0}% of the rows)", 100.0 * super::RARE);
    }
    let _ = writeln!(s, "#\n# What was chosen, and why:");
    for reason in &choice.reasons {
        s += &wrap(reason, "#   - ", "#     ");
    }
    s.push('\n');
    let _ = writeln!(s, "data = {}", path(&request.data));
    let _ = writeln!(s, "out = {}", quoted(&format!("runs/{stem}")));
    let _ = writeln!(s, "{:<32}# stratified; see above", format!("folds = {}", choice.folds));
    let _ = writeln!(s, "seed = 0");
    let _ = writeln!(s, "{:<32}# none, flips or dihedral", format!("tta = {}", quoted(&choice.tta.to_string())));
    s.push('\n');
    ensemble(&mut s, choice);
    defaults(&mut s, choice);
    for m in &choice.members {
        let _ = writeln!(s, "\n[[member]]");
        let _ = writeln!(s, "name = {}", quoted(&m.name));
        let _ = writeln!(s, "arch = {}", quoted(&m.arch));
        let _ = writeln!(s, "size = {}", m.size);
        let _ = writeln!(s, "batch = {}", m.batch);
        if let Some(weights) = &m.weights {
            let _ = writeln!(s, "weights = {}\n# (checked: every tensor of the file fits {})", path(weights), m.arch);
        }
        if m.drop_path && !choice.pretrained && choice.target == Target::Cpu {
            let _ = writeln!(s, "model = {{ drop_path = 0.0 }}");
        }
    }
    s
}

fn ensemble(s: &mut String, choice: &Choice) {
    let _ = writeln!(
        s,
        "[ensemble]                      # as `orchard ensemble`: mean, weighted, rank, search, stack, ..."
    );
    let _ = writeln!(s, "method = {}", quoted(choice.ensemble));
    if choice.ensemble == "search" {
        let _ = writeln!(s, "search = \"greedy\"               # Caruana's selection, cross-validated over the folds");
        let _ = writeln!(
            s,
            "bags = 20                       # on random halves of the members, averaged: less over-fitting"
        );
        let _ = writeln!(s, "# search_space = \"ranks\"        # blend ranks instead: often better for AUC");
        let _ = writeln!(s, "[[ensemble.compare]]            # scored beside it in summary.txt; not submitted");
        let _ = writeln!(s, "name = \"equal\"\nmethod = \"mean\"");
    }
    s.push('\n');
}

fn defaults(s: &mut String, choice: &Choice) {
    let _ = writeln!(s, "# Settings every member starts from, in the layout of `orchard train --config`.");
    let _ = writeln!(s, "[defaults]\nepochs = {}", choice.epochs);
    match choice.target {
        Target::Cpu => {
            let _ = writeln!(s, "device = \"cpu\"");
        }
        Target::Cuda { .. } => {
            let _ = writeln!(s, "# device: auto, the GPU (under `orchard launch`, each replica's own)");
            let _ = writeln!(s, "# precision = \"bf16\"            # faster on recent GPUs, half the activations");
        }
    }
    if choice.freeze_epochs > 0 {
        let line = format!("freeze_epochs = {}", choice.freeze_epochs);
        let _ = writeln!(s, "{line:<32}# the head's warm-up: backbone frozen");
    }
    if !choice.pretrained {
        let _ = writeln!(s, "batch_norm_momentum = 0.9       # from scratch: statistics that keep up");
    }
    if !choice.pretrained && choice.target == Target::Cpu {
        let _ = writeln!(s, "[defaults.model]\ndropout = 0.0                   # short runs from scratch learn faster");
    }
    let _ = writeln!(s, "[defaults.optimizer]\nkind = \"adam\"                   # Keras' Adam, as the reference");
    if choice.pretrained {
        let _ =
            writeln!(s, "[defaults.optimizer.group_lr]\nhead = 10.0                     # the new head learns faster");
    }
    match choice.schedule {
        Schedule::Reference(r) => {
            let _ = writeln!(s, "[defaults.schedule]");
            let _ = writeln!(
                s,
                "per_replica = true              # max is one replica's: N data-parallel replicas peak at N × it"
            );
            let _ = writeln!(s, "[defaults.schedule.function]    # the reference notebook's lrfn, per epoch");
            let _ = writeln!(s, "kind = \"reference\"\nstart = {:?}\nmax = {:?}\nmin = {:?}", r.start, r.max, r.min);
            let _ = writeln!(
                s,
                "rampup_epochs = {:?}\nsustain_epochs = {:?}\nexp_decay = {:?}",
                r.rampup_epochs, r.sustain_epochs, r.exp_decay
            );
        }
        Schedule::WarmupCosine(w) => {
            let _ = writeln!(s, "[defaults.schedule.function]    # linear warm-up, then cosine decay");
            let _ = writeln!(
                s,
                "kind = \"warmup_cosine\"\nwarmup = {:?}\ntotal = {:?}\nmax = {:?}\nmin = {:?}",
                w.warmup, w.total, w.max, w.min
            );
        }
        other => {
            // `choose` picks only the two above; any other is written as the trainer reads it.
            let table = toml::to_string(&other).unwrap_or_default();
            let _ = write!(s, "[defaults.schedule.function]\n{table}");
        }
    }
}
