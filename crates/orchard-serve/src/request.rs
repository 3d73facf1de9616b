//! The bodies of requests, parsed: an OIP v2 `infer` body (JSON with base64 `BYTES` images) and a
//! `multipart/form-data` body of `/predict/batch`. Errors are the client's, as text for a 400 answer.
//!
//! This module uses no other part of the crate and nothing of libtorch, so `fuzz/` compiles it on its own
//! (`#[path]`) and fuzzes exactly this code; everything it allocates is bounded by the body's length.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use base64::Engine;
use serde::Deserialize;

/// An OIP v2 inference request, as far as Orchard reads it.
#[derive(Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InferInput>,
}

#[derive(Deserialize)]
struct InferInput {
    name: String,
    datatype: String,
    #[serde(default)]
    shape: Vec<i64>,
    data: Vec<String>,
}

/// Images with their labels in messages.
pub type Labelled = Vec<(String, Bytes)>;

/// The images of an `infer` body, labelled `image <i>`, and the request's id if it has one.
pub fn infer_images(body: &[u8]) -> Result<(Option<String>, Labelled), String> {
    let request: InferRequest = serde_json::from_slice(body).map_err(|e| format!("bad inference request: {e}"))?;
    let [input] = request.inputs.as_slice() else {
        return Err(format!("expected one input (the images), got {}", request.inputs.len()));
    };
    if input.datatype != "BYTES" {
        return Err(format!("input '{}' is {}; images are BYTES (base64)", input.name, input.datatype));
    }
    if !input.shape.is_empty()
        && input.shape.iter().try_fold(1i64, |a, &d| a.checked_mul(d)) != Some(input.data.len() as i64)
    {
        return Err(format!("shape {:?} does not hold {} images", input.shape, input.data.len()));
    }
    if input.data.is_empty() {
        return Err("no images".to_string());
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let images = (input.data.iter().enumerate())
        .map(|(i, d)| {
            let label = format!("image {i}");
            engine.decode(d).map(|b| (label, Bytes::from(b))).map_err(|e| format!("image {i}: bad base64: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((request.id, images))
}

/// One part of a multipart body: its name (the file name, else the field name, else `part <i>`), its label
/// in messages (`image <i> ('<name>')`) and its bytes.
#[derive(Debug)]
pub struct Part {
    pub name: String,
    pub label: String,
    pub data: Bytes,
}

/// The parts of a `multipart/form-data` body whose request carried `content_type`.
pub async fn multipart_images(content_type: Option<&[u8]>, body: Bytes) -> Result<Vec<Part>, String> {
    let mut request = Request::new(Body::from(body));
    if let Some(value) = content_type.and_then(|v| header::HeaderValue::from_bytes(v).ok()) {
        request.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|r| format!("not a multipart/form-data body: {}", r.body_text()))?;
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|e| format!("malformed multipart body: {e}"))? {
        let name = field.file_name().or(field.name()).map_or_else(|| format!("part {}", parts.len()), str::to_string);
        let data = field.bytes().await.map_err(|e| format!("malformed multipart body: {e}"))?;
        parts.push(Part { label: format!("image {} ('{name}')", parts.len()), name, data });
    }
    if parts.is_empty() {
        return Err("no images: the multipart body has no parts".to_string());
    }
    Ok(parts)
}
