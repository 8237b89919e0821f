//! The Meseta agent (placeholder until the agent lands).

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What to do with executors found running when the agent starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverPolicy {
    /// Reconnect to them (Mesos `--recover=reconnect`).
    Reconnect,
    /// Kill them (Mesos `--recover=cleanup`).
    Cleanup,
}

impl std::str::FromStr for RecoverPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reconnect" => Ok(RecoverPolicy::Reconnect),
            "cleanup" => Ok(RecoverPolicy::Cleanup),
            other => Err(format!("--recover must be 'reconnect' or 'cleanup', not '{other}'")),
        }
    }
}

/// The agent's configuration (from its flags).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub ip: IpAddr,
    pub port: u16,
    pub hostname: Option<String>,
    /// The master, `host:port`.
    pub master: String,
    pub work_dir: PathBuf,
    /// `--resources` (text or JSON form); detected when absent.
    pub resources: Option<String>,
    /// `--attributes` (`name:value;…`).
    pub attributes: Option<String>,
    /// `--isolation`.
    pub isolation: String,
    pub recover: RecoverPolicy,
    pub executor_registration_timeout: Duration,
    pub executor_shutdown_grace_period: Duration,
    /// The `meseta` binary, run as `meseta executor` for command tasks.
    pub meseta_binary: PathBuf,
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let _ = config;
    shutdown.await;
    Ok(())
}
