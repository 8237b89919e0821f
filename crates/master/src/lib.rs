//! The Meseta master: pools agents' resources and offers them to frameworks.
//!
//! `core/` is the pure state machine, `allocator/` decides offers, `registry/` stores
//! what survives restarts, `service` owns the state and performs effects, `http/` speaks
//! the scheduler, operator, v0 and internal agent-link protocols, `views` renders state,
//! and `reads` builds the whole-state views off the service loop.

pub mod allocator;
pub mod core;
mod http;
mod ordered_walk;
mod pacing;
mod prefetch;
mod reads;
pub mod registry;
pub mod service;
pub mod views;

use anyhow::Context;
use registry::{RedbRegistry, Registry};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
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
    /// `--allocation_spacing`: the least time between the end of one allocation pass and
    /// a pass run after jobs (resources freed meanwhile are offered together).
    pub allocation_spacing: Duration,
    pub agent_ping_timeout: Duration,
    pub agent_reregister_timeout: Duration,
    /// `--weights`: role weights for a first start (the registry's win afterwards).
    pub weights: BTreeMap<String, f64>,
    /// `--min_allocatable_resources`, parsed (see [`allocator::parse_min_allocatable`]).
    pub min_allocatable: Vec<allocator::MinQuantities>,
}

impl MasterConfig {
    /// The flags as GET_FLAGS and `/flags` report them.
    pub fn flags(&self) -> Vec<(String, String)> {
        let d = meseta_api::duration::format;
        let mut flags = vec![
            ("ip".to_string(), self.ip.to_string()),
            ("port".to_string(), self.port.to_string()),
            ("work_dir".to_string(), self.work_dir.display().to_string()),
            (
                "allocation_interval".to_string(),
                d(self.allocation_interval),
            ),
            ("allocation_spacing".to_string(), d(self.allocation_spacing)),
            ("agent_ping_timeout".to_string(), d(self.agent_ping_timeout)),
            (
                "agent_reregister_timeout".to_string(),
                d(self.agent_reregister_timeout),
            ),
        ];
        if let Some(h) = &self.hostname {
            flags.push(("hostname".to_string(), h.clone()));
        }
        if let Some(t) = self.offer_timeout {
            flags.push(("offer_timeout".to_string(), d(t)));
        }
        if !self.weights.is_empty() {
            flags.push(("weights".to_string(), core::format_weights(&self.weights)));
        }
        flags.push((
            "min_allocatable_resources".to_string(),
            allocator::format_min_allocatable(&self.min_allocatable),
        ));
        flags
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Runs the master until `shutdown` resolves. A registry that cannot be read stops it
/// before it serves anything.
pub async fn run(
    config: MasterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.work_dir).with_context(|| {
        format!(
            "creating the master's work dir {}",
            config.work_dir.display()
        )
    })?;
    let registry_path = config.work_dir.join("registry.redb");
    let registry = RedbRegistry::open(&registry_path)?;
    let mut registry = registry;
    let mut state = registry.load()?;
    let (weights, store) = core::initial_weights(&config.weights, &state.weights);
    if let Some(change) = store {
        registry.apply(std::slice::from_ref(&change))?;
    } else if !config.weights.is_empty() && weights != config.weights {
        tracing::warn!(
            "ignoring --weights '{}': using the weights recovered from the registry ('{}')",
            core::format_weights(&config.weights),
            core::format_weights(&weights)
        );
    }
    state.weights = weights;
    tracing::info!(
        agents = state.agents.len(),
        frameworks = state.frameworks.len(),
        "recovered the registry from {}",
        registry_path.display()
    );

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.ip, config.port))
        .await
        .with_context(|| format!("binding the master to {}:{}", config.ip, config.port))?;
    let bound = listener.local_addr()?;
    let advertised_ip = match config.ip {
        IpAddr::V4(ip) if !ip.is_unspecified() => ip,
        _ => Ipv4Addr::LOCALHOST,
    };
    let hostname = config.hostname.clone().unwrap_or_else(system_hostname);
    let master_id = uuid::Uuid::new_v4().to_string();
    let master_info = meseta_api::MasterInfo {
        id: master_id,
        ip: meseta_api::packed_ipv4(advertised_ip),
        port: bound.port(),
        pid: Some(format!("master@{advertised_ip}:{}", bound.port())),
        hostname: Some(hostname.clone()),
        version: Some(meseta_api::MESOS_VERSION.to_string()),
        address: Some(meseta_api::Address {
            hostname: Some(hostname),
            ip: Some(advertised_ip.to_string()),
            port: bound.port(),
        }),
        capabilities: vec![serde_json::json!({"type": "AGENT_UPDATE"})],
    };
    let core_config = core::CoreConfig {
        offer_timeout: config.offer_timeout.map(|d| d.as_secs_f64()),
        agent_ping_timeout: config.agent_ping_timeout.as_secs_f64(),
        agent_reregister_timeout: config.agent_reregister_timeout.as_secs_f64(),
        min_allocatable: config.min_allocatable.clone(),
    };
    let core = core::Core::new(master_info, core_config, state, service::now());
    let svc = service::Service::new(core, Box::new(registry));
    let (handle, jobs) = service::channel();

    let app = http::AppState {
        reads: reads::Reads::new(handle.clone()),
        service: handle,
        flags: Arc::new(config.flags()),
        leader: Arc::new(format!("{advertised_ip}:{}", bound.port())),
    };
    let router = http::router(app);
    let normalized = tower::Layer::layer(
        &tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash(),
        router,
    );
    tracing::info!("master listening on {bound}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Event streams write record after record: with Nagle's algorithm, one written while
    // the last is unacknowledged waits for the client's delayed ACK (40 ms here).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(normalized),
    )
    .with_graceful_shutdown(stopped(stop_rx.clone()));
    let timing = service::Timing {
        allocation_interval: config.allocation_interval,
        allocation_spacing: config.allocation_spacing,
        heartbeat_interval: Duration::from_secs_f64(core::HEARTBEAT_INTERVAL_SECS),
        ping_interval: Duration::from_secs(meseta_api::internal::PING_INTERVAL_SECS),
    };
    let service_loop = service::run(svc, jobs, timing, stopped(stop_rx));
    let server = tokio::spawn(async move { server.await });
    tokio::pin!(shutdown);
    tokio::pin!(service_loop);
    let result = tokio::select! {
        _ = &mut shutdown => Ok(()),
        r = &mut service_loop => r,
    };
    let _ = stop_tx.send(true);
    // Streams never end on their own; don't wait for them.
    server.abort();
    result
}
