//! The endpoints existing tools read: v0 JSON state, `/health`, `/version`, `/redirect`,
//! `/teardown`, `/flags`, `/metrics/snapshot`.

use super::{error, json, read_answer, unavailable, AppState};
use crate::core::Snapshot;
use crate::reads::{write_view, Emit};
use crate::service::{now, Service};
use crate::views;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use meseta_api::FrameworkId;
use serde_json::{json, Map, Value};

async fn view(
    app: &AppState,
    headers: &HeaderMap,
    f: impl FnOnce(&mut Service, &Value) -> Value + Send + 'static,
) -> Response {
    let flags = flags_object(app);
    match app.service.call(move |svc| f(svc, &flags)).await {
        Ok(value) => json(headers, &value),
        Err(_) => unavailable(),
    }
}

fn flags_object(app: &AppState) -> Value {
    Value::Object(
        app.flags
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// A whole-state view read off the service loop (see [`crate::reads`]).
/// `render` writes the view of a snapshot, given the flags and the leader.
async fn read(
    app: &AppState,
    headers: &HeaderMap,
    key: &str,
    render: impl Fn(&Snapshot, Emit, &Value, &str) + Send + Sync + 'static,
) -> Response {
    let flags = flags_object(app);
    let leader = format!("master@{}", app.leader);
    let render = move |snapshot: &Snapshot, emit: Emit| render(snapshot, emit, &flags, &leader);
    read_answer(headers, app.reads.read(key, render).await).await
}

pub async fn state(State(app): State<AppState>, headers: HeaderMap) -> Response {
    read(&app, &headers, "v0/state", |s, emit, flags, leader| {
        write_view(&views::v0_state(s, flags, leader), emit)
    })
    .await
}

pub async fn state_summary(State(app): State<AppState>, headers: HeaderMap) -> Response {
    read(&app, &headers, "v0/state-summary", |s, emit, _, _| {
        write_view(&views::v0_state_summary(s), emit)
    })
    .await
}

pub async fn frameworks(State(app): State<AppState>, headers: HeaderMap) -> Response {
    read(&app, &headers, "v0/frameworks", |s, emit, _, _| {
        write_view(&views::v0_frameworks(s), emit)
    })
    .await
}

pub async fn slaves(State(app): State<AppState>, headers: HeaderMap) -> Response {
    read(&app, &headers, "v0/slaves", |s, emit, _, _| {
        write_view(&views::v0_slaves(s), emit)
    })
    .await
}

pub async fn tasks(State(app): State<AppState>, headers: HeaderMap) -> Response {
    read(&app, &headers, "v0/tasks", |s, emit, _, _| {
        write_view(&views::v0_tasks(s), emit)
    })
    .await
}

pub async fn roles(State(app): State<AppState>, headers: HeaderMap) -> Response {
    view(&app, &headers, |svc, _| views::v0_roles(&svc.core)).await
}

/// `/quota` (GET): the quota status, `{"infos":[…],"configs":[…]}`.
pub async fn quota(State(app): State<AppState>, headers: HeaderMap) -> Response {
    view(&app, &headers, |svc, _| svc.core.quota_status()).await
}

/// `/weights`: GET lists the weights (a JSON array of `WeightInfo`s); PUT (or POST)
/// updates them from such an array.
pub async fn weights(
    State(app): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    if method == Method::GET {
        return match app.service.call(|svc| svc.core.weight_infos()).await {
            Ok(infos) => json(&headers, &json!(infos)),
            Err(_) => unavailable(),
        };
    }
    if method != Method::PUT && method != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Expecting 'GET' or 'PUT', received '{method}'"),
        );
    }
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let infos = match parsed
        .map_err(|e| crate::core::ApiError::bad_request(format!("Failed to parse the body: {e}")))
        .and_then(|v| super::operator::parse_weight_infos(&v))
    {
        Ok(infos) => infos,
        Err(e) => return e.into_response(),
    };
    match super::operator::update_weights(&app, infos).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => unavailable(),
    }
}

pub async fn flags(State(app): State<AppState>, headers: HeaderMap) -> Response {
    json(&headers, &json!({"flags": flags_object(&app)}))
}

pub async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    view(&app, &headers, |svc, _| views::metrics(&svc.core)).await
}

pub async fn health() -> Response {
    StatusCode::OK.into_response()
}

pub async fn version(headers: HeaderMap) -> Response {
    json(&headers, &meseta_api::version::version_info())
}

/// 307 to the leader (this master), protocol-relative as Mesos writes it.
pub async fn redirect(State(app): State<AppState>) -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, format!("//{}", app.leader))],
    )
        .into_response()
}

/// `POST /master/teardown` with the form field `frameworkId`.
pub async fn teardown(State(app): State<AppState>, body: axum::body::Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    let id = text
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "frameworkId")
        .map(|(_, v)| percent_decode(v));
    let Some(id) = id else {
        return error(
            StatusCode::BAD_REQUEST,
            "Missing 'frameworkId' query parameter in the request body",
        );
    };
    let framework_id = FrameworkId::new(id);
    match app
        .service
        .call(move |svc| svc.core.teardown(now(), &framework_id))
        .await
    {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => unavailable(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_form_values() {
        assert_eq!(percent_decode("a%2Db+c"), "a-b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("x%zz"), "x%zz");
    }
}
