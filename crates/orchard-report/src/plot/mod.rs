//! The charts, drawn with plotters into SVG text that the page embeds inline: line charts (schedules,
//! training curves, ROC curves), heat maps (confusion matrices, correlation) and bar charts (weights, AUCs).
//! Every chart is an `<svg>` with an `id` and an accessible name, scales with the page, and has its legend
//! in HTML beside it ([`legend`]), where long names wrap instead of covering the data.

pub mod bars;
pub mod heatmap;
pub mod lines;

use plotters::prelude::*;
use plotters::style::RGBColor;

use crate::html::escape;
use crate::ReportError;

/// Tableau's ten colours: distinct, and readable on white.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Text and axes.
pub const INK: RGBColor = RGBColor(51, 51, 51);
/// Grid lines.
pub const GRID: RGBColor = RGBColor(230, 230, 230);
/// The font of every label; plotters' size is about 1.24 × the CSS pixels.
pub const FONT: &str = "sans-serif";
/// About the width of a label's character in pixels, to leave room for names beside a chart.
pub const CHAR: f64 = 6.2;

/// The `i`-th colour of the palette, cycling.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `#rrggbb` of a colour, for CSS.
pub fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// A text style of `size` (plotters' units) in `color`.
pub fn text(size: f64, color: RGBColor) -> TextStyle<'static> {
    TextStyle { color: color.to_backend_color(), ..TextStyle::from((FONT, size).into_font()) }
}

/// How a legend entry is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Line,
    Dashed,
    Dot,
    Box,
}

/// An HTML legend: one swatch and name per entry.
pub fn legend(entries: &[(String, RGBColor, Mark)]) -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for (name, c, mark) in entries {
        let class = match mark {
            Mark::Line => "line",
            Mark::Dashed => "dashed",
            Mark::Dot => "dot",
            Mark::Box => "box",
        };
        out.push_str(&format!(
            "<li><span class=\"swatch {class}\" style=\"--c:{}\"></span>{}</li>",
            hex(*c),
            escape(name)
        ));
    }
    out.push_str("</ul>");
    out
}

/// Draws into an SVG of `size` with `draw` and returns it tagged with `id` (made of ASCII letters, digits
/// and dashes by the caller) and the accessible name `label`.
pub fn svg(
    id: &str,
    label: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        let failed = |message: String| ReportError::Plot { chart: id.to_string(), message };
        root.fill(&WHITE).map_err(|e| failed(e.to_string()))?;
        draw(&root).map_err(failed)?;
        root.present().map_err(|e| failed(e.to_string()))?;
    }
    let attributes =
        format!("<svg id=\"{}\" class=\"plot\" role=\"img\" aria-label=\"{}\" ", escape(id), escape(label));
    Ok(buf.replacen("<svg ", &attributes, 1))
}

/// A drawing error as text.
pub fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Tick labels for values spanning `lo..hi`: enough decimals to tell ticks apart, scientific for tiny ones.
pub fn tick_format(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let span = (hi - lo).abs();
    let largest = lo.abs().max(hi.abs());
    move |v: &f64| {
        if largest > 0.0 && largest < 1e-2 {
            let s = format!("{v:.1e}");
            if *v == 0.0 {
                "0".into()
            } else {
                s
            }
        } else {
            let decimals = if span == 0.0 { 2 } else { (-(span / 5.0).log10().floor()).clamp(0.0, 4.0) as usize };
            format!("{v:.decimals$}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_have_as_many_decimals_as_their_span_needs() {
        assert_eq!(tick_format(0.0, 1.0)(&0.25), "0.2");
        assert_eq!(tick_format(0.5, 0.6)(&0.525), "0.53");
        assert_eq!(tick_format(0.0, 40.0)(&12.5), "12");
        assert_eq!(tick_format(0.0, 0.002)(&0.0015), "1.5e-3");
        assert_eq!(tick_format(0.0, 0.002)(&0.0), "0");
    }

    #[test]
    fn svgs_carry_their_id_and_an_escaped_name() {
        let out = svg("roc-m0", "ROC <b0>", (100, 80), |_| Ok(())).unwrap();
        assert!(
            out.starts_with(
                "<svg id=\"roc-m0\" class=\"plot\" role=\"img\" aria-label=\"ROC &lt;b0&gt;\" width=\"100\""
            ),
            "{out}"
        );
        let l = legend(&[("a<b".into(), color(1), Mark::Dashed)]);
        assert!(l.contains("swatch dashed\" style=\"--c:#ff7f0e\"></span>a&lt;b</li>"), "{l}");
    }
}
