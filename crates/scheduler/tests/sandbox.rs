//! Finding a task's sandbox through an in-test master (v0 `/master/state` only) and agent
//! (`/state`, `/files/read`), and reading its files.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use meseta_api::scheduler::Event;
use meseta_scheduler::sandbox::Sandbox;
use meseta_scheduler::Config;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

async fn files_read(Query(q): Query<HashMap<String, String>>) -> Response {
    let content = match q["path"].as_str() {
        "/sandboxes/t1/stdout" => "hello\nworld\n",
        _ => return (StatusCode::NOT_FOUND, "No such file").into_response(),
    };
    let offset: usize = q["offset"].parse().unwrap();
    let length: usize = q["length"].parse().unwrap();
    let data: String = content.chars().skip(offset).take(length).collect();
    Json(json!({"data": data, "offset": offset})).into_response()
}

#[tokio::test]
async fn locates_and_reads_a_sandbox() {
    let agent = serve(
        Router::new()
            .route(
                "/state",
                get(|| async {
                    Json(json!({"frameworks": [{"id": "F-1", "executors": [
                        {"id": "t1", "directory": "/sandboxes/t1"}]}]}))
                }),
            )
            .route("/files/read", get(files_read)),
    )
    .await;
    let pid = format!("slave(1)@{agent}");
    let master = serve(
        Router::new()
            .route(
                "/api/v1/scheduler",
                post(|| async {
                    let subscribed = json!({"type": "SUBSCRIBED",
                        "subscribed": {"framework_id": {"value": "F-1"}}});
                    let record = meseta_api::recordio::encode(&subscribed);
                    let body = axum::body::Body::from_stream(
                        futures::stream::iter([Ok::<_, std::convert::Infallible>(record)])
                            .chain(futures::stream::pending()),
                    );
                    ([("Mesos-Stream-Id", "s")], body)
                }),
            )
            .route(
                "/master/state",
                get(move || async move { Json(json!({"slaves": [{"id": "F-S0", "pid": pid}]})) }),
            ),
    )
    .await;
    let info = serde_json::from_value(json!({"user": "u", "name": "n"})).unwrap();
    let (scheduler, mut events) = meseta_scheduler::subscribe(Config::new(master, info)).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(Event::Subscribed(_))))),
        "{first:?}"
    );

    let sandbox = Sandbox::locate(&scheduler, &"F-S0".into(), &"t1".into())
        .await
        .unwrap();
    assert_eq!(sandbox.agent, format!("http://{agent}"));
    assert_eq!(sandbox.directory, "/sandboxes/t1");
    assert_eq!(
        sandbox.read("stdout", 6, 100).await.unwrap().as_deref(),
        Some("world\n")
    );
    assert_eq!(
        sandbox.read("stdout", 12, 100).await.unwrap().as_deref(),
        Some("")
    );
    assert_eq!(sandbox.read("stderr", 0, 100).await.unwrap(), None);
    let missing = Sandbox::locate(&scheduler, &"F-S9".into(), &"t1".into()).await;
    assert!(missing.unwrap_err().to_string().contains("F-S9"));
    let missing = Sandbox::locate(&scheduler, &"F-S0".into(), &"t7".into()).await;
    assert!(missing.unwrap_err().to_string().contains("t7"));
}
