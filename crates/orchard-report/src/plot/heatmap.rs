//! Heat maps: a matrix of cells shaded by value, each with its number written in it, rows labelled on the
//! left and columns below (turned upright, so long class names fit). Confusion matrices and the members'
//! correlation are drawn with it.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{err, svg, text, CHAR, INK};
use crate::ReportError;

/// A matrix to shade.
#[derive(Clone, Debug)]
pub struct Heatmap {
    pub id: String,
    pub label: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `rows × cols`; `None` cells are left grey.
    pub values: Vec<Vec<Option<f64>>>,
    /// What is written in each cell.
    pub text: Vec<Vec<String>>,
    /// The values the lightest and the darkest shade stand for.
    pub range: (f64, f64),
    /// The descriptions of the row and column axes.
    pub row_desc: String,
    pub col_desc: String,
}

/// A blue from near-white (0) to dark (1).
pub fn shade(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |light: f64, dark: f64| (light + (dark - light) * t).round() as u8;
    RGBColor(mix(240.0, 8.0), mix(245.0, 48.0), mix(250.0, 107.0))
}

impl Heatmap {
    /// The SVG: cells of 36–64 px, as large as fits 300 px.
    pub fn draw(&self) -> Result<String, ReportError> {
        let (n_rows, n_cols) = (self.rows.len().max(1), self.cols.len().max(1));
        let cell = (300 / n_rows.max(n_cols)).clamp(36, 64) as i32;
        let longest = |names: &[String]| names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as f64;
        let left = (longest(&self.rows) * CHAR + 38.0).min(240.0) as i32;
        let below = (longest(&self.cols) * CHAR + 32.0).min(240.0) as i32;
        let (width, height) = (left + cell * n_cols as i32 + 16, 12 + cell * n_rows as i32 + below);
        let (lo, hi) = self.range;
        svg(&self.id, &self.label, (width as u32, height as u32), |root| {
            let label = text(15.0, INK);
            for (r, row) in self.values.iter().enumerate() {
                let y = 12 + cell * r as i32;
                for (c, value) in row.iter().enumerate() {
                    let x = left + cell * c as i32;
                    let t = value.map(|v| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 });
                    let fill = t.map_or(RGBColor(235, 235, 235), shade);
                    root.draw(&Rectangle::new([(x, y), (x + cell - 1, y + cell - 1)], fill.filled())).map_err(err)?;
                    let ink = if t.unwrap_or(0.0) > 0.55 { WHITE } else { INK };
                    let cell_text = self.text.get(r).and_then(|row| row.get(c)).map_or("", String::as_str);
                    let style =
                        text(if cell >= 56 { 16.0 } else { 14.5 }, ink).pos(Pos::new(HPos::Center, VPos::Center));
                    root.draw(&Text::new(cell_text, (x + cell / 2, y + cell / 2), style)).map_err(err)?;
                }
                let style = label.clone().pos(Pos::new(HPos::Right, VPos::Center));
                root.draw(&Text::new(self.rows[r].as_str(), (left - 6, y + cell / 2), style)).map_err(err)?;
            }
            let bottom = 12 + cell * n_rows as i32;
            for (c, name) in self.cols.iter().enumerate() {
                let x = left + cell * c as i32 + cell / 2;
                let style = label.clone().transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center));
                root.draw(&Text::new(name.as_str(), (x, bottom + 6), style)).map_err(err)?;
            }
            let desc = text(16.0, INK).pos(Pos::new(HPos::Center, VPos::Bottom));
            let middle = left + cell * n_cols as i32 / 2;
            root.draw(&Text::new(self.col_desc.as_str(), (middle, height - 4), desc.clone())).map_err(err)?;
            let side = desc.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(self.row_desc.as_str(), (4, 12 + cell * n_rows as i32 / 2), side)).map_err(err)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_is_shaded_and_written() {
        let map = Heatmap {
            id: "h".into(),
            label: "m".into(),
            rows: vec!["a".into(), "b".into()],
            cols: vec!["a".into(), "b".into()],
            values: vec![vec![Some(1.0), Some(0.0)], vec![None, Some(0.5)]],
            text: vec![vec!["10".into(), "0".into()], vec!["-".into(), "5".into()]],
            range: (0.0, 1.0),
            row_desc: "true".into(),
            col_desc: "predicted".into(),
        };
        let out = map.draw().unwrap();
        // The background, then four cells.
        assert_eq!(out.matches("<rect").count(), 5, "{out}");
        assert!(out.contains(">\n10\n</text>") && out.contains(">\npredicted\n</text>"), "{out}");
        assert!(out.contains(&format!("fill=\"#{:02X}{:02X}{:02X}\"", 8, 48, 107)), "the darkest shade for 1: {out}");
        assert_eq!(shade(0.0), RGBColor(240, 245, 250));
    }
}
