//! How the ensemble compares with its members: its cross-validated AUC beside the best member's and the
//! in-sample figure, the blend's weights, what test-time augmentation gained each member, how alike the
//! members' predictions are, and the held-out AUC of each fold.

use orchard_files::experiment_summary::ExperimentSummary;

use super::Section;
use crate::html::{escape, figure, number, Table};
use crate::load::Loaded;
use crate::plot::bars::Bars;
use crate::plot::heatmap::Heatmap;
use crate::plot::{color, legend, Mark};
use crate::ReportError;
use plotters::style::RGBColor;

/// The ends of an AUC axis: multiples of 0.05 a little beyond the lowest and highest values, so that
/// differences of a few thousandths show (every bar has its number written beside it).
pub fn auc_axis(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let finite = values.filter(|v| v.is_finite());
    let lowest = finite.clone().fold(1.0f64, f64::min);
    let highest = finite.fold(0.0f64, f64::max).max(lowest);
    let lo = (((lowest - 0.02) * 20.0).floor() / 20.0).clamp(0.0, 0.95);
    let hi = (((highest + 0.03) * 20.0).ceil() / 20.0).clamp(lo + 0.05, 1.0);
    (lo, hi)
}

/// The section, when the experiment has a summary.
pub fn section(loaded: &Loaded) -> Result<Option<Section>, ReportError> {
    let Some(s) = &loaded.summary else { return Ok(None) };
    let mut body = String::new();
    body.push_str(&format!(
        "<p class=\"note\">Blend: <strong>{}</strong>. The cross-validated AUC scores each fold's rows with weights \
         fitted on the other folds: it is what the ensemble can be expected to do on new images. The in-sample \
         figure fits and scores the same rows, and is optimistic.</p>",
        escape(&s.ensemble.method)
    ));
    body.push_str("<div class=\"grid\">");
    body.push_str(&comparison(s)?);
    if let Some(weights) = &s.ensemble.weights {
        body.push_str(&weights_chart(s, weights)?);
    }
    body.push_str(&tta_chart(s)?);
    if s.ensemble.correlation.len() > 1 {
        body.push_str(&correlation(s)?);
    }
    body.push_str("</div>");
    body.push_str(&tables(s));
    Ok(Some(Section { id: "ensemble", title: "Ensemble".into(), body }))
}

fn comparison(s: &ExperimentSummary) -> Result<String, ReportError> {
    let mut names = Vec::new();
    let mut values = Vec::new();
    let cv = s.ensemble.cv.is_some();
    names.push(if cv { "ensemble (CV)".to_string() } else { "ensemble".to_string() });
    values.push(vec![s.ensemble_auc]);
    if cv {
        names.push("ensemble (in-sample)".into());
        values.push(vec![s.ensemble.ensemble_oof.as_ref().and_then(|a| a.mean)]);
    }
    for m in &s.members {
        let best = s.best_member.as_ref().is_some_and(|(n, _)| n == &m.name);
        names.push(if best { format!("{} (best)", m.name) } else { m.name.clone() });
        values.push(vec![m.oof_auc]);
    }
    let range = auc_axis(values.iter().flatten().flatten().copied());
    let mut row_colors = vec![color(0)];
    if cv {
        row_colors.push(RGBColor(158, 198, 227));
    }
    row_colors.extend(s.members.iter().map(|m| {
        if s.best_member.as_ref().is_some_and(|(n, _)| n == &m.name) {
            color(1)
        } else {
            color(7)
        }
    }));
    let bars = Bars {
        id: "auc-comparison".into(),
        label: "AUC of the ensemble and of each member".into(),
        names,
        values,
        colors: vec![color(0)],
        row_colors: Some(row_colors),
        range,
        decimals: 4,
        desc: "mean column-wise ROC AUC".into(),
    };
    let keys = legend(&[
        ("ensemble".into(), color(0), Mark::Box),
        ("best member".into(), color(1), Mark::Box),
        ("other members".into(), color(7), Mark::Box),
    ]);
    let caption = "out of fold; CV: each fold blended by weights fitted without it; members with TTA";
    Ok(figure(&bars.draw()?, "Ensemble against members", caption, &keys))
}

fn weights_chart(s: &ExperimentSummary, weights: &[f64]) -> Result<String, ReportError> {
    let bars = Bars {
        id: "weights".into(),
        label: "ensemble weights".into(),
        names: s.ensemble.files.clone(),
        values: weights.iter().map(|w| vec![Some(*w)]).collect(),
        colors: vec![color(2)],
        row_colors: None,
        range: (0.0, 1.0),
        decimals: 3,
        desc: "weight in the blend".into(),
    };
    Ok(figure(&bars.draw()?, "Weights", "of the blend, fitted on all out-of-fold rows", ""))
}

fn tta_chart(s: &ExperimentSummary) -> Result<String, ReportError> {
    let values: Vec<Vec<Option<f64>>> = s.members.iter().map(|m| vec![m.oof_auc_without_tta, m.oof_auc]).collect();
    let range = auc_axis(values.iter().flatten().flatten().copied());
    let bars = Bars {
        id: "tta-gain".into(),
        label: "out-of-fold AUC without and with TTA".into(),
        names: s.members.iter().map(|m| m.name.clone()).collect(),
        values,
        colors: vec![color(7), color(1)],
        row_colors: None,
        range,
        decimals: 4,
        desc: "out-of-fold AUC".into(),
    };
    let keys =
        legend(&[("without TTA".into(), color(7), Mark::Box), (format!("with TTA ({})", s.tta), color(1), Mark::Box)]);
    Ok(figure(&bars.draw()?, "Test-time augmentation", "what TTA gained each member, out of fold", &keys))
}

fn correlation(s: &ExperimentSummary) -> Result<String, ReportError> {
    let c = &s.ensemble.correlation;
    let lowest = c.iter().flatten().flatten().copied().fold(1.0f64, f64::min);
    let map = Heatmap {
        id: "correlation".into(),
        label: "correlation of the members' predictions".into(),
        rows: s.ensemble.files.clone(),
        cols: s.ensemble.files.clone(),
        values: c.clone(),
        text: c.iter().map(|row| row.iter().map(|v| number(*v, 2)).collect()).collect(),
        range: (if lowest < 0.0 { -1.0 } else { 0.0 }, 1.0),
        row_desc: "member".into(),
        col_desc: "member".into(),
    };
    let caption = format!(
        "Pearson correlation of the members' {} predictions, averaged over classes: the less alike, the more a blend gains",
        s.ensemble.correlation_of
    );
    Ok(figure(&map.draw()?, "Correlation between members", &caption, ""))
}

fn tables(s: &ExperimentSummary) -> String {
    let mut out = String::from("<h3>Members</h3>");
    let mut t = Table::new(&[
        "member",
        "arch",
        "size",
        "epochs",
        "AUC without TTA",
        "AUC with TTA",
        "TTA gain",
        "weight",
        "folds' best",
    ])
    .right_from(2);
    for (i, m) in s.members.iter().enumerate() {
        let gain = m.oof_auc.zip(m.oof_auc_without_tta).map(|(a, b)| a - b);
        let weight = s.ensemble.weights.as_ref().and_then(|w| w.get(i).copied());
        let size = m.size.map_or_else(|| "default".into(), |(h, w)| format!("{w}×{h}"));
        let folds: Vec<String> = m.fold_best.iter().map(|v| number(*v, 4)).collect();
        t.row(vec![
            escape(&m.name),
            escape(&m.arch),
            size,
            m.epochs.to_string(),
            number(m.oof_auc_without_tta, 4),
            number(m.oof_auc, 4),
            gain.map_or_else(|| "–".into(), |g| format!("{g:+.4}")),
            number(weight, 3),
            format!("{} {}", escape(&m.monitor), folds.join(" ")),
        ]);
    }
    out.push_str(&t.html());
    if let Some(cv) = &s.ensemble.cv {
        out.push_str("<h3>Held-out AUC per fold</h3>");
        let mut t = Table::new(&["fold", "rows", "held-out AUC"]).right_from(1);
        for f in &cv.folds {
            t.row(vec![f.fold.to_string(), f.rows.to_string(), number(f.held_out.mean, 4)]);
        }
        t.row(vec!["mean of folds".into(), String::new(), number(cv.mean_of_folds, 4)]);
        t.row(vec![
            "pooled".into(),
            cv.folds.iter().map(|f| f.rows).sum::<usize>().to_string(),
            number(cv.pooled.mean, 4),
        ]);
        out.push_str(&t.html());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_axes_end_at_round_numbers_beyond_the_values() {
        assert_eq!(auc_axis([0.93, 0.88].into_iter()), (0.85, 1.0));
        assert_eq!(auc_axis([0.6641, 0.7007].into_iter()), (0.6, 0.75));
        assert_eq!(auc_axis([0.71].into_iter()), (0.65, 0.75));
        assert_eq!(auc_axis([0.2, f64::NAN].into_iter()), (0.15, 0.25));
        assert_eq!(auc_axis([0.99].into_iter()), (0.95, 1.0));
    }
}
