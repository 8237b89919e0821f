//! Mesos v1 wire types, exactly as Mesos writes and reads them in JSON.
//!
//! This crate owns the public contract: the scheduler, executor and operator calls and
//! events, the shared messages (`FrameworkInfo`, `TaskInfo`, `TaskStatus`, `Offer`, …),
//! the RecordIO stream framing, resource arithmetic and parsing, and the internal
//! master↔agent link messages (which are ours and never exposed). It depends on serde only
//! and does no I/O.

#[macro_use]
mod union;

mod ascii_json;

pub mod backoff;
pub mod container;
pub mod duration;
pub mod executor;
pub mod ids;
pub mod internal;
pub mod json;
pub mod maintenance;
pub mod mesos;
pub mod operations;
pub mod operator;
pub mod quota;
pub mod recordio;
pub mod resources;
pub mod scheduler;
pub mod v0;
pub mod version;

pub use ids::*;
pub use mesos::*;
pub use resources::{Resource, Resources};

/// The Mesos API level we implement, reported as `version` by `/version` (pymesos checks it).
pub const MESOS_VERSION: &str = "1.11.0";

/// Meseta's own version.
pub const MESETA_VERSION: &str = env!("CARGO_PKG_VERSION");
