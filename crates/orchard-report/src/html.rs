//! The page: escaping (every name on it comes from user files), tables, and the document around the
//! sections, with its style sheet inline so the file stands alone.

use crate::load::Loaded;
use crate::sections::{self, Section};
use crate::{Options, ReportError};

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number with `decimals` decimals, or a dash when there is none.
pub fn number(v: Option<f64>, decimals: usize) -> String {
    v.filter(|v| v.is_finite()).map_or_else(|| "–".to_string(), |v| format!("{v:.decimals$}"))
}

/// A table: a header row and body rows of cells that are already HTML (escape text before adding it).
#[derive(Clone, Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// The first column of numbers, right-aligned from there on.
    numbers_from: Option<usize>,
}

impl Table {
    /// A table with these column names (escaped here); none for a table of keys and values.
    pub fn new(header: &[&str]) -> Self {
        Table { header: header.iter().map(|h| escape(h)).collect(), rows: Vec::new(), numbers_from: None }
    }

    /// The same, with the columns from `column` on (0-based) right-aligned, as numbers are.
    pub fn right_from(mut self, column: usize) -> Self {
        self.numbers_from = Some(column);
        self
    }

    fn cell(&self, tag: &str, i: usize, html: &str) -> String {
        let right = self.numbers_from.is_some_and(|from| i >= from);
        format!("<{tag}{}>{html}</{tag}>", if right { " class=\"r\"" } else { "" })
    }

    /// Adds a row of HTML cells.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The HTML, in a scrolling wrapper so wide tables never widen the page.
    pub fn html(&self) -> String {
        let mut out = String::from("<div class=\"table-wrap\"><table>");
        if !self.header.is_empty() {
            out.push_str("<thead><tr>");
            for (i, h) in self.header.iter().enumerate() {
                out.push_str(&self.cell("th", i, h));
            }
            out.push_str("</tr></thead>");
        }
        out.push_str("<tbody>");
        for row in &self.rows {
            out.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                out.push_str(&self.cell("td", i, cell));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div>");
        out
    }
}

/// A chart with its title above, its legend and a caption below, as one grid item.
pub fn figure(svg: &str, title: &str, caption: &str, legend: &str) -> String {
    format!(
        "<figure class=\"chart\"><div class=\"title\">{}</div>{svg}{legend}<figcaption>{}</figcaption></figure>",
        escape(title),
        escape(caption)
    )
}

const STYLE: &str = r#"
:root { --ink: #222; --muted: #666; --line: #e3e3e3; --accent: #1f77b4; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: var(--bg); }
header.top { background: #12263a; color: #fff; padding: 24px 40px 20px; }
header.top h1 { margin: 0 0 4px; font-size: 26px; font-weight: 600; }
header.top .sub { color: #b8c7d6; font-size: 14px; word-break: break-all; }
.cards { display: flex; flex-wrap: wrap; gap: 14px; margin-top: 18px; }
.card { background: rgba(255,255,255,0.08); border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.card .v { font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .k { font-size: 12px; color: #b8c7d6; text-transform: uppercase; letter-spacing: .04em; }
.card.good .v { color: #8fe38f; } .card.bad .v { color: #ffb3a8; }
nav { position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid var(--line);
  padding: 8px 40px; display: flex; flex-wrap: wrap; gap: 18px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; }
main { padding: 8px 40px 40px; max-width: 1500px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 8px 24px 20px;
  margin-top: 22px; }
h2 { font-size: 20px; margin: 14px 0 6px; }
h3 { font-size: 16px; margin: 18px 0 6px; color: #333; }
p.note, .muted { color: var(--muted); font-size: 13.5px; }
.notes { background: #fff8e1; border: 1px solid #f0dc9a; border-radius: 8px; padding: 8px 16px; margin-top: 22px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(350px, 1fr)); gap: 16px; align-items: start; }
.grid.two { grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); }
figure.chart { margin: 0; padding: 8px 10px; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
figure.chart .title { font-weight: 600; font-size: 14.5px; margin-bottom: 2px; }
figure.chart figcaption { font-size: 13.5px; color: var(--muted); margin-top: 2px; }
svg.plot { display: block; max-width: 100%; height: auto; }
ul.legend { list-style: none; margin: 4px 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 13px; }
ul.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 20px; height: 0; border-top: 3px solid var(--c); }
.swatch.dashed { border-top-style: dashed; }
.swatch.dot { width: 9px; height: 9px; border: 0; border-radius: 50%; background: var(--c); }
.swatch.box { width: 12px; height: 12px; border: 0; background: var(--c); }
.table-wrap { overflow-x: auto; }
.side { display: flex; flex-wrap: wrap; gap: 0 48px; align-items: flex-start; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: #fafafa; font-weight: 600; }
td.r, th.r { text-align: right; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 6px; font-size: 12.5px; background: #fff; }
.tile img { display: block; width: 128px; height: 128px; object-fit: contain; margin: 0 auto 4px; background: #eee; }
.tile.wrong { border-color: #e6a199; background: #fff6f5; } .tile.right { border-color: #a8d5a8; }
.tile .id { font-weight: 600; word-break: break-all; }
.tile .probs { color: var(--muted); }
.configs { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 14px; }
pre { background: #f7f7f7; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; font-size: 12.5px;
  max-height: 420px; overflow: auto; margin: 4px 0; }
.tag { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; background: #eef; color: #334; }
.tag.warn { background: #fde8e4; color: #8a2b1d; }
"#;

/// The whole document.
pub fn page(loaded: &Loaded, options: &Options) -> Result<String, ReportError> {
    let sections: Vec<Section> = sections::all(loaded, options)?;
    let title = format!("Orchard report: {}", loaded.title());
    let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    out.push_str(&format!("<title>{}</title><style>{STYLE}</style></head><body>", escape(&title)));
    out.push_str(&sections::headline::html(loaded));
    out.push_str("<nav>");
    for s in &sections {
        out.push_str(&format!("<a href=\"#{}\">{}</a>", s.id, escape(&s.title)));
    }
    out.push_str("</nav><main>");
    if !loaded.notes.is_empty() {
        out.push_str("<div class=\"notes\"><strong>Left out of this report</strong><ul>");
        for note in &loaded.notes {
            out.push_str(&format!("<li>{}</li>", escape(note)));
        }
        out.push_str("</ul></div>");
    }
    for s in &sections {
        out.push_str(&format!("<section id=\"{}\"><h2>{}</h2>{}</section>", s.id, escape(&s.title), s.body));
    }
    out.push_str("</main></body></html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape("<script>alert('x & \"y\"')</script>"),
            "&lt;script&gt;alert(&#39;x &amp; &quot;y&quot;&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn tables_and_numbers() {
        let mut t = Table::new(&["class", "AUC <mean>"]).right_from(1);
        t.row(vec![escape("a&b"), number(Some(0.87654), 4)]);
        t.row(vec!["x".into(), number(None, 4)]);
        let html = t.html();
        assert!(html.contains("<th class=\"r\">AUC &lt;mean&gt;</th>"), "{html}");
        assert!(
            html.contains("<td>a&amp;b</td><td class=\"r\">0.8765</td>") && html.contains("<td class=\"r\">–</td>"),
            "{html}"
        );
        assert!(!Table::new(&[]).html().contains("<thead>"));
        assert_eq!(number(Some(f64::NAN), 2), "–");
    }
}
