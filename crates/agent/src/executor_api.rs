//! `/api/v1/executor`: decodes and checks executor calls in Mesos's order (401 without
//! a valid token when executors authenticate, 503 while recovering, 405, 400/415 content
//! type, 400 parse/validation), hands them to the actor with the token's claims, and
//! streams SUBSCRIBE's events as RecordIO with a heartbeat.

use crate::command::{Command, ExecutorReply};
use crate::executor_auth::Challenge;
use crate::http::{check_json_body, check_post, error, App, HttpError};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use meseta_api::executor::{Call, Event};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often an idle executor stream carries a HEARTBEAT (Mesos: 30 minutes).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30 * 60);

pub async fn handle(
    State(app): State<App>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let claims = match &app.executor_auth {
        Some(auth) if auth.required() => {
            let authorization = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match auth.authenticate(authorization, crate::agent::now_secs()) {
                Ok(claims) => Some(claims),
                Err(Challenge(challenge)) => return Ok(unauthorized(challenge)),
            }
        }
        _ => None,
    };
    if !*app.recovered.borrow() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Agent has not finished recovery",
        ));
    }
    check_post(&method)?;
    check_json_body(&headers)?;
    let call: Call =
        meseta_api::json::from_slice(&body).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    call.validate().map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("Failed to validate executor::Call: {e}"),
        )
    })?;
    match app.ask(|tx| Command::Executor(call, claims, tx)).await? {
        ExecutorReply::Accepted => Ok(StatusCode::ACCEPTED.into_response()),
        ExecutorReply::Rejected(code, message) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            Err(error(status, &message))
        }
        ExecutorReply::Subscribed(events) => Ok(stream(events, HEARTBEAT_INTERVAL)),
    }
}

/// 401 with the challenge in `WWW-Authenticate`.
fn unauthorized(challenge: String) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
    )
        .into_response()
}

/// The SUBSCRIBE response: a chunked RecordIO stream of events, with a HEARTBEAT after
/// every `heartbeat` of silence, ending when the agent drops the sender.
pub fn stream(events: mpsc::UnboundedReceiver<Event>, heartbeat: Duration) -> Response {
    let ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let events = futures::stream::unfold((events, ticker), |(mut events, mut ticker)| async move {
        tokio::select! {
            event = events.recv() => event.map(|e| (e, (events, ticker))),
            _ = ticker.tick() => Some((Event::Heartbeat, (events, ticker))),
        }
    })
    .map(|event| {
        Ok::<_, std::convert::Infallible>(Bytes::from(meseta_api::recordio::encode(&event)))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(events),
    )
        .into_response()
}
