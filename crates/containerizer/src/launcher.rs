//! The launcher contract: what a container is made of ([`LaunchSpec`]), how it is named
//! across agent restarts ([`ProcessRef`]) and the operations every launcher offers.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use thiserror::Error;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// `/bin/sh -c <command>`.
    Shell(String),
    /// `path` executed directly with `args` as its whole argv (`args[0]` included), as
    /// Mesos runs a `CommandInfo` with `shell: false`.
    Argv { path: String, args: Vec<String> },
}

/// Everything a launcher needs to start a container's first process.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    pub program: Program,
    /// The complete environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// The working directory (the sandbox).
    pub working_dir: PathBuf,
    /// Files that receive the process's stdout and stderr (appended to).
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// Run as this user; honoured only when the agent runs as root.
    pub user: Option<String>,
}

/// A launched container's first process: its pid and the kernel's start time for it
/// (`/proc/<pid>/stat` field 22), which together survive agent restarts unambiguously.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    pub start_time: u64,
}

/// Resolves when the container's first process exits: its wait status (`code << 8`, or
/// the signal number) when known, `None` for a recovered process we cannot wait for.
pub type ExitFuture = Pin<Box<dyn Future<Output = Option<i32>> + Send>>;

/// A running container.
pub struct Launched {
    pub process: ProcessRef,
    pub exited: ExitFuture,
}

impl std::fmt::Debug for Launched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launched")
            .field("process", &self.process)
            .finish()
    }
}

/// Which signal [`Launcher::signal`] sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: asks the processes to stop.
    Terminate,
    /// SIGKILL.
    Kill,
}

/// A container's resource usage, summed over its processes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpus_user_time_secs: f64,
    pub cpus_system_time_secs: f64,
    pub mem_rss_bytes: u64,
    pub processes: u32,
}

/// Why a container could not be launched or signalled.
#[derive(Debug, Error)]
pub enum LaunchError {
    /// The user named in the task or framework does not exist on this machine.
    #[error("user '{0}' does not exist on this agent")]
    UnknownUser(String),
    /// Looking the user up failed.
    #[error("looking up user '{0}' failed: {1}")]
    UserLookup(String, String),
    /// Preparing the sandbox (stdout/stderr files, ownership) failed.
    #[error("preparing the sandbox {0}: {1}")]
    Sandbox(PathBuf, std::io::Error),
    /// The process could not be started.
    #[error("starting {0}: {1}")]
    Spawn(String, std::io::Error),
    /// Signalling the container failed.
    #[error("signalling process {0}: {1}")]
    Signal(i32, String),
}

/// Starts and controls containers. Implementations must be cheap to share (`Arc`).
pub trait Launcher: Send + Sync + 'static {
    /// Starts a container. Must be called within a Tokio runtime.
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, LaunchError>;

    /// Re-adopts a container started before an agent restart; `None` when it is gone (or
    /// its pid now names another process).
    fn recover(&self, process: ProcessRef) -> Option<Launched>;

    /// Sends `signal` to every process of the container.
    fn signal(&self, process: ProcessRef, signal: Signal) -> Result<(), LaunchError>;

    /// Current usage of the container, `None` when it is gone.
    fn usage(&self, process: ProcessRef) -> Option<Usage>;
}
