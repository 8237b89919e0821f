//! The I/O around one [`HollowAgent`]: registers on `/internal/v1/agent/link`, reads the
//! RecordIO stream of [`ToAgent`] messages, posts [`ToMaster`] messages with the link id,
//! ticks the state machine when it has something due (a task's end, a retry; see
//! [`HollowAgent::next_due`]) rather than at a fixed rate, which at ten thousand agents
//! was a third of the simulation's CPU time, and reconnects with backoff when the stream drops, goes
//! quiet for [`LINK_TIMEOUT_SECS`] or a post answers 409.
//!
//! Each agent's stream holds a connection of its own; their posts share a few
//! ([`Posts`]), so a simulation needs about one descriptor per agent, on both sides.

use crate::hollow::{Counts, HollowAgent};
use crate::Stats;
use futures::StreamExt;
use meseta_api::backoff::{jitter, Backoff};
use meseta_api::internal::{
    ToAgent, ToMaster, LINK_ID_HEADER, LINK_TIMEOUT_SECS, MAX_MESSAGES_PER_POST,
};
use meseta_api::recordio::{Typed, TypedDecoder};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

const MAX_BACKOFF: Duration = Duration::from_secs(10);
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Posts in flight at once, for all the agents of a simulation together, and the
/// kept-alive connections they go over.
const POST_CONNECTIONS: usize = 64;

/// The connections every hollow agent posts its messages over: at most
/// [`POST_CONNECTIONS`] posts at once, each waiting for a free one, so that the master
/// and the simulation hold a descriptor per agent for its stream and only a few more,
/// where a connection per post in flight would double them.
#[derive(Clone)]
pub struct Posts {
    client: reqwest::Client,
    in_flight: Arc<Semaphore>,
}

impl Posts {
    pub fn new() -> reqwest::Result<Posts> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(POST_CONNECTIONS)
            .build()?;
        Ok(Posts {
            client,
            in_flight: Arc::new(Semaphore::new(POST_CONNECTIONS)),
        })
    }
}

enum Ended {
    Retry(String),
    Refused(String),
    Stopping,
}

struct Edge {
    base: String,
    client: reqwest::Client,
    posts: Posts,
    stats: Arc<Stats>,
    published: Counts,
    registered: bool,
}

impl Edge {
    /// Adds what changed in `agent` since the last call to the shared counters.
    fn publish(&mut self, agent: &HollowAgent) {
        let now = agent.counts();
        let add = |c: &std::sync::atomic::AtomicU64, new: u64, old: u64| {
            if new >= old {
                c.fetch_add(new - old, Ordering::Relaxed);
            } else {
                c.fetch_sub(old - new, Ordering::Relaxed);
            }
        };
        add(&self.stats.launched, now.launched, self.published.launched);
        add(&self.stats.running, now.running, self.published.running);
        add(&self.stats.finished, now.finished, self.published.finished);
        add(
            &self.stats.failed_or_killed,
            now.failed_or_killed,
            self.published.failed_or_killed,
        );
        self.published = now;
        if agent.registered() != self.registered {
            self.registered = agent.registered();
            if self.registered {
                self.stats.registered.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.registered.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Posts messages in order, many to a post; false when the master no longer knows
    /// the link.
    async fn post(&self, link_id: &str, messages: Vec<ToMaster>) -> bool {
        let url = format!("{}/internal/v1/agent/message", self.base);
        for batch in messages.chunks(MAX_MESSAGES_PER_POST) {
            let Ok(_permit) = self.posts.in_flight.acquire().await else {
                return true; // never closed
            };
            let sent = self
                .posts
                .client
                .post(&url)
                .header(LINK_ID_HEADER, link_id)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(MESSAGE_TIMEOUT)
                .body(meseta_api::json::to_ascii_vec(&batch))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => return false,
                Ok(r) if !r.status().is_success() => tracing::warn!(
                    "the master answered {} to {} messages",
                    r.status(),
                    batch.len()
                ),
                Ok(_) => {}
                // Lost updates are retried by the state machine.
                Err(e) => tracing::debug!("sending {} messages failed: {e}", batch.len()),
            }
        }
        true
    }

    async fn connect(
        &mut self,
        agent: &mut HollowAgent,
        stop: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Ended {
        let request = self
            .client
            .post(format!("{}/internal/v1/agent/link", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(meseta_api::json::to_ascii_vec(&agent.registration()))
            .send();
        let response = tokio::select! {
            r = request => r,
            _ = stop.wait_for(|s| *s) => return Ended::Stopping,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return Ended::Retry(format!("cannot reach the master: {e}")),
        };
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Ended::Refused(response.text().await.unwrap_or_default());
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Ended::Retry(format!("registration answered {status}: {body}"));
        }
        let mut body = response.bytes_stream();
        let mut decoder = TypedDecoder::<ToAgent>::new();
        let timeout = Duration::from_secs(LINK_TIMEOUT_SECS);
        let mut link_id: Option<String> = None;
        let mut last_heard = Instant::now();
        let wake = tokio::time::sleep_until(last_heard.into());
        tokio::pin!(wake);
        loop {
            let quiet_until = last_heard + timeout;
            let due = agent
                .next_due()
                .map_or(quiet_until, |due| due.min(quiet_until));
            if wake.deadline() != due.into() {
                wake.as_mut().reset(due.into());
            }
            // The stream first: after a long wait to post (the agents share a few
            // connections), what the master sent meanwhile is read before the quiet
            // timer, which would otherwise be as likely to win and end a live link.
            let event = tokio::select! {
                biased;
                c = body.next() => Some(c),
                _ = &mut wake => None,
                _ = stop.wait_for(|s| *s) => return Ended::Stopping,
            };
            let Some(chunk) = event else {
                if last_heard.elapsed() >= timeout {
                    return Ended::Retry(format!("nothing from the master for {timeout:?}"));
                }
                let out = agent.on_tick(Instant::now());
                self.publish(agent);
                if let Some(id) = &link_id {
                    if !self.post(id, out).await {
                        return Ended::Retry("the master no longer knows this link".into());
                    }
                }
                continue;
            };
            let bytes = match chunk {
                None => return Ended::Retry("the master closed the link".into()),
                Some(Err(e)) => return Ended::Retry(format!("the link broke: {e}")),
                Some(Ok(bytes)) => bytes,
            };
            last_heard = Instant::now();
            decoder.feed(&bytes);
            loop {
                let message = match decoder.next_record() {
                    Ok(Some(Typed::Value(m))) => m,
                    Ok(Some(Typed::Unknown(e))) => {
                        tracing::debug!("ignoring a message from the master: {e}");
                        continue;
                    }
                    Ok(None) => break,
                    Err(e) => return Ended::Retry(format!("bad stream from the master: {e}")),
                };
                if let ToAgent::Registered(r) = &message {
                    link_id = Some(r.link_id.clone());
                    backoff.reset();
                }
                let out = agent.on_message(Instant::now(), message);
                self.publish(agent);
                if agent.stopped() {
                    return Ended::Refused("the master shut this agent down".into());
                }
                if let Some(id) = &link_id {
                    if !self.post(id, out).await {
                        return Ended::Retry("the master no longer knows this link".into());
                    }
                }
            }
        }
    }
}

/// Runs one hollow agent until `stop` turns true or the master shuts it down.
pub async fn run(
    mut agent: HollowAgent,
    base: String,
    client: reqwest::Client,
    posts: Posts,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut edge = Edge {
        base,
        client,
        posts,
        stats,
        published: Counts::default(),
        registered: false,
    };
    let mut backoff = Backoff::new(MAX_BACKOFF);
    loop {
        match edge.connect(&mut agent, &mut stop, &mut backoff).await {
            Ended::Stopping => break,
            Ended::Refused(why) => {
                tracing::warn!("{}: the master refused this agent: {why}", agent.hostname());
                edge.stats.stopped.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Ended::Retry(why) => tracing::debug!("{}: {why}; reconnecting", agent.hostname()),
        }
        agent.disconnected();
        edge.publish(&agent);
        // Time passes while disconnected too: tasks finish (their updates wait).
        agent.on_tick(Instant::now());
        edge.publish(&agent);
        tokio::select! {
            _ = tokio::time::sleep(backoff.next(jitter())) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    agent.disconnected();
    edge.publish(&agent);
}
