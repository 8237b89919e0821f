//! The Rust framework SDK: subscribe to a Mesos (or Meseta) master over
//! `/api/v1/scheduler`, receive typed events, and make typed calls.
//!
//! [`subscribe`] starts a background subscription that follows the leader (307 to
//! `//host:port/api/v1/scheduler`), retries 503s and connection errors with backoff, keeps
//! the `Mesos-Stream-Id` for calls, re-subscribes with the framework id after the stream
//! drops, and (optionally) acknowledges status updates that carry a uuid. It returns a
//! [`Scheduler`] handle for calls and the [`Events`] stream.
//!
//! ```no_run
//! # async fn demo() -> Result<(), meseta_scheduler::Error> {
//! use meseta_api::scheduler::Event;
//! let info: meseta_api::FrameworkInfo =
//!     serde_json::from_str(r#"{"user":"root","name":"demo"}"#).unwrap();
//! let (scheduler, mut events) = meseta_scheduler::subscribe(
//!     meseta_scheduler::Config::new("127.0.0.1:5050", info))?;
//! while let Some(event) = events.next().await {
//!     if let Event::Offers(offers) = event? {
//!         let ids = offers.offers.into_iter().map(|o| o.id).collect();
//!         scheduler.decline(ids, None).await?;
//!     }
//! }
//! # Ok(()) }
//! ```

mod client;
mod connection;
mod error;
mod master;
pub mod offers;
pub mod sandbox;
mod stream;

pub use client::{Events, Scheduler};
pub use error::Error;

use client::{Session, Shared};
use meseta_api::FrameworkInfo;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events buffered before the subscription stops reading from the master.
const EVENT_BUFFER: usize = 1024;

/// How to subscribe.
#[derive(Clone, Debug)]
pub struct Config {
    /// The master: `host:port`, optionally with `http://`.
    pub master: String,
    /// The framework; set `id` to fail over to an existing framework.
    pub framework_info: FrameworkInfo,
    /// Roles to subscribe suppressed.
    pub suppressed_roles: Vec<String>,
    /// Acknowledge every update that carries a uuid, right after handing it out.
    pub auto_acknowledge: bool,
    /// Re-subscribe (with the framework id) when an open stream drops.
    pub reconnect: bool,
    /// The longest pause between subscription attempts.
    pub backoff_max: Duration,
    /// End the event stream with [`Error::GaveUp`] when no subscription succeeds for this
    /// long; retry forever when `None`.
    pub give_up_after: Option<Duration>,
}

impl Config {
    /// Defaults: auto-acknowledge, reconnect, backoff up to 2 s, retry forever.
    pub fn new(master: impl Into<String>, framework_info: FrameworkInfo) -> Config {
        Config {
            master: master.into(),
            framework_info,
            suppressed_roles: Vec::new(),
            auto_acknowledge: true,
            reconnect: true,
            backoff_max: Duration::from_secs(2),
            give_up_after: None,
        }
    }
}

/// Starts subscribing (in the background, on the current tokio runtime).
pub fn subscribe(config: Config) -> Result<(Scheduler, Events), Error> {
    let leader = master::base_url(&config.master).map_err(|why| Error::InvalidMaster {
        master: config.master.clone(),
        why,
    })?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Duration::from_secs(10))
        .pool_max_idle_per_host(client::CALLS_IN_FLIGHT)
        .build()
        .map_err(|source| Error::Unreachable {
            url: leader.clone(),
            source,
        })?;
    let (closed, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        http,
        calls: tokio::sync::Semaphore::new(client::CALLS_IN_FLIGHT),
        master: config.master.clone(),
        session: Mutex::new(Session {
            leader,
            framework_id: config.framework_info.id.clone(),
            stream_id: None,
            subscribed: false,
        }),
        closed,
    });
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    tokio::spawn(connection::run(shared.clone(), config, tx));
    Ok((Scheduler { shared }, Events { rx }))
}
