//! The subscription loop: SUBSCRIBE (following 307s to the leader, retrying 503s and
//! connection errors with backoff), read the event stream, acknowledge updates when asked
//! to, and re-subscribe with the framework id when the stream drops.

use crate::client::{Scheduler, Shared};
use crate::error::Error;
use crate::master::leader_from_location;
use crate::stream::EventReader;
use crate::Config;
use meseta_api::backoff::{self, Backoff};
use meseta_api::scheduler::{Call, CallKind, Event, Subscribe};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Redirects followed in one attempt before backing off.
const MAX_REDIRECTS: usize = 8;
/// The heartbeat interval assumed until SUBSCRIBED gives one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Missed heartbeats after which the stream is considered dead.
const MISSED_HEARTBEATS: u32 = 5;

/// How one subscription attempt ended.
enum Outcome {
    /// Nothing more to do: the consumer is gone, or an ERROR event was delivered.
    Stop,
    /// The master refused the subscription for good.
    Fatal(Error),
    /// The attempt failed before a stream opened (retry).
    Failed(String),
    /// A stream was open and ended.
    Dropped(String),
}

/// Runs the subscription until it is closed, hopeless, or nobody listens.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut config: Config,
    events: mpsc::Sender<Result<Event, Error>>,
) {
    let mut closed = shared.closed.subscribe();
    let mut backoff = Backoff::new(config.backoff_max);
    let mut trying_since = Instant::now();
    loop {
        let outcome = tokio::select! {
            outcome = attempt(&shared, &mut config, &events, &mut backoff) => outcome,
            _ = closed.wait_for(|closed| *closed) => Outcome::Stop,
            _ = events.closed() => Outcome::Stop,
        };
        {
            let mut session = shared.session();
            session.subscribed = false;
            session.stream_id = None;
        }
        let error = match outcome {
            Outcome::Stop => return,
            Outcome::Fatal(e) => Some(e),
            Outcome::Dropped(why) if !config.reconnect => Some(Error::Disconnected {
                master: shared.master.clone(),
                why,
            }),
            Outcome::Dropped(why) => {
                tracing::warn!("lost the master ({why}); re-subscribing");
                trying_since = Instant::now();
                None
            }
            Outcome::Failed(why) => match config.give_up_after {
                Some(limit) if trying_since.elapsed() >= limit => Some(Error::GaveUp {
                    master: shared.master.clone(),
                    waited: limit,
                    last: why,
                }),
                _ => {
                    tracing::info!("subscribing failed ({why}); retrying");
                    None
                }
            },
        };
        if let Some(error) = error {
            let _ = events.send(Err(error)).await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next(backoff::jitter())) => {}
            _ = closed.wait_for(|closed| *closed) => return,
        }
    }
}

/// One SUBSCRIBE, followed through redirects, and its stream until it ends.
async fn attempt(
    shared: &Arc<Shared>,
    config: &mut Config,
    events: &mpsc::Sender<Result<Event, Error>>,
    backoff: &mut Backoff,
) -> Outcome {
    let mut base = shared.session().leader.clone();
    for _ in 0..MAX_REDIRECTS {
        let call = Call {
            framework_id: config.framework_info.id.clone(),
            kind: CallKind::Subscribe(Subscribe {
                framework_info: config.framework_info.clone(),
                suppressed_roles: config.suppressed_roles.clone(),
            }),
        };
        let response = match shared.post(&base, &call, None, None).await {
            Ok(response) => response,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get("Location")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| leader_from_location(l, &base));
            let Some(leader) = location else {
                return Outcome::Failed(format!("{status} without a usable Location"));
            };
            tracing::debug!("{base} redirects to the leading master {leader}");
            shared.session().leader = leader.clone();
            base = leader;
            continue;
        }
        if status.as_u16() == 200 {
            return follow(shared, config, events, backoff, response).await;
        }
        let body = response.text().await.unwrap_or_default();
        if status.as_u16() == 503 {
            return Outcome::Failed(format!("{status}: {body}"));
        }
        return Outcome::Fatal(Error::Rejected {
            call: "SUBSCRIBE",
            status: status.as_u16(),
            body,
        });
    }
    Outcome::Failed("too many redirects".to_string())
}

/// Reads an open subscription's events until the stream ends.
async fn follow(
    shared: &Arc<Shared>,
    config: &mut Config,
    events: &mpsc::Sender<Result<Event, Error>>,
    backoff: &mut Backoff,
    response: reqwest::Response,
) -> Outcome {
    let stream_id = response
        .headers()
        .get("Mesos-Stream-Id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut reader = EventReader::new(response);
    let mut heartbeat = DEFAULT_HEARTBEAT;
    loop {
        let silence = heartbeat * MISSED_HEARTBEATS;
        let event = match tokio::time::timeout(silence, reader.next()).await {
            Err(_) => return Outcome::Dropped(format!("no event for {silence:?}")),
            Ok(None) => return Outcome::Dropped("the master closed the stream".to_string()),
            Ok(Some(Err(e))) => return Outcome::Dropped(e.to_string()),
            Ok(Some(Ok(event))) => event,
        };
        match &event {
            Event::Subscribed(subscribed) => {
                tracing::debug!("subscribed as framework {}", subscribed.framework_id);
                config.framework_info.id = Some(subscribed.framework_id.clone());
                if let Some(secs) = subscribed.heartbeat_interval_seconds {
                    heartbeat = Duration::try_from_secs_f64(secs)
                        .unwrap_or(DEFAULT_HEARTBEAT)
                        .max(Duration::from_secs(1));
                }
                let mut session = shared.session();
                session.framework_id = Some(subscribed.framework_id.clone());
                session.stream_id = stream_id.clone();
                session.subscribed = true;
                backoff.reset();
            }
            Event::Update(update) if config.auto_acknowledge => {
                let scheduler = Scheduler {
                    shared: shared.clone(),
                };
                let status = update.status.clone();
                tokio::spawn(async move {
                    if let Err(e) = scheduler.acknowledge_status(&status).await {
                        tracing::warn!(
                            "could not acknowledge an update of {}: {e}",
                            status.task_id
                        );
                    }
                });
            }
            _ => {}
        }
        let error = matches!(event, Event::Error(_));
        if events.send(Ok(event)).await.is_err() || error {
            return Outcome::Stop;
        }
    }
}
