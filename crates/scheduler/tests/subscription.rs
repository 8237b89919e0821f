//! The SDK against in-test masters speaking `/api/v1/scheduler`: a standby that redirects,
//! a leader that first answers 503, streams with stream ids, calls (and how many are in
//! flight at once), reconnection.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use meseta_api::scheduler::{Call, CallKind, Event};
use meseta_api::{FrameworkInfo, TaskId, TaskState, TaskStatus};
use meseta_scheduler::{Config, Error};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Leader {
    unavailable_answers: usize,
    streams: usize,
    stream: Option<UnboundedSender<Event>>,
    stream_id: Option<String>,
    reject: Option<(StatusCode, &'static str)>,
}

#[derive(Clone)]
struct App {
    leader: Arc<Mutex<Leader>>,
    calls: UnboundedSender<(Call, Option<String>)>,
    /// Calls other than SUBSCRIBE are answered while this is true.
    open: watch::Receiver<bool>,
    /// Calls in the handler now, and the most there were at once.
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

async fn scheduler_api(
    State(app): State<App>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let call: Call = serde_json::from_slice(&body).expect("a valid scheduler call");
    call.validate().expect("a valid scheduler call");
    let stream_id = headers
        .get("Mesos-Stream-Id")
        .map(|v| v.to_str().unwrap().to_string());
    app.calls.send((call.clone(), stream_id.clone())).unwrap();
    if !matches!(call.kind, CallKind::Subscribe(_)) {
        let now = app.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        app.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut open = app.open.clone();
        open.wait_for(|open| *open).await.unwrap();
        app.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    let mut leader = app.leader.lock().unwrap();
    if let CallKind::Subscribe(subscribe) = &call.kind {
        if leader.unavailable_answers > 0 {
            leader.unavailable_answers -= 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "Master is not yet recovered",
            )
                .into_response();
        }
        leader.streams += 1;
        let id = format!("stream-{}", leader.streams);
        let framework_id = subscribe
            .framework_info
            .id
            .clone()
            .unwrap_or_else(|| "M-0000".into());
        let (tx, rx) = mpsc::unbounded_channel::<Event>();
        let subscribed = json!({"type": "SUBSCRIBED", "subscribed": {
            "framework_id": framework_id, "heartbeat_interval_seconds": 15.0}});
        tx.send(serde_json::from_value(subscribed).unwrap())
            .unwrap();
        tx.send(Event::Heartbeat).unwrap();
        leader.stream = Some(tx);
        leader.stream_id = Some(id.clone());
        let records = futures::stream::unfold(rx, |mut rx| async move {
            let event = rx.recv().await?;
            Some((
                Ok::<_, std::convert::Infallible>(meseta_api::recordio::encode(&event)),
                rx,
            ))
        });
        return Response::builder()
            .header("Content-Type", "application/json")
            .header("Mesos-Stream-Id", id)
            .body(Body::from_stream(records))
            .unwrap();
    }
    if stream_id.is_none() || stream_id != leader.stream_id {
        return (
            StatusCode::BAD_REQUEST,
            "The stream ID included in this request didn't match",
        )
            .into_response();
    }
    if let Some((status, body)) = leader.reject {
        return (status, body).into_response();
    }
    StatusCode::ACCEPTED.into_response()
}

struct Cluster {
    leader: Arc<Mutex<Leader>>,
    calls: UnboundedReceiver<(Call, Option<String>)>,
    standby: String,
    open: watch::Sender<bool>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

impl Cluster {
    /// A leader that answers 503 `unavailable` times, and a standby redirecting to it.
    async fn start(unavailable: usize) -> Cluster {
        let leader = Arc::new(Mutex::new(Leader {
            unavailable_answers: unavailable,
            ..Leader::default()
        }));
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (open, open_rx) = watch::channel(true);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most_in_flight = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/api/v1/scheduler", post(scheduler_api))
            .with_state(App {
                leader: leader.clone(),
                calls: calls_tx,
                open: open_rx,
                in_flight: in_flight.clone(),
                most_in_flight: most_in_flight.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let leader_addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let location = format!("//{leader_addr}/api/v1/scheduler");
        let standby_app =
            Router::new().route(
                "/api/v1/scheduler",
                post(move || async move {
                    (StatusCode::TEMPORARY_REDIRECT, [("Location", location)], "")
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let standby = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, standby_app).await.unwrap() });
        Cluster {
            leader,
            calls,
            standby,
            open,
            in_flight,
            most_in_flight,
        }
    }

    fn push(&self, event: Event) {
        let leader = self.leader.lock().unwrap();
        leader.stream.as_ref().unwrap().send(event).unwrap();
    }

    fn drop_stream(&self) {
        self.leader.lock().unwrap().stream = None;
    }

    /// The next call that is not a SUBSCRIBE.
    async fn next_call(&mut self) -> (Call, Option<String>) {
        loop {
            let (call, id) = timeout(WAIT, self.calls.recv()).await.unwrap().unwrap();
            if !matches!(call.kind, CallKind::Subscribe(_)) {
                return (call, id);
            }
        }
    }

    async fn next_subscribe(&mut self) -> Call {
        loop {
            let (call, _) = timeout(WAIT, self.calls.recv()).await.unwrap().unwrap();
            if matches!(call.kind, CallKind::Subscribe(_)) {
                return call;
            }
        }
    }
}

fn framework() -> FrameworkInfo {
    serde_json::from_value(json!({"user": "u", "name": "sdk-test"})).unwrap()
}

/// A framework subscribed through the standby, its SUBSCRIBED event taken.
async fn subscribed(cluster: &Cluster) -> (meseta_scheduler::Scheduler, meseta_scheduler::Events) {
    let (scheduler, mut events) =
        meseta_scheduler::subscribe(Config::new(cluster.standby.clone(), framework())).unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        Event::Subscribed(_)
    ));
    (scheduler, events)
}

async fn next_event(events: &mut meseta_scheduler::Events) -> Event {
    timeout(WAIT, events.next())
        .await
        .expect("an event")
        .expect("the stream goes on")
        .expect("no error")
}

#[tokio::test]
async fn follows_the_leader_retries_503_and_calls_with_the_stream_id() {
    let mut cluster = Cluster::start(2).await;
    let (scheduler, mut events) = meseta_scheduler::subscribe(Config::new(
        format!("http://{}", cluster.standby),
        framework(),
    ))
    .unwrap();
    assert!(matches!(
        scheduler.revive(vec![]).await,
        Err(Error::NotSubscribed)
    ));
    let Event::Subscribed(subscribed) = next_event(&mut events).await else {
        panic!("SUBSCRIBED first")
    };
    assert_eq!(subscribed.framework_id.as_str(), "M-0000");
    assert_eq!(next_event(&mut events).await, Event::Heartbeat);
    assert_eq!(scheduler.framework_id().unwrap().as_str(), "M-0000");
    assert_ne!(scheduler.leader(), format!("http://{}", cluster.standby));

    scheduler.kill(TaskId::new("t1"), None, None).await.unwrap();
    let (call, stream_id) = cluster.next_call().await;
    assert_eq!(stream_id.as_deref(), Some("stream-1"));
    assert_eq!(call.framework_id.unwrap().as_str(), "M-0000");
    assert!(matches!(call.kind, CallKind::Kill(k) if k.task_id.as_str() == "t1"));

    // Updates with a uuid are acknowledged on their own.
    let status = running("t1");
    cluster.push(Event::Update(meseta_api::scheduler::Update {
        status: status.clone(),
    }));
    assert!(matches!(next_event(&mut events).await, Event::Update(_)));
    let (call, _) = cluster.next_call().await;
    let CallKind::Acknowledge(ack) = call.kind else {
        panic!("{call:?}")
    };
    assert_eq!(Some(ack.uuid), status.uuid);
    assert_eq!(ack.agent_id.as_str(), "M-S0");

    // A rejected call carries the status and body.
    cluster.leader.lock().unwrap().reject =
        Some((StatusCode::FORBIDDEN, "Framework is not subscribed"));
    match scheduler.reconcile(vec![]).await {
        Err(Error::Rejected { call, status, body }) => {
            assert_eq!(
                (call, status, body.as_str()),
                ("RECONCILE", 403, "Framework is not subscribed")
            );
        }
        other => panic!("{other:?}"),
    }
}

/// TASK_RUNNING of `task` with a uuid, as a master sends it for acknowledgement.
fn running(task: &str) -> TaskStatus {
    let mut status = TaskStatus::new(TaskId::new(task), TaskState::TaskRunning);
    status.uuid = Some(meseta_api::json::new_uuid_bytes());
    status.agent_id = Some("M-S0".into());
    status
}

#[tokio::test]
async fn acknowledgements_of_many_updates_wait_for_a_few_calls_in_flight() {
    let mut cluster = Cluster::start(0).await;
    let (_scheduler, mut events) = subscribed(&cluster).await;
    assert_eq!(next_event(&mut events).await, Event::Heartbeat);
    // The master holds every call; 200 updates are acknowledged on their own.
    cluster.open.send_replace(false);
    let updates = 200;
    for i in 0..updates {
        let status = running(&format!("t{i}"));
        cluster.push(Event::Update(meseta_api::scheduler::Update { status }));
        assert!(matches!(next_event(&mut events).await, Event::Update(_)));
    }
    for _ in 0..16 {
        cluster.next_call().await;
    }
    // Sixteen calls are held, over sixteen connections; the others wait their turn.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.in_flight.load(Ordering::SeqCst), 16);
    assert!(
        cluster.calls.try_recv().is_err(),
        "a 17th call reached the master"
    );
    cluster.open.send_replace(true);
    let mut acknowledged = 16;
    while acknowledged < updates {
        let (call, _) = cluster.next_call().await;
        assert!(matches!(call.kind, CallKind::Acknowledge(_)), "{call:?}");
        acknowledged += 1;
    }
    assert_eq!(cluster.most_in_flight.load(Ordering::SeqCst), 16);
}

#[tokio::test]
async fn resubscribes_with_the_framework_id_after_the_stream_drops() {
    let mut cluster = Cluster::start(0).await;
    let (scheduler, mut events) = subscribed(&cluster).await;
    let first = cluster.next_subscribe().await;
    assert_eq!(first.framework_id, None);
    cluster.drop_stream();
    let again = cluster.next_subscribe().await;
    assert_eq!(again.framework_id.as_ref().unwrap().as_str(), "M-0000");
    let CallKind::Subscribe(subscribe) = &again.kind else {
        panic!()
    };
    assert_eq!(subscribe.framework_info.id, again.framework_id);
    loop {
        if let Event::Subscribed(_) = next_event(&mut events).await {
            break;
        }
    }
    scheduler.suppress(vec!["web".into()]).await.unwrap();
    let (call, stream_id) = cluster.next_call().await;
    assert_eq!(stream_id.as_deref(), Some("stream-2"));
    assert!(matches!(call.kind, CallKind::Suppress(Some(r)) if r.roles == ["web"]));
    scheduler.teardown().await.unwrap();
    let (call, _) = cluster.next_call().await;
    assert_eq!(call.kind, CallKind::Teardown);
    // Events already received are still handed out; then the stream ends.
    while let Some(event) = timeout(WAIT, events.next()).await.unwrap() {
        assert!(matches!(event, Ok(Event::Heartbeat)), "{event:?}");
    }
}

#[tokio::test]
async fn an_error_event_ends_the_stream() {
    let cluster = Cluster::start(0).await;
    let (_scheduler, mut events) = subscribed(&cluster).await;
    let error = meseta_api::scheduler::Error {
        message: "Framework failed over".into(),
    };
    cluster.push(Event::Error(error.clone()));
    loop {
        match next_event(&mut events).await {
            Event::Error(e) => {
                assert_eq!(e, error);
                break;
            }
            Event::Heartbeat => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(timeout(WAIT, events.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn without_reconnect_a_drop_is_an_error() {
    let cluster = Cluster::start(0).await;
    let mut config = Config::new(cluster.standby.clone(), framework());
    config.reconnect = false;
    let (_scheduler, mut events) = meseta_scheduler::subscribe(config).unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        Event::Subscribed(_)
    ));
    cluster.drop_stream();
    let last = loop {
        match timeout(WAIT, events.next()).await.unwrap().unwrap() {
            Ok(Event::Heartbeat) => {}
            other => break other,
        }
    };
    assert!(matches!(last, Err(Error::Disconnected { .. })), "{last:?}");
}

#[tokio::test]
async fn gives_up_on_an_unreachable_master_when_asked() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut config = Config::new(address, framework());
    config.give_up_after = Some(Duration::from_millis(300));
    let (_scheduler, mut events) = meseta_scheduler::subscribe(config).unwrap();
    let last = timeout(WAIT, events.next()).await.unwrap().unwrap();
    assert!(matches!(last, Err(Error::GaveUp { .. })), "{last:?}");
    assert!(matches!(
        meseta_scheduler::subscribe(Config::new("zk://x/mesos", framework())),
        Err(Error::InvalidMaster { .. })
    ));
}
