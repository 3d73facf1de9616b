//! Horizontal bar charts: one row per name, one bar per series in it, the value written at the bar's end.
//! Ensemble weights, the AUC of each member with and without TTA, and the ensemble against its best member
//! are drawn with it; horizontal, so that long member names stay readable.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{err, svg, text, CHAR, GRID, INK};
use crate::ReportError;

/// Rows of grouped bars.
#[derive(Clone, Debug)]
pub struct Bars {
    pub id: String,
    pub label: String,
    /// One per row.
    pub names: Vec<String>,
    /// `names × series` values; `None` leaves the bar out.
    pub values: Vec<Vec<Option<f64>>>,
    /// One colour per series.
    pub colors: Vec<RGBColor>,
    /// A colour per row instead (one series): to set some rows apart, such as the ensemble's.
    pub row_colors: Option<Vec<RGBColor>>,
    /// The values at the left and right ends of the axis.
    pub range: (f64, f64),
    /// Decimals of the written values.
    pub decimals: usize,
    pub desc: String,
}

impl Bars {
    /// The SVG, 400 px wide.
    pub fn draw(&self) -> Result<String, ReportError> {
        let series = self.colors.len().max(1) as i32;
        let bar = 18;
        let row = bar * series + 14;
        let left = (self.names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as f64 * CHAR + 20.0)
            .clamp(50.0, 170.0) as i32;
        let width = 400;
        let plot_width = width - left - 60;
        let height = 10 + row * self.names.len() as i32 + 44;
        let (lo, hi) = self.range;
        let x_of = |v: f64| left + ((v.clamp(lo, hi) - lo) / (hi - lo) * plot_width as f64).round() as i32;
        let bottom = 10 + row * self.names.len() as i32;
        svg(&self.id, &self.label, (width as u32, height as u32), |root| {
            for v in nice_ticks(lo, hi) {
                let x = x_of(v);
                root.draw(&PathElement::new([(x, 6), (x, bottom)], GRID.stroke_width(1))).map_err(err)?;
                let style = text(15.0, INK).pos(Pos::new(HPos::Center, VPos::Top));
                root.draw(&Text::new(tick(v), (x, bottom + 4), style)).map_err(err)?;
            }
            let desc = text(16.0, INK).pos(Pos::new(HPos::Center, VPos::Bottom));
            root.draw(&Text::new(self.desc.as_str(), (left + plot_width / 2, height - 2), desc)).map_err(err)?;
            for (r, name) in self.names.iter().enumerate() {
                let top = 10 + row * r as i32 + 7;
                let style = text(16.0, INK).pos(Pos::new(HPos::Right, VPos::Center));
                root.draw(&Text::new(name.as_str(), (left - 8, top + bar * series / 2), style)).map_err(err)?;
                for (s, value) in self.values[r].iter().enumerate() {
                    let Some(v) = value else { continue };
                    let y = top + bar * s as i32;
                    let color = match &self.row_colors {
                        Some(rows) => rows[r % rows.len()],
                        None => self.colors[s % self.colors.len()],
                    };
                    let end = x_of(*v).max(left + 1);
                    root.draw(&Rectangle::new([(left, y + 1), (end, y + bar - 2)], color.filled())).map_err(err)?;
                    let style = text(15.5, INK).pos(Pos::new(HPos::Left, VPos::Center));
                    let written = format!("{v:.prec$}", prec = self.decimals);
                    root.draw(&Text::new(written, (end + 5, y + bar / 2), style)).map_err(err)?;
                }
            }
            root.draw(&PathElement::new([(left, 6), (left, bottom)], INK.stroke_width(1))).map_err(err)?;
            Ok(())
        })
    }
}

/// Round ticks from `lo` to `hi`: a step of 1, 2, 2.5 or 5 times a power of ten giving at most six.
pub fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let magnitude = 10f64.powf(((hi - lo) / 5.0).log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| (hi - lo) / s <= 5.0 + 1e-9)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick's label: its shortest decimals.
fn tick(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        let labels = |lo, hi| nice_ticks(lo, hi).into_iter().map(tick).collect::<Vec<_>>();
        assert_eq!(labels(0.6, 0.75), ["0.6", "0.65", "0.7", "0.75"]);
        assert_eq!(labels(0.0, 1.0), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(labels(0.85, 1.0), ["0.85", "0.9", "0.95", "1"]);
        assert_eq!(labels(0.15, 0.25), ["0.16", "0.18", "0.2", "0.22", "0.24"]);
    }

    #[test]
    fn a_bar_per_value_and_its_number() {
        let bars = Bars {
            id: "w".into(),
            label: "weights".into(),
            names: vec!["b0".into(), "mnv2".into()],
            values: vec![vec![Some(0.75), None], vec![Some(0.25), Some(0.5)]],
            colors: vec![RED, BLUE],
            row_colors: None,
            range: (0.0, 1.0),
            decimals: 3,
            desc: "weight".into(),
        };
        let out = bars.draw().unwrap();
        assert_eq!(out.matches("<rect").count(), 4, "background and three bars: {out}");
        for want in [">\n0.750\n</text>", ">\n0.250\n</text>", ">\n0.500\n</text>", ">\nmnv2\n</text>"] {
            assert!(out.contains(want), "{want}: {out}");
        }
    }
}
