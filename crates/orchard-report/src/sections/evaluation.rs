//! What the ensemble's (or the run's) predictions get right and wrong, against the dataset's labels: ROC
//! curves per class for the ensemble and for each member, the confusion matrix in counts and row shares,
//! precision, recall and F1 per class, and the class pairs most often confused.

use orchard_files::Task;
use orchard_metrics::{ClassScores, Confusion};

use super::{member_id, Section};
use crate::evaluate::{self, Evaluation, Scored, THRESHOLD};
use crate::html::{escape, figure, number, Table};
use crate::load::{Kind, Loaded};
use crate::plot::heatmap::Heatmap;
use crate::plot::lines::{LineChart, Series, Style};
use crate::plot::{color, legend, Mark};
use crate::ReportError;

/// Most confused pairs listed.
const PAIRS: usize = 10;

/// The section, when there are predictions and labels to compare.
pub fn section(loaded: &Loaded, scored: Option<&Scored>) -> Result<Option<Section>, ReportError> {
    let (Some(scored), Some(evaluated), Some(data)) = (scored, &loaded.evaluated, &loaded.data) else {
        return Ok(None);
    };
    let evaluation = scored.evaluate();
    let main_id = if loaded.kind == Kind::Experiment { "roc-ensemble" } else { "roc-run" };
    let mut body = format!(
        "<p class=\"note\">{}{} rows of <strong>{}</strong>, {}.{}</p>",
        if evaluated.honest { "" } else { "<span class=\"tag warn\">in-sample</span> " },
        scored.rows(),
        escape(&evaluated.name),
        escape(&evaluated.how),
        if evaluated.honest { "" } else { " The numbers below are optimistic." }
    );
    body.push_str("<h3>ROC curves</h3><div class=\"grid\">");
    body.push_str(&roc(main_id, &evaluated.name, scored, &evaluation)?);
    if loaded.kind == Kind::Experiment {
        for (m, member) in loaded.members.iter().enumerate() {
            let Some((s, _)) = member.oof.as_ref().and_then(|p| evaluate::score(p, &data.truth)) else { continue };
            body.push_str(&roc(&format!("roc-{}", member_id(m)), &member.name, &s, &s.evaluate())?);
        }
    }
    body.push_str("</div>");
    if let Some(confusion) = &evaluation.confusion {
        body.push_str("<h3>Confusion matrix</h3><div class=\"grid two\">");
        body.push_str(&confusion_maps(&scored.classes, confusion)?);
        body.push_str("</div>");
    }
    body.push_str("<div class=\"side\"><div>");
    body.push_str(&class_table(scored, &evaluation));
    body.push_str("</div>");
    if let Some(confusion) = &evaluation.confusion {
        body.push_str(&format!("<div>{}</div>", pairs(&scored.classes, confusion)));
    }
    body.push_str("</div>");
    Ok(Some(Section { id: "predictions", title: "Predictions".into(), body }))
}

/// One chart: a curve per class, with its AUC in the legend.
fn roc(id: &str, name: &str, scored: &Scored, evaluation: &Evaluation) -> Result<String, ReportError> {
    let mut chart = LineChart::new(id, format!("ROC curves of {name}"), "false-positive rate", "true-positive rate");
    chart.x_range = Some((0.0, 1.0));
    chart.y_range = Some((0.0, 1.0));
    chart.diagonal = true;
    chart.size = (380, 350);
    let mut keys = Vec::new();
    for (c, curve) in evaluation.curves.iter().enumerate() {
        let Some(curve) = curve else { continue };
        chart.series.push(Series {
            color: color(c),
            style: Style::Solid,
            points: curve.iter().map(|p| (p.fpr, p.tpr)).collect(),
        });
        keys.push((
            format!("{} (AUC {})", scored.classes[c], number(evaluation.auc.per_class[c], 4)),
            color(c),
            Mark::Line,
        ));
    }
    let title = format!("{name}: mean AUC {}", number(evaluation.auc.mean, 4));
    Ok(figure(&chart.draw()?, &title, "one-vs-rest per class; dashed: chance", &legend(&keys)))
}

fn confusion_maps(classes: &[String], confusion: &Confusion) -> Result<String, ReportError> {
    let counts = &confusion.counts;
    let highest = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let counts_map = Heatmap {
        id: "confusion-counts".into(),
        label: "confusion matrix, counts".into(),
        rows: classes.to_vec(),
        cols: classes.to_vec(),
        values: counts.iter().map(|r| r.iter().map(|&n| Some(n as f64)).collect()).collect(),
        text: counts.iter().map(|r| r.iter().map(u64::to_string).collect()).collect(),
        range: (0.0, highest),
        row_desc: "true class".into(),
        col_desc: "predicted class".into(),
    };
    let shares = confusion.row_normalised();
    let shares_map = Heatmap {
        id: "confusion-normalised".into(),
        label: "confusion matrix, share of each true class".into(),
        values: shares
            .iter()
            .zip(counts)
            .map(|(r, c)| r.as_ref().map_or_else(|| vec![None; c.len()], |r| r.iter().map(|&v| Some(v)).collect()))
            .collect(),
        text: shares
            .iter()
            .zip(counts)
            .map(|(r, c)| {
                r.as_ref().map_or_else(
                    || vec!["–".to_string(); c.len()],
                    |r| r.iter().map(|v| format!("{:.0}%", v * 100.0)).collect(),
                )
            })
            .collect(),
        range: (0.0, 1.0),
        ..counts_map.clone()
    };
    Ok(figure(&counts_map.draw()?, "Counts", "images of each true class (rows) by predicted class (argmax)", "")
        + &figure(
            &shares_map.draw()?,
            "Shares of each true class",
            "each row sums to 100%; the diagonal is each class's recall",
            "",
        ))
}

fn class_table(scored: &Scored, evaluation: &Evaluation) -> String {
    let decision = match scored.task {
        Task::MultiClass => "the argmax".to_string(),
        Task::MultiLabel => format!("each label at probability ≥ {THRESHOLD}"),
    };
    let mut out = format!("<h3>Per class</h3><p class=\"note\">Decisions by {decision}.</p>");
    let mut t =
        Table::new(&["class", "images", "AUC", "precision", "recall", "F1", "true pos.", "false pos.", "false neg."])
            .right_from(1);
    let scores: Vec<ClassScores> = evaluation.counts.iter().map(|c| c.scores()).collect();
    for (c, name) in scored.classes.iter().enumerate() {
        let (s, n) = (scores[c], evaluation.counts[c]);
        t.row(vec![
            escape(name),
            s.support.to_string(),
            number(evaluation.auc.per_class[c], 4),
            number(s.precision, 3),
            number(s.recall, 3),
            number(s.f1, 3),
            n.tp.to_string(),
            n.fp.to_string(),
            n.fn_.to_string(),
        ]);
    }
    let mean = |f: fn(&ClassScores) -> Option<f64>| {
        let v: Vec<f64> = scores.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    t.row(vec![
        "<strong>mean</strong>".into(),
        scored.rows().to_string(),
        number(evaluation.auc.mean, 4),
        number(mean(|s| s.precision), 3),
        number(mean(|s| s.recall), 3),
        number(mean(|s| s.f1), 3),
        String::new(),
        String::new(),
        String::new(),
    ]);
    out.push_str(&t.html());
    out
}

fn pairs(classes: &[String], confusion: &Confusion) -> String {
    let pairs = confusion.confused_pairs();
    let mut out = String::from("<h3>Most confused</h3>");
    if pairs.is_empty() {
        out.push_str("<p class=\"note\">No image was given the wrong class.</p>");
        return out;
    }
    let mut t = Table::new(&["true class", "predicted as", "images", "share of the true class"]).right_from(2);
    for p in pairs.iter().take(PAIRS) {
        let total: u64 = confusion.counts[p.truth].iter().sum();
        t.row(vec![
            escape(&classes[p.truth]),
            escape(&classes[p.predicted]),
            p.count.to_string(),
            format!("{:.1}%", p.count as f64 / total as f64 * 100.0),
        ]);
    }
    out.push_str(&t.html());
    out
}
