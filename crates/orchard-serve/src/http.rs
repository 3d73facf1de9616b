//! The routes: Open Inference Protocol v2 (server and model metadata, health, `infer` with base64 `BYTES`
//! images answered as an `FP32` [n, classes] tensor) and a plain `POST /predict` of one raw image. Every
//! error is JSON `{"error": "..."}` with a 4xx or 5xx status; answers of the model carry the batch size they
//! ran in (`x-orchard-batch-size`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::batcher::{Job, Model, Refused};
use crate::ensemble::Answer;
use crate::prepare::{self, ImageError};
use crate::Config;

/// The header naming how many images the forward pass that answered held.
pub const BATCH_HEADER: &str = "x-orchard-batch-size";

struct App {
    name: String,
    max_pixels: usize,
    model: Model,
}

type Shared = State<Arc<App>>;

/// The server's routes over `model`.
pub fn router(config: &Config, model: Model) -> Router {
    let app = Arc::new(App { name: config.name.clone(), max_pixels: config.max_pixels, model });
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { Json(json!({"live": true})) }))
        .route("/v2/health/ready", get(|| async { Json(json!({"ready": true})) }))
        .route("/v2/models", get(models))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/predict", post(predict))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(config.max_body))
        .with_state(app)
}

/// An error answer.
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: bool,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: false }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({"error": self.message}))).into_response();
        if self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> ApiError {
        let status = match e {
            ImageError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ImageError::Decode(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> ApiError {
        match r {
            Refused::Busy => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the model's queue is full; try again".into(),
                retry_after: true,
            },
            Refused::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model thread has stopped"),
        }
    }
}

/// A body that could not be read (too large: 413) as a JSON error.
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| ApiError::new(r.status(), r.body_text()))
}

fn known(app: &App, name: &str) -> Result<(), ApiError> {
    if name == app.name {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, format!("no model named '{name}'; this server has '{}'", app.name)))
    }
}

async fn server_metadata() -> Json<Value> {
    Json(json!({"name": "orchard", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

async fn models(State(app): Shared) -> Json<Value> {
    Json(json!({"models": [app.name]}))
}

async fn model_metadata(State(app): Shared, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    known(&app, &name)?;
    let d = &app.model.description;
    Ok(Json(json!({
        "name": app.name,
        "versions": ["1"],
        "platform": "orchard",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, d.classes.len()]}],
        "parameters": {"classes": d.classes, "members": d.members},
    })))
}

async fn model_ready(State(app): Shared, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    known(&app, &name)?;
    Ok(Json(json!({"name": app.name, "ready": true})))
}

/// Decodes every image on the blocking pool, queues them as one job and waits for the answers.
async fn answer(app: &Arc<App>, images: Vec<Bytes>) -> Result<(Vec<Answer>, usize), ApiError> {
    let shared = app.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        images
            .iter()
            .map(|b| prepare::prepare(b, &shared.model.description.pipelines, shared.max_pixels))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding stopped: {e}")))??;
    let (reply, answers) = oneshot::channel();
    app.model.submit(Job { images: prepared, reply })?;
    answers
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the model thread stopped"))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
}

fn with_batch(json: Value, batch: usize) -> Response {
    let mut response = Json(json).into_response();
    response.headers_mut().insert(BATCH_HEADER, HeaderValue::from(batch));
    response
}

#[derive(Deserialize)]
struct PredictQuery {
    #[serde(default)]
    members: bool,
}

async fn predict(
    State(app): Shared,
    Query(query): Query<PredictQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = body(raw)?;
    let (answers, batch) = answer(&app, vec![bytes]).await?;
    let a = &answers[0];
    let classes = &app.model.description.classes;
    let best = a.probabilities.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).map_or(0, |(i, _)| i);
    let mut out = json!({"classes": classes, "probabilities": a.probabilities, "label": classes[best]});
    if query.members {
        let members: HashMap<&String, &Vec<f64>> = app.model.description.members.iter().zip(&a.members).collect();
        out["members"] = json!(members);
    }
    Ok(with_batch(out, batch))
}

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

async fn infer(
    State(app): Shared,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    known(&app, &name)?;
    let bytes = body(raw)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let request: InferRequest =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad inference request: {e}")))?;
    let [input] = request.inputs.as_slice() else {
        return Err(bad(format!("expected one input (the images), got {}", request.inputs.len())));
    };
    if input.datatype != "BYTES" {
        return Err(bad(format!("input '{}' is {}; images are BYTES (base64)", input.name, input.datatype)));
    }
    if !input.shape.is_empty() && input.shape.iter().product::<i64>() != input.data.len() as i64 {
        return Err(bad(format!("shape {:?} does not hold {} images", input.shape, input.data.len())));
    }
    if input.data.is_empty() {
        return Err(bad("no images".into()));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let images = input
        .data
        .iter()
        .enumerate()
        .map(|(i, d)| engine.decode(d).map(Bytes::from).map_err(|e| bad(format!("image {i}: bad base64: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let n = images.len();
    let (answers, batch) = answer(&app, images).await?;
    let k = app.model.description.classes.len();
    let data: Vec<f32> = answers.iter().flat_map(|a| a.probabilities.iter().map(|&p| p as f32)).collect();
    let mut out = json!({
        "model_name": app.name,
        "model_version": "1",
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [n, k], "data": data}],
    });
    if let Some(id) = request.id {
        out["id"] = json!(id);
    }
    Ok(with_batch(out, batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_asks_the_client_to_come_back() {
        let busy = ApiError::from(Refused::Busy).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(busy.headers().get(header::CONTENT_TYPE).unwrap(), "application/json");
        let stopped = ApiError::from(Refused::Stopped).into_response();
        assert_eq!(stopped.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(stopped.headers().get(header::RETRY_AFTER).is_none());
    }
}
