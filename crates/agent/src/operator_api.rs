//! The agent's operator API (`/api/v1`, `/api/v1/operator`): the read calls Mesos's
//! agent serves (health, flags, version, metrics, state, frameworks, executors, tasks,
//! agent, containers, files) and PRUNE_IMAGES; every other call is answered 501 with
//! its name.

use crate::command::View;
use crate::files;
use crate::http::{check_json_body, check_post, error, json_response, App, HttpError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use meseta_api::json::Bytes as Base64;
use meseta_api::operator::{self, Call};
use serde_json::{json, Value};

/// Whether an `Accept` header allows a JSON answer.
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept
        .split(',')
        .map(|part| part.split(';').next().unwrap_or_default().trim())
        .any(|media| {
            media.eq_ignore_ascii_case("application/json")
                || media == "*/*"
                || media.eq_ignore_ascii_case("application/*")
        })
}

pub async fn handle(
    State(app): State<App>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    check_post(&method)?;
    check_json_body(&headers)?;
    if !accepts_json(&headers) {
        let message = "Expecting 'Accept' to allow application/json";
        return Err(error(StatusCode::NOT_ACCEPTABLE, message));
    }
    let call: Call =
        meseta_api::json::from_slice(&body).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    let name = call.type_name();
    if let Call::PruneImages(body) = &call {
        return prune_images(&app, body.as_ref()).await;
    }
    match answer(&app, call).await? {
        Some(payload) => Ok(json_response(&operator::response(name, payload))),
        None => {
            let message = format!("The agent operator call {name} is not supported by this agent");
            Err(error(StatusCode::NOT_IMPLEMENTED, &message))
        }
    }
}

/// PRUNE_IMAGES: removes the images no container uses (but those excluded); 200 with an
/// empty body, as Mesos answers it.
async fn prune_images(app: &App, body: Option<&Value>) -> Result<Response, HttpError> {
    let excluded =
        crate::images::excluded_images(body).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    match app.images.prune(&excluded).await {
        Ok(pruned) => {
            tracing::info!("pruned images {:?} ({} files)", pruned.images, pruned.files);
            Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
        }
        Err(meseta_containerizer::image::ImageError::InvalidReference(name, why)) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("Invalid excluded image '{name}': {why}"),
        )),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Failed to prune images: {e}"),
        )),
    }
}

/// The response payload, or `None` for an unsupported call.
async fn answer(app: &App, call: Call) -> Result<Option<Value>, HttpError> {
    let payload = match call {
        Call::GetHealth => json!({"healthy": true}),
        Call::GetFlags => {
            let flags: Vec<Value> = app
                .flags
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
            json!({"flags": flags})
        }
        Call::GetVersion => {
            let mut info = meseta_api::version::version_info();
            if let Some(o) = info.as_object_mut() {
                o.remove("meseta_version");
            }
            json!({"version_info": info})
        }
        Call::GetMetrics(_) => {
            let snapshot = app.view(View::Metrics).await?;
            let metrics: Vec<Value> = snapshot
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            json!({"metrics": metrics})
        }
        Call::GetLoggingLevel => json!({"level": 0}),
        Call::GetState => app.view(View::GetState).await?,
        Call::GetFrameworks => app.view(View::GetFrameworks).await?,
        Call::GetExecutors => app.view(View::GetExecutors).await?,
        Call::GetTasks => app.view(View::GetTasks).await?,
        Call::GetAgent => app.view(View::GetAgent).await?,
        Call::GetContainers(_) => {
            let containers: Vec<Value> = app
                .containers()
                .await?
                .into_iter()
                .map(|(c, stats)| {
                    json!({"framework_id": c.framework_id, "executor_id": c.executor_id,
                           "executor_name": c.executor_name, "container_id": c.container_id,
                           "container_status": {"container_id": c.container_id,
                                                "executor_pid": c.process.map(|p| p.pid)},
                           "resource_statistics": stats})
                })
                .collect();
            json!({"containers": containers})
        }
        Call::ListFiles(list) => {
            let real = app.resolve(&list.path).await?;
            let infos = files::browse(&list.path, &real)?;
            json!({"file_infos": infos.iter().map(files::FileInfo::to_v1).collect::<Vec<_>>()})
        }
        Call::ReadFile(read) => {
            let real = app.resolve(&read.path).await?;
            let offset = i64::try_from(read.offset).unwrap_or(i64::MAX);
            let chunk = files::read(&real, offset, read.length)?;
            json!({"size": chunk.size, "data": Base64(chunk.data)})
        }
        _ => return Ok(None),
    };
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header() {
        let mut h = HeaderMap::new();
        assert!(accepts_json(&h));
        h.insert(header::ACCEPT, "application/json; q=1".parse().unwrap());
        assert!(accepts_json(&h));
        h.insert(header::ACCEPT, "application/x-protobuf".parse().unwrap());
        assert!(!accepts_json(&h));
        h.insert(header::ACCEPT, "text/html, */*".parse().unwrap());
        assert!(accepts_json(&h));
    }
}
