//! The executor's HTTP link to its agent (`POST /api/v1/executor`, JSON, with
//! `Authorization: Bearer <token>` when the agent gave the executor a token): SUBSCRIBE
//! opens a chunked RecordIO stream of events; other calls are answered 202.

use crate::config::Config;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use meseta_api::executor::{Call, Event};
use meseta_api::recordio::{Typed, TypedDecoder};
use std::time::Duration;
use thiserror::Error;

/// Why a call to the agent did not go through.
#[derive(Debug, Error)]
pub enum LinkError {
    /// No HTTP exchange happened (connection refused, reset, …).
    #[error("cannot reach the agent at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The agent answered with an error status.
    #[error("the agent answered {call} with {status}: {body}")]
    Rejected {
        call: &'static str,
        status: u16,
        body: String,
    },
    /// The event stream broke off or is not RecordIO.
    #[error("the event stream failed: {0}")]
    Stream(String),
}

/// The agent's executor endpoint.
#[derive(Clone, Debug)]
pub struct AgentLink {
    client: reqwest::Client,
    url: String,
    /// The `Authorization` header's value.
    authorization: Option<String>,
}

impl AgentLink {
    /// A link to the agent at `config`'s endpoint (`ip:port`), authenticated with its
    /// token when it has one.
    pub fn new(config: &Config) -> Result<AgentLink, LinkError> {
        let url = format!("http://{}/api/v1/executor", config.agent_endpoint);
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Duration::from_secs(10))
            .build()
            .map_err(|source| LinkError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let authorization = (config.authentication_token.as_ref()).map(|t| format!("Bearer {t}"));
        Ok(AgentLink {
            client,
            url,
            authorization,
        })
    }

    async fn post(&self, call: &Call) -> Result<reqwest::Response, LinkError> {
        let mut request = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request
            .body(meseta_api::json::to_ascii_vec(call))
            .send()
            .await
            .map_err(|source| LinkError::Unreachable {
                url: self.url.clone(),
                source,
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Err(LinkError::Rejected {
            call: call.kind.type_name(),
            status,
            body,
        })
    }

    /// Sends SUBSCRIBE and returns the event stream.
    pub async fn subscribe(&self, call: &Call) -> Result<EventStream, LinkError> {
        let response = self.post(call).await?;
        Ok(EventStream {
            body: response.bytes_stream().boxed(),
            decoder: TypedDecoder::new(),
        })
    }

    /// Sends a call that is answered without a stream (UPDATE, MESSAGE).
    pub async fn send(&self, call: &Call) -> Result<(), LinkError> {
        self.post(call).await.map(drop)
    }
}

/// Events from a subscription.
pub struct EventStream {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: TypedDecoder<Event>,
}

impl EventStream {
    /// The next event; `None` when the agent closed the stream. Records of unknown event
    /// types are skipped, as Mesos skips UNKNOWN events.
    pub async fn next(&mut self) -> Option<Result<Event, LinkError>> {
        loop {
            match self.decoder.next_record() {
                Err(e) => return Some(Err(LinkError::Stream(e.to_string()))),
                Ok(Some(Typed::Value(event))) => return Some(Ok(event)),
                Ok(Some(Typed::Unknown(why))) => {
                    tracing::warn!("ignoring an event we cannot read: {why}");
                    continue;
                }
                Ok(None) => {}
            }
            match self.body.next().await? {
                Ok(chunk) => self.decoder.feed(&chunk),
                Err(e) => return Some(Err(LinkError::Stream(e.to_string()))),
            }
        }
    }
}
