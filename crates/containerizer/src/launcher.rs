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
    /// No executable of its own (`shell: false` without a `value`): the image's
    /// Entrypoint or Cmd, with these arguments (`docker/runtime`, see [`crate::runtime`]).
    Image { arguments: Vec<String> },
}

/// The resource limits of a container (from its executor's and tasks' resources).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub cpus: Option<f64>,
    pub mem_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
}

/// A bind mount into the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The source on the host (for sandbox-path volumes, already resolved in the sandbox).
    pub host_path: PathBuf,
    /// Where it appears: absolute, or relative to the sandbox.
    pub container_path: PathBuf,
    pub read_only: bool,
    pub source: VolumeSource,
    /// Whether the launcher gives `host_path` itself (not what it holds) to the
    /// container's user when that user is not root, as Mesos does for a sandbox-path
    /// volume it has just created and for a persistent volume when a container starts
    /// using it.
    #[serde(default)]
    pub to_user: bool,
}

/// Where a volume comes from, which says what mounts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// Anywhere on the host (`volume/host_path`).
    HostPath,
    /// In the sandbox (`volume/sandbox_path`).
    SandboxPath,
    /// A persistent volume's directory: bind-mounted with `filesystem/linux`; otherwise
    /// the agent links it into the sandbox (`filesystem/posix`), and launchers leave it.
    Persistent,
}

/// What an image's config asks of the process (`docker/runtime`): each part applies only
/// where the task does not say otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// Everything a launcher needs to start a container's first process.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    /// The agent's container id (a UUID): names the container's cgroup and run directory.
    pub container_id: String,
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
    pub limits: Limits,
    /// The root filesystem of the container's image; `None` runs on the host's.
    pub rootfs: Option<crate::image::Rootfs>,
    /// The image's config, applied with `docker/runtime`.
    pub image: Option<ImageConfig>,
    pub volumes: Vec<Volume>,
    /// The container's own hostname (a UTS namespace), when asked for.
    pub hostname: Option<String>,
    /// Capabilities asked for by the task (`linux/capabilities`), Mesos names.
    pub capabilities: Option<Vec<String>>,
    /// `(RLMT_ name, soft, hard)` resource limits (`posix/rlimits`); `None` is unlimited.
    pub rlimits: Vec<(String, Option<u64>, Option<u64>)>,
}

impl LaunchSpec {
    /// A spec for `program` in `sandbox` (stdout/stderr files there), with no limits,
    /// image, volumes or user: callers fill in what they need.
    pub fn new(container_id: &str, program: Program, sandbox: &std::path::Path) -> LaunchSpec {
        LaunchSpec {
            container_id: container_id.to_string(),
            program,
            env: Vec::new(),
            working_dir: sandbox.to_path_buf(),
            stdout: sandbox.join("stdout"),
            stderr: sandbox.join("stderr"),
            user: None,
            limits: Limits::default(),
            rootfs: None,
            image: None,
            volumes: Vec::new(),
            hostname: None,
            capabilities: None,
            rlimits: Vec::new(),
        }
    }

    /// What this spec needs beyond plain processes, for launchers that cannot do it.
    pub fn needs_isolation(&self) -> Option<&'static str> {
        if self.rootfs.is_some() {
            Some("an image")
        } else if self
            .volumes
            .iter()
            .any(|v| v.source != VolumeSource::Persistent)
        {
            Some("volumes")
        } else if self.hostname.is_some() {
            Some("a hostname")
        } else {
            None
        }
    }
}

/// Why a launcher ended a container, or could not start it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limitation {
    /// It went over its memory limit.
    Memory,
    /// Its sandbox went over its disk quota.
    Disk,
    /// It could not be created.
    LaunchFailed,
}

/// How a container ended when its launcher had a say in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerTermination {
    pub limitation: Limitation,
    pub message: String,
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
    /// The limits enforced on the container (cgroups), when there are some.
    pub mem_limit_bytes: Option<u64>,
    pub cpus_limit: Option<f64>,
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
    /// A volume could not be given to the container's user.
    #[error("giving volume {0} to the task's user: {1}")]
    VolumeOwner(PathBuf, std::io::Error),
    /// The process could not be started.
    #[error("starting {0}: {1}")]
    Spawn(String, std::io::Error),
    /// Signalling the container failed.
    #[error("signalling process {0}: {1}")]
    Signal(i32, String),
    /// The launcher cannot give the container what it asks for.
    #[error("{0}")]
    Unsupported(String),
    /// Preparing the container's run directory or spec failed.
    #[error("preparing container {0}: {1}")]
    Prepare(String, String),
}

/// Starts and controls containers. Implementations must be cheap to share (`Arc`).
pub trait Launcher: Send + Sync + 'static {
    /// Starts a container. Must be called within a Tokio runtime.
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, LaunchError>;

    /// Re-adopts a container started before an agent restart; `None` when it is gone (or
    /// its pid now names another process).
    fn recover(&self, process: ProcessRef) -> Option<Launched>;

    /// Whether the launcher bind-mounts the persistent volumes of the containers it
    /// starts (`VolumeSource::Persistent`); when it does not, the agent links them into
    /// the sandbox.
    fn mounts_persistent_volumes(&self) -> bool {
        false
    }

    /// Sends `signal` to every process of the container.
    fn signal(&self, process: ProcessRef, signal: Signal) -> Result<(), LaunchError>;

    /// Current usage of the container, `None` when it is gone.
    fn usage(&self, process: ProcessRef) -> Option<Usage>;

    /// Once the container's exit future resolved: why the launcher ended it (a limit) or
    /// could not start it, `None` when it simply exited. Releases what the launcher kept
    /// for the container, so call it once.
    fn termination(&self, _process: ProcessRef) -> Option<ContainerTermination> {
        None
    }

    /// On agent start, after recovering the known containers: destroys every container
    /// left by an earlier run that is not in `known`.
    fn destroy_unknown(&self, _known: &[ProcessRef]) {}
}
