//! The SDK's errors; rejected calls carry the master's HTTP status and body.

use std::time::Duration;
use thiserror::Error;

/// Why a call or the subscription failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The master address cannot be used.
    #[error("invalid master address '{master}': {why}")]
    InvalidMaster { master: String, why: String },
    /// A call was made while no subscription is open.
    #[error("not subscribed to the master")]
    NotSubscribed,
    /// The master answered a call with an error status.
    #[error("the master rejected {call} with {status}: {body}")]
    Rejected {
        call: &'static str,
        status: u16,
        body: String,
    },
    /// No HTTP exchange with the master happened.
    #[error("cannot reach the master at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// No subscription succeeded within the configured time.
    #[error("could not subscribe to {master} within {waited:?}: {last}")]
    GaveUp {
        master: String,
        waited: Duration,
        last: String,
    },
    /// The subscription ended and reconnecting is turned off.
    #[error("the subscription to {master} ended: {why}")]
    Disconnected { master: String, why: String },
    /// Something the master or an agent was asked about does not exist there.
    #[error("{0}")]
    NotFound(String),
    /// The event stream is not RecordIO-framed JSON.
    #[error("the master's event stream is malformed: {0}")]
    Stream(String),
}
