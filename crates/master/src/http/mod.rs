//! The master's HTTP layer: routes, request checks in Mesos's order, and responses.
//! Handlers decode and validate, run a job on the service, and turn its answer into a
//! response; they hold no state of their own.

mod agent_link;
mod maintenance;
mod operator;
mod scheduler;
mod streams;
mod v0;

use crate::core::ApiError;
use crate::service::ServiceHandle;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use bytes::Bytes;
use std::io::Write;
use std::sync::Arc;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub service: ServiceHandle,
    /// GET_FLAGS / `/flags`.
    pub flags: Arc<Vec<(String, String)>>,
    /// `host:port` of this master, for `/redirect`.
    pub leader: Arc<String>,
    /// Reads of the whole-state views, off the service loop.
    pub reads: crate::reads::Reads,
}

/// All of the master's routes.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/internal/v1/agent/link", post(agent_link::link))
        .route("/internal/v1/agent/message", post(agent_link::message));
    for prefix in ["", "/master"] {
        router = router
            .route(
                &format!("{prefix}/api/v1/scheduler"),
                any(scheduler::handle),
            )
            .route(&format!("{prefix}/api/v1"), any(operator::handle))
            .route(&format!("{prefix}/api/v1/operator"), any(operator::handle))
            .route(&format!("{prefix}/state"), get(v0::state))
            .route(&format!("{prefix}/state.json"), get(v0::state))
            .route(&format!("{prefix}/state-summary"), get(v0::state_summary))
            .route(&format!("{prefix}/frameworks"), get(v0::frameworks))
            .route(&format!("{prefix}/slaves"), get(v0::slaves))
            .route(&format!("{prefix}/tasks"), get(v0::tasks))
            .route(&format!("{prefix}/roles"), get(v0::roles))
            .route(&format!("{prefix}/weights"), any(v0::weights))
            .route(&format!("{prefix}/quota"), get(v0::quota))
            .route(&format!("{prefix}/flags"), get(v0::flags))
            .route(&format!("{prefix}/health"), get(v0::health))
            .route(&format!("{prefix}/redirect"), get(v0::redirect))
            .route(&format!("{prefix}/teardown"), post(v0::teardown))
            .route(
                &format!("{prefix}/maintenance/schedule"),
                any(maintenance::v0_schedule),
            )
            .route(
                &format!("{prefix}/maintenance/status"),
                get(maintenance::v0_status),
            )
            .route(
                &format!("{prefix}/machine/down"),
                post(maintenance::v0_down),
            )
            .route(&format!("{prefix}/machine/up"), post(maintenance::v0_up));
    }
    router
        .route("/version", get(v0::version))
        .route("/metrics/snapshot", get(v0::metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("No endpoint at '{}'", uri.path()),
    )
}

/// A plain-text error, as Mesos answers.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            self.message,
        )
    }
}

/// The answer when the service has stopped.
pub fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The master is shutting down",
    )
}

/// A JSON body, gzipped when the client accepts gzip.
pub fn json(headers: &HeaderMap, value: &serde_json::Value) -> Response {
    let body = meseta_api::json::to_ascii_vec(value);
    if accepts_gzip(headers) {
        if let Some(compressed) = gzip(&body) {
            return gzipped_json(compressed);
        }
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON body already written (a view read, shared by its readers), gzipped off the
/// runtime's threads (sent as it is if that fails).
async fn gzipped_json_bytes(body: Bytes) -> Response {
    let plain = body.clone();
    if let Ok(Some(compressed)) = tokio::task::spawn_blocking(move || gzip(&plain)).await {
        return gzipped_json(compressed);
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The answer to a view read, streamed as it is written (gzipped whole when the client
/// accepts gzip), or why there is none.
pub async fn read_answer(
    headers: &HeaderMap,
    answer: Result<crate::reads::ViewText, crate::reads::ReadError>,
) -> Response {
    let text = match answer {
        Ok(text) => text,
        Err(e) => return read_error(e),
    };
    if !accepts_gzip(headers) {
        let body = axum::body::Body::from_stream(text.into_stream());
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    match text.collect().await {
        Ok(body) => gzipped_json_bytes(body).await,
        Err(e) => read_error(e),
    }
}

fn read_error(e: crate::reads::ReadError) -> Response {
    match e {
        crate::reads::ReadError::Stopped => unavailable(),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.trim().split(';').next() == Some("gzip"))
        })
}

fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

fn gzipped_json(compressed: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_ENCODING, "gzip"),
        ],
        compressed,
    )
        .into_response()
}

/// Checks `Content-Type` as Mesos does: 400 when absent, 415 unless JSON (parameters such
/// as `charset=utf-8` are accepted). Returns the error response, if any.
pub fn content_type_error(headers: &HeaderMap) -> Option<Response> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present",
        ));
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => None,
        "application/x-protobuf" => Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expecting 'Content-Type' of application/json: this master does not speak protobuf",
        )),
        other => Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Expecting 'Content-Type' of application/json or application/x-protobuf, got '{other}'"),
        )),
    }
}

/// Whether `Accept` allows a JSON response (a missing header means JSON).
pub fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::ACCEPT) else {
        return true;
    };
    let text = value.to_str().unwrap_or("");
    text.split(',').any(|part| {
        let media = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            media.as_str(),
            "application/json" | "application/*" | "*/*" | ""
        )
    })
}

/// Decodes a POSTed JSON call after Mesos's checks, in its order: 405 for another method,
/// 400/415 for the content type, 400 for a body that is not a valid call.
pub fn decode_call<T: serde::de::DeserializeOwned>(
    method: &axum::http::Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Box<Response>> {
    if method != axum::http::Method::POST {
        return Err(Box::new(method_not_allowed("POST", method)));
    }
    if let Some(response) = content_type_error(headers) {
        return Err(Box::new(response));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("Failed to convert JSON into Call protobuf: {e}"),
        ))
    })
}

/// The 405 Mesos answers for a wrong method.
pub fn method_not_allowed(expected: &'static str, got: &axum::http::Method) -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Expecting a '{expected}' request, received '{got}'"),
    );
    response.headers_mut().insert(
        header::ALLOW,
        axum::http::HeaderValue::from_static(expected),
    );
    response
}
