//! Image-path templates such as `images/{image_id}.jpg`: a table row's values substituted into a relative
//! path, refusing any value that would leave the dataset's folder.

use std::path::{Component, Path, PathBuf};

use super::Problem;

/// An image-path template, resolved against a table's columns.
#[derive(Debug)]
pub(super) struct Template {
    pub(super) parts: Vec<Part>,
    /// Append `.jpg` when the rendered path has no extension (the default template of the `image` layouts).
    pub(super) default_jpg: bool,
}

#[derive(Debug)]
pub(super) enum Part {
    Text(String),
    Column(usize),
}

impl Template {
    /// Parses `text` against `headers`; problems name `origin` (the manifest, or the table for defaults).
    pub(super) fn parse(text: &str, headers: &[String], origin: &Path, key: &str) -> Result<Template, Problem> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| Problem::new(origin, format!("{key} template \"{text}\" has an unclosed '{{'")))?;
            let name = after[..close].trim();
            let index = headers.iter().position(|h| h == name).ok_or_else(|| {
                Problem::new(origin, format!("{key} template \"{text}\" names a column the table does not have"))
                    .in_column(name)
            })?;
            parts.push(Part::Column(index));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(Problem::new(origin, format!("{key} template \"{text}\" has an unmatched '}}'")));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts, default_jpg: false })
    }

    /// Renders the relative image path of a row; the error says why the row's values make no safe path.
    pub(super) fn render(&self, fields: &[String], headers: &[String]) -> Result<PathBuf, (Option<String>, String)> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Column(i) => {
                    let value = fields.get(*i).map(String::as_str).unwrap_or("");
                    let column = headers.get(*i).cloned();
                    if value.is_empty() {
                        return Err((column, "empty value".to_string()));
                    }
                    let p = Path::new(value);
                    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
                        return Err((column, format!("'{value}' is not a plain relative file name")));
                    }
                    out.push_str(value);
                }
            }
        }
        let mut path = PathBuf::from(out);
        if self.default_jpg && path.extension().is_none() {
            path.set_extension("jpg");
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_substitute_columns_and_refuse_escapes() {
        let headers = vec!["image_id".to_string(), "site".to_string()];
        let t = Template::parse("images/{site}/{image_id}.png", &headers, Path::new("dataset.toml"), "images").unwrap();
        let fields = vec!["a1".to_string(), "north".to_string()];
        assert_eq!(t.render(&fields, &headers).unwrap(), PathBuf::from("images/north/a1.png"));
        let bad = vec!["../etc/passwd".to_string(), "x".to_string()];
        let (column, _) = t.render(&bad, &headers).unwrap_err();
        assert_eq!(column.as_deref(), Some("image_id"));
        let err = Template::parse("images/{nope}.png", &headers, Path::new("dataset.toml"), "images").unwrap_err();
        assert_eq!(err.column.as_deref(), Some("nope"));
        assert!(Template::parse("images/{image_id.png", &headers, Path::new("d"), "images").is_err());
    }

    #[test]
    fn default_image_template_appends_jpg_only_without_an_extension() {
        let headers = vec!["image".to_string()];
        let t = Template { parts: vec![Part::Text("images/".into()), Part::Column(0)], default_jpg: true };
        assert_eq!(t.render(&["abc.jpg".into()], &headers).unwrap(), PathBuf::from("images/abc.jpg"));
        assert_eq!(t.render(&["abc.png".into()], &headers).unwrap(), PathBuf::from("images/abc.png"));
        assert_eq!(t.render(&["abc".into()], &headers).unwrap(), PathBuf::from("images/abc.jpg"));
    }
}
