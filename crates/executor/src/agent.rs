//! The executor's HTTP link to its agent (`POST /api/v1/executor`, JSON, with
//! `Authorization: Bearer <token>` when the agent gave the executor a token): SUBSCRIBE
//! opens a chunked RecordIO stream of events; other calls are answered 202.
//!
//! Plain HTTP/1.1 over hyper: each SUBSCRIBE gets its own connection (it holds it for the
//! stream), and the other calls share one kept-alive connection, opened again after an
//! error. An executor lives for one task, so a general client's set-up (connection pools,
//! TLS configuration, URL parsing per request) would cost it more than its calls.
//!
//! Connections go to the agent's Unix socket when it gave one (`MESOS_DOMAIN_SOCKET`),
//! else, or when that socket cannot be reached (gone after an agent restart without it,
//! closed to this executor's user), to its TCP endpoint.

use crate::config::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use meseta_api::executor::{Call, Event};
use meseta_api::recordio::{Typed, TypedDecoder};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::{TcpStream, UnixStream};

/// How long connecting to the agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive on the links, so that a vanished agent host is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// The agent's executor API.
const PATH: &str = "/api/v1/executor";

/// Why a call to the agent did not go through.
#[derive(Debug, Error)]
pub enum LinkError {
    /// No HTTP exchange happened (connection refused, reset, …).
    #[error("cannot reach the agent at {url}: {reason}")]
    Unreachable { url: String, reason: String },
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
    /// `ip:port`, also the `Host` header.
    address: String,
    /// The agent's Unix socket, tried first.
    socket: Option<PathBuf>,
    /// The `Authorization` header's value.
    authorization: Option<HeaderValue>,
    /// The kept connection for calls other than SUBSCRIBE.
    calls: Arc<tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>>,
}

impl AgentLink {
    /// A link to the agent at `config`'s endpoint (`ip:port`), authenticated with its
    /// token when it has one.
    pub fn new(config: &Config) -> Result<AgentLink, LinkError> {
        let address = config.agent_endpoint.clone();
        let authorization =
            match &config.authentication_token {
                None => None,
                Some(token) => Some(HeaderValue::try_from(format!("Bearer {token}")).map_err(
                    |e| LinkError::Unreachable {
                        url: url(&address),
                        reason: format!("the authentication token cannot be a header: {e}"),
                    },
                )?),
            };
        Ok(AgentLink {
            address,
            socket: config.domain_socket.clone(),
            authorization,
            calls: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> LinkError {
        LinkError::Unreachable {
            url: url(&self.address),
            reason: reason.to_string(),
        }
    }

    /// Opens a connection, on the agent's Unix socket when it can, and hands it to a task
    /// that drives it.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, LinkError> {
        if let Some(path) = &self.socket {
            match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(path)).await {
                Ok(Ok(stream)) => return self.handshake(stream).await,
                Ok(Err(e)) => tracing::debug!(
                    "cannot reach the agent's socket {} ({e}); using {}",
                    path.display(),
                    self.address
                ),
                Err(_) => tracing::debug!(
                    "connecting to the agent's socket {} timed out; using {}",
                    path.display(),
                    self.address
                ),
            }
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| self.unreachable("connecting timed out"))?
            .map_err(|e| self.unreachable(e))?;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        self.handshake(stream).await
    }

    async fn handshake<S>(&self, stream: S) -> Result<SendRequest<Full<Bytes>>, LinkError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("a connection to the agent ended: {e}");
            }
        });
        Ok(sender)
    }

    fn request(&self, call: &Call) -> hyper::Request<Full<Bytes>> {
        let mut request = hyper::Request::post(PATH)
            .header(HOST, &self.address)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        request
            .body(Full::new(Bytes::from(meseta_api::json::to_ascii_vec(call))))
            .expect("a POST with valid headers")
    }

    /// The response when it is a success, else the agent's answer as an error.
    async fn accepted(
        call: &Call,
        response: hyper::Response<Incoming>,
    ) -> Result<hyper::Response<Incoming>, LinkError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = match response.into_body().collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        Err(LinkError::Rejected {
            call: call.kind.type_name(),
            status,
            body,
        })
    }

    /// Sends SUBSCRIBE on a connection of its own and returns the event stream.
    pub async fn subscribe(&self, call: &Call) -> Result<EventStream, LinkError> {
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(self.request(call))
            .await
            .map_err(|e| self.unreachable(e))?;
        let response = Self::accepted(call, response).await?;
        Ok(EventStream {
            body: response.into_body(),
            decoder: TypedDecoder::new(),
        })
    }

    /// Sends a call that is answered without a stream (UPDATE, MESSAGE) on the kept
    /// connection.
    pub async fn send(&self, call: &Call) -> Result<(), LinkError> {
        let mut kept = self.calls.lock().await;
        let reusable = match kept.take() {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        let mut sender = match reusable {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        let response = sender
            .send_request(self.request(call))
            .await
            .map_err(|e| self.unreachable(e))?;
        let result = Self::accepted(call, response).await;
        if let Ok(response) = result {
            // Read the (empty) body to its end, so that the connection can carry the next.
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e))?;
            *kept = Some(sender);
            return Ok(());
        }
        result.map(drop)
    }
}

fn url(address: &str) -> String {
    format!("http://{address}{PATH}")
}

/// Events from a subscription.
pub struct EventStream {
    body: Incoming,
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
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Some(chunk) = frame.data_ref() {
                        self.decoder.feed(chunk);
                    }
                }
                Err(e) => return Some(Err(LinkError::Stream(e.to_string()))),
            }
        }
    }
}
