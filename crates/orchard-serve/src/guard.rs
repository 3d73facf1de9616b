//! What wraps every route, outermost first: counting (requests by endpoint and status, latency), error
//! answers made JSON, the bearer-token check, and a panic inside a handler caught and answered 500 — the
//! connection and the server go on.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use subtle::ConstantTimeEq;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{self, ApiError};
use crate::http::App;

/// Paths answered without a token: orchestrators' liveness and readiness probes carry none.
const OPEN_PATHS: [&str; 2] = ["/v2/health/live", "/v2/health/ready"];

/// `routes` with the guards around them (and around the fallbacks for unknown paths and methods).
pub fn around(routes: Router<Arc<App>>, app: Arc<App>) -> Router<Arc<App>> {
    routes
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .layer(CatchPanicLayer::custom(error::panicked))
        .layer(middleware::from_fn_with_state(app.clone(), authorize))
        .layer(middleware::from_fn_with_state(app, record))
}

/// Counts the answer and its time under the route's template (not the raw path: the set of label values
/// stays small whatever clients send), after making an error answer JSON.
async fn record(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let endpoint = request.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_string();
    let started = Instant::now();
    let response = error::as_json(next.run(request).await).await;
    let m = &app.metrics;
    m.requests.with_label_values(&[endpoint.as_str(), response.status().as_str()]).inc();
    m.latency.with_label_values(&[endpoint.as_str()]).observe(started.elapsed().as_secs_f64());
    response
}

/// Refuses a request without the server's bearer token (when it has one) with 401.
async fn authorize(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(token) = &app.token else { return next.run(request).await };
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()?.strip_prefix("Bearer "));
    // Compared in constant time: the time to refuse says nothing of how much of the token was right.
    if given.is_some_and(|g| bool::from(g.trim().as_bytes().ct_eq(token.as_bytes()))) {
        return next.run(request).await;
    }
    let message = if given.is_some() { "wrong bearer token" } else { "this server needs a bearer token" };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batcher::Model;
    use crate::listen::testing::TestServer;
    use crate::listen::Limits;
    use crate::metrics::Metrics;
    use axum::routing::get;
    use std::time::Duration;

    /// A server of `/boom` (panics), `/fine` and the live probe behind the guards.
    fn server(token: Option<&str>) -> (TestServer, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let app = Arc::new(App {
            name: "ensemble".into(),
            max_pixels: 1,
            max_body: 1,
            max_images: 1,
            body_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(1),
            token: token.map(str::to_string),
            model: Model::stopped(metrics.clone()),
            metrics: metrics.clone(),
        });
        let routes = Router::new()
            .route("/boom", get(|| async { panic!("a bug in a handler") as &str }))
            .route("/fine", get(|| async { "fine" }))
            .route("/v2/health/live", get(|| async { "live" }));
        let router = around(routes, app.clone()).with_state(app);
        let limits =
            Limits { max_connections: 8, header_timeout: Duration::from_secs(5), drain: Duration::from_secs(1) };
        (TestServer::start(router, limits, metrics.clone()), metrics)
    }

    #[test]
    fn a_panic_is_answered_500_and_the_server_goes_on_every_error_is_json_and_counted() {
        let (server, metrics) = server(None);
        let boom = server.get("/boom", "");
        assert!(boom.starts_with("HTTP/1.1 500"), "{boom}");
        assert!(boom.ends_with(r#"{"error":"internal error while answering (see the server's log)"}"#), "{boom}");
        assert!(server.get("/fine", "").ends_with("\r\n\r\nfine"));
        let wrong_method =
            server.exchange("POST /fine HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        assert!(wrong_method.starts_with("HTTP/1.1 405"), "{wrong_method}");
        assert!(
            wrong_method.contains("content-type: application/json")
                && wrong_method.ends_with(r#"{"error":"method not allowed"}"#),
            "{wrong_method}"
        );
        let unknown = server.get("/nowhere", "");
        assert!(
            unknown.starts_with("HTTP/1.1 404") && unknown.ends_with(r#"{"error":"no such endpoint"}"#),
            "{unknown}"
        );
        let text = metrics.render();
        for line in [
            r#"orchard_http_requests_total{code="500",endpoint="/boom"} 1"#,
            r#"orchard_http_requests_total{code="200",endpoint="/fine"} 1"#,
            r#"orchard_http_requests_total{code="405",endpoint="/fine"} 1"#,
            r#"orchard_http_requests_total{code="404",endpoint="unmatched"} 1"#,
            r#"orchard_http_request_duration_seconds_count{endpoint="/boom"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no '{line}' in\n{text}");
        }
    }

    #[test]
    fn the_token_is_needed_everywhere_but_the_probes() {
        let (server, metrics) = server(Some("s3cret"));
        let missing = server.get("/fine", "");
        assert!(missing.starts_with("HTTP/1.1 401") && missing.contains("www-authenticate: Bearer"), "{missing}");
        assert!(missing.ends_with(r#"{"error":"this server needs a bearer token"}"#), "{missing}");
        let wrong = server.get("/fine", "authorization: Bearer s3cre\r\n");
        assert!(wrong.starts_with("HTTP/1.1 401") && wrong.ends_with(r#"{"error":"wrong bearer token"}"#), "{wrong}");
        assert!(server.get("/fine", "authorization: Basic czNjcmV0\r\n").starts_with("HTTP/1.1 401"));
        assert!(server.get("/fine", "authorization: Bearer s3cret\r\n").starts_with("HTTP/1.1 200"));
        assert!(server.get("/v2/health/live", "").starts_with("HTTP/1.1 200"));
        let text = metrics.render();
        assert!(text.contains(r#"orchard_http_requests_total{code="401",endpoint="/fine"} 3"#), "{text}");
    }
}
