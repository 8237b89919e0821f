//! The Meseta agent: runs executors for the master's tasks and reports on them.
//!
//! [`run`] wires the parts: resource detection ([`detect`]), the checkpoint store
//! ([`store`]) and its writer thread ([`outbox`]), the actor that owns all state
//! ([`agent`], over the pure cores [`book`] and [`updates`]), the master link ([`link`]),
//! and the HTTP server ([`http`]: the executor API, the operator API, `/files`, v0
//! endpoints). Executors run through a `meseta_containerizer::Launcher`.

mod agent;
mod book;
mod command;
pub mod detect;
mod domain_socket;
mod executor_api;
pub mod executor_auth;
mod fetcher;
mod files;
mod gc;
mod http;
mod images;
mod jwt;
mod launch;
mod launching;
mod link;
mod operator_api;
mod outbox;
mod paths;
pub mod reconfiguration;
mod store;
mod updates;
mod views;
mod volumes;

use anyhow::Context;
pub use fetcher::{parse_size, FetcherOptions};
pub use gc::schedule::Policy as GcPolicy;
pub use gc::GcOptions;
use meseta_api::AgentInfo;
use meseta_containerizer::image::{Backend, ImageService, ImageStore, RegistryConfig};
use meseta_containerizer::linux::{Isolation, LinuxConfig, LinuxLauncher};
use meseta_containerizer::{Launcher, PosixLauncher};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

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
            other => Err(format!(
                "--recover must be 'reconnect' or 'cleanup', not '{other}'"
            )),
        }
    }
}

/// How the Linux launcher runs containers (its flags).
#[derive(Clone, Debug)]
pub struct ContainerizerOptions {
    /// `--cgroups-enable-cfs`: a CFS quota from `cpus` besides the shares.
    pub cgroups_enable_cfs: bool,
    /// `--enforce-container-disk-quota`: kill containers over their `disk` (with `disk/du`).
    pub enforce_container_disk_quota: bool,
    /// `--container-disk-watch-interval`.
    pub container_disk_watch_interval: Duration,
}

impl Default for ContainerizerOptions {
    fn default() -> Self {
        ContainerizerOptions {
            cgroups_enable_cfs: false,
            enforce_container_disk_quota: false,
            container_disk_watch_interval: Duration::from_secs(15),
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
    pub containerizer: ContainerizerOptions,
    pub recover: RecoverPolicy,
    /// `--reconfiguration-policy`: what may change across a restart.
    pub reconfiguration_policy: reconfiguration::ReconfigurationPolicy,
    pub executor_registration_timeout: Duration,
    pub executor_shutdown_grace_period: Duration,
    /// The `meseta` binary, run as `meseta executor` for command tasks.
    pub meseta_binary: PathBuf,
    pub images: ImageOptions,
    /// `--fetcher-cache-size`, `--fetcher-stall-timeout`, `--frameworks-home`.
    pub fetcher: FetcherOptions,
    /// `--gc-delay`, `--gc-disk-headroom`, `--disk-watch-interval`: sandbox removal.
    pub gc: GcOptions,
    /// `--executor-secret-key` (executors get tokens signed with it) and
    /// `--authenticate-http-executors` (their calls must carry them).
    pub executor_auth: Option<Arc<executor_auth::ExecutorAuth>>,
    /// `--http-executor-domain-sockets`: serve the executor API on a Unix socket too, and
    /// tell executors on the host's filesystem where it is (`MESOS_DOMAIN_SOCKET`).
    pub http_executor_domain_sockets: bool,
    /// `--domain-socket-location`: that socket's path (`agent.sock` in the work
    /// directory by default).
    pub domain_socket_location: Option<PathBuf>,
}

/// Container images: where they come from and how root filesystems are made.
#[derive(Clone, Debug, Default)]
pub struct ImageOptions {
    /// `--docker-registry`, `--docker-config`, `--docker-insecure-registries`.
    pub registry: RegistryConfig,
    /// `--image-provisioner-backend`; overlay when the kernel has it (and we are root),
    /// else copy, when absent.
    pub backend: Option<Backend>,
    /// `--image-gc-interval`: how often unused images are removed (never when absent).
    pub gc_interval: Option<Duration>,
    /// `--image-gc-excluded-images`: images periodic GC keeps even when unused.
    pub gc_excluded: Vec<String>,
}

impl AgentConfig {
    /// The flags as `/flags` and GET_FLAGS show them (Mesos's snake_case names).
    fn flag_list(&self) -> Vec<(String, String)> {
        let duration = meseta_api::duration::format;
        let recover = match self.recover {
            RecoverPolicy::Reconnect => "reconnect",
            RecoverPolicy::Cleanup => "cleanup",
        };
        let mut flags = vec![
            ("ip", self.ip.to_string()),
            ("port", self.port.to_string()),
            ("master", self.master.clone()),
            ("work_dir", self.work_dir.display().to_string()),
            ("isolation", self.isolation.clone()),
            ("recover", recover.to_string()),
            (
                "reconfiguration_policy",
                self.reconfiguration_policy.to_string(),
            ),
            (
                "executor_registration_timeout",
                duration(self.executor_registration_timeout),
            ),
            (
                "executor_shutdown_grace_period",
                duration(self.executor_shutdown_grace_period),
            ),
            (
                "cgroups_enable_cfs",
                self.containerizer.cgroups_enable_cfs.to_string(),
            ),
            (
                "enforce_container_disk_quota",
                self.containerizer.enforce_container_disk_quota.to_string(),
            ),
            (
                "container_disk_watch_interval",
                duration(self.containerizer.container_disk_watch_interval),
            ),
        ];
        flags.push((
            "fetcher_cache_size",
            format!("{}B", self.fetcher.cache_size),
        ));
        flags.push((
            "fetcher_stall_timeout",
            meseta_api::duration::format(self.fetcher.stall_timeout),
        ));
        flags.push(("gc_delay", duration(self.gc.policy.delay)));
        flags.push(("gc_disk_headroom", self.gc.policy.disk_headroom.to_string()));
        flags.push(("disk_watch_interval", duration(self.gc.disk_watch_interval)));
        flags.push((
            "http_executor_domain_sockets",
            self.http_executor_domain_sockets.to_string(),
        ));
        if let Some(location) = &self.domain_socket_location {
            flags.push(("domain_socket_location", location.display().to_string()));
        }
        flags.push((
            "authenticate_http_executors",
            self.executor_auth
                .as_ref()
                .is_some_and(|a| a.required())
                .to_string(),
        ));
        if let Some(auth) = &self.executor_auth {
            flags.push(("executor_secret_key", auth.key_file().display().to_string()));
        }
        if let Some(home) = &self.fetcher.frameworks_home {
            flags.push(("frameworks_home", home.display().to_string()));
        }
        flags.push((
            "docker_registry",
            self.images.registry.default_registry.clone(),
        ));
        if let Some(backend) = self.images.backend {
            let name = match backend {
                Backend::Overlay => "overlay",
                Backend::Copy => "copy",
            };
            flags.push(("image_provisioner_backend", name.to_string()));
        }
        for (name, value) in [
            ("hostname", &self.hostname),
            ("resources", &self.resources),
            ("attributes", &self.attributes),
        ] {
            if let Some(v) = value {
                flags.push((name, v.clone()));
            }
        }
        flags.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// Runs the agent until `shutdown` resolves (or the master shuts it down). Checkpointed
/// executors keep running after it returns; a restarted agent recovers them.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("creating the work directory {}", config.work_dir.display()))?;
    let machine = detect::Machine::detect(&config.work_dir);
    let total =
        detect::total_resources(&machine, config.resources.as_deref()).context("--resources")?;
    let attributes = detect::parse_attributes(config.attributes.as_deref().unwrap_or_default())
        .map_err(anyhow::Error::msg)
        .context("--attributes")?;
    let isolation: Isolation = config.isolation.parse()?;
    // Containers' run directories (supervisor state and exit records) sit beside the
    // sandboxes, so they survive agent restarts.
    let (launcher, launcher_name): (Arc<dyn Launcher>, &str) =
        match isolation.needs_linux_launcher() {
            true => (
                Arc::new(LinuxLauncher::new(LinuxConfig {
                    root: config.work_dir.join("containers"),
                    meseta_binary: config.meseta_binary.clone(),
                    isolation,
                    cgroups_enable_cfs: config.containerizer.cgroups_enable_cfs,
                    enforce_disk_quota: config.containerizer.enforce_container_disk_quota,
                    disk_watch_interval: config.containerizer.container_disk_watch_interval,
                })?),
                "linux",
            ),
            false => (
                Arc::new(PosixLauncher::with_zygote(config.meseta_binary.clone())),
                "posix",
            ),
        };
    let hostname = match &config.hostname {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| config.ip.to_string()),
    };
    let agent_info = AgentInfo {
        hostname,
        port: config.port,
        resources: total.clone().into_vec(),
        attributes,
        id: None,
        domain: None,
    };
    let images = Arc::new(ImageService::new(
        ImageStore::open(config.work_dir.join("images"))?,
        config.images.registry.clone(),
        config.images.backend,
    ));
    for name in &config.images.gc_excluded {
        images
            .reference(name)
            .context("--image-gc-excluded-images")?;
    }
    let store = store::Store::open(&paths::checkpoint_db(&config.work_dir))?;
    let recovered = store.load()?;
    if let (Some(_), Some(before)) = (&recovered.agent_id, &recovered.agent_info) {
        reconfiguration::check(before, &agent_info, config.reconfiguration_policy)?;
    }
    let listener = tokio::net::TcpListener::bind((config.ip, config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.ip, config.port))?;
    tracing::info!(
        "agent listening on {}:{} (resources {total})",
        config.ip,
        config.port
    );

    let config = Arc::new(config);
    let mut flag_list = config.flag_list();
    flag_list.push(("launcher".into(), launcher_name.into()));
    let flags = Arc::new(flag_list);
    let (commands_tx, commands_rx) = mpsc::channel(4096);
    let (recovered_tx, recovered_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = http::App {
        commands: commands_tx.clone(),
        recovered: recovered_rx,
        launcher: launcher.clone(),
        flags: flags.clone(),
        images: images.clone(),
        executor_auth: config.executor_auth.clone(),
    };
    let executor_socket = match config.http_executor_domain_sockets {
        true => {
            domain_socket::location(config.domain_socket_location.as_deref(), &config.work_dir)?
        }
        false => None,
    };
    let socket_server = match &executor_socket {
        Some(path) => {
            let socket = domain_socket::bind(path)?;
            tracing::info!("executors may also call the agent on {}", path.display());
            Some(tokio::spawn(domain_socket::serve(
                socket,
                path.clone(),
                app.clone(),
                stop_rx.clone(),
            )))
        }
        None => None,
    };
    let server = tokio::spawn(serve(listener, app, stop_rx.clone()));

    let gc = gc::Gc::spawn(config.gc, config.work_dir.clone(), stop_rx.clone());
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    let (outbox, writer) = outbox::Outbox::spawn(store, link_tx);
    let mut actor = agent::Agent::new(agent::Parts {
        config: config.clone(),
        flags,
        agent_info,
        total,
        launcher,
        images: images.clone(),
        outbox,
        commands: commands_tx.clone(),
        gc,
        executor_socket,
    });
    actor.recover(recovered);
    recovered_tx.send_replace(true);
    if let Some(interval) = config.images.gc_interval {
        tokio::spawn(crate::images::collect_periodically(
            images,
            interval,
            config.images.gc_excluded.clone(),
            stop_rx.clone(),
        ));
    }
    let link = tokio::spawn(link::run(
        config.master.clone(),
        commands_tx,
        link_rx,
        stop_rx,
    ));

    let shut_down_by_master = actor.run(commands_rx, shutdown).await;
    stop_tx.send_replace(true);
    let _ = link.await;
    if tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .is_err()
    {
        tracing::warn!("the HTTP server did not stop in time");
    }
    if let Some(socket_server) = socket_server {
        if tokio::time::timeout(Duration::from_secs(2), socket_server)
            .await
            .is_err()
        {
            tracing::warn!("the executor domain socket server did not stop in time");
        }
    }
    tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the checkpoint writer panicked"))?;
    if shut_down_by_master {
        tracing::warn!("agent stopped: the master shut it down");
    }
    Ok(())
}

async fn serve(listener: tokio::net::TcpListener, app: http::App, stop: watch::Receiver<bool>) {
    // Executors' event streams write record after record: with Nagle's algorithm, one
    // written while the last is unacknowledged waits for a delayed ACK (40 ms here).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    http::serve_until(listener, http::router(app), stop, "HTTP server").await;
}
