//! Maintenance over HTTP: the operator calls (UPDATE/GET_MAINTENANCE_SCHEDULE,
//! GET_MAINTENANCE_STATUS, START/STOP_MAINTENANCE) and Mesos's v0 endpoints
//! `/maintenance/schedule` (GET, POST), `/maintenance/status` (GET), `/machine/down` and
//! `/machine/up` (POST a JSON list of machine ids).

use super::{error, json, unavailable, AppState};
use crate::core::ApiError;
use crate::service::{now, Stopped};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use meseta_api::maintenance::{MachineId, Machines, Schedule};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Which way machines move.
#[derive(Clone, Copy)]
pub enum Transition {
    /// START_MAINTENANCE, `/machine/down`.
    Down,
    /// STOP_MAINTENANCE, `/machine/up`.
    Up,
}

/// GET_MAINTENANCE_SCHEDULE's payload.
pub async fn schedule_payload(app: &AppState) -> Result<Value, Stopped> {
    app.service
        .call(|svc| json!(svc.core.maintenance.schedule))
        .await
}

/// GET_MAINTENANCE_STATUS's payload.
pub async fn status_payload(app: &AppState) -> Result<Value, Stopped> {
    app.service
        .call(|svc| json!(svc.core.maintenance_status()))
        .await
}

/// Replaces the schedule; answers once it is in the registry.
pub async fn update_schedule(app: &AppState, schedule: Schedule) -> Response {
    answer(
        app.service
            .call(move |svc| {
                svc.core.update_maintenance_schedule(now(), schedule)?;
                svc.flush_durably()
            })
            .await,
    )
}

/// Moves machines down or up; answers once the change is in the registry.
pub async fn transition(app: &AppState, machines: Vec<MachineId>, to: Transition) -> Response {
    answer(
        app.service
            .call(move |svc| {
                match to {
                    Transition::Down => svc.core.start_maintenance(now(), &machines)?,
                    Transition::Up => svc.core.stop_maintenance(now(), &machines)?,
                }
                svc.flush_durably()
            })
            .await,
    )
}

/// START_MAINTENANCE / STOP_MAINTENANCE: `{"machines": [...]}`.
pub async fn transition_call(app: &AppState, body: Value, call: &str, to: Transition) -> Response {
    match parse::<Machines>(body, call) {
        Ok(list) => transition(app, list.machines, to).await,
        Err(e) => e.into_response(),
    }
}

/// Parses a call's payload, naming the field in the error.
pub fn parse<T: DeserializeOwned>(value: Value, field: &str) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("Failed to parse '{field}': {e}")))
}

fn answer(result: Result<Result<(), ApiError>, Stopped>) -> Response {
    match result {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => unavailable(),
    }
}

/// v0 `/maintenance/schedule`: GET answers the schedule, POST replaces it.
pub async fn v0_schedule(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match method {
        Method::GET => match schedule_payload(&app).await {
            Ok(schedule) => json(&headers, &schedule),
            Err(_) => unavailable(),
        },
        Method::POST => match parse_body::<Schedule>(&body) {
            Ok(schedule) => update_schedule(&app, schedule).await,
            Err(e) => e.into_response(),
        },
        other => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Expecting 'GET' or 'POST', received '{other}'"),
        ),
    }
}

/// v0 `/maintenance/status`.
pub async fn v0_status(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match status_payload(&app).await {
        Ok(status) => json(&headers, &status),
        Err(_) => unavailable(),
    }
}

/// v0 `/machine/down`.
pub async fn v0_down(State(app): State<AppState>, body: Bytes) -> Response {
    v0_transition(&app, &body, Transition::Down).await
}

/// v0 `/machine/up`.
pub async fn v0_up(State(app): State<AppState>, body: Bytes) -> Response {
    v0_transition(&app, &body, Transition::Up).await
}

async fn v0_transition(app: &AppState, body: &[u8], to: Transition) -> Response {
    match parse_body::<Vec<MachineId>>(body) {
        Ok(machines) => transition(app, machines, to).await,
        Err(e) => e.into_response(),
    }
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Failed to parse the body: {e}")))
}
