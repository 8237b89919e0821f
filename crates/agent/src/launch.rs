//! How an executor is launched: the command executor's synthesized `ExecutorInfo` for
//! command tasks, the executor's environment (exactly the variables Mesos sets), and the
//! containerizer [`LaunchSpec`] built from them.

use meseta_api::{CommandInfo, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, TaskInfo};
use meseta_containerizer::{LaunchSpec, Program};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a checkpointing executor keeps retrying to subscribe after losing its agent.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The longest backoff between an executor's subscription attempts.
pub const SUBSCRIPTION_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The command executor's `ExecutorInfo` for a task without one, as Mesos builds it:
/// the task id as executor id and source, a descriptive name, and `meseta executor` as
/// the command, carrying the task command's environment, uris and user.
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
        executor_id: ExecutorId::new(task.task_id.value.clone()),
        framework_id: Some(framework_id.clone()),
        command: Some(CommandInfo {
            uris: command.map(|c| c.uris.clone()).unwrap_or_default(),
            environment: command.and_then(|c| c.environment.clone()),
            shell: false,
            value: Some(binary.clone()),
            arguments: vec![binary, "executor".to_string()],
            user: command.and_then(|c| c.user.clone()),
        }),
        container: None,
        resources: Vec::new(),
        name: Some(format!(
            "Command Executor (Task: {}) {described}",
            task.task_id
        )),
        source: Some(task.task_id.value.clone()),
        data: None,
        discovery: task.discovery.clone(),
        shutdown_grace_period: None,
        labels: task.labels.clone(),
    }
}

/// What the environment of one executor run depends on.
pub struct RunContext<'a> {
    pub agent_id: &'a str,
    /// The agent's `ip:port`.
    pub endpoint: &'a str,
    pub framework: &'a FrameworkInfo,
    pub executor: &'a ExecutorInfo,
    pub directory: &'a Path,
    pub command_executor: bool,
    pub shutdown_grace_period: Duration,
    /// Whether the agent runs as root and so switches to the executor's user.
    pub switch_user: bool,
    /// The agent's own environment, inherited by the executor.
    pub inherited: Vec<(String, String)>,
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

    /// The environment: the agent's own (less stale `MESOS_`/`LIBPROCESS_` variables),
    /// then Mesos's executor variables, then the executor command's variables.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .inherited
            .iter()
            .filter(|(k, _)| !k.starts_with("MESOS_") && !k.starts_with("LIBPROCESS_"))
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
            self.framework.id.clone().unwrap_or_default().value,
        );
        set("MESOS_EXECUTOR_ID", self.executor.executor_id.value.clone());
        set("MESOS_DIRECTORY", directory.clone());
        set("MESOS_SANDBOX", directory);
        set("MESOS_SLAVE_ID", self.agent_id.to_string());
        set("MESOS_AGENT_ID", self.agent_id.to_string());
        set("MESOS_SLAVE_PID", format!("slave(1)@{}", self.endpoint));
        set("MESOS_AGENT_ENDPOINT", self.endpoint.to_string());
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

    /// The containerizer's launch spec for this run.
    pub fn launch_spec(&self) -> LaunchSpec {
        let command = self
            .executor
            .command
            .clone()
            .unwrap_or_else(|| CommandInfo::shell(""));
        let program = if command.shell {
            Program::Shell(command.value.clone().unwrap_or_default())
        } else {
            let path = command.value.clone().unwrap_or_default();
            let args = if command.arguments.is_empty() {
                vec![path.clone()]
            } else {
                command.arguments.clone()
            };
            Program::Argv { path, args }
        };
        LaunchSpec {
            program,
            env: self.environment(),
            working_dir: self.directory.to_path_buf(),
            stdout: self.directory.join("stdout"),
            stderr: self.directory.join("stderr"),
            user: self.switch_user.then(|| self.user()),
        }
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
        assert_eq!(e.executor_id.value, "t1");
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
            agent_id: "A-S0",
            endpoint: "127.0.0.1:5051",
            framework: &fw,
            executor: &executor,
            directory: Path::new("/w/sb"),
            command_executor: false,
            shutdown_grace_period: Duration::from_secs(5),
            switch_user: false,
            inherited: vec![
                ("PATH".into(), "/bin".into()),
                ("MESOS_STALE".into(), "x".into()),
                ("TERM".into(), "xterm".into()),
            ],
        };
        let env = env_of(&ctx);
        assert_eq!(env["MESOS_FRAMEWORK_ID"], "F-0000");
        assert_eq!(env["MESOS_EXECUTOR_ID"], "e1");
        assert_eq!(env["MESOS_DIRECTORY"], "/w/sb");
        assert_eq!(env["MESOS_SANDBOX"], "/w/sb");
        assert_eq!(env["MESOS_SLAVE_ID"], "A-S0");
        assert_eq!(env["MESOS_SLAVE_PID"], "slave(1)@127.0.0.1:5051");
        assert_eq!(env["MESOS_AGENT_ENDPOINT"], "127.0.0.1:5051");
        assert_eq!(env["MESOS_CHECKPOINT"], "1");
        assert_eq!(env["MESOS_HTTP_COMMAND_EXECUTOR"], "0");
        assert_eq!(env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"], "5secs");
        assert_eq!(env["MESOS_RECOVERY_TIMEOUT"], "15mins");
        assert_eq!(env["MESOS_SUBSCRIPTION_BACKOFF_MAX"], "2secs");
        assert_eq!(env["LIBPROCESS_PORT"], "0");
        assert_eq!(env["PATH"], "/opt", "the command's variables win");
        assert_eq!(env["TERM"], "xterm");
        assert!(
            !env.contains_key("MESOS_STALE") && !env.contains_key("S") && !env.contains_key("USER")
        );
        let spec = ctx.launch_spec();
        assert_eq!(spec.program, Program::Shell("./run".into()));
        assert_eq!(spec.stdout, Path::new("/w/sb/stdout"));
        assert_eq!(spec.user, None);

        let fw = framework(false);
        let ctx = RunContext {
            framework: &fw,
            command_executor: true,
            switch_user: true,
            ..ctx
        };
        let env = env_of(&ctx);
        assert_eq!(env["MESOS_CHECKPOINT"], "0");
        assert_eq!(env["MESOS_HTTP_COMMAND_EXECUTOR"], "1");
        assert!(!env.contains_key("MESOS_RECOVERY_TIMEOUT"));
        assert_eq!(env["USER"], "nobody");
        assert_eq!(ctx.launch_spec().user.as_deref(), Some("nobody"));
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
