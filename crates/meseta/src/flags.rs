//! Command-line flags of `master`, `agent` and `local`, with Mesos's flag names in
//! kebab-case, their snake_case spellings as aliases, and `MESETA_<FLAG>` variables.

use anyhow::{Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The default work directory: `/var/lib/meseta` for root, else under the user's data dir.
pub fn default_work_dir() -> PathBuf {
    if nix_is_root() {
        return PathBuf::from("/var/lib/meseta");
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(data).join("meseta");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/share/meseta");
    }
    std::env::temp_dir().join("meseta")
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn parse_weights(text: &str) -> Result<BTreeMap<String, f64>, String> {
    meseta_master::core::parse_weights(text)
}

/// `--min_allocatable_resources`, parsed.
#[derive(Clone, Debug)]
pub struct MinAllocatable(pub Vec<meseta_master::allocator::MinQuantities>);

impl Default for MinAllocatable {
    fn default() -> Self {
        MinAllocatable(meseta_master::allocator::default_min_allocatable())
    }
}

fn parse_min_allocatable(text: &str) -> Result<MinAllocatable, String> {
    meseta_master::allocator::parse_min_allocatable(text).map(MinAllocatable)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    meseta_api::duration::parse(text)
}

/// A duration that is not zero (the period of a timer).
fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!("'{text}' must be longer than zero")),
        d => Ok(d),
    }
}

/// `--gc-disk-headroom`: a share of the disk, 0 to 1.
fn parse_disk_headroom(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{text}' must be a number between 0.0 and 1.0")),
    }
}

#[derive(Args, Clone, Debug)]
pub struct MasterFlags {
    /// IP address to listen on.
    #[arg(long, env = "MESETA_IP", default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "MESETA_PORT", default_value_t = 5050)]
    pub port: u16,
    /// Hostname to advertise (defaults to the machine's hostname).
    #[arg(long, env = "MESETA_HOSTNAME")]
    pub hostname: Option<String>,
    /// Where the master keeps its registry.
    #[arg(long = "work-dir", alias = "work_dir", env = "MESETA_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// How long an offer stays out before it is rescinded (e.g. `30secs`; none by default).
    #[arg(long = "offer-timeout", alias = "offer_timeout", env = "MESETA_OFFER_TIMEOUT", value_parser = parse_duration)]
    pub offer_timeout: Option<Duration>,
    /// How often the allocator runs a full pass (it also runs on events).
    #[arg(long = "allocation-interval", alias = "allocation_interval", env = "MESETA_ALLOCATION_INTERVAL", default_value = "1secs", value_parser = parse_duration)]
    pub allocation_interval: Duration,
    /// The least time between two allocation passes when a pass follows events (tasks
    /// ending, offers declined, calls): resources freed meanwhile go out together in
    /// fewer, larger offers. An event after a quiet spell is allocated at once; `0secs`
    /// runs a pass after every batch of events.
    #[arg(long = "allocation-spacing", alias = "allocation_spacing", env = "MESETA_ALLOCATION_SPACING", default_value = "20ms", value_parser = parse_duration)]
    pub allocation_spacing: Duration,
    /// How long an agent may stay disconnected before it is marked unreachable.
    #[arg(long = "agent-ping-timeout", alias = "agent_ping_timeout", env = "MESETA_AGENT_PING_TIMEOUT", default_value = "75secs", value_parser = parse_duration)]
    pub agent_ping_timeout: Duration,
    /// How long agents have to reregister after a master restart.
    #[arg(long = "agent-reregister-timeout", alias = "agent_reregister_timeout", env = "MESETA_AGENT_REREGISTER_TIMEOUT", default_value = "10mins", value_parser = parse_duration)]
    pub agent_reregister_timeout: Duration,
    /// Role weights, `role1=2,role2=0.5` (used at a first start; weights stored in the
    /// registry, from an earlier start or UPDATE_WEIGHTS, win over them).
    #[arg(long, env = "MESETA_WEIGHTS", value_parser = parse_weights)]
    pub weights: Option<BTreeMap<String, f64>>,
    /// The smallest offer, Mesos's format: alternatives separated by `|`, each a resource
    /// text (`cpus:0.01|mem:32`); an offer must hold at least one alternative fully.
    #[arg(long = "min-allocatable-resources", alias = "min_allocatable_resources", env = "MESETA_MIN_ALLOCATABLE_RESOURCES", default_value = "cpus:0.01|mem:32", value_parser = parse_min_allocatable)]
    pub min_allocatable_resources: MinAllocatable,
}

impl MasterFlags {
    pub fn into_config(self) -> Result<meseta_master::MasterConfig> {
        let work_dir = self
            .work_dir
            .unwrap_or_else(|| default_work_dir().join("master"));
        Ok(meseta_master::MasterConfig {
            ip: self.ip,
            port: self.port,
            hostname: self.hostname,
            work_dir,
            offer_timeout: self.offer_timeout,
            allocation_interval: self.allocation_interval,
            allocation_spacing: self.allocation_spacing,
            agent_ping_timeout: self.agent_ping_timeout,
            agent_reregister_timeout: self.agent_reregister_timeout,
            weights: self.weights.unwrap_or_default(),
            min_allocatable: self.min_allocatable_resources.0,
        })
    }
}

#[derive(Args, Clone, Debug)]
pub struct AgentFlags {
    /// IP address to listen on.
    #[arg(long, env = "MESETA_IP", default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "MESETA_PORT", default_value_t = 5051)]
    pub port: u16,
    /// Hostname to advertise (defaults to the machine's hostname).
    #[arg(long, env = "MESETA_HOSTNAME")]
    pub hostname: Option<String>,
    /// The master, `host:port`.
    #[arg(long, env = "MESETA_MASTER")]
    pub master: String,
    /// Where the agent keeps sandboxes and checkpoints.
    #[arg(long = "work-dir", alias = "work_dir", env = "MESETA_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub common: AgentCommonFlags,
}

/// Agent flags shared by `agent` and `local`.
#[derive(Args, Clone, Debug)]
pub struct AgentCommonFlags {
    /// Resources, `cpus:4;mem:8192;ports:[31000-32000]` or JSON (detected by default).
    #[arg(long, env = "MESETA_RESOURCES")]
    pub resources: Option<String>,
    /// Attributes, `rack:a;zone:1`.
    #[arg(long, env = "MESETA_ATTRIBUTES")]
    pub attributes: Option<String>,
    /// Isolators, comma-separated (`posix/cpu,posix/mem`).
    #[arg(long, env = "MESETA_ISOLATION", default_value = "posix/cpu,posix/mem")]
    pub isolation: String,
    /// `reconnect` to running executors after a restart, or `cleanup` to kill them.
    #[arg(long, env = "MESETA_RECOVER", default_value = "reconnect")]
    pub recover: String,
    /// What may change across a restart that keeps the agent's identity and tasks:
    /// `equal` (nothing) or `additive` (more resources, new attributes).
    #[arg(long = "reconfiguration-policy", alias = "reconfiguration_policy", env = "MESETA_RECONFIGURATION_POLICY", default_value = "equal", value_parser = parse_reconfiguration_policy)]
    pub reconfiguration_policy: meseta_agent::reconfiguration::ReconfigurationPolicy,
    /// How long an executor has to subscribe after it is launched.
    #[arg(long = "executor-registration-timeout", alias = "executor_registration_timeout", env = "MESETA_EXECUTOR_REGISTRATION_TIMEOUT", default_value = "1mins", value_parser = parse_duration)]
    pub executor_registration_timeout: Duration,
    /// Grace period between SIGTERM and SIGKILL when an executor is shut down.
    #[arg(long = "executor-shutdown-grace-period", alias = "executor_shutdown_grace_period", env = "MESETA_EXECUTOR_SHUTDOWN_GRACE_PERIOD", default_value = "5secs", value_parser = parse_duration)]
    pub executor_shutdown_grace_period: Duration,
    /// With `cgroups/cpu`: a CFS quota from the container's `cpus`, besides its shares.
    #[arg(
        long = "cgroups-enable-cfs",
        alias = "cgroups_enable_cfs",
        env = "MESETA_CGROUPS_ENABLE_CFS"
    )]
    pub cgroups_enable_cfs: bool,
    /// With `disk/du`: kill containers whose sandbox grows past their `disk`.
    #[arg(
        long = "enforce-container-disk-quota",
        alias = "enforce_container_disk_quota",
        env = "MESETA_ENFORCE_CONTAINER_DISK_QUOTA"
    )]
    pub enforce_container_disk_quota: bool,
    /// With `disk/du`: how often sandboxes are measured.
    #[arg(long = "container-disk-watch-interval", alias = "container_disk_watch_interval", env = "MESETA_CONTAINER_DISK_WATCH_INTERVAL", default_value = "15secs", value_parser = parse_duration)]
    pub container_disk_watch_interval: Duration,
    #[command(flatten)]
    pub registry: crate::image::RegistryFlags,
    /// How containers' root filesystems are made from images: `overlay` or `copy`
    /// (default: overlay when the kernel has it and the agent is root, else copy).
    #[arg(
        long = "image-provisioner-backend",
        alias = "image_provisioner_backend",
        env = "MESETA_IMAGE_PROVISIONER_BACKEND"
    )]
    pub image_provisioner_backend: Option<meseta_containerizer::image::Backend>,
    /// Remove the images no container uses this often (`1hrs`; never by default).
    #[arg(long = "image-gc-interval", alias = "image_gc_interval", env = "MESETA_IMAGE_GC_INTERVAL", value_parser = parse_duration)]
    pub image_gc_interval: Option<Duration>,
    /// Images the periodic GC keeps even when unused, `name,name,...`.
    #[arg(
        long = "image-gc-excluded-images",
        alias = "image_gc_excluded_images",
        env = "MESETA_IMAGE_GC_EXCLUDED_IMAGES",
        value_delimiter = ','
    )]
    pub image_gc_excluded_images: Vec<String>,
    /// The most bytes the cache of `cache: true` URIs holds (`2GB`, `512MB`).
    #[arg(long = "fetcher-cache-size", alias = "fetcher_cache_size", env = "MESETA_FETCHER_CACHE_SIZE", default_value = "2GB", value_parser = meseta_agent::parse_size)]
    pub fetcher_cache_size: u64,
    /// A download that receives nothing for this long fails its task.
    #[arg(long = "fetcher-stall-timeout", alias = "fetcher_stall_timeout", env = "MESETA_FETCHER_STALL_TIMEOUT", default_value = "1mins", value_parser = parse_duration)]
    pub fetcher_stall_timeout: Duration,
    /// What relative URI paths are resolved against (refused when unset).
    #[arg(
        long = "frameworks-home",
        alias = "frameworks_home",
        env = "MESETA_FRAMEWORKS_HOME"
    )]
    pub frameworks_home: Option<PathBuf>,
    /// How long a finished executor run's sandbox is kept (less as the disk fills up).
    #[arg(long = "gc-delay", alias = "gc_delay", env = "MESETA_GC_DELAY", default_value = "1weeks", value_parser = parse_duration)]
    pub gc_delay: Duration,
    /// The share of the disk (0 to 1) to keep free: sandboxes older than
    /// `gc-delay * (1 - headroom - usage)` are removed at each disk check.
    #[arg(long = "gc-disk-headroom", alias = "gc_disk_headroom", env = "MESETA_GC_DISK_HEADROOM", default_value = "0.1", value_parser = parse_disk_headroom)]
    pub gc_disk_headroom: f64,
    /// How often the disk's usage is checked for sandbox GC.
    #[arg(long = "disk-watch-interval", alias = "disk_watch_interval", env = "MESETA_DISK_WATCH_INTERVAL", default_value = "1mins", value_parser = parse_interval)]
    pub disk_watch_interval: Duration,
    /// Require executors to authenticate their calls with the token the agent gives
    /// them (needs `--executor-secret-key`).
    #[arg(
        long = "authenticate-http-executors",
        alias = "authenticate_http_executors",
        env = "MESETA_AUTHENTICATE_HTTP_EXECUTORS"
    )]
    pub authenticate_http_executors: bool,
    /// A file holding the key that executors' tokens are signed with (HS256 JWTs).
    #[arg(
        long = "executor-secret-key",
        alias = "executor_secret_key",
        env = "MESETA_EXECUTOR_SECRET_KEY"
    )]
    pub executor_secret_key: Option<PathBuf>,
    /// Serve the executor API on a Unix socket too, and tell executors on the host's
    /// filesystem where it is (`MESOS_DOMAIN_SOCKET`): cheaper than loopback TCP.
    /// `--http-executor-domain-sockets=false` keeps executors on TCP.
    #[arg(
        long = "http-executor-domain-sockets",
        alias = "http_executor_domain_sockets",
        env = "MESETA_HTTP_EXECUTOR_DOMAIN_SOCKETS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub http_executor_domain_sockets: bool,
    /// Where that socket goes (at most 107 bytes; default: `agent.sock` in the work
    /// directory, or TCP only when that path is too long).
    #[arg(
        long = "domain-socket-location",
        alias = "domain_socket_location",
        env = "MESETA_DOMAIN_SOCKET_LOCATION"
    )]
    pub domain_socket_location: Option<PathBuf>,
}

impl AgentFlags {
    pub fn into_config(self) -> Result<meseta_agent::AgentConfig> {
        let work_dir = self
            .work_dir
            .unwrap_or_else(|| default_work_dir().join("agent"));
        agent_config(
            self.ip,
            self.port,
            self.hostname,
            self.master,
            work_dir,
            self.common,
        )
    }
}

fn agent_config(
    ip: IpAddr,
    port: u16,
    hostname: Option<String>,
    master: String,
    work_dir: PathBuf,
    common: AgentCommonFlags,
) -> Result<meseta_agent::AgentConfig> {
    let launcher = std::env::current_exe().context("finding the meseta binary")?;
    let executor_auth = executor_auth(
        common.executor_secret_key.as_deref(),
        common.authenticate_http_executors,
    )?;
    Ok(meseta_agent::AgentConfig {
        ip,
        port,
        hostname,
        master,
        work_dir,
        resources: common.resources,
        attributes: common.attributes,
        isolation: common.isolation,
        containerizer: meseta_agent::ContainerizerOptions {
            cgroups_enable_cfs: common.cgroups_enable_cfs,
            enforce_container_disk_quota: common.enforce_container_disk_quota,
            container_disk_watch_interval: common.container_disk_watch_interval,
        },
        recover: common.recover.parse().map_err(anyhow::Error::msg)?,
        reconfiguration_policy: common.reconfiguration_policy,
        executor_registration_timeout: common.executor_registration_timeout,
        executor_shutdown_grace_period: common.executor_shutdown_grace_period,
        meseta_binary: launcher,
        images: meseta_agent::ImageOptions {
            registry: common.registry.config()?,
            backend: common.image_provisioner_backend,
            gc_interval: common.image_gc_interval,
            gc_excluded: common.image_gc_excluded_images,
        },
        fetcher: meseta_agent::FetcherOptions {
            cache_size: common.fetcher_cache_size,
            frameworks_home: common.frameworks_home,
            stall_timeout: common.fetcher_stall_timeout,
        },
        executor_auth,
        gc: meseta_agent::GcOptions {
            policy: meseta_agent::GcPolicy {
                delay: common.gc_delay,
                disk_headroom: common.gc_disk_headroom,
            },
            disk_watch_interval: common.disk_watch_interval,
        },
        http_executor_domain_sockets: common.http_executor_domain_sockets,
        domain_socket_location: common.domain_socket_location,
    })
}

/// The executor token signer from `--executor-secret-key`, required by
/// `--authenticate-http-executors`.
fn executor_auth(
    key_file: Option<&std::path::Path>,
    required: bool,
) -> Result<Option<std::sync::Arc<meseta_agent::executor_auth::ExecutorAuth>>> {
    let Some(path) = key_file else {
        anyhow::ensure!(
            !required,
            "--authenticate-http-executors needs --executor-secret-key, the file holding the key that executor tokens are signed with"
        );
        return Ok(None);
    };
    let secret = std::fs::read(path)
        .with_context(|| format!("reading --executor-secret-key {}", path.display()))?;
    let auth = meseta_agent::executor_auth::ExecutorAuth::new(&secret, path.into(), required)?;
    Ok(Some(std::sync::Arc::new(auth)))
}

#[derive(Args, Clone, Debug)]
pub struct LocalFlags {
    /// The master's port; the agent listens on the next one unless `--agent-port` is given.
    #[arg(long, env = "MESETA_PORT", default_value_t = 5050)]
    pub port: u16,
    /// The agent's port.
    #[arg(long = "agent-port", alias = "agent_port", env = "MESETA_AGENT_PORT")]
    pub agent_port: Option<u16>,
    /// Where the master and agent keep their state (`master/` and `agent/` below it).
    #[arg(long = "work-dir", alias = "work_dir", env = "MESETA_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// The master's role weights, `role1=2,role2=0.5`.
    #[arg(long, env = "MESETA_WEIGHTS", value_parser = parse_weights)]
    pub weights: Option<BTreeMap<String, f64>>,
    #[command(flatten)]
    pub agent: AgentCommonFlags,
}

impl LocalFlags {
    /// Runs the master and the agent until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let ip: IpAddr = "127.0.0.1".parse().expect("literal");
        let work_dir = self.work_dir.unwrap_or_else(default_work_dir);
        let agent_port = match self.agent_port {
            Some(p) => p,
            None => self
                .port
                .checked_add(1)
                .context("--port leaves no room for the agent's port")?,
        };
        let master = MasterFlags {
            ip,
            port: self.port,
            hostname: None,
            work_dir: Some(work_dir.join("master")),
            offer_timeout: None,
            allocation_interval: Duration::from_secs(1),
            allocation_spacing: Duration::from_millis(20),
            agent_ping_timeout: Duration::from_secs(75),
            agent_reregister_timeout: Duration::from_secs(600),
            weights: self.weights,
            min_allocatable_resources: MinAllocatable::default(),
        }
        .into_config()?;
        let agent = agent_config(
            ip,
            agent_port,
            None,
            format!("127.0.0.1:{}", self.port),
            work_dir.join("agent"),
            self.agent,
        )?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_all = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut master_task = tokio::spawn(meseta_master::run(master, stopped(stop_rx.clone())));
        let mut agent_task = tokio::spawn(meseta_agent::run(agent, stopped(stop_rx)));
        // Whichever ends first (an error, or the shutdown) stops the other.
        let (first, other) = tokio::select! {
            m = &mut master_task => (m, agent_task),
            a = &mut agent_task => (a, master_task),
        };
        let _ = stop_all.send(true);
        let second = other.await;
        first??;
        second??;
        Ok(())
    }
}

fn parse_reconfiguration_policy(
    text: &str,
) -> Result<meseta_agent::reconfiguration::ReconfigurationPolicy, String> {
    text.parse()
}
