//! `/api/v1/scheduler`: SUBSCRIBE opens the event stream; every other call is checked
//! against the framework's subscription and answered 202 (UPDATE_FRAMEWORK 200, and
//! RECONCILE_OPERATIONS 200 with its answer).

use super::streams::GuardedStream;
use super::{accepts_json, decode_call, error, unavailable, AppState};
use crate::core::ApiError;
use crate::service::{now, Service};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use meseta_api::maintenance::InverseOfferAnswer;
use meseta_api::operations::ReconcileOperationsResponse;
use meseta_api::scheduler::{Call, CallKind, Subscribe};
use meseta_api::FrameworkId;
use serde_json::json;

const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

pub async fn handle(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call: Call = match decode_call(&method, &headers, &body) {
        Ok(call) => call,
        Err(response) => return *response,
    };
    if let Err(message) = call.validate() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Failed to validate scheduler::Call: {message}"),
        );
    }
    let stream_header = headers
        .get(STREAM_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match call.kind {
        CallKind::Subscribe(subscribe) => {
            if !accepts_json(&headers) {
                return error(
                    StatusCode::NOT_ACCEPTABLE,
                    "Expecting 'Accept' to allow application/json",
                );
            }
            if stream_header.is_some() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Subscribe calls should not include the 'Mesos-Stream-Id' header",
                );
            }
            subscribe_stream(app, subscribe).await
        }
        CallKind::ReconcileOperations(_) if !accepts_json(&headers) => error(
            StatusCode::NOT_ACCEPTABLE,
            "Expecting 'Accept' to allow application/json",
        ),
        kind => {
            let framework_id = call
                .framework_id
                .expect("validated: non-subscribe calls carry framework_id");
            match app
                .service
                .call(move |svc| dispatch(svc, framework_id, stream_header, kind))
                .await
            {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => e.into_response(),
                Err(_) => unavailable(),
            }
        }
    }
}

async fn subscribe_stream(app: AppState, subscribe: Subscribe) -> Response {
    let stream_id = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let sid = stream_id.clone();
    let result = app
        .service
        .call(move |svc| {
            let framework_id = svc.core.subscribe(
                now(),
                sid.clone(),
                subscribe.framework_info,
                subscribe.suppressed_roles,
            )?;
            svc.add_stream(sid, framework_id.clone(), tx);
            Ok::<FrameworkId, ApiError>(framework_id)
        })
        .await;
    let framework_id = match result {
        Ok(Ok(id)) => id,
        // A refused SUBSCRIBE is an ERROR event on a 200 stream that then closes.
        Ok(Err(e)) if e.status == 403 => return refused_stream(e.message),
        Ok(Err(e)) => return e.into_response(),
        Err(_) => return unavailable(),
    };
    let service = app.service.clone();
    let sid = stream_id.clone();
    let body = GuardedStream::new(rx, move || {
        service.cast(move |svc| svc.core.stream_closed(now(), &framework_id, &sid));
    })
    .into_body();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::HeaderName::from_static("mesos-stream-id"),
                stream_id,
            ),
        ],
        body,
    )
        .into_response()
}

fn refused_stream(message: String) -> Response {
    let event = meseta_api::scheduler::Event::Error(meseta_api::scheduler::Error { message });
    let record = Bytes::from(meseta_api::recordio::encode(&event));
    let body = axum::body::Body::from_stream(futures::stream::once(async move {
        Ok::<_, std::convert::Infallible>(record)
    }));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Runs a non-SUBSCRIBE call on the core after Mesos's checks: known framework (400),
/// subscribed (403), matching stream id (400).
/// UPDATE_FRAMEWORK answers 200, RECONCILE_OPERATIONS 200 with the operations' statuses,
/// the others 202.
fn dispatch(
    svc: &mut Service,
    framework_id: FrameworkId,
    stream_id: Option<String>,
    kind: CallKind,
) -> Result<Response, ApiError> {
    let t = now();
    let core = &mut svc.core;
    let Some(framework) = core.frameworks.get(&framework_id) else {
        return Err(ApiError::bad_request(format!(
            "Framework '{framework_id}' not found"
        )));
    };
    let Some(current) = framework.stream_id.as_deref() else {
        return Err(ApiError::forbidden(format!(
            "Framework '{framework_id}' is not subscribed"
        )));
    };
    match stream_id.as_deref() {
        None => return Err(ApiError::bad_request("All non-subscribe calls should include the 'Mesos-Stream-Id' header")),
        Some(s) if s != current => {
            return Err(ApiError::bad_request(format!(
                "The stream ID '{s}' included in this request didn't match the stream ID currently associated with framework ID {framework_id}"
            )))
        }
        Some(_) => {}
    }
    match kind {
        CallKind::Subscribe(_) => unreachable!("handled by the caller"),
        CallKind::Teardown => core.teardown(t, &framework_id)?,
        CallKind::Accept(accept) => core.accept(t, &framework_id, accept),
        CallKind::Decline(decline) => core.decline(
            t,
            &framework_id,
            &decline.offer_ids,
            decline.filters.as_ref(),
        ),
        CallKind::Revive(roles) => core.revive(&framework_id, roles.unwrap_or_default().roles),
        CallKind::Suppress(roles) => core.suppress(&framework_id, roles.unwrap_or_default().roles),
        CallKind::Kill(kill) => core.kill(t, &framework_id, kill),
        CallKind::Shutdown(shutdown) => core.shutdown_executor(&framework_id, shutdown),
        CallKind::Acknowledge(ack) => core.acknowledge(&framework_id, ack)?,
        CallKind::Reconcile(reconcile) => core.reconcile(t, &framework_id, reconcile.tasks),
        CallKind::Message(message) => core.framework_message(&framework_id, message),
        CallKind::UpdateFramework(update) => {
            core.update_framework(
                &framework_id,
                update.framework_info,
                update.suppressed_roles,
            )?;
            return Ok(StatusCode::OK.into_response());
        }
        CallKind::AcceptInverseOffers(answer) => core.answer_inverse_offers(
            t,
            &framework_id,
            &answer.inverse_offer_ids,
            InverseOfferAnswer::Accept,
            answer.filters.map(|f| f.refuse_seconds),
        ),
        CallKind::DeclineInverseOffers(answer) => core.answer_inverse_offers(
            t,
            &framework_id,
            &answer.inverse_offer_ids,
            InverseOfferAnswer::Decline,
            answer.filters.map(|f| f.refuse_seconds),
        ),
        CallKind::AcknowledgeOperationStatus(ack) => {
            core.acknowledge_operation_status(&framework_id, ack)?
        }
        CallKind::ReconcileOperations(reconcile) => {
            let asked = reconcile.unwrap_or_default().operations;
            let answer = json!({
                "type": "RECONCILE_OPERATIONS",
                "reconcile_operations": ReconcileOperationsResponse {
                    operation_statuses: core.reconcile_operations(&framework_id, &asked),
                },
            });
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                answer.to_string(),
            )
                .into_response());
        }
        // Mesos ignores REQUEST.
        CallKind::Request(_) => {}
    }
    Ok(StatusCode::ACCEPTED.into_response())
}
