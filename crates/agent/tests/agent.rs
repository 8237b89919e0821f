//! The real agent, in-process, against a small fake master speaking the internal link.
//! Executors are this test binary re-run as `helper_executor`, a minimal HTTP executor
//! (LAUNCH → RUNNING, then FINISHED for a task whose command is `finish`; KILL → KILLED;
//! it exits once its terminal update is acknowledged, and resubscribes with what is
//! unacknowledged when its agent goes away).

use futures::StreamExt;
use meseta_api::executor::{self, CallKind, Event};
use meseta_api::internal::{self, RegisterAgent, ToAgent, ToMaster};
use meseta_api::json::Bytes;
use meseta_api::recordio;
use meseta_api::{
    AgentId, FrameworkId, Reason, StatusSource, TaskId, TaskInfo, TaskState, TaskStatus,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const WAIT: Duration = Duration::from_secs(30);

// ----- the executor side ----------------------------------------------------------------

#[test]
fn helper_executor() {
    if std::env::var("MESETA_TEST_ROLE").as_deref() != Ok("executor") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::process::exit(runtime.block_on(run_executor()));
}

struct ExecutorState {
    client: reqwest::Client,
    url: String,
    framework_id: String,
    executor_id: String,
    tasks: HashMap<String, TaskInfo>,
    unacknowledged: Vec<TaskStatus>,
}

impl ExecutorState {
    fn call(&self, kind: CallKind) -> Vec<u8> {
        let call = executor::Call {
            executor_id: self.executor_id.as_str().into(),
            framework_id: self.framework_id.as_str().into(),
            kind,
        };
        serde_json::to_vec(&call).unwrap()
    }

    async fn update(&mut self, task_id: &TaskId, state: TaskState) {
        let mut status = TaskStatus::new(task_id.clone(), state);
        status.source = Some(StatusSource::SourceExecutor);
        status.uuid = Some(Bytes(uuid::Uuid::new_v4().as_bytes().to_vec()));
        self.unacknowledged.push(status.clone());
        let body = self.call(CallKind::Update(executor::Update { status }));
        let _ = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await;
    }
}

async fn run_executor() -> i32 {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MESOS_") || k == "LIBPROCESS_PORT")
        .collect();
    vars.sort();
    for (k, v) in &vars {
        println!("{k}={v}");
    }
    let endpoint = std::env::var("MESOS_AGENT_ENDPOINT").unwrap();
    let mut me = ExecutorState {
        client: reqwest::Client::new(),
        url: format!("http://{endpoint}/api/v1/executor"),
        framework_id: std::env::var("MESOS_FRAMEWORK_ID").unwrap(),
        executor_id: std::env::var("MESOS_EXECUTOR_ID").unwrap(),
        tasks: HashMap::new(),
        unacknowledged: Vec::new(),
    };
    for _attempt in 0..600 {
        let subscribe = executor::Subscribe {
            unacknowledged_tasks: me.tasks.values().cloned().collect(),
            unacknowledged_updates: me
                .unacknowledged
                .iter()
                .map(|s| executor::Update { status: s.clone() })
                .collect(),
        };
        let body = me.call(CallKind::Subscribe(subscribe));
        let response = me
            .client
            .post(&me.url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await;
        let Ok(response) =
            response
                .map_err(|_| ())
                .and_then(|r| if r.status() == 200 { Ok(r) } else { Err(()) })
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = response.bytes_stream();
        let mut decoder = recordio::Decoder::new();
        while let Some(Ok(chunk)) = stream.next().await {
            decoder.feed(&chunk);
            while let Ok(Some(record)) = decoder.next_record() {
                match serde_json::from_slice::<Event>(&record).unwrap() {
                    Event::Launch(launch) => {
                        let task = launch.task;
                        me.tasks.insert(task.task_id.to_string(), task.clone());
                        me.update(&task.task_id, TaskState::TaskRunning).await;
                        if task.command.as_ref().and_then(|c| c.value.as_deref()) == Some("finish")
                        {
                            me.update(&task.task_id, TaskState::TaskFinished).await;
                        }
                    }
                    Event::Kill(kill) => me.update(&kill.task_id, TaskState::TaskKilled).await,
                    Event::Acknowledged(ack) => {
                        let pos = me
                            .unacknowledged
                            .iter()
                            .position(|s| s.uuid.as_ref() == Some(&ack.uuid));
                        if let Some(acked) = pos.map(|p| me.unacknowledged.remove(p)) {
                            if acked.state.is_terminal() {
                                me.tasks.remove(acked.task_id.as_str());
                                if me.tasks.is_empty() {
                                    return 0;
                                }
                            }
                        }
                    }
                    Event::Shutdown => return 0,
                    _ => {}
                }
            }
        }
    }
    1
}

// ----- the fake master --------------------------------------------------------------------

#[derive(Clone, Default)]
struct Shared {
    stream: Arc<Mutex<Option<mpsc::UnboundedSender<ToAgent>>>>,
}

struct FakeMaster {
    port: u16,
    shared: Shared,
    registrations: mpsc::UnboundedReceiver<RegisterAgent>,
    messages: mpsc::UnboundedReceiver<ToMaster>,
}

impl FakeMaster {
    async fn start() -> FakeMaster {
        use axum::routing::post;
        let (reg_tx, registrations) = mpsc::unbounded_channel();
        let (msg_tx, messages) = mpsc::unbounded_channel();
        let shared = Shared::default();
        let link_shared = shared.clone();
        let app = axum::Router::new()
            .route(
                "/internal/v1/agent/link",
                post(move |body: axum::body::Bytes| {
                    let (shared, reg_tx) = (link_shared.clone(), reg_tx.clone());
                    async move {
                        let (tx, rx) = mpsc::unbounded_channel::<ToAgent>();
                        *shared.stream.lock().unwrap() = Some(tx);
                        reg_tx
                            .send(serde_json::from_slice::<RegisterAgent>(&body).unwrap())
                            .unwrap();
                        let events = tokio_stream_from(rx).map(|m| {
                            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(
                                recordio::encode(&m),
                            ))
                        });
                        axum::body::Body::from_stream(events)
                    }
                }),
            )
            .route(
                "/internal/v1/agent/message",
                post(
                    move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let msg_tx = msg_tx.clone();
                        async move {
                            assert!(headers.contains_key(internal::LINK_ID_HEADER));
                            for message in serde_json::from_slice::<Vec<ToMaster>>(&body).unwrap() {
                                msg_tx.send(message).unwrap();
                            }
                            axum::http::StatusCode::ACCEPTED
                        }
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeMaster {
            port,
            shared,
            registrations,
            messages,
        }
    }

    fn send(&self, message: ToAgent) {
        self.shared
            .stream
            .lock()
            .unwrap()
            .as_ref()
            .expect("a link")
            .send(message)
            .unwrap();
    }

    /// Ends the current link stream (the agent must reconnect).
    fn drop_link(&self) {
        self.shared.stream.lock().unwrap().take();
    }

    async fn registration(&mut self) -> RegisterAgent {
        let r = tokio::time::timeout(WAIT, self.registrations.recv())
            .await
            .expect("a registration")
            .unwrap();
        self.send(ToAgent::Registered(internal::Registered {
            agent_id: AgentId::new("M-S0"),
            link_id: "L".to_string(),
            master_info: serde_json::from_value(
                json!({"id":"M","ip":16777343,"port":self.port,"hostname":"m"}),
            )
            .unwrap(),
        }));
        r
    }

    /// The next status update (skipping other messages).
    async fn update(&mut self) -> TaskStatus {
        loop {
            let m = tokio::time::timeout(WAIT, self.messages.recv())
                .await
                .expect("a message")
                .unwrap();
            if let ToMaster::StatusUpdate(u) = m {
                return u.status;
            }
        }
    }

    fn ack(&self, status: &TaskStatus) {
        self.send(ToAgent::Acknowledge(internal::Acknowledge {
            framework_id: FrameworkId::new("F"),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone().unwrap(),
        }));
    }
}

fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

// ----- the agent under test -------------------------------------------------------------

struct Running {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A script standing in for `meseta executor`: this test binary as `helper_executor`.
fn executor_script(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().unwrap();
    let path = dir.join("fake-meseta");
    let script = format!(
        "#!/bin/sh\nMESETA_TEST_ROLE=executor exec '{}' --exact helper_executor --nocapture --test-threads=1\n",
        exe.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn config(
    dir: &Path,
    port: u16,
    master: u16,
    registration_timeout: Duration,
) -> meseta_agent::AgentConfig {
    meseta_agent::AgentConfig {
        ip: "127.0.0.1".parse().unwrap(),
        port,
        hostname: Some("agent-host".into()),
        master: format!("127.0.0.1:{master}"),
        work_dir: dir.join("work"),
        resources: Some("cpus:2;mem:1024;disk:2048;ports:[31000-31010]".into()),
        attributes: Some("rack:a;zone:1".into()),
        isolation: "posix/cpu,posix/mem".into(),
        containerizer: Default::default(),
        recover: meseta_agent::RecoverPolicy::Reconnect,
        reconfiguration_policy: Default::default(),
        executor_registration_timeout: registration_timeout,
        executor_shutdown_grace_period: Duration::from_secs(1),
        meseta_binary: executor_script(dir),
        images: Default::default(),
        fetcher: Default::default(),
        executor_auth: None,
        gc: Default::default(),
        http_executor_domain_sockets: true,
        domain_socket_location: None,
    }
}

fn start(config: meseta_agent::AgentConfig) -> Running {
    let base = format!("http://127.0.0.1:{}", config.port);
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(meseta_agent::run(config, async move {
        let _ = stopped.await;
    }));
    Running { stop, done, base }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.done)
            .await
            .expect("the agent stops")
            .unwrap()
            .unwrap();
    }
}

fn user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name
}

fn run_task(task_id: &str, command: &str, executor: Option<Value>, checkpoint: bool) -> ToAgent {
    let mut task = json!({"name": task_id, "task_id": {"value": task_id}, "agent_id": {"value": "M-S0"},
        "resources": [{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}],
        "command": {"value": command}});
    if let Some(e) = executor {
        task["executor"] = e;
    }
    ToAgent::RunTask(internal::RunTask {
        framework: serde_json::from_value(
            json!({"user": user(), "name": "test", "id": {"value": "F"}, "checkpoint": checkpoint}),
        )
        .unwrap(),
        task: serde_json::from_value(task).unwrap(),
    })
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// POSTs a `size`-byte JSON body over a connection of its own and returns the status
/// code. The body is written while the answer is read: the server may answer, and close
/// the connection, before the body ends, and a client that only reads once it has written
/// everything then sees a broken pipe instead of the answer.
async fn post_oversized(base: &str, path: &str, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let (mut reader, mut writer) = tokio::net::TcpStream::connect(address)
        .await
        .unwrap()
        .into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let padding = vec![b' '; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(padding.len());
            writer.write_all(&padding[..n]).await?;
            left -= n;
        }
        std::io::Result::Ok(())
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = reader.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the connection closed without an answer");
        answer.extend_from_slice(&buffer[..n]);
    }
    sender.abort();
    let status_line = String::from_utf8_lossy(&answer);
    status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

async fn post(base: &str, path: &str, content_type: Option<&str>, body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .body(body.to_string());
    if let Some(ct) = content_type {
        request = request.header("Content-Type", ct);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Waits until the agent's HTTP server answers.
async fn until_up(base: &str) {
    for _ in 0..300 {
        if reqwest::get(format!("{base}/health"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the agent did not come up");
}

// ----- the tests --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_task_runs_to_completion_with_reliable_updates() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let agent = start(config(dir.path(), free_port(), master.port, WAIT));
    let registration = master.registration().await;
    assert_eq!(registration.version, internal::LINK_VERSION);
    assert_eq!(registration.agent_info.id, None);
    assert_eq!(registration.agent_info.hostname, "agent-host");
    assert_eq!(registration.agent_info.attributes.len(), 2);
    assert!(registration.endpoint.starts_with("127.0.0.1:"));
    until_up(&agent.base).await;

    master.send(run_task("t1", "finish", None, true));
    let running = master.update().await;
    assert_eq!(
        (running.state, running.source),
        (TaskState::TaskRunning, Some(StatusSource::SourceExecutor))
    );
    assert_eq!(running.agent_id, Some(AgentId::new("M-S0")));

    // The link drops before the ack: the agent reregisters with the task and resends.
    master.drop_link();
    let again = master.registration().await;
    assert_eq!(again.agent_info.id, Some(AgentId::new("M-S0")));
    assert_eq!(again.tasks.len(), 1);
    assert_eq!(
        again.tasks[0].status_update_state,
        Some(TaskState::TaskRunning),
        "the head of the stream"
    );
    assert!(
        again.executors.is_empty(),
        "command executors are not reported"
    );
    let resent = master.update().await;
    assert_eq!(resent.uuid, running.uuid);
    master.ack(&resent);
    let finished = master.update().await;
    assert_eq!(finished.state, TaskState::TaskFinished);

    let (_, state) = get(&agent.base, "/state").await;
    assert_eq!(state["id"], "M-S0");
    assert_eq!(state["attributes"], json!({"rack": "a", "zone": 1.0}));
    let executor = &state["frameworks"][0]["executors"][0];
    assert_eq!(
        executor["name"],
        "Command Executor (Task: t1) (Command: sh -c 'finish')"
    );
    let directory = executor["directory"].as_str().unwrap().to_string();
    assert!(
        directory.contains("/slaves/M-S0/frameworks/F/executors/t1/runs/"),
        "{directory}"
    );
    let (status, listing) = get(&agent.base, &format!("/files/browse?path={directory}")).await;
    assert_eq!(status, 200);
    assert!(listing
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == format!("{directory}/stdout")));
    let (_, out) = get(
        &agent.base,
        &format!("/files/read?path={directory}/stdout&offset=0"),
    )
    .await;
    let out = out["data"].as_str().unwrap().to_string();
    for line in [
        "MESOS_SLAVE_ID=M-S0",
        "MESOS_HTTP_COMMAND_EXECUTOR=1",
        "MESOS_CHECKPOINT=1",
        "LIBPROCESS_PORT=0",
        "MESOS_EXECUTOR_ID=t1",
    ] {
        assert!(out.contains(line), "{line} missing from {out}");
    }
    let (status, _) = get(
        &agent.base,
        &format!("/files/read?path={directory}/../../../../../../../../../etc/passwd"),
    )
    .await;
    assert_eq!(status, 403);

    master.ack(&finished);
    // The executor exits after its terminal ack; task, executor and framework complete.
    let mut state = Value::Null;
    for _ in 0..500 {
        state = get(&agent.base, "/state").await.1;
        if state["completed_frameworks"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let completed =
        &state["completed_frameworks"][0]["completed_executors"][0]["completed_tasks"][0];
    assert_eq!(completed["state"], "TASK_FINISHED", "{state}");
    let (_, body) = post(
        &agent.base,
        "/api/v1",
        Some("application/json"),
        r#"{"type":"GET_TASKS"}"#,
    )
    .await;
    let tasks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        tasks["get_tasks"]["completed_tasks"][0]["state"],
        "TASK_FINISHED"
    );
    let (_, metrics) = get(&agent.base, "/metrics/snapshot").await;
    assert_eq!(metrics["slave/tasks_finished"], 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_and_operator_apis_answer_bad_requests_like_mesos() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let agent = start(config(dir.path(), free_port(), master.port, WAIT));
    master.registration().await;
    until_up(&agent.base).await;
    let b = &agent.base;
    let subscribe = r#"{"type":"SUBSCRIBE","executor_id":{"value":"e"},"framework_id":{"value":"nope"},"subscribe":{}}"#;
    assert_eq!(get(b, "/api/v1/executor").await.0, 405);
    assert_eq!(post(b, "/api/v1/executor", None, subscribe).await.0, 400);
    assert_eq!(
        post(b, "/api/v1/executor", Some("text/plain"), subscribe)
            .await
            .0,
        415
    );
    assert_eq!(
        post(b, "/api/v1/executor", Some("application/json"), "{")
            .await
            .0,
        400
    );
    let (status, message) = post(
        b,
        "/api/v1/executor",
        Some("application/json; charset=utf-8"),
        subscribe,
    )
    .await;
    assert_eq!((status, message.contains("nope")), (400, true), "{message}");
    let (status, message) = post(
        b,
        "/api/v1",
        Some("application/json"),
        r#"{"type":"LAUNCH_CONTAINER","launch_container":{}}"#,
    )
    .await;
    assert_eq!((status, message.contains("LAUNCH_CONTAINER")), (501, true));
    let (status, body) = post(
        b,
        "/api/v1/operator/",
        Some("application/json"),
        r#"{"type":"GET_VERSION"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["get_version"]["version_info"]["version"],
        "1.11.0"
    );
    let (status, body) = post(
        b,
        "/api/v1",
        Some("application/json"),
        r#"{"type":"GET_AGENT"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["get_agent"]["agent_info"]["id"]["value"],
        "M-S0"
    );
    assert_eq!(get(b, "/slave(1)/health").await.0, 200);
    assert_eq!(get(b, "/version").await.1["version"], "1.11.0");
    assert_eq!(get(b, "/flags").await.1["flags"]["recover"], "reconnect");
    assert_eq!(post_oversized(b, "/api/v1", 17 * 1024 * 1024).await, 413);

    // A task for an unknown task id to kill, and a reconciliation of an unknown task.
    master.send(ToAgent::KillTask(internal::KillTask {
        framework_id: FrameworkId::new("F"),
        task_id: TaskId::new("ghost"),
        kill_policy: None,
    }));
    master.send(ToAgent::ReconcileTasks(internal::ReconcileTasks {
        framework_id: FrameworkId::new("F"),
        task_ids: vec![TaskId::new("ghost2")],
    }));
    let dropped = master.update().await;
    assert_eq!(
        (dropped.task_id.as_str(), dropped.state),
        ("ghost2", TaskState::TaskDropped)
    );
    assert_eq!(dropped.reason, Some(Reason::ReasonReconciliation));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_that_never_subscribes_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let agent = start(config(
        dir.path(),
        free_port(),
        master.port,
        Duration::from_millis(300),
    ));
    master.registration().await;
    let executor = json!({"executor_id": {"value": "lazy"}, "command": {"value": "sleep 60"},
        "resources": [{"name":"mem","type":"SCALAR","scalar":{"value":32}}]});
    master.send(run_task("t1", "unused", Some(executor), true));
    let failed = master.update().await;
    assert_eq!(failed.state, TaskState::TaskFailed);
    assert_eq!(
        failed.reason,
        Some(Reason::ReasonExecutorRegistrationTimeout)
    );
    assert_eq!(failed.source, Some(StatusSource::SourceAgent));
    let exited = loop {
        let m = tokio::time::timeout(WAIT, master.messages.recv())
            .await
            .unwrap()
            .unwrap();
        if let ToMaster::ExitedExecutor(e) = m {
            break e;
        }
    };
    assert_eq!(exited.executor_id.as_str(), "lazy");
    assert_eq!(exited.status, Some(9), "killed by SIGKILL");
    assert_eq!(exited.resources.len(), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpointed_executor_survives_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let port = free_port();
    let agent = start(config(dir.path(), port, master.port, WAIT));
    master.registration().await;
    master.send(run_task("t1", "wait", None, true));
    let running = master.update().await;
    assert_eq!(running.state, TaskState::TaskRunning);
    agent.stop().await;

    // The executor keeps running and resubscribes to the restarted agent.
    let agent = start(config(dir.path(), port, master.port, WAIT));
    let registration = master.registration().await;
    assert_eq!(registration.agent_info.id, Some(AgentId::new("M-S0")));
    assert_eq!(registration.tasks.len(), 1);
    assert_eq!(registration.tasks[0].task_id.as_str(), "t1");
    let resent = master.update().await;
    assert_eq!(
        resent.uuid, running.uuid,
        "the unacknowledged update is resent after the restart"
    );
    master.ack(&resent);
    // Wait for the executor to resubscribe, then kill the task through it.
    until_up(&agent.base).await;
    for _ in 0..500 {
        let (_, metrics) = get(&agent.base, "/metrics/snapshot").await;
        if metrics["slave/executors_running"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    master.send(ToAgent::KillTask(internal::KillTask {
        framework_id: FrameworkId::new("F"),
        task_id: TaskId::new("t1"),
        kill_policy: None,
    }));
    let killed = master.update().await;
    assert_eq!(
        (killed.state, killed.source),
        (TaskState::TaskKilled, Some(StatusSource::SourceExecutor))
    );
    master.ack(&killed);
    // The executor exits once its terminal update is acknowledged.
    for _ in 0..500 {
        let state = get(&agent.base, "/state").await.1;
        if state["completed_frameworks"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, metrics) = get(&agent.base, "/metrics/snapshot").await;
    assert_eq!(metrics["slave/executors_terminated"], 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_agent_kills_orphans_of_frameworks_that_do_not_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let port = free_port();
    let agent = start(config(dir.path(), port, master.port, WAIT));
    master.registration().await;
    master.send(run_task("t1", "wait", None, false));
    assert_eq!(master.update().await.state, TaskState::TaskRunning);
    let (_, containers) = get(&agent.base, "/containers").await;
    let pid = containers[0]["status"]["executor_pid"].as_i64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // A crash: the agent stops without its clean shutdown.
    agent.done.abort();
    let _ = agent.done.await;
    // What the dead process held (port, checkpoint file) is let go asynchronously here.
    let mut agent = start(config(dir.path(), port, master.port, WAIT));
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !agent.done.is_finished() {
            break;
        }
        let failed = (&mut agent.done).await.unwrap().unwrap_err();
        eprintln!("restart failed, retrying: {failed:#}");
        agent = start(config(dir.path(), port, master.port, WAIT));
    }
    let registration = master.registration().await;
    assert!(
        registration.tasks.is_empty(),
        "a non-checkpointing framework's task is not recovered"
    );
    for _ in 0..500 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the orphan is killed: {stat}"
    );
    agent.stop().await;
}
