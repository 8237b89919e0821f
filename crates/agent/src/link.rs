//! The agent's end of the master link (`meseta_api::internal`): registers (and
//! reregisters with what it runs), reads the master's RecordIO stream of [`ToAgent`]
//! messages into the actor, reconnects with backoff when the stream drops or goes quiet
//! for [`LINK_TIMEOUT_SECS`], and posts [`ToMaster`] messages with the current link id
//! (a 409 means the link id is stale: reregister).

use crate::command::Command;
use futures::StreamExt;
use meseta_api::internal::{
    ShutdownAgent, ToAgent, ToMaster, LINK_ID_HEADER, LINK_TIMEOUT_SECS, MAX_MESSAGES_PER_POST,
};
use meseta_api::recordio::Decoder;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one connection ended.
enum Ended {
    /// Reconnect after a backoff.
    Retry(String),
    /// The master refused this agent for good.
    Refused(String),
    /// The agent is stopping.
    Stopping,
}

struct Link {
    base: String,
    client: reqwest::Client,
    actor: mpsc::Sender<Command>,
    link_id: watch::Sender<Option<String>>,
    reconnect: Arc<Notify>,
}

/// Runs the link until `stop` turns true.
pub async fn run(
    master: String,
    actor: mpsc::Sender<Command>,
    outgoing: mpsc::UnboundedReceiver<ToMaster>,
    mut stop: watch::Receiver<bool>,
) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()
        .expect("building an HTTP client");
    let (link_id, link_id_rx) = watch::channel(None);
    let reconnect = Arc::new(Notify::new());
    let link = Link {
        base: meseta_api::internal::master_url(&master),
        client: client.clone(),
        actor,
        link_id,
        reconnect: reconnect.clone(),
    };
    let sender = tokio::spawn(send_messages(
        link.base.clone(),
        client,
        outgoing,
        link_id_rx,
        reconnect,
    ));
    let mut backoff = MIN_BACKOFF;
    loop {
        match link.connect(&mut stop, &mut backoff).await {
            Ended::Stopping => break,
            Ended::Refused(why) => {
                tracing::error!("the master refused this agent: {why}");
                let _ = link
                    .actor
                    .send(Command::FromMaster(ToAgent::Shutdown(ShutdownAgent {
                        message: why,
                    })))
                    .await;
                break;
            }
            Ended::Retry(why) => tracing::info!("master link: {why}; retrying in {backoff:?}"),
        }
        link.link_id.send_replace(None);
        let _ = link.actor.send(Command::Disconnected).await;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    sender.abort();
}

impl Link {
    async fn connect(&self, stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> Ended {
        let (tx, rx) = oneshot::channel();
        if self.actor.send(Command::Registration(tx)).await.is_err() {
            return Ended::Stopping;
        }
        let Ok(registration) = rx.await else {
            return Ended::Stopping;
        };
        let request = self
            .client
            .post(format!("{}/internal/v1/agent/link", self.base))
            .json(&registration)
            .send();
        let response = tokio::select! {
            r = request => r,
            _ = stop.wait_for(|s| *s) => return Ended::Stopping,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Ended::Retry(format!("cannot reach the master at {}: {e}", self.base))
            }
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
        let mut decoder = Decoder::new();
        let timeout = Duration::from_secs(LINK_TIMEOUT_SECS);
        loop {
            let chunk = tokio::select! {
                c = tokio::time::timeout(timeout, body.next()) => c,
                _ = self.reconnect.notified() => return Ended::Retry("the master no longer knows this link".into()),
                _ = stop.wait_for(|s| *s) => return Ended::Stopping,
            };
            let bytes = match chunk {
                Err(_) => return Ended::Retry(format!("nothing from the master for {timeout:?}")),
                Ok(None) => return Ended::Retry("the master closed the link".into()),
                Ok(Some(Err(e))) => return Ended::Retry(format!("the link broke: {e}")),
                Ok(Some(Ok(bytes))) => bytes,
            };
            decoder.feed(&bytes);
            loop {
                let record = match decoder.next_record() {
                    Ok(Some(record)) => record,
                    Ok(None) => break,
                    Err(e) => return Ended::Retry(format!("bad stream from the master: {e}")),
                };
                let message: ToAgent = match meseta_api::json::from_slice(&record) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("ignoring a message from the master: {e}");
                        continue;
                    }
                };
                match message {
                    ToAgent::Ping => {}
                    ToAgent::Registered(registered) => {
                        self.link_id.send_replace(Some(registered.link_id.clone()));
                        *backoff = MIN_BACKOFF;
                        if self
                            .actor
                            .send(Command::Registered(registered))
                            .await
                            .is_err()
                        {
                            return Ended::Stopping;
                        }
                    }
                    other => {
                        if self.actor.send(Command::FromMaster(other)).await.is_err() {
                            return Ended::Stopping;
                        }
                    }
                }
            }
        }
    }
}

/// Posts messages while a link is up, those queued since the last post together (in
/// order, one post at a time); drops them otherwise (status updates are resent by the
/// status update manager after the next registration).
async fn send_messages(
    base: String,
    client: reqwest::Client,
    mut outgoing: mpsc::UnboundedReceiver<ToMaster>,
    link_id: watch::Receiver<Option<String>>,
    reconnect: Arc<Notify>,
) {
    let url = format!("{base}/internal/v1/agent/message");
    let mut batch = Vec::new();
    while outgoing.recv_many(&mut batch, MAX_MESSAGES_PER_POST).await > 0 {
        let messages = std::mem::take(&mut batch);
        let Some(id) = link_id.borrow().clone() else {
            tracing::debug!("not registered; dropping {} messages", messages.len());
            continue;
        };
        let body = meseta_api::json::to_ascii_vec(&messages);
        let sent = client
            .post(&url)
            .header(LINK_ID_HEADER, id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(MESSAGE_TIMEOUT)
            .body(body)
            .send()
            .await;
        let what = || describe(&messages);
        match sent {
            Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                tracing::info!("the master answered 409 to {}: reregistering", what());
                reconnect.notify_one();
            }
            Ok(r) if !r.status().is_success() => {
                tracing::warn!("the master answered {} to {}", r.status(), what());
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("sending {} failed: {e}", what()),
        }
    }
}

/// Names the messages of one post for logs: the type of one, or how many.
fn describe(messages: &[ToMaster]) -> String {
    match messages {
        [one] => one.type_name().to_string(),
        many => format!("{} messages", many.len()),
    }
}
