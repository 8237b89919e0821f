//! The master's operator API, `/api/v1` (also `/api/v1/operator`).

use super::maintenance;
use super::{accepts_json, decode_call, error, json, read_answer, unavailable, AppState};
use crate::core::{ApiError, ResourceOp, Snapshot, WeightInfo};
use crate::reads::{write_view, Emit};
use crate::service::{now, Service};
use crate::views;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use meseta_api::operator::{response, Call, Event};
use meseta_api::OperationType;
use serde::Serialize;
use serde_json::{json, Value};

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
    if !accepts_json(&headers) {
        return error(
            StatusCode::NOT_ACCEPTABLE,
            "Expecting 'Accept' to allow application/json",
        );
    }
    let type_name = call.type_name();
    match call {
        Call::GetHealth => json(&headers, &response(type_name, json!({"healthy": true}))),
        Call::GetVersion => json(
            &headers,
            &response(
                type_name,
                json!({"version_info": meseta_api::version::version_info()}),
            ),
        ),
        Call::GetFlags => {
            let flags: Vec<Value> = app
                .flags
                .iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect();
            json(&headers, &response(type_name, json!({"flags": flags})))
        }
        Call::GetLoggingLevel => json(&headers, &response(type_name, json!({"level": 0}))),
        Call::GetMaintenanceStatus => match maintenance::status_payload(&app).await {
            Ok(status) => json(&headers, &response(type_name, json!({"status": status}))),
            Err(_) => unavailable(),
        },
        Call::GetMaintenanceSchedule => match maintenance::schedule_payload(&app).await {
            Ok(schedule) => json(
                &headers,
                &response(type_name, json!({"schedule": schedule})),
            ),
            Err(_) => unavailable(),
        },
        Call::UpdateMaintenanceSchedule(body) => {
            match maintenance::parse(
                body["schedule"].clone(),
                "update_maintenance_schedule.schedule",
            ) {
                Ok(schedule) => maintenance::update_schedule(&app, schedule).await,
                Err(e) => e.into_response(),
            }
        }
        Call::StartMaintenance(body) => {
            maintenance::transition_call(&app, body, type_name, maintenance::Transition::Down).await
        }
        Call::StopMaintenance(body) => {
            maintenance::transition_call(&app, body, type_name, maintenance::Transition::Up).await
        }
        Call::GetOperations => json(&headers, &response(type_name, json!({"operations": []}))),
        Call::Subscribe => subscribe(app).await,
        Call::GetState => {
            read(&app, &headers, type_name, |s, emit| {
                write_view(&Answer(type_name, &views::get_state(s)), emit)
            })
            .await
        }
        Call::GetAgents => {
            read(&app, &headers, type_name, |s, emit| {
                write_view(&Answer(type_name, &views::get_agents(s)), emit)
            })
            .await
        }
        Call::GetFrameworks => {
            read(&app, &headers, type_name, |s, emit| {
                write_view(&Answer(type_name, &views::get_frameworks(s)), emit)
            })
            .await
        }
        Call::GetExecutors => {
            read(&app, &headers, type_name, |s, emit| {
                write_view(&Answer(type_name, &views::get_executors(s)), emit)
            })
            .await
        }
        Call::GetTasks => {
            read(&app, &headers, type_name, |s, emit| {
                write_view(&Answer(type_name, &views::get_tasks(s)), emit)
            })
            .await
        }
        Call::GetMetrics(_)
        | Call::GetRoles
        | Call::GetWeights
        | Call::GetQuota
        | Call::GetMaster => {
            let answer = app.service.call(move |svc| query(svc, &call)).await;
            match answer {
                Ok(payload) => json(&headers, &response(type_name, payload)),
                Err(_) => unavailable(),
            }
        }
        Call::Teardown(teardown) => empty_or_error(
            app.service
                .call(move |svc| svc.core.teardown(now(), &teardown.framework_id))
                .await,
        ),
        Call::UpdateWeights(body) => {
            let infos = match parse_weight_infos(&body["weight_infos"]) {
                Ok(infos) => infos,
                Err(e) => return e.into_response(),
            };
            empty_or_error(update_weights(&app, infos).await)
        }
        Call::UpdateQuota(body) => match serde_json::from_value(body) {
            Ok(update) => {
                empty_or_error(durable_call(&app, move |core| core.update_quota(&update)).await)
            }
            Err(e) => {
                ApiError::bad_request(format!("Failed to parse update_quota: {e}")).into_response()
            }
        },
        Call::SetQuota(body) => match serde_json::from_value(body["quota_request"].clone()) {
            Ok(request) => {
                empty_or_error(durable_call(&app, move |core| core.set_quota(&request)).await)
            }
            Err(e) => {
                ApiError::bad_request(format!("Failed to parse set_quota.quota_request: {e}"))
                    .into_response()
            }
        },
        Call::RemoveQuota(body) => match body["role"].as_str().map(str::to_string) {
            Some(role) => {
                empty_or_error(durable_call(&app, move |core| core.remove_quota(&role)).await)
            }
            None => {
                ApiError::bad_request("Expecting 'remove_quota.role' to be present").into_response()
            }
        },
        Call::MarkAgentGone(gone) => empty_or_error(
            app.service
                .call(move |svc| svc.core.mark_agent_gone(now(), &gone.agent_id))
                .await,
        ),
        Call::ReserveResources(body) => {
            accepted_or_error(resource_op(&app, OperationType::Reserve, &body).await)
        }
        Call::UnreserveResources(body) => {
            accepted_or_error(resource_op(&app, OperationType::Unreserve, &body).await)
        }
        Call::CreateVolumes(body) => {
            accepted_or_error(resource_op(&app, OperationType::Create, &body).await)
        }
        Call::DestroyVolumes(body) => {
            accepted_or_error(resource_op(&app, OperationType::Destroy, &body).await)
        }
        Call::DrainAgent(body) => match maintenance::parse(body, "drain_agent") {
            Ok(drain) => {
                empty_or_error(durable_call(&app, move |core| core.drain_agent(now(), drain)).await)
            }
            Err(e) => e.into_response(),
        },
        Call::DeactivateAgent(body) => {
            empty_or_error(set_agent_deactivated(&app, &body["agent_id"], true).await)
        }
        Call::ReactivateAgent(body) => {
            empty_or_error(set_agent_deactivated(&app, &body["agent_id"], false).await)
        }
        Call::GetAgent
        | Call::GetContainers(_)
        | Call::GetResourceProviders
        | Call::LaunchNestedContainer(_)
        | Call::WaitNestedContainer(_)
        | Call::KillNestedContainer(_)
        | Call::RemoveNestedContainer(_)
        | Call::LaunchNestedContainerSession(_)
        | Call::AttachContainerInput(_)
        | Call::AttachContainerOutput(_)
        | Call::LaunchContainer(_)
        | Call::WaitContainer(_)
        | Call::KillContainer(_)
        | Call::RemoveContainer(_)
        | Call::PruneImages(_) => error(
            StatusCode::BAD_REQUEST,
            format!("{type_name} is an agent call; send it to an agent"),
        ),
        other => error(
            StatusCode::NOT_IMPLEMENTED,
            format!("{} is not supported by this master yet", other.type_name()),
        ),
    }
}

fn query(svc: &mut Service, call: &Call) -> Value {
    let core = &svc.core;
    match call {
        Call::GetRoles => views::get_roles(core),
        Call::GetMaster => views::get_master(core),
        Call::GetWeights => json!({"weight_infos": core.weight_infos()}),
        Call::GetQuota => json!({"status": core.quota_status()}),
        Call::GetMetrics(_) => {
            let metrics: Vec<Value> = views::metrics(core)
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| json!({"name": k, "value": v}))
                        .collect()
                })
                .unwrap_or_default();
            json!({"metrics": metrics})
        }
        _ => Value::Null,
    }
}

/// Reads a list of `WeightInfo`s (UPDATE_WEIGHTS's `weight_infos`, the v0 `/weights` body).
pub fn parse_weight_infos(value: &Value) -> Result<Vec<WeightInfo>, ApiError> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    serde_json::from_value(value.clone())
        .map_err(|e| ApiError::bad_request(format!("Failed to parse weight infos: {e}")))
}

/// Applies weights; answers once they are stored in the registry.
pub async fn update_weights(
    app: &AppState,
    infos: Vec<WeightInfo>,
) -> Result<Result<(), ApiError>, crate::service::Stopped> {
    app.service
        .call(move |svc| {
            svc.core.update_weights(&infos)?;
            svc.flush_durably()
        })
        .await
}

/// A change of the core; answers once it is stored in the registry.
async fn durable_call(
    app: &AppState,
    change: impl FnOnce(&mut crate::core::Core) -> Result<(), ApiError> + Send + 'static,
) -> Result<Result<(), ApiError>, crate::service::Stopped> {
    app.service
        .call(move |svc| {
            change(&mut svc.core)?;
            svc.flush_durably()
        })
        .await
}

/// DEACTIVATE_AGENT / REACTIVATE_AGENT; answers once the change is in the registry.
async fn set_agent_deactivated(
    app: &AppState,
    agent_id: &Value,
    deactivated: bool,
) -> Result<Result<(), ApiError>, crate::service::Stopped> {
    let agent_id: meseta_api::AgentId = match serde_json::from_value(agent_id.clone()) {
        Ok(id) => id,
        Err(e) => {
            return Ok(Err(ApiError::bad_request(format!(
                "Expecting 'agent_id' to be present: {e}"
            ))))
        }
    };
    app.service
        .call(move |svc| {
            if deactivated {
                svc.core.deactivate_agent(&agent_id)?;
            } else {
                svc.core.reactivate_agent(&agent_id)?;
            }
            svc.flush_durably()
        })
        .await
}

/// RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES, DESTROY_VOLUMES; answers once
/// the agent's new checkpointed resources are in the registry.
async fn resource_op(
    app: &AppState,
    kind: OperationType,
    body: &Value,
) -> Result<Result<(), ApiError>, crate::service::Stopped> {
    let (agent_id, op) = match ResourceOp::from_operator_call(kind, body) {
        Ok(parsed) => parsed,
        Err(message) => return Ok(Err(ApiError::bad_request(message))),
    };
    app.service
        .call(move |svc| {
            svc.core.operator_resource_op(&agent_id, op)?;
            svc.flush_durably()
        })
        .await
}

/// 202 Accepted, as Mesos answers the resource operation calls.
fn accepted_or_error(answer: Result<Result<(), ApiError>, crate::service::Stopped>) -> Response {
    match answer {
        Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => unavailable(),
    }
}

fn empty_or_error(answer: Result<Result<(), ApiError>, crate::service::Stopped>) -> Response {
    match answer {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => unavailable(),
    }
}

/// A whole-state view read off the service loop (see [`crate::reads`]).
async fn read(
    app: &AppState,
    headers: &HeaderMap,
    type_name: &'static str,
    render: impl Fn(&Snapshot, Emit) + Send + Sync + 'static,
) -> Response {
    read_answer(headers, app.reads.read(type_name, render).await).await
}

/// A response or event, `{"type": T, "<t>": payload}`, written straight to bytes.
struct Answer<'a, T>(&'a str, &'a T);

impl<T: Serialize> Serialize for Answer<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", self.0)?;
        map.serialize_entry(&self.0.to_ascii_lowercase(), self.1)?;
        map.end()
    }
}

/// SUBSCRIBED's payload.
#[derive(Serialize)]
struct Subscribed<'a> {
    get_state: views::GetState<'a>,
    heartbeat_interval_seconds: f64,
}

/// SUBSCRIBE: the subscriber is added with a snapshot of the state in one job, so that the
/// events it gets follow the state it is sent first; that state is written off the service
/// loop.
async fn subscribe(app: AppState) -> Response {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let snapshot = app
        .service
        .call(move |svc| {
            svc.add_operator_subscriber(tx);
            svc.core.snapshot()
        })
        .await;
    let Ok(snapshot) = snapshot else {
        return unavailable();
    };
    let first = tokio::task::spawn_blocking(move || {
        let subscribed = Subscribed {
            get_state: views::get_state(&snapshot),
            heartbeat_interval_seconds: crate::core::HEARTBEAT_INTERVAL_SECS,
        };
        meseta_api::recordio::encode(&Answer("SUBSCRIBED", &subscribed))
    })
    .await;
    let first = match first {
        Ok(first) => Bytes::from(first),
        Err(e) => return super::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let heartbeat = Bytes::from(meseta_api::recordio::encode(&Event::Heartbeat));
    let records = futures::stream::iter([first, heartbeat])
        .chain(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .map(Ok::<_, std::convert::Infallible>);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(records),
    )
        .into_response()
}
