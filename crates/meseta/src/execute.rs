//! `meseta execute`: a one-shot framework, like `mesos-execute`. It subscribes (with the
//! TASK_KILLING_STATE and PARTITION_AWARE capabilities, no checkpointing, failover timeout
//! 0), launches one task on the first offer that fits, prints every state change, streams
//! the task's stdout and stderr from its sandbox while it runs, tears the framework down
//! when the task ends, and exits with the task's exit status. Ctrl-C kills the task and
//! waits for TASK_KILLED; a second Ctrl-C stops waiting.

use anyhow::{bail, Context, Result};
use clap::Args;
use meseta_api::scheduler::{Event, Offers};
use meseta_api::{
    Capability, CapabilityType, CommandInfo, Environment, EnvironmentVariable, FrameworkInfo,
    TaskId, TaskInfo, TaskState, TaskStatus,
};
use meseta_scheduler::offers::take_scalars;
use meseta_scheduler::sandbox::Sandbox;
use meseta_scheduler::{Config, Scheduler};
use std::io::Write;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

/// How long to keep trying to subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the task's output is fetched.
const OUTPUT_POLL: Duration = Duration::from_millis(500);
/// The most output fetched per request.
const OUTPUT_CHUNK: u64 = 64 * 1024;
/// Exit code after a Ctrl-C that did not let the task end.
const INTERRUPTED: i32 = 130;

#[derive(Args, Clone, Debug)]
pub struct ExecuteFlags {
    /// The master, `host:port`.
    #[arg(long, env = "MESETA_MASTER", default_value = "127.0.0.1:5050")]
    pub master: String,
    /// The command: a shell command line, or the executable with `--no-shell`.
    #[arg(long, short = 'c')]
    pub command: String,
    /// An argument for the executable (with `--no-shell`); repeat for more.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Run the command with `sh -c` (the default).
    #[arg(long, overrides_with = "no_shell")]
    pub shell: bool,
    /// Execute the command directly, with the `--arg`s as its arguments.
    #[arg(long = "no-shell", overrides_with = "shell")]
    pub no_shell: bool,
    /// The task's name; its id is the name and a random suffix.
    #[arg(long, default_value = "meseta-execute")]
    pub name: String,
    /// CPUs for the task.
    #[arg(long, default_value_t = 0.1)]
    pub cpus: f64,
    /// Memory for the task, in MB.
    #[arg(long, default_value_t = 32.0)]
    pub mem: f64,
    /// Disk for the task, in MB (none by default).
    #[arg(long)]
    pub disk: Option<f64>,
    /// An environment variable for the task, `NAME=VALUE`; repeat for more.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The framework's name.
    #[arg(
        long = "framework-name",
        alias = "framework_name",
        default_value = "meseta-execute"
    )]
    pub framework_name: String,
    /// The role to take resources from.
    #[arg(long, default_value = "*")]
    pub role: String,
    /// The user to run the task as (default: the current user).
    #[arg(long)]
    pub user: Option<String>,
    /// Kill the task after this long (`30secs`, `5mins`).
    #[arg(long = "kill-after", alias = "kill_after", value_parser = parse_duration)]
    pub kill_after: Option<Duration>,
    /// Run the task in this container image (a Docker image name such as `busybox`, or
    /// `registry:5000/repo:tag`), which the agent pulls when it lacks it. Needs an agent
    /// with the `filesystem/linux` isolator.
    #[arg(long)]
    pub image: Option<String>,
    /// A URI the agent fetches into the sandbox before the task starts (`http://`,
    /// `https://`, `file://` or an absolute path; archives are unpacked); repeat for more.
    #[arg(long = "uri", value_name = "URI")]
    pub uris: Vec<String>,
    /// Make the fetched URIs executable (mode 0755, never unpacked).
    #[arg(long = "uri-executable")]
    pub uri_executable: bool,
    /// Place fetched archives as they are, without unpacking them.
    #[arg(long = "uri-no-extract")]
    pub uri_no_extract: bool,
    /// Keep the fetched URIs in the agent's fetcher cache for later tasks.
    #[arg(long = "uri-cache")]
    pub uri_cache: bool,
    /// A host directory in the task's container, `HOST:CONTAINER[:ro|rw]` (read-write by
    /// default; a relative CONTAINER is in the sandbox); repeat for more. Needs an agent
    /// with the `volume/host_path` isolator.
    #[arg(long = "volume", value_name = "HOST:CONTAINER[:MODE]", value_parser = parse_volume)]
    pub volumes: Vec<VolumeFlag>,
}

/// One `--volume`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeFlag {
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
}

fn parse_volume(text: &str) -> Result<VolumeFlag, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, read_only) = match parts.as_slice() {
        [host, container] => (*host, *container, false),
        [host, container, "rw"] => (*host, *container, false),
        [host, container, "ro"] => (*host, *container, true),
        [_, _, mode] => return Err(format!("volume mode '{mode}' must be 'ro' or 'rw'")),
        _ => return Err(format!("'{text}' is not HOST:CONTAINER[:ro|rw]")),
    };
    if !host.starts_with('/') {
        return Err(format!("the host path '{host}' must be absolute"));
    }
    if container.is_empty() {
        return Err(format!("'{text}' names no container path"));
    }
    Ok(VolumeFlag {
        host_path: host.to_string(),
        container_path: container.to_string(),
        read_only,
    })
}

/// The task's `ContainerInfo` (MESOS, with the `--volume`s and `--image`), when it
/// needs one.
fn container_info(flags: &ExecuteFlags) -> Option<serde_json::Value> {
    if flags.volumes.is_empty() && flags.image.is_none() {
        return None;
    }
    let volumes: Vec<serde_json::Value> = flags
        .volumes
        .iter()
        .map(|v| {
            serde_json::json!({
                "container_path": v.container_path,
                "host_path": v.host_path,
                "mode": if v.read_only { "RO" } else { "RW" },
            })
        })
        .collect();
    let mut info = serde_json::json!({"type": "MESOS", "volumes": volumes});
    if let Some(image) = &flags.image {
        info["mesos"] = serde_json::json!({"image": {"type": "DOCKER", "docker": {"name": image}}});
    }
    Some(info)
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("'{text}' is not NAME=VALUE")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    meseta_api::duration::parse(text)
}

pub async fn run(flags: ExecuteFlags) -> Result<i32> {
    let mut config = Config::new(flags.master.clone(), framework_info(&flags)?);
    config.reconnect = false;
    config.give_up_after = Some(SUBSCRIBE_TIMEOUT);
    let (scheduler, mut events) = meseta_scheduler::subscribe(config)?;
    let mut interrupt = signal(SignalKind::interrupt()).context("handling Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut poll = tokio::time::interval(OUTPUT_POLL);
    let kill_at = flags.kill_after.map(|d| Instant::now() + d);
    let mut run = Execution::new(flags, scheduler);
    loop {
        let code = tokio::select! {
            event = events.next() => match event {
                None => bail!("the master ended the subscription"),
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("subscription failed")),
                Some(Ok(event)) => run.on_event(event).await?,
            },
            _ = interrupt.recv() => run.interrupt().await,
            _ = terminate.recv() => run.interrupt().await,
            _ = poll.tick(), if run.launched.is_some() => {
                run.output.fetch(&run.scheduler, run.launched.as_ref()).await;
                None
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now)),
                if kill_at.is_some() && !run.kill_requested => {
                eprintln!("Killing task '{}' after {:?}", run.task_id, run.flags.kill_after.unwrap_or_default());
                run.kill().await;
                None
            }
        };
        if let Some(code) = code {
            return Ok(code);
        }
    }
}

fn framework_info(flags: &ExecuteFlags) -> Result<FrameworkInfo> {
    let user = match &flags.user {
        Some(user) => user.clone(),
        None => current_user()?,
    };
    Ok(FrameworkInfo {
        user,
        name: flags.framework_name.clone(),
        id: None,
        failover_timeout: 0.0,
        checkpoint: false,
        role: Some(flags.role.clone()),
        roles: Vec::new(),
        hostname: None,
        principal: None,
        webui_url: None,
        capabilities: vec![
            Capability::new(CapabilityType::TaskKillingState),
            Capability::new(CapabilityType::PartitionAware),
        ],
        labels: None,
        offer_filters: None,
    })
}

fn current_user() -> Result<String> {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => Ok(user.name),
        _ => {
            std::env::var("USER").with_context(|| format!("no user name for uid {uid}; use --user"))
        }
    }
}

/// The launched task and where it runs.
struct Launched {
    task_id: TaskId,
    agent_id: meseta_api::AgentId,
}

/// The one task's life, seen from the framework.
struct Execution {
    flags: ExecuteFlags,
    scheduler: Scheduler,
    task_id: TaskId,
    launched: Option<Launched>,
    waiting_noted: bool,
    kill_requested: bool,
    interrupts: u32,
    output: Output,
}

impl Execution {
    fn new(flags: ExecuteFlags, scheduler: Scheduler) -> Execution {
        let suffix: String = meseta_api::json::new_uuid_bytes().0[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Execution {
            task_id: TaskId::new(format!("{}-{suffix}", flags.name)),
            flags,
            scheduler,
            launched: None,
            waiting_noted: false,
            kill_requested: false,
            interrupts: 0,
            output: Output::default(),
        }
    }

    /// Handles one event; returns the exit code once the task is over.
    async fn on_event(&mut self, event: Event) -> Result<Option<i32>> {
        match event {
            Event::Subscribed(subscribed) => {
                println!("Subscribed with ID '{}'", subscribed.framework_id);
            }
            Event::Offers(offers) => self.on_offers(offers).await?,
            Event::Update(update) => return Ok(self.on_update(update.status).await),
            Event::Error(error) => bail!("Received an ERROR event: {}", error.message),
            Event::Failure(failure) if failure.executor_id.is_none() => {
                if let (Some(agent), Some(launched)) = (&failure.agent_id, &self.launched) {
                    if *agent == launched.agent_id {
                        eprintln!("Agent '{agent}' was lost");
                    }
                }
            }
            _ => {}
        }
        Ok(None)
    }

    async fn on_offers(&mut self, offers: Offers) -> Result<()> {
        let mut decline = Vec::new();
        for offer in offers.offers {
            if self.launched.is_some() {
                decline.push(offer.id);
                continue;
            }
            let Some(resources) = take_scalars(&offer.resources, &wanted(&self.flags)) else {
                decline.push(offer.id);
                continue;
            };
            let task = task_info(
                &self.flags,
                self.task_id.clone(),
                offer.agent_id.clone(),
                resources,
            );
            self.scheduler
                .launch(vec![offer.id], vec![task], None)
                .await
                .context("launching the task")?;
            println!(
                "Submitted task '{}' to agent '{}'",
                self.task_id, offer.agent_id
            );
            self.launched = Some(Launched {
                task_id: self.task_id.clone(),
                agent_id: offer.agent_id,
            });
            if let Err(e) = self.scheduler.suppress(Vec::new()).await {
                tracing::debug!("suppressing offers: {e}");
            }
        }
        if self.launched.is_none() && !decline.is_empty() && !self.waiting_noted {
            self.waiting_noted = true;
            eprintln!(
                "Waiting for an offer with cpus {} and mem {}{}",
                self.flags.cpus,
                self.flags.mem,
                self.flags
                    .disk
                    .map(|d| format!(" and disk {d}"))
                    .unwrap_or_default()
            );
        }
        if !decline.is_empty() {
            self.scheduler
                .decline(decline, None)
                .await
                .context("declining offers")?;
        }
        Ok(())
    }

    async fn on_update(&mut self, status: TaskStatus) -> Option<i32> {
        if status.task_id != self.task_id {
            return None;
        }
        if !status.state.is_terminal() {
            print_status(&status);
            return None;
        }
        // The rest of the output comes before the last state.
        self.output
            .fetch(&self.scheduler, self.launched.as_ref())
            .await;
        self.output.report_failure();
        print_status(&status);
        if let Err(e) = self.scheduler.teardown().await {
            eprintln!("Could not tear the framework down: {e}");
        }
        Some(exit_code(&status))
    }

    async fn interrupt(&mut self) -> Option<i32> {
        self.interrupts += 1;
        if self.launched.is_some() && self.interrupts == 1 {
            eprintln!(
                "Killing task '{}' (interrupt again to stop waiting)",
                self.task_id
            );
            self.kill().await;
            return None;
        }
        let _ = self.scheduler.teardown().await;
        Some(INTERRUPTED)
    }

    async fn kill(&mut self) {
        self.kill_requested = true;
        let agent = self.launched.as_ref().map(|l| l.agent_id.clone());
        if let Err(e) = self.scheduler.kill(self.task_id.clone(), agent, None).await {
            eprintln!("Could not kill task '{}': {e}", self.task_id);
        }
    }
}

/// The scalar resources the task asks for.
fn wanted(flags: &ExecuteFlags) -> Vec<(&'static str, f64)> {
    let mut wanted = vec![("cpus", flags.cpus), ("mem", flags.mem)];
    wanted.extend(flags.disk.map(|d| ("disk", d)));
    wanted
}

/// The task: `sh -c command`, or with `--no-shell` the command executed with the `--arg`s.
fn task_info(
    flags: &ExecuteFlags,
    task_id: TaskId,
    agent_id: meseta_api::AgentId,
    resources: Vec<meseta_api::Resource>,
) -> TaskInfo {
    let shell = !flags.no_shell;
    let variables: Vec<EnvironmentVariable> = flags
        .env
        .iter()
        .map(|(name, value)| EnvironmentVariable {
            name: name.clone(),
            kind: None,
            value: Some(value.clone()),
            secret: None,
        })
        .collect();
    let arguments = if shell {
        Vec::new()
    } else {
        std::iter::once(flags.command.clone())
            .chain(flags.args.iter().cloned())
            .collect()
    };
    let command = CommandInfo {
        uris: uris(flags),
        environment: (!variables.is_empty()).then_some(Environment { variables }),
        shell,
        value: Some(flags.command.clone()),
        arguments,
        user: None,
    };
    let mut task =
        TaskInfo::command_task(flags.name.clone(), task_id, agent_id, resources, command);
    task.container = container_info(flags);
    task
}

/// The `CommandInfo.uris` of the `--uri`s.
fn uris(flags: &ExecuteFlags) -> Vec<serde_json::Value> {
    (flags.uris.iter())
        .map(|value| {
            serde_json::json!({"value": value, "executable": flags.uri_executable,
                "extract": !flags.uri_no_extract, "cache": flags.uri_cache})
        })
        .collect()
}

/// Prints an update the way `mesos-execute` does.
fn print_status(status: &TaskStatus) {
    println!(
        "Received status update {} for task '{}'",
        status.state.name(),
        status.task_id
    );
    if let Some(message) = &status.message {
        println!("  message: '{message}'");
    }
    if let Some(source) = status.source.and_then(|s| enum_name(&s)) {
        println!("  source: {source}");
    }
    if let Some(reason) = status.reason.and_then(|r| enum_name(&r)) {
        println!("  reason: {reason}");
    }
    if let Some(healthy) = status.healthy {
        println!("  healthy?: {healthy}");
    }
}

fn enum_name<T: serde::Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value)
        .ok()?
        .as_str()
        .map(str::to_string)
}

/// 0 for TASK_FINISHED; the command's exit status (128 + signal when killed by one) from
/// the executor's message otherwise; 1 when there is none.
fn exit_code(status: &TaskStatus) -> i32 {
    if status.state == TaskState::TaskFinished {
        return 0;
    }
    status
        .message
        .as_deref()
        .and_then(meseta_executor::exit_code_from_message)
        .filter(|code| *code != 0)
        .unwrap_or(1)
}

/// The task's stdout and stderr, copied from its sandbox as they grow.
#[derive(Default)]
struct Output {
    sandbox: Option<Sandbox>,
    offsets: [u64; 2],
    failure: Option<String>,
}

impl Output {
    /// Copies whatever the task wrote since the last call.
    async fn fetch(&mut self, scheduler: &Scheduler, launched: Option<&Launched>) {
        let Some(launched) = launched else {
            return;
        };
        if self.sandbox.is_none() {
            match Sandbox::locate(scheduler, &launched.agent_id, &launched.task_id).await {
                Ok(sandbox) => {
                    self.sandbox = Some(sandbox);
                    self.failure = None;
                }
                Err(e) => {
                    self.failure = Some(e.to_string());
                    return;
                }
            }
        }
        let Some(sandbox) = &self.sandbox else {
            return;
        };
        for (index, file) in ["stdout", "stderr"].into_iter().enumerate() {
            loop {
                match sandbox.read(file, self.offsets[index], OUTPUT_CHUNK).await {
                    Ok(Some(data)) if !data.is_empty() => {
                        self.offsets[index] += data.len() as u64;
                        let written = if index == 0 {
                            write_all(std::io::stdout().lock(), &data)
                        } else {
                            write_all(std::io::stderr().lock(), &data)
                        };
                        if written.is_err() {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        self.failure = Some(e.to_string());
                        break;
                    }
                }
            }
        }
    }

    fn report_failure(&self) {
        if let Some(why) = &self.failure {
            eprintln!("Could not read the task's output: {why}");
        }
    }
}

fn write_all(mut to: impl Write, data: &str) -> std::io::Result<()> {
    to.write_all(data.as_bytes())?;
    to.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: ExecuteFlags,
    }

    fn flags(args: &[&str]) -> ExecuteFlags {
        Cli::try_parse_from(std::iter::once("execute").chain(args.iter().copied()))
            .unwrap()
            .flags
    }

    #[test]
    fn volumes_become_the_tasks_container_info() {
        let f = flags(&[
            "-c",
            "true",
            "--volume",
            "/srv/in:/data:ro",
            "--volume",
            "/tmp/out:out",
        ]);
        assert_eq!(
            container_info(&f),
            Some(serde_json::json!({"type": "MESOS", "volumes": [
                {"container_path": "/data", "host_path": "/srv/in", "mode": "RO"},
                {"container_path": "out", "host_path": "/tmp/out", "mode": "RW"},
            ]}))
        );
        assert_eq!(container_info(&flags(&["-c", "true"])), None);
        let f = flags(&["-c", "true", "--image", "busybox:1"]);
        assert_eq!(
            container_info(&f),
            Some(serde_json::json!({"type": "MESOS", "volumes": [],
                "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox:1"}}}}))
        );
        for (bad, why) in [
            ("/a:/b:rx", "must be 'ro' or 'rw'"),
            ("relative:/b", "must be absolute"),
            ("/a", "is not HOST:CONTAINER"),
            ("/a:", "names no container path"),
        ] {
            let err = parse_volume(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn uris_carry_their_options() {
        assert!(uris(&flags(&["-c", "true"])).is_empty());
        let f = flags(&["-c", "./a", "--uri", "http://h/a", "--uri", "/b.tgz"]);
        assert_eq!(
            uris(&f),
            [
                serde_json::json!({"value": "http://h/a", "executable": false, "extract": true, "cache": false}),
                serde_json::json!({"value": "/b.tgz", "executable": false, "extract": true, "cache": false}),
            ]
        );
        let f = flags(&[
            "-c",
            "./a",
            "--uri",
            "http://h/a",
            "--uri-executable",
            "--uri-no-extract",
            "--uri-cache",
        ]);
        assert_eq!(
            uris(&f),
            [
                serde_json::json!({"value": "http://h/a", "executable": true, "extract": false, "cache": true})
            ]
        );
    }

    #[test]
    fn exit_codes_follow_the_terminal_update() {
        let status = |state, message: Option<&str>| TaskStatus {
            message: message.map(str::to_string),
            ..TaskStatus::new("t".into(), state)
        };
        assert_eq!(exit_code(&status(TaskState::TaskFinished, None)), 0);
        assert_eq!(
            exit_code(&status(
                TaskState::TaskFailed,
                Some("Command exited with status 7")
            )),
            7
        );
        assert_eq!(
            exit_code(&status(
                TaskState::TaskKilled,
                Some("Command terminated with signal Terminated")
            )),
            143
        );
        assert_eq!(
            exit_code(&status(TaskState::TaskLost, Some("Agent removed"))),
            1
        );
    }

    #[test]
    fn builds_the_task_from_flags() {
        let f = flags(&[
            "--command",
            "/bin/echo",
            "--no-shell",
            "--arg",
            "-n",
            "--arg",
            "hi",
            "--env",
            "A=1=2",
            "--cpus",
            "0.5",
            "--disk",
            "10",
        ]);
        assert_eq!(wanted(&f), [("cpus", 0.5), ("mem", 32.0), ("disk", 10.0)]);
        let task = task_info(&f, "t".into(), "a".into(), Vec::new());
        let command = task.command.unwrap();
        assert!(!command.shell);
        assert_eq!(command.value.as_deref(), Some("/bin/echo"));
        assert_eq!(command.arguments, ["/bin/echo", "-n", "hi"]);
        let variables = command.environment.unwrap().variables;
        assert_eq!(
            (variables[0].name.as_str(), variables[0].value.as_deref()),
            ("A", Some("1=2"))
        );

        let f = flags(&["-c", "echo $A", "--no-shell", "--shell"]);
        let command = task_info(&f, "t".into(), "a".into(), Vec::new())
            .command
            .unwrap();
        assert!(command.shell);
        assert!(command.arguments.is_empty() && command.environment.is_none());
        assert!(Cli::try_parse_from(["execute", "-c", "x", "--env", "=1"]).is_err());
        assert!(Cli::try_parse_from(["execute"]).is_err());
    }
}
