//! How an executor is launched: the command executor's synthesized `ExecutorInfo` for
//! command tasks, the executor's environment (exactly the variables Mesos sets), and the
//! containerizer [`LaunchSpec`] built from them (limits from the resources, volumes,
//! hostname, capabilities and rlimits from the `ContainerInfo`, the image's root
//! filesystem from [`provision_image`]).

use crate::book::Termination;
use meseta_api::container::{ContainerInfo, VolumeMode, VolumeOrigin};
use meseta_api::{
    CommandInfo, ExecutorId, ExecutorInfo, ExecutorType, FrameworkId, FrameworkInfo, Reason,
    Resources, TaskInfo, TaskState,
};
use meseta_containerizer::image::{Provisioned, Rootfs};
use meseta_containerizer::runtime;
use meseta_containerizer::{
    ContainerTermination, ImageConfig, LaunchSpec, Limitation, Limits, Program, Volume,
    VolumeSource,
};
use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// How long a checkpointing executor keeps retrying to subscribe after losing its agent.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The longest backoff between an executor's subscription attempts.
pub const SUBSCRIPTION_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// What the command executor adds to its task's resources (Mesos's defaults).
const COMMAND_EXECUTOR_CPUS: f64 = 0.1;
const COMMAND_EXECUTOR_MEM_MB: f64 = 32.0;

/// The command executor's `ExecutorInfo` for a task without one, as Mesos builds it:
/// the task id as executor id and source, a descriptive name, and `meseta executor` as
/// the command, carrying the task command's environment, uris and user, and the task's
/// `ContainerInfo` (the executor runs in the task's container).
pub fn command_executor_info(
    task: &TaskInfo,
    framework_id: &FrameworkId,
    meseta_binary: &Path,
) -> ExecutorInfo {
    let command = task.command.as_ref();
    let described = match command {
        None => "(Command: NO COMMAND)".to_string(),
        Some(c) if c.shell => match &c.value {
            None => "(Command: NO COMMAND)".to_string(),
            Some(v) if v.chars().count() > 15 => format!(
                "(Command: sh -c '{}...')",
                v.chars().take(12).collect::<String>()
            ),
            Some(v) => format!("(Command: sh -c '{v}')"),
        },
        Some(c) => {
            let mut parts = vec![c.value.clone().unwrap_or_default()];
            parts.extend(c.arguments.iter().cloned());
            format!("(Command: [{}])", parts.join(", "))
        }
    };
    let binary = meseta_binary.display().to_string();
    ExecutorInfo {
        kind: None,
        executor_id: ExecutorId::new(task.task_id.as_str()),
        framework_id: Some(framework_id.clone()),
        command: Some(CommandInfo {
            uris: command.map(|c| c.uris.clone()).unwrap_or_default(),
            environment: command.and_then(|c| c.environment.clone()),
            shell: false,
            value: Some(binary.clone()),
            arguments: vec![binary, "executor".to_string()],
            user: command.and_then(|c| c.user.clone()),
        }),
        container: task.container.clone(),
        resources: Vec::new(),
        name: Some(format!(
            "Command Executor (Task: {}) {described}",
            task.task_id
        )),
        source: Some(task.task_id.to_string()),
        data: None,
        discovery: task.discovery.clone(),
        shutdown_grace_period: None,
        labels: task.labels.clone(),
    }
}

/// The executor as it is run: a DEFAULT executor (a task group's, which has no command)
/// runs `meseta executor --default`, as Mesos runs its `mesos-default-executor`; the
/// ExecutorInfo the agent keeps and shows is left as the framework gave it.
pub fn runnable<'a>(executor: &'a ExecutorInfo, meseta_binary: &Path) -> Cow<'a, ExecutorInfo> {
    if executor.kind != Some(ExecutorType::Default) || executor.command.is_some() {
        return Cow::Borrowed(executor);
    }
    let binary = meseta_binary.display().to_string();
    Cow::Owned(ExecutorInfo {
        command: Some(CommandInfo {
            uris: Vec::new(),
            environment: None,
            shell: false,
            value: Some(binary.clone()),
            arguments: vec![binary, "executor".to_string(), "--default".to_string()],
            user: None,
        }),
        ..executor.clone()
    })
}

/// What the environment of one executor run depends on.
pub struct RunContext<'a> {
    pub container_id: &'a str,
    /// The executor's and its tasks' resources: the container's limits.
    pub resources: Resources,
    pub agent_id: &'a str,
    /// The agent's `ip:port`.
    pub endpoint: &'a str,
    /// The agent's executor API socket, when it serves one.
    pub domain_socket: Option<&'a Path>,
    pub framework: &'a FrameworkInfo,
    pub executor: &'a ExecutorInfo,
    pub directory: &'a Path,
    pub command_executor: bool,
    pub shutdown_grace_period: Duration,
    /// Whether the agent runs as root and so switches to the executor's user.
    pub switch_user: bool,
    /// The agent's own environment, inherited by the executor.
    pub inherited: Vec<(String, String)>,
    /// The image's root filesystem, provisioned before the launch.
    pub image: Option<&'a Provisioned>,
    /// The agent's work directory, where persistent volumes live.
    pub work_dir: &'a Path,
    /// The executor's token, when the agent gives executors one.
    pub authentication_token: Option<&'a str>,
}

impl RunContext<'_> {
    /// The user the executor runs as: its command's, else the framework's.
    pub fn user(&self) -> String {
        self.executor
            .command
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_else(|| self.framework.user.clone())
    }

    /// The environment: the agent's own (less stale `MESOS_`/`LIBPROCESS_` variables and
    /// the image config meant for a command executor in an image),
    /// then Mesos's executor variables, then the executor command's variables.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .inherited
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("MESOS_")
                    && !k.starts_with("LIBPROCESS_")
                    && k != runtime::IMAGE_RUNTIME_VAR
            })
            .cloned()
            .collect();
        let mut set = |k: &str, v: String| {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v));
        };
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        let directory = self.directory.display().to_string();
        set(
            "MESOS_FRAMEWORK_ID",
            self.framework.id.clone().unwrap_or_default().to_string(),
        );
        set("MESOS_EXECUTOR_ID", self.executor.executor_id.to_string());
        set("MESOS_DIRECTORY", directory.clone());
        set("MESOS_SANDBOX", directory);
        set("MESOS_SLAVE_ID", self.agent_id.to_string());
        set("MESOS_AGENT_ID", self.agent_id.to_string());
        set("MESOS_SLAVE_PID", format!("slave(1)@{}", self.endpoint));
        set("MESOS_AGENT_ENDPOINT", self.endpoint.to_string());
        // An executor in an image's root filesystem cannot see the host's paths.
        if let (Some(socket), None) = (self.domain_socket, self.image) {
            set("MESOS_DOMAIN_SOCKET", socket.display().to_string());
        }
        set("MESOS_CHECKPOINT", flag(self.framework.checkpoint));
        set("MESOS_HTTP_COMMAND_EXECUTOR", flag(self.command_executor));
        set(
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
            meseta_api::duration::format(self.shutdown_grace_period),
        );
        if self.framework.checkpoint {
            set(
                "MESOS_RECOVERY_TIMEOUT",
                meseta_api::duration::format(RECOVERY_TIMEOUT),
            );
            set(
                "MESOS_SUBSCRIPTION_BACKOFF_MAX",
                meseta_api::duration::format(SUBSCRIPTION_BACKOFF_MAX),
            );
        }
        if let Some(token) = self.authentication_token {
            set(crate::executor_auth::TOKEN_VARIABLE, token.to_string());
        }
        set("LIBPROCESS_PORT", "0".to_string());
        if self.switch_user {
            let user = self.user();
            if let Ok(Some(found)) = nix::unistd::User::from_name(&user) {
                set("HOME", found.dir.display().to_string());
            }
            set("USER", user);
        }
        let variables = self
            .executor
            .command
            .as_ref()
            .and_then(|c| c.environment.as_ref());
        for v in variables
            .map(|e| e.variables.as_slice())
            .unwrap_or_default()
        {
            let is_value = v.kind.as_deref().is_none_or(|k| k == "VALUE");
            if let (true, Some(value)) = (is_value, &v.value) {
                set(&v.name, value.clone());
            }
        }
        env
    }

    /// The containerizer's launch spec for this run, or why there is none.
    pub fn launch_spec(&self) -> Result<LaunchSpec, String> {
        let command = self
            .executor
            .command
            .clone()
            .unwrap_or_else(|| CommandInfo::shell(""));
        let program = Program::from(&command);
        let container = match &self.executor.container {
            Some(raw) => Some(ContainerInfo::parse(raw)?),
            None => None,
        };
        let image = match &container {
            Some(info) => provision_image(info, self.image)?,
            None => None,
        };
        let (rootfs, image) = image.unzip();
        Ok(LaunchSpec {
            env: self.environment(),
            user: self.switch_user.then(|| self.user()),
            limits: self.limits(),
            rootfs,
            image,
            volumes: match &container {
                Some(info) => volumes(info, self.directory)?,
                None => Vec::new(),
            }
            .into_iter()
            .chain(crate::volumes::mounts(self.work_dir, &self.resources)?)
            .collect(),
            hostname: container.as_ref().and_then(|c| c.hostname.clone()),
            capabilities: container
                .as_ref()
                .and_then(|c| c.effective_capabilities())
                .map(<[String]>::to_vec),
            rlimits: container
                .as_ref()
                .and_then(|c| c.rlimit_info.as_ref())
                .map(|r| {
                    r.rlimits
                        .iter()
                        .map(|l| (l.kind.clone(), l.soft, l.hard))
                        .collect()
                })
                .unwrap_or_default(),
            ..LaunchSpec::new(self.container_id, program, self.directory)
        })
    }

    /// The container's limits: its resources, plus the command executor's own share.
    fn limits(&self) -> Limits {
        let overhead = |v: f64| if self.command_executor { v } else { 0.0 };
        let cpus = self.resources.scalar("cpus");
        let mem = self.resources.scalar("mem");
        let disk = self.resources.scalar("disk");
        let mb = |v: f64| (v * 1024.0 * 1024.0) as u64;
        Limits {
            cpus: (cpus > 0.0).then(|| cpus + overhead(COMMAND_EXECUTOR_CPUS)),
            mem_bytes: (mem > 0.0).then(|| mb(mem + overhead(COMMAND_EXECUTOR_MEM_MB))),
            disk_bytes: (disk > 0.0).then(|| mb(disk)),
        }
    }
}

/// The root filesystem and config of the image `info` asks for; `None` without one. The
/// agent provisions it (`crate::images`) before it builds the spec.
pub fn provision_image(
    info: &ContainerInfo,
    provisioned: Option<&Provisioned>,
) -> Result<Option<(Rootfs, ImageConfig)>, String> {
    match (crate::images::requested(info)?, provisioned) {
        (None, _) => Ok(None),
        (Some(_), Some(p)) => Ok(Some((p.rootfs.clone(), p.config.clone()))),
        (Some(request), None) => Err(format!(
            "image '{}' was not provisioned before the launch",
            request.name
        )),
    }
}

/// The volumes of `info`, resolved on this host: sandbox paths inside `sandbox` (created
/// when missing, and then given to the task's user by the launcher, as Mesos does),
/// relative host paths too.
fn volumes(info: &ContainerInfo, sandbox: &Path) -> Result<Vec<Volume>, String> {
    // The directory, and whether it was made now.
    let in_sandbox = |path: &str| -> Result<(PathBuf, bool), String> {
        let relative = Path::new(path);
        if relative.is_absolute() || relative.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "Sandbox path '{path}' must be relative and stay inside the sandbox"
            ));
        }
        let full = sandbox.join(relative);
        let made = std::fs::symlink_metadata(&full).is_err();
        std::fs::create_dir_all(&full).map_err(|e| format!("Creating {}: {e}", full.display()))?;
        Ok((full, made))
    };
    info.volumes
        .iter()
        .map(|v| {
            let ((host_path, to_user), source) = match v.origin()? {
                VolumeOrigin::HostPath(p) if Path::new(p).is_absolute() => {
                    ((PathBuf::from(p), false), VolumeSource::HostPath)
                }
                VolumeOrigin::HostPath(p) | VolumeOrigin::SandboxPath(p) => {
                    (in_sandbox(p)?, VolumeSource::SandboxPath)
                }
            };
            Ok(Volume {
                host_path,
                container_path: PathBuf::from(&v.container_path),
                read_only: v.mode == VolumeMode::ReadOnly,
                source,
                to_user,
            })
        })
        .collect()
}

/// The terminal state the agent reports for tasks whose container the launcher ended.
pub fn limitation_termination(t: ContainerTermination) -> Termination {
    let reason = match t.limitation {
        Limitation::Memory => Reason::ReasonContainerLimitationMemory,
        Limitation::Disk => Reason::ReasonContainerLimitationDisk,
        Limitation::LaunchFailed => Reason::ReasonContainerLaunchFailed,
    };
    let message = match t.limitation {
        Limitation::LaunchFailed => format!("Failed to launch container: {}", t.message),
        _ => t.message,
    };
    Termination {
        state: TaskState::TaskFailed,
        reason,
        message,
    }
}

/// The executor's shutdown grace period: its own, else the agent's flag.
pub fn grace_period(executor: &ExecutorInfo, default: Duration) -> Duration {
    executor
        .shutdown_grace_period
        .map_or(default, |d| d.as_duration())
}

/// The sandbox of a run, for the launch context's `directory`.
pub fn sandbox_of(
    work_dir: &Path,
    agent_id: &str,
    framework_id: &FrameworkId,
    executor: &ExecutorId,
    container: &str,
) -> PathBuf {
    crate::paths::sandbox(
        work_dir,
        agent_id,
        &framework_id.value,
        &executor.value,
        container,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(cmd: serde_json::Value) -> TaskInfo {
        serde_json::from_value(
            json!({"name":"t","task_id":{"value":"t1"},"agent_id":{"value":"A"},"command":cmd}),
        )
        .unwrap()
    }

    fn framework(checkpoint: bool) -> FrameworkInfo {
        serde_json::from_value(
            json!({"user":"nobody","name":"fw","id":{"value":"F-0000"},"checkpoint":checkpoint}),
        )
        .unwrap()
    }

    #[test]
    fn command_executor_is_named_like_mesos() {
        let fid = FrameworkId::new("F-0000");
        let bin = Path::new("/usr/bin/meseta");
        let e = command_executor_info(&task(json!({"value":"sleep 5"})), &fid, bin);
        assert_eq!(
            e.name.as_deref(),
            Some("Command Executor (Task: t1) (Command: sh -c 'sleep 5')")
        );
        assert_eq!(e.executor_id.as_str(), "t1");
        assert_eq!(e.source.as_deref(), Some("t1"));
        let c = e.command.unwrap();
        assert!(!c.shell);
        assert_eq!(c.arguments, ["/usr/bin/meseta", "executor"]);
        let long = command_executor_info(
            &task(json!({"value":"echo a very long command"})),
            &fid,
            bin,
        );
        assert_eq!(
            long.name.as_deref(),
            Some("Command Executor (Task: t1) (Command: sh -c 'echo a very ...')")
        );
        let argv = command_executor_info(
            &task(
                json!({"shell":false,"value":"/bin/ls","arguments":["ls","-l"],
            "environment":{"variables":[{"name":"A","value":"1"}]},"user":"bob"}),
            ),
            &fid,
            bin,
        );
        assert_eq!(
            argv.name.as_deref(),
            Some("Command Executor (Task: t1) (Command: [/bin/ls, ls, -l])")
        );
        let c = argv.command.unwrap();
        assert_eq!(c.user.as_deref(), Some("bob"));
        assert_eq!(c.environment.unwrap().variables[0].name, "A");
    }

    #[test]
    fn a_default_executor_runs_meseta_executor_default() {
        let bin = Path::new("/usr/bin/meseta");
        let default: ExecutorInfo = serde_json::from_value(
            json!({"type":"DEFAULT","executor_id":{"value":"g"},"name":"group"}),
        )
        .unwrap();
        let run = runnable(&default, bin);
        let command = run.command.as_ref().unwrap();
        assert!(!command.shell);
        assert_eq!(command.value.as_deref(), Some("/usr/bin/meseta"));
        assert_eq!(
            command.arguments,
            ["/usr/bin/meseta", "executor", "--default"]
        );
        assert_eq!(run.name.as_deref(), Some("group"));
        let custom: ExecutorInfo = serde_json::from_value(
            json!({"executor_id":{"value":"c"},"command":{"value":"./run"}}),
        )
        .unwrap();
        assert!(matches!(runnable(&custom, bin), Cow::Borrowed(_)));
    }

    fn env_of(ctx: &RunContext) -> std::collections::HashMap<String, String> {
        ctx.environment().into_iter().collect()
    }

    #[test]
    fn environment_has_what_executors_read() {
        let executor: ExecutorInfo = serde_json::from_value(json!({"executor_id":{"value":"e1"},
            "command":{"value":"./run","environment":{"variables":[{"name":"PATH","value":"/opt"},
            {"name":"S","type":"SECRET","secret":{}}]}}}))
        .unwrap();
        let fw = framework(true);
        let ctx = RunContext {
            container_id: "c1",
            resources: Resources::new(),
            agent_id: "A-S0",
            endpoint: "127.0.0.1:5051",
            domain_socket: Some(Path::new("/w/agent.sock")),
            framework: &fw,
            executor: &executor,
            directory: Path::new("/w/sb"),
            command_executor: false,
            shutdown_grace_period: Duration::from_secs(5),
            switch_user: false,
            inherited: vec![
                ("PATH".into(), "/bin".into()),
                ("MESOS_STALE".into(), "x".into()),
                (runtime::IMAGE_RUNTIME_VAR.into(), "{}".into()),
                ("TERM".into(), "xterm".into()),
            ],
            image: None,
            work_dir: Path::new("/w"),
            authentication_token: Some("t0k3n"),
        };
        let env = env_of(&ctx);
        assert_eq!(env["MESOS_FRAMEWORK_ID"], "F-0000");
        assert_eq!(env["MESOS_EXECUTOR_ID"], "e1");
        assert_eq!(env["MESOS_DIRECTORY"], "/w/sb");
        assert_eq!(env["MESOS_SANDBOX"], "/w/sb");
        assert_eq!(env["MESOS_SLAVE_ID"], "A-S0");
        assert_eq!(env["MESOS_SLAVE_PID"], "slave(1)@127.0.0.1:5051");
        assert_eq!(env["MESOS_AGENT_ENDPOINT"], "127.0.0.1:5051");
        assert_eq!(env["MESOS_DOMAIN_SOCKET"], "/w/agent.sock");
        assert_eq!(env["MESOS_CHECKPOINT"], "1");
        assert_eq!(env["MESOS_HTTP_COMMAND_EXECUTOR"], "0");
        assert_eq!(env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"], "5secs");
        assert_eq!(env["MESOS_RECOVERY_TIMEOUT"], "15mins");
        assert_eq!(env["MESOS_SUBSCRIPTION_BACKOFF_MAX"], "2secs");
        assert_eq!(env["LIBPROCESS_PORT"], "0");
        assert_eq!(env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"], "t0k3n");
        assert_eq!(env["PATH"], "/opt", "the command's variables win");
        assert_eq!(env["TERM"], "xterm");
        assert!(
            !env.contains_key("MESOS_STALE") && !env.contains_key("S") && !env.contains_key("USER")
        );
        assert!(!env.contains_key(runtime::IMAGE_RUNTIME_VAR));
        let spec = ctx.launch_spec().unwrap();
        assert_eq!(spec.program, Program::Shell("./run".into()));
        assert_eq!(spec.stdout, Path::new("/w/sb/stdout"));
        assert_eq!(spec.user, None);

        let fw = framework(false);
        let ctx = RunContext {
            framework: &fw,
            command_executor: true,
            switch_user: true,
            authentication_token: None,
            ..ctx
        };
        let env = env_of(&ctx);
        assert!(!env.contains_key("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"));
        assert_eq!(env["MESOS_CHECKPOINT"], "0");
        assert_eq!(env["MESOS_HTTP_COMMAND_EXECUTOR"], "1");
        assert!(!env.contains_key("MESOS_RECOVERY_TIMEOUT"));
        assert_eq!(env["USER"], "nobody");
        assert_eq!(ctx.launch_spec().unwrap().user.as_deref(), Some("nobody"));

        // An executor without a value runs its image's entrypoint with its arguments.
        let mut image_default = executor.clone();
        image_default.command =
            Some(serde_json::from_value(json!({"shell": false, "arguments": ["-v"]})).unwrap());
        let digest = meseta_containerizer::image::Digest::of(b"layer");
        let provisioned = Provisioned {
            rootfs: Rootfs {
                path: "/w/rootfs".into(),
                overlay: None,
            },
            config: Default::default(),
            image: meseta_containerizer::image::ImageRecord {
                name: "busybox:latest".into(),
                manifest: digest.clone(),
                config: digest.clone(),
                layers: vec![digest],
                size: 5,
            },
        };
        let ctx = RunContext {
            executor: &image_default,
            image: Some(&provisioned),
            ..ctx
        };
        assert!(
            !env_of(&ctx).contains_key("MESOS_DOMAIN_SOCKET"),
            "an executor in an image's root filesystem cannot see the host's socket"
        );
        assert_eq!(
            ctx.launch_spec().unwrap().program,
            Program::Image {
                arguments: vec!["-v".into()]
            }
        );
    }

    #[test]
    fn container_info_becomes_limits_volumes_and_hostname() {
        let sandbox = tempfile::tempdir().unwrap();
        let task = task(json!({"value":"sleep 5"}));
        let mut task = task;
        task.container = Some(json!({"type":"MESOS","hostname":"box",
            "volumes":[{"container_path":"/data","host_path":"/srv","mode":"RO"},
                {"container_path":"out","mode":"RW","source":{"type":"SANDBOX_PATH",
                    "sandbox_path":{"type":"SELF","path":"shared"}}}],
            "linux_info":{"effective_capabilities":{"capabilities":["NET_RAW"]}},
            "rlimit_info":{"rlimits":[{"type":"RLMT_NOFILE","soft":10,"hard":20}]}}));
        let fid = FrameworkId::new("F-0000");
        let executor = command_executor_info(&task, &fid, Path::new("/usr/bin/meseta"));
        let fw = framework(false);
        let mut resources = Resources::new();
        resources.add(&meseta_api::Resource::scalar("cpus", 0.5));
        resources.add(&meseta_api::Resource::scalar("mem", 64.0));
        let ctx = RunContext {
            container_id: "c1",
            resources,
            agent_id: "A",
            endpoint: "127.0.0.1:5051",
            domain_socket: None,
            framework: &fw,
            executor: &executor,
            directory: sandbox.path(),
            command_executor: true,
            shutdown_grace_period: Duration::from_secs(5),
            switch_user: false,
            inherited: vec![],
            image: None,
            work_dir: Path::new("/w"),
            authentication_token: None,
        };
        let spec = ctx.launch_spec().unwrap();
        assert_eq!(spec.container_id, "c1");
        assert_eq!(spec.hostname.as_deref(), Some("box"));
        assert_eq!(spec.limits.cpus, Some(0.6), "plus the executor's 0.1");
        assert_eq!(
            spec.limits.mem_bytes,
            Some(96 << 20),
            "plus the executor's 32MB"
        );
        assert_eq!(spec.limits.disk_bytes, None);
        assert_eq!(spec.volumes.len(), 2);
        assert!(spec.volumes[0].read_only);
        assert_eq!(spec.volumes[0].source, VolumeSource::HostPath);
        assert_eq!(spec.volumes[1].source, VolumeSource::SandboxPath);
        assert_eq!(spec.volumes[1].host_path, sandbox.path().join("shared"));
        assert!(sandbox.path().join("shared").is_dir(), "created");
        assert!(!spec.volumes[0].to_user, "a host path stays as it is");
        assert!(spec.volumes[1].to_user, "made now: the task's user gets it");
        let again = ctx.launch_spec().unwrap();
        assert!(
            !again.volumes[1].to_user,
            "it was there already: left as it is"
        );
        assert_eq!(spec.capabilities, Some(vec!["NET_RAW".to_string()]));
        assert_eq!(
            spec.rlimits,
            vec![("RLMT_NOFILE".to_string(), Some(10), Some(20))]
        );

        let mut with_image = executor.clone();
        with_image.container = Some(
            json!({"type":"MESOS","mesos":{"image":{"type":"DOCKER","docker":{"name":"busybox"}}}}),
        );
        let ctx = RunContext {
            executor: &with_image,
            ..ctx
        };
        let err = ctx.launch_spec().unwrap_err();
        assert!(err.contains("'busybox'"), "{err}");
        let mut escaping = executor.clone();
        escaping.container = Some(json!({"volumes":[{"container_path":"x","mode":"RW",
            "source":{"type":"SANDBOX_PATH","sandbox_path":{"path":"../up"}}}]}));
        let ctx = RunContext {
            executor: &escaping,
            ..ctx
        };
        assert!(ctx.launch_spec().unwrap_err().contains("../up"));
    }

    #[test]
    fn persistent_volumes_among_the_resources_are_mounted() {
        let fid = FrameworkId::new("F-0000");
        let executor = command_executor_info(
            &task(json!({"value":"true"})),
            &fid,
            Path::new("/usr/bin/meseta"),
        );
        let mut volume: meseta_api::Resource = serde_json::from_value(json!({
            "name":"disk","type":"SCALAR","scalar":{"value":8},
            "reservations":[{"type":"DYNAMIC","role":"r"}],
            "disk":{"persistence":{"id":"v1"},"volume":{"container_path":"data","mode":"RO"}}}))
        .unwrap();
        volume.validate().unwrap();
        let mut resources = Resources::new();
        resources.add(&meseta_api::Resource::scalar("cpus", 0.5));
        resources.add(&volume);
        let fw = framework(false);
        let ctx = RunContext {
            container_id: "c1",
            resources,
            agent_id: "A",
            endpoint: "127.0.0.1:5051",
            domain_socket: None,
            framework: &fw,
            executor: &executor,
            directory: Path::new("/w/sb"),
            command_executor: true,
            shutdown_grace_period: Duration::from_secs(5),
            switch_user: false,
            inherited: vec![],
            image: None,
            work_dir: Path::new("/w"),
            authentication_token: None,
        };
        assert_eq!(
            ctx.launch_spec().unwrap().volumes,
            [Volume {
                host_path: "/w/volumes/roles/r/v1".into(),
                container_path: "data".into(),
                read_only: true,
                source: VolumeSource::Persistent,
                to_user: true,
            }]
        );
    }

    #[test]
    fn limitations_fail_the_task_with_their_reason() {
        let t = limitation_termination(ContainerTermination {
            limitation: Limitation::Memory,
            message: "Memory limit exceeded: Requested: 64MB".into(),
        });
        assert_eq!(t.state, TaskState::TaskFailed);
        assert_eq!(t.reason, Reason::ReasonContainerLimitationMemory);
        assert!(t.message.contains("64MB"));
        let t = limitation_termination(ContainerTermination {
            limitation: Limitation::LaunchFailed,
            message: "no such file".into(),
        });
        assert_eq!(t.reason, Reason::ReasonContainerLaunchFailed);
        assert_eq!(t.message, "Failed to launch container: no such file");
    }

    #[test]
    fn grace_period_prefers_the_executors_own() {
        let mut e: ExecutorInfo =
            serde_json::from_value(json!({"executor_id":{"value":"e"}})).unwrap();
        assert_eq!(
            grace_period(&e, Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        e.shutdown_grace_period = Some(meseta_api::DurationInfo {
            nanoseconds: 2_000_000_000,
        });
        assert_eq!(
            grace_period(&e, Duration::from_secs(5)),
            Duration::from_secs(2)
        );
    }
}
