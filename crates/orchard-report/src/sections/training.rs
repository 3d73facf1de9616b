//! How each member trained: its learning-rate schedule drawn from the schedule function in its
//! configuration (per step where the run stepped it, per epoch otherwise) with the rate each epoch
//! recorded as dots, then the training and validation loss and the validation AUC of every fold, epoch
//! by epoch.

use orchard_files::history::EpochRecord;
use orchard_metrics::Schedule;

use super::{member_id, Section};
use crate::html::{escape, figure};
use crate::load::{Loaded, Member, Unit};
use crate::plot::lines::{LineChart, Series, Style};
use crate::plot::{color, legend, Mark};
use crate::ReportError;

/// Most points of a drawn schedule.
const SCHEDULE_POINTS: u64 = 600;

/// The section.
pub fn section(loaded: &Loaded) -> Result<Section, ReportError> {
    let mut body = String::new();
    for (m, member) in loaded.members.iter().enumerate() {
        let Some(first) = member.units.first() else { continue };
        let size = first.config.data.size.map_or_else(|| "default size".into(), |(h, w)| format!("{w}×{h}"));
        body.push_str(&format!(
            "<h3>{} <span class=\"muted\">{}, {size}, {} fold(s)</span></h3><div class=\"grid\">",
            escape(&member.name),
            escape(&first.config.model.arch),
            member.units.len()
        ));
        body.push_str(&schedule_chart(m, member)?);
        if member.units.iter().any(|u| !u.history.is_empty()) {
            body.push_str(&loss_chart(m, member)?);
            body.push_str(&auc_chart(m, member)?);
        } else {
            body.push_str("<p class=\"note\">No epoch recorded yet.</p>");
        }
        body.push_str("</div>");
    }
    Ok(Section { id: "training", title: "Training".into(), body })
}

fn unit_name(unit: &Unit) -> String {
    unit.fold.map_or_else(|| "run".into(), |f| format!("fold {f}"))
}

/// The schedule a unit followed (its peak scaled by the replicas it ran on) and the optimizer steps of
/// one of its epochs, when its checkpoint says.
fn schedule_of(unit: &Unit) -> (Schedule, Option<u64>) {
    let replicas = unit.state.as_ref().map_or(1, |s| s.replicas.max(1));
    let steps =
        unit.state.as_ref().filter(|s| s.epochs_done > 0 && s.step > 0).map(|s| s.step / u64::from(s.epochs_done));
    (unit.config.schedule.for_replicas(replicas), steps)
}

/// The schedule as drawn: per step (sampled to at most [`SCHEDULE_POINTS`]) when the run stepped it and its
/// steps per epoch are known, finely sampled when they are not, a staircase when it changed per epoch.
pub fn schedule_points(
    schedule: &Schedule,
    per_step: bool,
    steps_per_epoch: Option<u64>,
    epochs: u32,
) -> Vec<(f64, f64)> {
    let epochs_f = f64::from(epochs);
    match (per_step, steps_per_epoch) {
        (true, Some(spe)) => {
            let total = spe * u64::from(epochs);
            let stride = total.div_ceil(SCHEDULE_POINTS).max(1);
            let mut points: Vec<(f64, f64)> = (0..total)
                .step_by(stride as usize)
                .map(|s| (s as f64 / spe as f64, schedule.lr_at_step(s, spe)))
                .collect();
            points.push((epochs_f, schedule.lr_at_step(total, spe)));
            points
        }
        (true, None) => {
            let n = (u64::from(epochs) * 50).min(SCHEDULE_POINTS);
            (0..=n).map(|i| i as f64 * epochs_f / n as f64).map(|e| (e, schedule.lr(e))).collect()
        }
        (false, _) => (0..epochs)
            .flat_map(|e| {
                let lr = schedule.lr(f64::from(e));
                [(f64::from(e), lr), (f64::from(e + 1), lr)]
            })
            .collect(),
    }
}

fn schedule_chart(m: usize, member: &Member) -> Result<String, ReportError> {
    let first = &member.units[0];
    let (schedule, steps) = schedule_of(first);
    let per_step = first.config.schedule.per_step;
    let epochs = member.units.iter().map(|u| u.config.epochs).max().unwrap_or(1).max(1);
    let mut chart = LineChart::new(
        format!("lr-{}", member_id(m)),
        format!("learning-rate schedule of {}", member.name),
        "epoch",
        "learning rate",
    );
    chart.series.push(Series {
        color: color(7),
        style: Style::Solid,
        points: schedule_points(&schedule, per_step, steps, epochs),
    });
    let how = if per_step { "per step" } else { "per epoch" };
    let mut keys = vec![(format!("schedule ({how})"), color(7), Mark::Line)];
    let recorded: Vec<Vec<(f64, f64)>> =
        member.units.iter().map(|u| u.history.iter().map(|r| (f64::from(r.epoch), r.lr)).collect()).collect();
    let longest = recorded.iter().max_by_key(|p| p.len()).cloned().unwrap_or_default();
    if recorded.iter().all(|p| longest.starts_with(p)) {
        // The folds followed the same schedule: one set of dots says it.
        if !longest.is_empty() {
            chart.series.push(Series { color: color(0), style: Style::Dots, points: longest });
            let name = if member.units.len() > 1 { "recorded (every fold)" } else { "recorded" };
            keys.push((name.to_string(), color(0), Mark::Dot));
        }
    } else {
        for (i, (unit, points)) in member.units.iter().zip(recorded).enumerate().filter(|(_, (_, p))| !p.is_empty()) {
            chart.series.push(Series { color: color(i), style: Style::Dots, points });
            keys.push((format!("recorded, {}", unit_name(unit)), color(i), Mark::Dot));
        }
    }
    chart.y_range =
        Some((0.0, chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max) * 1.08));
    chart.x_range = Some((0.0, f64::from(epochs)));
    chart.integer_x = true;
    let caption = "the configuration's schedule function; dots: the rate each epoch recorded at its start";
    Ok(figure(&chart.draw()?, &format!("{}: learning rate", member.name), caption, &legend(&keys)))
}

fn epoch_series(unit: &Unit, i: usize, style: Style, value: fn(&EpochRecord) -> Option<f64>) -> Option<Series> {
    let points: Vec<(f64, f64)> =
        unit.history.iter().filter_map(|r| value(r).map(|v| (f64::from(r.epoch), v))).collect();
    (!points.is_empty()).then_some(Series { color: color(i), style, points })
}

/// A chart of `y_desc` by epoch with the id `{kind}-m{m}`.
fn epoch_chart(kind: &str, m: usize, member: &Member, y_desc: &str) -> LineChart {
    let id = format!("{kind}-{}", member_id(m));
    let mut chart = LineChart::new(id, format!("{y_desc} of {} by epoch", member.name), "epoch", y_desc);
    chart.integer_x = true;
    chart
}

fn loss_chart(m: usize, member: &Member) -> Result<String, ReportError> {
    let mut chart = epoch_chart("loss", m, member, "loss");
    let mut keys = Vec::new();
    for (i, unit) in member.units.iter().enumerate() {
        if let Some(s) = epoch_series(unit, i, Style::Solid, |r| Some(r.train_loss)) {
            chart.series.push(s);
            keys.push((format!("train, {}", unit_name(unit)), color(i), Mark::Line));
        }
        if let Some(s) = epoch_series(unit, i, Style::Dashed, |r| r.val_loss) {
            chart.series.push(s);
            keys.push((format!("validation, {}", unit_name(unit)), color(i), Mark::Dashed));
        }
    }
    single_epoch_dots(&mut chart);
    Ok(figure(&chart.draw()?, &format!("{}: loss", member.name), "solid: training, dashed: validation", &legend(&keys)))
}

fn auc_chart(m: usize, member: &Member) -> Result<String, ReportError> {
    let mut chart = epoch_chart("auc", m, member, "validation AUC");
    let mut keys = Vec::new();
    for (i, unit) in member.units.iter().enumerate() {
        if let Some(s) = epoch_series(unit, i, Style::Solid, |r| r.val_auc) {
            chart.series.push(Series { style: Style::Dots, ..s.clone() });
            chart.series.push(s);
            let best = unit
                .state
                .as_ref()
                .and_then(|s| s.best_epoch)
                .map_or_else(String::new, |b| format!(", best epoch {b}"));
            keys.push((format!("{}{best}", unit_name(unit)), color(i), Mark::Line));
        }
    }
    // AUC lives in [0, 1]: fit the axis to the values, inside that.
    let values = || chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = (values().fold(1.0f64, f64::min), values().fold(0.0f64, f64::max));
    let pad = ((hi - lo) * 0.08).max(0.01);
    chart.y_range = Some(((lo - pad).max(0.0), (hi + pad).min(1.0)));
    let caption = "mean column-wise ROC AUC on each fold's validation images";
    Ok(figure(&chart.draw()?, &format!("{}: validation AUC", member.name), caption, &legend(&keys)))
}

/// A line of one point draws nothing: add its dot.
fn single_epoch_dots(chart: &mut LineChart) {
    let dots: Vec<Series> = chart
        .series
        .iter()
        .filter(|s| s.points.len() == 1)
        .map(|s| Series { style: Style::Dots, ..s.clone() })
        .collect();
    chart.series.extend(dots);
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchard_metrics::WarmupCosine;

    #[test]
    fn schedules_are_staircases_per_epoch_and_curves_per_step() {
        let s = Schedule::WarmupCosine(WarmupCosine { warmup: 1.0, total: 4.0, max: 1e-3, min: 1e-5 });
        let stairs = schedule_points(&s, false, Some(10), 4);
        assert_eq!(stairs.len(), 8);
        assert_eq!((stairs[2], stairs[3]), ((1.0, 1e-3), (2.0, 1e-3)));
        let steps = schedule_points(&s, true, Some(10), 4);
        assert_eq!(steps.len(), 41);
        assert_eq!(steps[5], (0.5, s.lr(0.5)));
        assert_eq!(steps[40], (4.0, 1e-5));
        let sampled = schedule_points(&s, true, Some(1000), 4);
        assert!(sampled.len() <= SCHEDULE_POINTS as usize + 1 && sampled.len() > 500, "{}", sampled.len());
        assert_eq!(schedule_points(&s, true, None, 4).len(), 201);
    }
}
