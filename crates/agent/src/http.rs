//! The agent's HTTP server: routing (also under `/slave(1)`, trailing slashes ignored,
//! bodies capped at [`MAX_BODY`]), the shared request checks, and the small v0
//! endpoints (`/state`, `/health`, `/version`, `/flags`, `/metrics/snapshot`,
//! `/monitor/statistics`, `/containers`, `/files/*`).

use crate::command::{Command, ContainerEntry, View};
use crate::{executor_api, files, operator_api, views};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use meseta_containerizer::Launcher;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// The largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    pub commands: mpsc::Sender<Command>,
    /// False until the agent has recovered its checkpoints.
    pub recovered: watch::Receiver<bool>,
    pub launcher: Arc<dyn Launcher>,
    pub flags: Arc<Vec<(String, String)>>,
    /// The image store (PRUNE_IMAGES).
    pub images: Arc<meseta_containerizer::image::ImageService>,
    /// Executor tokens, checked on executor calls when required.
    pub executor_auth: Option<Arc<crate::executor_auth::ExecutorAuth>>,
}

impl App {
    /// Sends a command to the actor and awaits its answer (503 when it is gone).
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, HttpError> {
        let gone = || {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The agent is shutting down",
            )
        };
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    pub async fn view(&self, view: View) -> Result<Value, HttpError> {
        self.ask(|tx| Command::View(view, tx)).await
    }

    /// Resolves a client's path to a real file inside a sandbox.
    pub async fn resolve(&self, path: &str) -> Result<PathBuf, HttpError> {
        let roots = self.ask(Command::SandboxRoots).await?;
        Ok(files::confine(path, &roots)?)
    }

    /// Live containers with their usage (read from /proc or the cgroups off the async
    /// threads).
    pub async fn containers(&self) -> Result<Vec<(ContainerEntry, Value)>, HttpError> {
        let entries = self.ask(Command::Containers).await?;
        let launcher = self.launcher.clone();
        let stats = tokio::task::spawn_blocking(move || {
            entries
                .into_iter()
                .map(|entry| {
                    let usage = entry
                        .process
                        .and_then(|p| launcher.usage(p))
                        .unwrap_or_default();
                    let mut limits = meseta_api::Resources::new();
                    for r in &entry.resources {
                        limits.add(r);
                    }
                    let stats = json!({
                        "timestamp": crate::agent::now_secs(),
                        "processes": usage.processes,
                        "cpus_user_time_secs": usage.cpus_user_time_secs,
                        "cpus_system_time_secs": usage.cpus_system_time_secs,
                        // The cgroup's limits when the launcher enforces some.
                        "cpus_limit": usage.cpus_limit.unwrap_or(limits.scalar("cpus")),
                        "mem_rss_bytes": usage.mem_rss_bytes,
                        "mem_limit_bytes": usage
                            .mem_limit_bytes
                            .unwrap_or((limits.scalar("mem") * 1024.0 * 1024.0) as u64),
                    });
                    (entry, stats)
                })
                .collect()
        });
        stats
            .await
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
    }
}

/// An error answer: a status and a plain-text message saying what is wrong.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let content_type = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
        let mut r = (self.status, content_type, self.message).into_response();
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        r
    }
}

impl From<files::FilesError> for HttpError {
    fn from(e: files::FilesError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        error(status, &e.to_string())
    }
}

/// Builds an [`HttpError`].
pub fn error(status: StatusCode, message: &str) -> HttpError {
    HttpError {
        status,
        message: message.to_string(),
    }
}

/// A JSON response (compact, ASCII-only like every Mesos body).
pub fn json_response(value: &Value) -> Response {
    let body = meseta_api::json::to_ascii_vec(value);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// 400 without a Content-Type, 415 unless it is JSON (parameters allowed).
pub fn check_json_body(headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present",
        ));
    };
    let media = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Expecting 'Content-Type' of application/json; '{media}' is not supported"),
        ))
    }
}

/// 405 unless POST.
pub fn check_post(method: &axum::http::Method) -> Result<(), HttpError> {
    if method == axum::http::Method::POST {
        return Ok(());
    }
    let message = format!("Expecting a 'POST' request, received '{method}'");
    Err(error(StatusCode::METHOD_NOT_ALLOWED, &message))
}

/// The router with every endpoint, also under the Mesos agent's `/slave(1)` prefix.
/// Serves `router` (trailing slashes trimmed) on `listener` until `stop` turns true;
/// `what` names the server in the log when it fails.
pub async fn serve_until<L>(
    listener: L,
    router: Router,
    mut stop: watch::Receiver<bool>,
    what: &str,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    use axum::ServiceExt;
    let service = tower_http::normalize_path::NormalizePath::trim_trailing_slash(router);
    let server = axum::serve(
        listener,
        ServiceExt::<axum::extract::Request>::into_make_service(service),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    if let Err(e) = server.await {
        tracing::error!("{what}: {e}");
    }
}

/// Only the executor API, at its two paths: what the agent's domain socket serves.
pub fn executor_router(app: App) -> Router {
    let routes: Router<App> = Router::new().route("/api/v1/executor", any(executor_api::handle));
    Router::new()
        .merge(routes.clone())
        .nest("/slave(1)", routes)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

pub fn router(app: App) -> Router {
    let routes: Router<App> = Router::new()
        .route("/api/v1/executor", any(executor_api::handle))
        .route("/api/v1", any(operator_api::handle))
        .route("/api/v1/operator", any(operator_api::handle))
        .route("/state", get(state))
        .route("/state.json", get(state))
        .route("/health", get(|| async { StatusCode::OK }))
        .route(
            "/version",
            get(|| async { json_response(&meseta_api::version::version_info()) }),
        )
        .route("/flags", get(flags))
        .route("/metrics/snapshot", get(metrics))
        .route("/monitor/statistics", get(statistics))
        .route("/monitor/statistics.json", get(statistics))
        .route("/containers", get(containers))
        .route("/files/browse", get(browse))
        .route("/files/browse.json", get(browse))
        .route("/files/read", get(read))
        .route("/files/read.json", get(read))
        .route("/files/download", get(download))
        .route("/files/download.json", get(download));
    Router::new()
        .merge(routes.clone())
        .nest("/slave(1)", routes)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

async fn state(State(app): State<App>) -> Result<Response, HttpError> {
    Ok(json_response(&app.view(View::StateV0).await?))
}

async fn flags(State(app): State<App>) -> Response {
    json_response(&views::flags_v0(&app.flags))
}

async fn metrics(State(app): State<App>) -> Result<Response, HttpError> {
    Ok(json_response(&app.view(View::Metrics).await?))
}

async fn statistics(State(app): State<App>) -> Result<Response, HttpError> {
    let list = app.containers().await?;
    let entries = list.into_iter().map(|(c, stats)| {
        json!({"executor_id": c.executor_id.as_str(), "executor_name": c.executor_name,
               "framework_id": c.framework_id.as_str(), "source": c.source, "statistics": stats})
    });
    Ok(json_response(&Value::Array(entries.collect())))
}

async fn containers(State(app): State<App>) -> Result<Response, HttpError> {
    let list = app.containers().await?;
    let entries = list.into_iter().map(|(c, stats)| {
        json!({"container_id": c.container_id.as_str(), "executor_id": c.executor_id.value,
               "executor_name": c.executor_name, "framework_id": c.framework_id.value,
               "source": c.source, "statistics": stats,
               "status": {"container_id": {"value": c.container_id.value},
                          "executor_pid": c.process.map(|p| p.pid)}})
    });
    Ok(json_response(&Value::Array(entries.collect())))
}

type Params = Query<HashMap<String, String>>;

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, HttpError> {
    params.get(name).map(String::as_str).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("Expecting '{name}' query parameter"),
        )
    })
}

fn number<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, HttpError> {
    params
        .get(name)
        .map(|v| {
            v.parse().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    &format!("Failed to parse '{name}': '{v}' is not a valid number"),
                )
            })
        })
        .transpose()
}

async fn browse(State(app): State<App>, Query(params): Params) -> Result<Response, HttpError> {
    let path = required(&params, "path")?;
    let real = app.resolve(path).await?;
    let list = files::browse(path, &real)?;
    Ok(json_response(&Value::Array(
        list.iter().map(files::FileInfo::to_v0).collect(),
    )))
}

async fn read(State(app): State<App>, Query(params): Params) -> Result<Response, HttpError> {
    let path = required(&params, "path")?;
    let offset = number::<i64>(&params, "offset")?.unwrap_or(0);
    let length = number::<u64>(&params, "length")?;
    let real = app.resolve(path).await?;
    let chunk = files::read(&real, offset, length)?;
    let data = String::from_utf8_lossy(&chunk.data);
    Ok(json_response(
        &json!({"data": data, "offset": chunk.offset}),
    ))
}

async fn download(State(app): State<App>, Query(params): Params) -> Result<Response, HttpError> {
    let path = required(&params, "path")?;
    let real = app.resolve(path).await?;
    if real.is_dir() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Cannot download a directory",
        ));
    }
    let file = tokio::fs::File::open(&real)
        .await
        .map_err(|e| error(StatusCode::NOT_FOUND, &format!("'{path}': {e}")))?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stream = futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', ""));
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
