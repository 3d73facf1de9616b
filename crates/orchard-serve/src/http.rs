//! The routes: Open Inference Protocol v2 (server and model metadata, health, `infer` with base64 `BYTES`
//! images answered as an `FP32` [n, classes] tensor), a plain `POST /predict` of one raw image and
//! `POST /predict/batch` of several (multipart), `GET /metrics` and `GET /openapi.json`. Answers of the model
//! carry the batch size they ran in (`x-orchard-batch-size`). Bodies are read here, under a size limit and
//! a read timeout, before anything else happens.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::batcher::{Job, Model};
use crate::ensemble::Answer;
use crate::error::ApiError;
use crate::metrics::{self, Metrics};
use crate::{guard, prepare, request, Config};

/// The header naming how many images the forward pass that answered held.
pub const BATCH_HEADER: &str = "x-orchard-batch-size";

/// What every handler shares.
pub struct App {
    pub name: String,
    pub max_pixels: usize,
    pub max_body: usize,
    pub max_images: usize,
    pub body_timeout: Duration,
    pub deadline: Duration,
    /// The bearer token every request but the health probes must carry, if any.
    pub token: Option<String>,
    pub model: Model,
    pub metrics: Arc<Metrics>,
}

type Shared = State<Arc<App>>;

/// The server's routes over `model`.
pub fn router(config: &Config, token: Option<String>, model: Model, metrics: Arc<Metrics>) -> Router {
    let app = Arc::new(App {
        name: config.name.clone(),
        max_pixels: config.max_pixels,
        max_body: config.max_body,
        max_images: config.max_images,
        body_timeout: config.body_timeout,
        deadline: config.deadline,
        token,
        model,
        metrics,
    });
    let routes = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { Json(json!({"live": true})) }))
        .route("/v2/health/ready", get(|| async { Json(json!({"ready": true})) }))
        .route("/v2/models", get(models))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/predict", post(predict))
        .route("/predict/batch", post(predict_batch))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi))
        // The multipart parser's own limit: the body is already in memory and within ours.
        .layer(DefaultBodyLimit::max(config.max_body));
    guard::around(routes, app.clone()).with_state(app)
}

/// The body, refused with 413 when over the limit (by its declared length before a byte is read) and with
/// 408 when it does not arrive within the body timeout.
async fn read_body(app: &App, headers: &HeaderMap, mut body: Body) -> Result<Bytes, ApiError> {
    let over = |what: String| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("{what} is over the {}-byte limit", app.max_body))
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = declared.filter(|&l| l > app.max_body as u64) {
        linger(headers, body);
        return Err(over(format!("a body of {length} bytes")));
    }
    let mut data = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::bad(format!("cannot read the body: {e}")))?;
            if let Ok(chunk) = frame.into_data() {
                if data.len() + chunk.len() > app.max_body {
                    return Err(over("the body".into()));
                }
                data.extend_from_slice(&chunk);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(app.body_timeout, read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", app.body_timeout.as_secs_f64()),
        )),
        Ok(Err(e)) => {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                linger(headers, body);
            }
            Err(e)
        }
        Ok(Ok(())) => Ok(Bytes::from(data)),
    }
}

/// The request's head and its body, read as `read_body` reads it.
async fn read_request(app: &App, request: Request) -> Result<(axum::http::request::Parts, Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = read_body(app, &parts.headers, body).await?;
    Ok((parts, bytes))
}

/// How long the rest of a refused body is read and thrown away.
const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards the rest of a refused body for a short while, so that a client still sending it
/// reads our 413 instead of a broken connection (nginx's lingering close). A client that asked first
/// (`Expect: 100-continue`) is sent nothing more than the refusal.
fn linger(headers: &HeaderMap, mut body: Body) {
    let asked = headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if asked {
        return;
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(LINGER, async { while let Some(Ok(_)) = body.frame().await {} }).await;
    });
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

async fn render_metrics(State(app): Shared) -> Response {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], app.metrics.render()).into_response()
}

/// The API's description (`openapi.json`, written by hand beside this crate's code; the CLI test sends a
/// request to each of its operations), with this server's version and model name filled in.
async fn openapi(State(app): Shared) -> Response {
    let mut document: Value = serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json is JSON");
    document["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    document["components"]["parameters"]["ModelName"]["example"] = json!(app.name);
    Json(document).into_response()
}

/// Decodes every image (`(label, bytes)`; a label names the image in errors) on the blocking pool, queues
/// them as one job and waits for the answers, at most until the request's deadline.
async fn answer(app: &Arc<App>, images: Vec<(String, Bytes)>) -> Result<(Vec<Answer>, usize), ApiError> {
    if images.len() > app.max_images {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} images: over the limit of {} per request", images.len(), app.max_images),
        ));
    }
    let deadline = Instant::now() + app.deadline;
    let shared = app.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        images
            .iter()
            .map(|(label, bytes)| {
                prepare::prepare(bytes, &shared.model.description.pipelines, shared.max_pixels)
                    .map_err(|e| ApiError::from(e).about(label))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding stopped: {e}")))??;
    let (reply, answers) = oneshot::channel();
    app.model.submit(Job { images: prepared, queued: Instant::now(), deadline, reply })?;
    let late = || {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("not answered within the {} ms deadline", app.deadline.as_millis()),
        )
    };
    match tokio::time::timeout_at(deadline.into(), answers).await {
        Err(_) => Err(late()),
        Ok(Err(_)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the model thread stopped")),
        Ok(Ok(reply)) => Ok(reply?),
    }
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

/// One image's answer as `/predict` gives it.
fn prediction(app: &App, a: &Answer, members: bool) -> Value {
    let classes = &app.model.description.classes;
    let best = a.probabilities.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).map_or(0, |(i, _)| i);
    let mut out = json!({"classes": classes, "probabilities": a.probabilities, "label": classes[best]});
    if members {
        let by_name: HashMap<&String, &Vec<f64>> = app.model.description.members.iter().zip(&a.members).collect();
        out["members"] = json!(by_name);
    }
    out
}

async fn predict(
    State(app): Shared,
    Query(query): Query<PredictQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let (_, bytes) = read_request(&app, request).await?;
    let (answers, batch) = answer(&app, vec![(String::new(), bytes)]).await?;
    Ok(with_batch(prediction(&app, &answers[0], query.members), batch))
}

/// Several images as the parts of a `multipart/form-data` body, answered in order, each named by its file
/// name (or field name).
async fn predict_batch(
    State(app): Shared,
    Query(query): Query<PredictQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, bytes) = read_request(&app, request).await?;
    let content_type = parts.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    let parts = request::multipart_images(content_type, bytes).await.map_err(ApiError::bad)?;
    let (names, images): (Vec<String>, Vec<(String, Bytes)>) =
        parts.into_iter().map(|p| (p.name, (p.label, p.data))).unzip();
    let (answers, batch) = answer(&app, images).await?;
    let predictions: Vec<Value> = answers
        .iter()
        .zip(names)
        .map(|(a, name)| {
            let mut p = prediction(&app, a, query.members);
            p["name"] = json!(name);
            p
        })
        .collect();
    Ok(with_batch(json!({"predictions": predictions}), batch))
}

async fn infer(State(app): Shared, Path(name): Path<String>, request: Request) -> Result<Response, ApiError> {
    known(&app, &name)?;
    let (_, bytes) = read_request(&app, request).await?;
    let (id, images) = request::infer_images(&bytes).map_err(ApiError::bad)?;
    let n = images.len();
    let (answers, batch) = answer(&app, images).await?;
    let k = app.model.description.classes.len();
    let data: Vec<f32> = answers.iter().flat_map(|a| a.probabilities.iter().map(|&p| p as f32)).collect();
    let mut out = json!({
        "model_name": app.name,
        "model_version": "1",
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [n, k], "data": data}],
    });
    if let Some(id) = id {
        out["id"] = json!(id);
    }
    Ok(with_batch(out, batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batcher::Model;

    fn app(max_body: usize, body_timeout: Duration) -> App {
        let metrics = Arc::new(Metrics::new());
        App {
            name: "ensemble".into(),
            max_pixels: 1,
            max_body,
            max_images: 1,
            body_timeout,
            deadline: Duration::from_secs(1),
            token: None,
            model: Model::stopped(metrics.clone()),
            metrics,
        }
    }

    /// `read_body` of `body` with `headers`, its error's status and message when it fails.
    fn read(app: &App, headers: &[(&'static str, &str)], body: Body) -> Result<usize, (StatusCode, String)> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut map = HeaderMap::new();
        headers.iter().for_each(|(k, v)| {
            map.insert(*k, v.parse().unwrap());
        });
        runtime.block_on(read_body(app, &map, body)).map(|b| b.len()).map_err(|e| (e.status, e.message))
    }

    #[test]
    fn bodies_over_the_limit_or_too_slow_are_refused() {
        let quick = app(1000, Duration::from_secs(5));
        assert_eq!(read(&quick, &[], Body::from(vec![1u8; 1000])), Ok(1000));
        // Declared too long: refused before a byte is read (this body would never end).
        let endless = || Body::from_stream(futures_never());
        let declared = read(&quick, &[("content-length", "209715200")], endless()).unwrap_err();
        assert_eq!(
            declared,
            (StatusCode::PAYLOAD_TOO_LARGE, "a body of 209715200 bytes is over the 1000-byte limit".into())
        );
        // Undeclared (chunked) and too long: refused once the limit is passed.
        let chunked = read(&quick, &[], Body::from(vec![1u8; 1001])).unwrap_err();
        assert_eq!(chunked, (StatusCode::PAYLOAD_TOO_LARGE, "the body is over the 1000-byte limit".into()));
        let slow = app(1000, Duration::from_millis(100));
        let (status, message) = read(&slow, &[("content-length", "10")], endless()).unwrap_err();
        assert_eq!((status, message.as_str()), (StatusCode::REQUEST_TIMEOUT, "the body did not arrive within 0.1 s"));
    }

    /// A body stream that never yields.
    fn futures_never() -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> {
        struct Never;
        impl futures_core::Stream for Never {
            type Item = Result<Bytes, std::io::Error>;
            fn poll_next(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Self::Item>> {
                std::task::Poll::Pending
            }
        }
        Never
    }
}
