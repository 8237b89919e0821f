//! The command executor against an in-test agent double that speaks `/api/v1/executor`:
//! real task processes, a real HTTP stream, scripted agent behaviour.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use meseta_api::executor::{Acknowledged, Call, CallKind, Event, Kill, Launch, Subscribe};
use meseta_api::{TaskInfo, TaskState, TaskStatus};
use meseta_executor::Config;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Shared {
    stream: Option<UnboundedSender<Event>>,
    refuse_subscriptions: bool,
    capabilities: Vec<&'static str>,
}

struct FakeAgent {
    shared: Arc<Mutex<Shared>>,
    subscribes: UnboundedReceiver<Subscribe>,
    updates: UnboundedReceiver<TaskStatus>,
    endpoint: String,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Mutex<Shared>>,
    subscribes: UnboundedSender<Subscribe>,
    updates: UnboundedSender<TaskStatus>,
}

async fn executor_api(State(app): State<AppState>, body: axum::body::Bytes) -> Response {
    let call: Call = serde_json::from_slice(&body).expect("a valid executor call");
    match call.kind {
        CallKind::Subscribe(subscribe) => {
            let mut shared = app.shared.lock().unwrap();
            if shared.refuse_subscriptions {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Agent has not finished recovery",
                )
                    .into_response();
            }
            let (tx, rx) = mpsc::unbounded_channel::<Event>();
            let caps: Vec<_> = shared
                .capabilities
                .iter()
                .map(|c| json!({ "type": c }))
                .collect();
            let subscribed: Event = serde_json::from_value(json!({
                "type": "SUBSCRIBED",
                "subscribed": {
                    "executor_info": {"executor_id": call.executor_id},
                    "framework_info": {"user": "u", "name": "fw", "id": call.framework_id,
                                       "capabilities": caps},
                    "agent_info": {"hostname": "localhost", "id": {"value": "A-S0"}},
                }
            }))
            .unwrap();
            tx.send(subscribed).unwrap();
            shared.stream = Some(tx);
            app.subscribes.send(subscribe).unwrap();
            let records = futures::stream::unfold(rx, |mut rx| async move {
                let event = rx.recv().await?;
                let record = meseta_api::recordio::encode(&event);
                Some((Ok::<_, std::convert::Infallible>(record), rx))
            });
            Response::builder()
                .header("Content-Type", "application/json")
                .body(Body::from_stream(records))
                .unwrap()
        }
        CallKind::Update(update) => {
            app.updates.send(update.status).unwrap();
            StatusCode::ACCEPTED.into_response()
        }
        _ => StatusCode::ACCEPTED.into_response(),
    }
}

impl FakeAgent {
    async fn start(capabilities: &[&'static str]) -> FakeAgent {
        let shared = Arc::new(Mutex::new(Shared {
            capabilities: capabilities.to_vec(),
            ..Shared::default()
        }));
        let (subscribes_tx, subscribes) = mpsc::unbounded_channel();
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/api/v1/executor", post(executor_api))
            .with_state(AppState {
                shared: shared.clone(),
                subscribes: subscribes_tx,
                updates: updates_tx,
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeAgent {
            shared,
            subscribes,
            updates,
            endpoint,
        }
    }

    fn send(&self, event: Event) {
        let shared = self.shared.lock().unwrap();
        shared
            .stream
            .as_ref()
            .expect("a subscription")
            .send(event)
            .unwrap();
    }

    fn launch(&self, task: TaskInfo) {
        self.send(Event::Launch(Launch { task }));
    }

    fn ack(&self, status: &TaskStatus) {
        self.send(Event::Acknowledged(Acknowledged {
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone().expect("a uuid"),
        }));
    }

    /// Closes the stream, as a dying agent does.
    fn drop_stream(&self) {
        self.shared.lock().unwrap().stream = None;
    }

    fn refuse_subscriptions(&self, refuse: bool) {
        self.shared.lock().unwrap().refuse_subscriptions = refuse;
    }

    async fn subscribe(&mut self) -> Subscribe {
        timeout(WAIT, self.subscribes.recv())
            .await
            .expect("a SUBSCRIBE")
            .unwrap()
    }

    async fn update(&mut self) -> TaskStatus {
        timeout(WAIT, self.updates.recv())
            .await
            .expect("an UPDATE")
            .unwrap()
    }

    /// The next update, acknowledged.
    async fn acked_update(&mut self) -> TaskStatus {
        let status = self.update().await;
        self.ack(&status);
        status
    }

    fn run_executor(&self, sandbox: &std::path::Path, checkpoint: bool) -> JoinHandle<i32> {
        let vars = [
            ("MESOS_AGENT_ENDPOINT", self.endpoint.as_str()),
            ("MESOS_FRAMEWORK_ID", "F-0000"),
            ("MESOS_EXECUTOR_ID", "t1"),
            ("MESOS_SANDBOX", sandbox.to_str().unwrap()),
            ("MESOS_CHECKPOINT", if checkpoint { "1" } else { "0" }),
            ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "200ms"),
            ("MESOS_RECOVERY_TIMEOUT", "1mins"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ];
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::from_vars(vars).unwrap();
        tokio::spawn(async move { meseta_executor::run(config).await.unwrap() })
    }
}

fn task(command: &str, extra: serde_json::Value) -> TaskInfo {
    let mut t = json!({
        "name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": "A-S0"},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
        "command": {"value": command,
                    "environment": {"variables": [{"name": "GREETING", "value": "hello"}]}}
    });
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    serde_json::from_value(t).unwrap()
}

async fn exit_code(executor: JoinHandle<i32>) -> i32 {
    timeout(WAIT, executor)
        .await
        .expect("the executor exits")
        .unwrap()
}

#[tokio::test]
async fn runs_a_task_to_completion_in_its_sandbox() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&[]).await;
    let executor = agent.run_executor(sandbox.path(), false);
    let subscribe = agent.subscribe().await;
    assert!(subscribe.unacknowledged_updates.is_empty());
    agent.launch(task(
        "echo \"$GREETING $MESOS_EXECUTOR_ID\" > out.txt",
        json!({}),
    ));
    let states: Vec<_> = [
        agent.acked_update().await,
        agent.acked_update().await,
        agent.acked_update().await,
    ]
    .into_iter()
    .map(|s| (s.state, s.message, s.agent_id.map(|a| a.value)))
    .collect();
    assert_eq!(
        states,
        [
            (TaskState::TaskStarting, None, Some("A-S0".into())),
            (TaskState::TaskRunning, None, Some("A-S0".into())),
            (
                TaskState::TaskFinished,
                Some("Command exited with status 0".into()),
                Some("A-S0".into())
            ),
        ]
    );
    assert_eq!(exit_code(executor).await, 0);
    let out = std::fs::read_to_string(sandbox.path().join("out.txt")).unwrap();
    assert_eq!(out, "hello t1\n");
}

#[tokio::test]
async fn a_failing_command_reports_its_exit_status() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&[]).await;
    let executor = agent.run_executor(sandbox.path(), false);
    agent.subscribe().await;
    agent.launch(task("exit 3", json!({})));
    agent.acked_update().await;
    agent.acked_update().await;
    let failed = agent.acked_update().await;
    assert_eq!(failed.state, TaskState::TaskFailed);
    assert_eq!(
        failed.message.as_deref(),
        Some("Command exited with status 3")
    );
    assert_eq!(exit_code(executor).await, 0);
}

#[tokio::test]
async fn kill_terminates_then_escalates_to_sigkill() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&["TASK_KILLING_STATE"]).await;
    let executor = agent.run_executor(sandbox.path(), false);
    agent.subscribe().await;
    // The task ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    agent.launch(task(
        "trap '' TERM; touch ready; sleep 30",
        json!({"kill_policy": {"grace_period": {"nanoseconds": 300_000_000}}}),
    ));
    agent.acked_update().await;
    assert_eq!(agent.acked_update().await.state, TaskState::TaskRunning);
    while !sandbox.path().join("ready").exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.send(Event::Kill(Kill {
        task_id: "t1".into(),
        kill_policy: None,
    }));
    assert_eq!(agent.acked_update().await.state, TaskState::TaskKilling);
    let killed = agent.acked_update().await;
    assert_eq!(killed.state, TaskState::TaskKilled);
    assert_eq!(
        killed.message.as_deref(),
        Some("Command terminated with signal Killed")
    );
    assert_eq!(exit_code(executor).await, 0);
}

#[tokio::test]
async fn survives_an_agent_restart_and_resends_unacknowledged_updates() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&[]).await;
    let executor = agent.run_executor(sandbox.path(), true);
    agent.subscribe().await;
    agent.launch(task(
        "while [ ! -f go ]; do sleep 0.05; done; exit 0",
        json!({}),
    ));
    agent.acked_update().await;
    // RUNNING is not acknowledged before the agent "restarts".
    let running = agent.update().await;
    assert_eq!(running.state, TaskState::TaskRunning);
    agent.refuse_subscriptions(true);
    agent.drop_stream();
    // The task keeps running while the agent is away, and finishes then.
    std::fs::write(sandbox.path().join("go"), "").unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    agent.refuse_subscriptions(false);
    let again = agent.subscribe().await;
    assert!(
        again.unacknowledged_tasks.is_empty(),
        "STARTING was acknowledged"
    );
    let pending: Vec<_> = again
        .unacknowledged_updates
        .iter()
        .map(|u| (u.status.state, u.status.message.clone()))
        .collect();
    assert_eq!(
        pending,
        [
            (TaskState::TaskRunning, None),
            (
                TaskState::TaskFinished,
                Some("Command exited with status 0".into())
            )
        ]
    );
    for update in &again.unacknowledged_updates {
        agent.ack(&update.status);
    }
    assert_eq!(exit_code(executor).await, 0);
}

#[tokio::test]
async fn without_checkpointing_a_lost_agent_kills_the_task() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&[]).await;
    let executor = agent.run_executor(sandbox.path(), false);
    agent.subscribe().await;
    agent.launch(task("sleep 30", json!({})));
    agent.acked_update().await;
    agent.acked_update().await;
    agent.drop_stream();
    assert_eq!(exit_code(executor).await, 0);
}

#[tokio::test]
async fn failing_health_checks_kill_the_task() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&[]).await;
    let executor = agent.run_executor(sandbox.path(), false);
    agent.subscribe().await;
    let check = json!({"health_check": {
        "type": "COMMAND", "command": {"value": "test -f healthy"},
        "delay_seconds": 0, "interval_seconds": 0.1, "timeout_seconds": 5,
        "grace_period_seconds": 0.4, "consecutive_failures": 2}});
    agent.launch(task(
        "touch healthy; sleep 0.5; rm healthy; sleep 30",
        check,
    ));
    assert_eq!(agent.acked_update().await.state, TaskState::TaskStarting);
    assert_eq!(agent.acked_update().await.state, TaskState::TaskRunning);
    let mut health = Vec::new();
    let killed = loop {
        let status = agent.acked_update().await;
        if status.state != TaskState::TaskRunning {
            break status;
        }
        assert_eq!(
            status.reason,
            Some(meseta_api::Reason::ReasonTaskHealthCheckStatusUpdated)
        );
        health.push(status.healthy.unwrap());
    };
    assert_eq!(health, [true, false, false]);
    assert_eq!(killed.state, TaskState::TaskKilled);
    assert_eq!(killed.healthy, Some(false));
    assert_eq!(exit_code(executor).await, 0);
}
