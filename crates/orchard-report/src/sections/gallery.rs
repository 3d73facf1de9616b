//! Validation images with their true and predicted labels and probabilities, the most confident mistakes
//! first: where a person sees at a glance what the model gets wrong (bad labels, look-alike classes).
//! Thumbnails are decoded and resized with orchard-data's own decoder and resizer, encoded as JPEG and
//! embedded as data URIs, so the page needs nothing beside it.

use std::path::Path;

use base64::Engine;
use orchard_data::decode::{decode_file, encode_jpeg, DecodeOptions};
use orchard_data::resize::{resize, Filter};

use super::Section;
use crate::evaluate::Scored;
use crate::html::escape;
use crate::load::Loaded;

/// The longer side of a thumbnail, in pixels.
pub const THUMBNAIL: usize = 128;
/// JPEG quality of the thumbnails: small files, no visible blocks at this size.
const QUALITY: i32 = 82;
/// Classes listed under each image.
const TOP: usize = 3;

/// The thumbnail of the image at `path` as a `data:image/jpeg;base64,…` URI: at most [`THUMBNAIL`] pixels
/// on its longer side, its aspect ratio kept.
pub fn thumbnail(path: &Path) -> Result<String, orchard_data::decode::DecodeError> {
    let options = DecodeOptions { min_size: Some((THUMBNAIL, THUMBNAIL)), ignore_orientation: false };
    let image = decode_file(path, &options)?;
    let scale = THUMBNAIL as f64 / image.width.max(image.height) as f64;
    let image = if scale < 1.0 {
        let (w, h) = ((image.width as f64 * scale).round().max(1.0), (image.height as f64 * scale).round().max(1.0));
        resize(&image, w as usize, h as usize, Filter::Bilinear)
    } else {
        image
    };
    let jpeg = encode_jpeg(&image, QUALITY)?;
    Ok(format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(jpeg)))
}

/// The section, when there are predictions, labels and images.
pub fn section(loaded: &Loaded, scored: Option<&Scored>, most: usize) -> Option<Section> {
    let (scored, data) = (scored?, loaded.data.as_ref()?);
    if most == 0 {
        return None;
    }
    let order = scored.gallery_order(most);
    let k = scored.classes.len();
    let names = |set: &[usize]| -> String {
        if set.is_empty() {
            "none".into()
        } else {
            set.iter().map(|&c| scored.classes[c].as_str()).collect::<Vec<_>>().join(", ")
        }
    };
    let mut tiles = String::new();
    let mut mistakes = 0;
    for &r in &order {
        let id = &scored.ids[r];
        let (truth, predicted) = scored.decision(r);
        let wrong = truth != predicted;
        mistakes += usize::from(wrong);
        let row = &scored.probs[r * k..(r + 1) * k];
        let mut ranked: Vec<usize> = (0..k).collect();
        ranked.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let probs: Vec<String> =
            ranked.iter().take(TOP).map(|&c| format!("{} {:.2}", escape(&scored.classes[c]), row[c])).collect();
        let image = match data.images.get(id).map(|p| thumbnail(p)) {
            Some(Ok(uri)) => format!("<img src=\"{uri}\" alt=\"{}\">", escape(id)),
            Some(Err(e)) => format!("<p class=\"muted\">unreadable: {}</p>", escape(&e.to_string())),
            None => "<p class=\"muted\">no image file</p>".into(),
        };
        tiles.push_str(&format!(
            "<div class=\"tile {}\">{image}<div class=\"id\">{}</div><div>true: <strong>{}</strong></div>\
             <div>predicted: <strong>{}</strong></div><div class=\"probs\">{}</div></div>",
            if wrong { "wrong" } else { "right" },
            escape(id),
            escape(&names(&truth)),
            escape(&names(&predicted)),
            probs.join(" · ")
        ));
    }
    let body = format!(
        "<p class=\"note\">{} of {} validation images, the most confident mistakes first ({mistakes} mistakes shown), \
         then the least confident right answers. Probabilities of the top {TOP} classes.</p><div class=\"gallery\">{tiles}</div>",
        order.len(),
        scored.rows()
    );
    Some(Section { id: "gallery", title: "Gallery".into(), body })
}
