//! Error answers: every refusal is JSON `{"error": "..."}` with a 4xx or 5xx status, whatever produced it —
//! our handlers, axum's extractors, the router's fallbacks, or a panic.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::batcher::{Failed, Refused};
use crate::prepare::ImageError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Adds `Retry-After: 1`: the client may try again shortly.
    pub retry_after: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: false }
    }

    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The same error about the image called `label` (nothing added when the request held one image).
    pub fn about(mut self, label: &str) -> ApiError {
        if !label.is_empty() {
            self.message = format!("{label}: {}", self.message);
        }
        self
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

impl From<Failed> for ApiError {
    fn from(f: Failed) -> ApiError {
        match f {
            Failed::Expired => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the request's deadline passed in the queue"),
            Failed::Forward(message) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message),
        }
    }
}

/// The answer to a panic inside a handler: a 500 for this request; the server goes on.
pub fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error while answering (see the server's log)")
        .into_response()
}

/// An error answer that is not JSON (axum's own rejections are plain text; a 405 has no body) made into
/// one, its text kept as the message.
pub async fn as_json(response: Response) -> Response {
    let status = response.status();
    let json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection texts are short; anything unreadable falls back to the status' reason.
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let mut answer = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(status: StatusCode) -> Response {
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = status;
        response
    }

    fn text(response: Response) -> (StatusCode, String, serde_json::Value) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let status = response.status();
        let kind = response.headers().get(header::CONTENT_TYPE).unwrap().to_str().unwrap().to_string();
        let body = runtime.block_on(axum::body::to_bytes(response.into_body(), 1 << 20)).unwrap();
        (status, kind, serde_json::from_slice(&body).unwrap())
    }

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

    #[test]
    fn plain_errors_become_json_and_successes_stay_as_they_are() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut allowed = empty(StatusCode::METHOD_NOT_ALLOWED);
        allowed.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        let answer = runtime.block_on(as_json(allowed));
        assert_eq!(answer.headers().get(header::ALLOW).unwrap(), "GET");
        let (status, kind, body) = text(answer);
        assert_eq!((status, kind.as_str()), (StatusCode::METHOD_NOT_ALLOWED, "application/json"));
        assert_eq!(body["error"], "method not allowed");
        let rejection = (StatusCode::BAD_REQUEST, "Failed to deserialize query string").into_response();
        let (status, _, body) = text(runtime.block_on(as_json(rejection)));
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("Failed to deserialize query string"))
        );
        let fine = runtime.block_on(as_json("plain success".into_response()));
        assert_eq!(fine.headers().get(header::CONTENT_TYPE).unwrap(), "text/plain; charset=utf-8");
    }
}
