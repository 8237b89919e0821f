//! The internal agent link (see `meseta_api::internal`): registration opens a stream of
//! master→agent messages; agent→master messages arrive as single POSTs.

use super::streams::GuardedStream;
use super::{content_type_error, error, unavailable, AppState};
use crate::core::ApiError;
use crate::service::now;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use meseta_api::internal::{RegisterAgent, ToMaster, LINK_ID_HEADER};
use meseta_api::AgentId;

pub async fn link(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = content_type_error(&headers) {
        return response;
    }
    let register: RegisterAgent = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Invalid agent registration: {e}"),
            )
        }
    };
    let link_id = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let lid = link_id.clone();
    let result = app
        .service
        .call(move |svc| {
            let agent_id = svc.core.register_agent(now(), lid.clone(), register)?;
            svc.add_link(lid, agent_id.clone(), tx);
            Ok::<AgentId, ApiError>(agent_id)
        })
        .await;
    let agent_id = match result {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => return e.into_response(),
        Err(_) => return unavailable(),
    };
    tracing::info!(agent = %agent_id, "agent linked");
    let service = app.service.clone();
    let body = GuardedStream::new(rx, move || {
        service.cast(move |svc| svc.core.link_closed(now(), &agent_id, &link_id));
    })
    .into_body();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

pub async fn message(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = content_type_error(&headers) {
        return response;
    }
    let Some(link_id) = headers
        .get(LINK_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Expecting the '{LINK_ID_HEADER}' header"),
        );
    };
    let messages: Vec<ToMaster> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Invalid agent messages (a JSON array of them): {e}"),
            )
        }
    };
    let result = app
        .service
        .call(move |svc| {
            let agent_id = svc.core.agent_for_link(&link_id)?;
            for message in messages {
                match message {
                    ToMaster::StatusUpdate(update) => svc.core.status_update(&agent_id, update),
                    ToMaster::ExecutorMessage(m) => svc.core.executor_message(&agent_id, m),
                    ToMaster::ExitedExecutor(e) => svc.core.executor_exited(&agent_id, e),
                }
            }
            Ok::<(), ApiError>(())
        })
        .await;
    match result {
        Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => unavailable(),
    }
}
