//! Line charts: series of (x, y) points drawn as solid or dashed lines or as dots, on linear axes with a
//! light grid. The schedule, the training curves and the ROC curves are all drawn with it.

use plotters::prelude::*;

use super::{err, svg, text, tick_format, GRID, INK};
use crate::ReportError;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Solid,
    Dashed,
    /// A dot per point, no line.
    Dots,
}

/// One series.
#[derive(Clone, Debug)]
pub struct Series {
    pub color: RGBColor,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

/// A chart of several series.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// The `<svg>` id.
    pub id: String,
    /// Its accessible name (and tooltip).
    pub label: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    /// Fixed ranges; fitted to the points (with a margin) when absent.
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Label only whole numbers on the x axis (epochs).
    pub integer_x: bool,
    /// Draw the chance diagonal (ROC curves).
    pub diagonal: bool,
    pub size: (u32, u32),
}

impl LineChart {
    /// A chart with fitted ranges, no diagonal, 380 × 280 (a third of a wide page: drawn near its size).
    pub fn new(id: impl Into<String>, label: impl Into<String>, x_desc: &str, y_desc: &str) -> Self {
        LineChart {
            id: id.into(),
            label: label.into(),
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            series: Vec::new(),
            x_range: None,
            y_range: None,
            integer_x: false,
            diagonal: false,
            size: (380, 280),
        }
    }

    /// The SVG.
    pub fn draw(&self) -> Result<String, ReportError> {
        let (x0, x1) =
            self.x_range.unwrap_or_else(|| fitted(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)), 0.0));
        let (y0, y1) =
            self.y_range.unwrap_or_else(|| fitted(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), 0.06));
        let y_ticks = tick_format(y0, y1);
        let x_ticks = tick_format(x0, x1);
        let integer_x = self.integer_x;
        let x_label = move |v: &f64| {
            if !integer_x {
                x_ticks(v)
            } else if (v - v.round()).abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        };
        let x_labels = if integer_x { ((x1 - x0).round() as usize + 1).clamp(2, 11) } else { 6 };
        svg(&self.id, &self.label, self.size, |root| {
            let mut chart = ChartBuilder::on(root)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(58)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(self.x_desc.as_str())
                .y_desc(self.y_desc.as_str())
                .x_labels(x_labels)
                .y_labels(6)
                .x_label_formatter(&x_label)
                .y_label_formatter(&y_ticks)
                .label_style(text(15.0, INK))
                .axis_desc_style(text(16.0, INK))
                .axis_style(INK.mix(0.6))
                .bold_line_style(GRID)
                .light_line_style(WHITE)
                .draw()
                .map_err(err)?;
            if self.diagonal {
                let grey = RGBColor(160, 160, 160);
                chart
                    .draw_series(DashedLineSeries::new([(x0, y0), (x1, y1)], 5, 4, grey.stroke_width(1)))
                    .map_err(err)?;
            }
            for s in &self.series {
                match s.style {
                    Style::Solid => {
                        chart
                            .draw_series(LineSeries::new(s.points.iter().copied(), s.color.stroke_width(2)))
                            .map_err(err)?;
                    }
                    Style::Dashed => {
                        let style = s.color.stroke_width(2);
                        chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style)).map_err(err)?;
                    }
                    Style::Dots => {
                        let dots = s.points.iter().map(|&p| Circle::new(p, 4, s.color.filled()));
                        chart.draw_series(dots).map_err(err)?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// The range of `values` with `margin` (a share of the span) on both sides; a lone value gets room around
/// it, and no values give 0..1.
fn fitted(values: impl Iterator<Item = f64>, margin: f64) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * margin;
    (lo - pad, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_fit_the_points_with_a_margin() {
        assert_eq!(fitted([1.0, 3.0].into_iter(), 0.5), (0.0, 4.0));
        assert_eq!(fitted([2.0].into_iter(), 0.1), (1.8, 2.2));
        assert_eq!(fitted(std::iter::empty(), 0.1), (0.0, 1.0));
        assert_eq!(fitted([f64::NAN, 0.0].into_iter(), 0.1), (-1.0, 1.0));
    }

    #[test]
    fn every_series_is_drawn() {
        let mut chart = LineChart::new("c", "chart", "epoch", "loss");
        chart.series = vec![
            Series { color: RED, style: Style::Solid, points: vec![(0.0, 1.0), (1.0, 0.5), (2.0, 0.25)] },
            Series { color: BLUE, style: Style::Dots, points: vec![(0.0, 0.9), (1.0, 0.6)] },
        ];
        chart.integer_x = true;
        let out = chart.draw().unwrap();
        assert!(out.starts_with("<svg id=\"c\""), "{out}");
        assert_eq!(out.matches("<circle").count(), 2, "{out}");
        assert!(
            out.contains("<polyline") && out.contains(">\nepoch\n</text>") && out.contains(">\nloss\n</text>"),
            "{out}"
        );
    }
}
