//! The Meseta master (placeholder until the master lands).

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The master's configuration (from its flags).
#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub ip: IpAddr,
    pub port: u16,
    pub hostname: Option<String>,
    pub work_dir: PathBuf,
    pub offer_timeout: Option<Duration>,
    pub allocation_interval: Duration,
    pub agent_ping_timeout: Duration,
    pub agent_reregister_timeout: Duration,
}

/// Runs the master until `shutdown` resolves.
pub async fn run(
    config: MasterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let _ = config;
    shutdown.await;
    Ok(())
}
