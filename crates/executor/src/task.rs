//! One task's run, as both executors drive it (Mesos's command and default executors agree
//! on it): TASK_STARTING and the command's validation at launch; TASK_RUNNING once the
//! process started, with its health checks and maximum completion time armed; a kill
//! (TASK_KILLING with that capability, SIGTERM, SIGKILL after the grace period, which a
//! later kill may only shorten); and the terminal state its exit gives, with the message
//! `Command exited with status N` / `Command terminated with signal NAME`.
//!
//! Pure: a [`TaskRun`] returns [`Step`]s (actions for the driver, and [`Report`]s that its
//! executor stamps and sends reliably); time comes with every call.

use crate::exit;
use crate::health::HealthTracker;
use crate::machine::{Action, LaunchSpec, Signal};
use meseta_api::{
    CommandInfo, HealthCheck, HealthCheckType, KillPolicy, Reason, TaskId, TaskInfo, TaskState,
    TaskStatus,
};
use meseta_containerizer::{runtime, ImageConfig};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// A status the task's executor is to send: what changed, stamped by the executor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Report {
    pub state: TaskState,
    pub message: Option<String>,
    pub reason: Option<Reason>,
    pub healthy: Option<bool>,
}

impl Report {
    fn state(state: TaskState) -> Report {
        Report {
            state,
            message: None,
            reason: None,
            healthy: None,
        }
    }

    fn with_message(state: TaskState, message: String) -> Report {
        Report {
            message: Some(message),
            ..Report::state(state)
        }
    }

    /// The report written into `status` (a fresh status of the task in this state).
    pub fn into_status(self, status: TaskStatus) -> TaskStatus {
        TaskStatus {
            message: self.message,
            reason: self.reason,
            healthy: self.healthy,
            ..status
        }
    }
}

/// What a task's run asks for, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    Act(Action),
    Report(Report),
}

/// Why a task is being killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KillCause {
    /// A KILL, a SHUTDOWN, or (in a task group) another task's failure.
    Request,
    HealthCheck,
    MaxCompletionTime,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// The launch was asked for; the process has not started yet. A kill asked for now
    /// is carried out as soon as it has.
    Launching {
        pending_kill: Option<(Duration, KillCause)>,
    },
    /// The task's process runs.
    Running,
    /// SIGTERM sent; SIGKILL due at `escalation_at` (None once sent).
    Killing {
        cause: KillCause,
        started: Instant,
        escalation_at: Option<Instant>,
    },
    /// The task's process is gone (or never started).
    Terminated,
}

/// One task of an executor.
#[derive(Clone, Debug)]
pub(crate) struct TaskRun {
    info: TaskInfo,
    phase: Phase,
    /// The environment and working directory of the process (and its COMMAND checks).
    environment: Vec<(String, String)>,
    cwd: PathBuf,
    health: Option<HealthTracker>,
    completion_at: Option<Instant>,
}

impl TaskRun {
    /// LAUNCH of `info` in `cwd`, on top of the executor's environment `base`: sends
    /// TASK_STARTING, then starts the process, or fails the task when it has no usable
    /// command. With `output_dir`, the task writes its own `stdout` and `stderr` there.
    /// With `image` (a command task in an image with `docker/runtime`), the image's
    /// Entrypoint/Cmd, Env and WorkingDir apply ([`runtime::command_task`]).
    pub fn launch(
        info: TaskInfo,
        base: &[(String, String)],
        cwd: PathBuf,
        output_dir: Option<PathBuf>,
        image: Option<&ImageConfig>,
    ) -> (TaskRun, Vec<Step>) {
        let task_id = info.task_id.clone();
        let prepared = match (&info.command, image) {
            (None, _) => Err(format!("Expecting task '{task_id}' to have a command")),
            (Some(c), _) if c.value.is_none() && c.shell => Err(format!(
                "Shell command of task '{task_id}' is not specified"
            )),
            (Some(c), Some(image)) => {
                if let Some(user) = runtime::ignored_user(image) {
                    tracing::warn!(
                        "the image's user '{user}' is not supported (as in Mesos); task {task_id} runs as the executor's user"
                    );
                }
                runtime::command_task(c, base, &cwd, image)
                    .map(|l| (l.command, l.environment, l.working_dir))
                    .map_err(|e| {
                        format!("Failed to determine the launch command of task '{task_id}': {e}")
                    })
            }
            (Some(c), None) if c.value.is_none() => {
                Err(format!("Executable of task '{task_id}' is not specified"))
            }
            (Some(c), None) => Ok((c.clone(), base.to_vec(), cwd.clone())),
        };
        let role = info
            .resources
            .first()
            .and_then(|r| r.allocation_info.as_ref())
            .and_then(|a| a.role.clone());
        let mut steps = vec![Step::Report(Report::state(TaskState::TaskStarting))];
        let (phase, environment, cwd) = match prepared {
            Ok((command, base, workdir)) => {
                let environment = task_environment(&base, &command, role);
                steps.push(Step::Act(Action::Launch(LaunchSpec {
                    task_id,
                    command,
                    environment: environment.clone(),
                    cwd: workdir.clone(),
                    output_dir,
                })));
                (
                    Phase::Launching { pending_kill: None },
                    environment,
                    workdir,
                )
            }
            Err(why) => {
                steps.push(Step::Report(Report::with_message(
                    TaskState::TaskFailed,
                    why,
                )));
                (Phase::Terminated, base.to_vec(), cwd)
            }
        };
        let run = TaskRun {
            info,
            phase,
            environment,
            cwd,
            health: None,
            completion_at: None,
        };
        (run, steps)
    }

    pub fn info(&self) -> &TaskInfo {
        &self.info
    }

    pub fn task_id(&self) -> &TaskId {
        &self.info.task_id
    }

    /// Whether the task's process is gone (or never started).
    pub fn is_terminated(&self) -> bool {
        self.phase == Phase::Terminated
    }

    /// Whether a kill is under way.
    pub fn is_killing(&self) -> bool {
        match self.phase {
            Phase::Killing { .. } => true,
            Phase::Launching { pending_kill } => pending_kill.is_some(),
            Phase::Running | Phase::Terminated => false,
        }
    }

    /// The earliest moment at which [`TaskRun::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let escalation = match self.phase {
            Phase::Killing { escalation_at, .. } => escalation_at,
            _ => None,
        };
        escalation.into_iter().chain(self.completion_at).min()
    }

    /// The process started: TASK_RUNNING, health checks, the completion deadline (or the
    /// kill asked for while it was starting).
    pub fn started(&mut self, now: Instant, killing_capable: bool) -> Vec<Step> {
        let Phase::Launching { pending_kill } = self.phase else {
            return Vec::new();
        };
        self.phase = Phase::Running;
        let mut steps = vec![Step::Report(Report::state(TaskState::TaskRunning))];
        if let Some((grace, cause)) = pending_kill {
            steps.extend(self.kill(grace, cause, now, killing_capable));
            return steps;
        }
        if let Some(check) = &self.info.health_check {
            match usable_health_check(check) {
                Ok(()) => {
                    self.health = Some(HealthTracker::new(check, now));
                    steps.push(Step::Act(Action::StartHealthChecks {
                        task_id: self.info.task_id.clone(),
                        check: check.clone(),
                        environment: self.environment.clone(),
                        cwd: self.cwd.clone(),
                    }));
                }
                Err(why) => {
                    tracing::error!("not health checking task {}: {why}", self.info.task_id)
                }
            }
        }
        if let Some(limit) = self.info.max_completion_time.filter(|d| d.nanoseconds > 0) {
            self.completion_at = Some(now + limit.as_duration());
        }
        steps
    }

    /// The process could not be started.
    pub fn launch_failed(&mut self, why: &str) -> Vec<Step> {
        if !matches!(self.phase, Phase::Launching { .. }) {
            return Vec::new();
        }
        self.phase = Phase::Terminated;
        let message = format!("Failed to launch the command: {why}");
        vec![Step::Report(Report::with_message(
            TaskState::TaskFailed,
            message,
        ))]
    }

    /// The process exited: the terminal state.
    pub fn exited(&mut self, status: Result<ExitStatus, String>) -> Vec<Step> {
        let cause = match self.phase {
            Phase::Running => None,
            Phase::Killing { cause, .. } => Some(cause),
            Phase::Launching { .. } | Phase::Terminated => return Vec::new(),
        };
        self.phase = Phase::Terminated;
        self.completion_at = None;
        let mut steps = self.stop_health_checks();
        let (state, reason, message) = match (cause, status) {
            (_, Err(why)) => (
                TaskState::TaskFailed,
                None,
                format!("Failed to get exit status for Command: {why}"),
            ),
            (Some(KillCause::MaxCompletionTime), Ok(status)) => (
                TaskState::TaskFailed,
                Some(Reason::ReasonMaxCompletionTimeReached),
                exit::describe(status),
            ),
            (Some(_), Ok(status)) => (TaskState::TaskKilled, None, exit::describe(status)),
            (None, Ok(status)) if status.success() => {
                (TaskState::TaskFinished, None, exit::describe(status))
            }
            (None, Ok(status)) => (TaskState::TaskFailed, None, exit::describe(status)),
        };
        tracing::info!("task {}: {message}", self.info.task_id);
        steps.push(Step::Report(Report {
            state,
            message: Some(message),
            reason,
            healthy: (cause == Some(KillCause::HealthCheck)).then_some(false),
        }));
        steps
    }

    /// One health probe's result: a TASK_RUNNING update when the health changes, and a
    /// kill after too many failures.
    pub fn health(
        &mut self,
        result: Result<(), String>,
        now: Instant,
        killing_capable: bool,
    ) -> Vec<Step> {
        if self.phase != Phase::Running {
            return Vec::new();
        }
        let Some(tracker) = self.health.as_mut() else {
            return Vec::new();
        };
        if let Err(why) = &result {
            tracing::warn!("health check of task {} failed: {why}", self.info.task_id);
        }
        let Some(report) = tracker.record(result.is_ok(), now) else {
            return Vec::new();
        };
        let mut steps = vec![Step::Report(Report {
            reason: Some(Reason::ReasonTaskHealthCheckStatusUpdated),
            healthy: Some(report.healthy),
            ..Report::state(TaskState::TaskRunning)
        })];
        if report.kill {
            let grace = self.grace(None);
            steps.extend(self.kill(grace, KillCause::HealthCheck, now, killing_capable));
        }
        steps
    }

    /// Kills the task (or shortens a kill in progress), as Mesos's `kill()`.
    pub fn kill(
        &mut self,
        grace: Duration,
        cause: KillCause,
        now: Instant,
        killing_capable: bool,
    ) -> Vec<Step> {
        match self.phase {
            Phase::Launching { pending_kill: None } => {
                self.phase = Phase::Launching {
                    pending_kill: Some((grace, cause)),
                };
                Vec::new()
            }
            Phase::Running => {
                self.completion_at = None;
                let mut steps = Vec::new();
                if cause != KillCause::MaxCompletionTime && killing_capable {
                    steps.push(Step::Report(Report::state(TaskState::TaskKilling)));
                }
                steps.extend(self.stop_health_checks());
                steps.push(Step::Act(Action::Signal(
                    self.info.task_id.clone(),
                    Signal::Terminate,
                )));
                self.phase = Phase::Killing {
                    cause,
                    started: now,
                    escalation_at: Some(now + grace),
                };
                steps
            }
            Phase::Killing {
                cause: first,
                started,
                escalation_at: Some(at),
            } => {
                let shortened = started + grace;
                if shortened < at {
                    self.phase = Phase::Killing {
                        cause: first,
                        started,
                        escalation_at: Some(shortened.max(now)),
                    };
                }
                Vec::new()
            }
            Phase::Launching { .. } | Phase::Killing { .. } | Phase::Terminated => Vec::new(),
        }
    }

    /// Time passed: SIGKILL after the grace period, the kill at the completion deadline.
    pub fn tick(&mut self, now: Instant, killing_capable: bool) -> Vec<Step> {
        let mut steps = Vec::new();
        if let Phase::Killing {
            escalation_at: Some(at),
            cause,
            started,
        } = self.phase
        {
            if at <= now {
                tracing::info!(
                    "task {} did not terminate in time; sending SIGKILL",
                    self.info.task_id
                );
                steps.push(Step::Act(Action::Signal(
                    self.info.task_id.clone(),
                    Signal::Kill,
                )));
                self.phase = Phase::Killing {
                    cause,
                    started,
                    escalation_at: None,
                };
            }
        }
        if self.completion_at.is_some_and(|at| at <= now) {
            self.completion_at = None;
            tracing::info!(
                "task {} exceeded its maximum completion time",
                self.info.task_id
            );
            steps.extend(self.kill(
                Duration::ZERO,
                KillCause::MaxCompletionTime,
                now,
                killing_capable,
            ));
        }
        steps
    }

    /// The grace period of a kill: the override's, else the task's policy's, else 3 s.
    pub fn grace(&self, kill_override: Option<&KillPolicy>) -> Duration {
        let task_policy = self.info.kill_policy.as_ref();
        kill_override
            .and_then(|p| p.grace_period)
            .or_else(|| task_policy.and_then(|p| p.grace_period))
            .unwrap_or(KillPolicy::DEFAULT_GRACE_PERIOD)
            .as_duration()
    }

    fn stop_health_checks(&mut self) -> Vec<Step> {
        match self.health.take() {
            Some(_) => vec![Step::Act(Action::StopHealthChecks(
                self.info.task_id.clone(),
            ))],
            None => Vec::new(),
        }
    }
}

/// The task's environment: the executor's, then the command's variables (secrets
/// skipped), then `MESOS_ALLOCATION_ROLE` when the resources name a role.
pub(crate) fn task_environment(
    base: &[(String, String)],
    command: &CommandInfo,
    role: Option<String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base.to_vec();
    let mut set = |name: &str, value: String| match env.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name.to_string(), value)),
    };
    for variable in command.environment.iter().flat_map(|e| &e.variables) {
        if variable.kind.as_deref() == Some("SECRET") {
            continue;
        }
        set(&variable.name, variable.value.clone().unwrap_or_default());
    }
    if let Some(role) = role {
        set("MESOS_ALLOCATION_ROLE", role);
    }
    env
}

/// Mesos's validation of a health check: a known type with its matching description.
fn usable_health_check(check: &HealthCheck) -> Result<(), String> {
    match check.kind {
        Some(HealthCheckType::Command) if check.command.is_some() => Ok(()),
        Some(HealthCheckType::Http) if check.http.is_some() => Ok(()),
        Some(HealthCheckType::Tcp) if check.tcp.is_some() => Ok(()),
        Some(HealthCheckType::Command) => Err("COMMAND health check without 'command'".into()),
        Some(HealthCheckType::Http) => Err("HTTP health check without 'http'".into()),
        Some(HealthCheckType::Tcp) => Err("TCP health check without 'tcp'".into()),
        Some(HealthCheckType::Unknown) | None => Err("health check type is not set".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::process::ExitStatusExt;

    fn info(extra: serde_json::Value) -> TaskInfo {
        let mut base = json!({"name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": "A"},
            "command": {"value": "sleep 9"}});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    fn states(steps: &[Step]) -> Vec<TaskState> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Report(r) => Some(r.state),
                Step::Act(_) => None,
            })
            .collect()
    }

    #[test]
    fn launch_asks_for_the_process_in_its_own_sandbox() {
        let (run, steps) = TaskRun::launch(
            info(json!({})),
            &[("A".into(), "1".into())],
            PathBuf::from("/s/tasks/t1"),
            Some(PathBuf::from("/s/tasks/t1")),
            None,
        );
        assert_eq!(states(&steps), [TaskState::TaskStarting]);
        let Some(Step::Act(Action::Launch(spec))) = steps.last() else {
            panic!("{steps:?}")
        };
        assert_eq!(spec.cwd, PathBuf::from("/s/tasks/t1"));
        assert_eq!(spec.output_dir, Some(PathBuf::from("/s/tasks/t1")));
        assert_eq!(spec.environment, [("A".to_string(), "1".to_string())]);
        assert!(!run.is_terminated());
    }

    #[test]
    fn a_command_task_in_an_image_runs_its_entrypoint_env_and_working_dir() {
        let image = ImageConfig {
            entrypoint: vec!["/bin/echo".into(), "entry".into()],
            cmd: vec!["cmd".into()],
            env: vec!["FROM=image".into(), "B=image".into()],
            working_dir: Some("/work".into()),
            user: Some("nobody".into()),
        };
        let task = info(json!({"command": {"shell": false, "arguments": ["x"],
            "environment": {"variables": [{"name": "B", "value": "task"}]}}}));
        let base = [("PATH".to_string(), "/bin".to_string())];
        let sandbox = PathBuf::from("/mnt/mesos/sandbox");
        let (run, steps) = TaskRun::launch(task, &base, sandbox, None, Some(&image));
        let Some(Step::Act(Action::Launch(spec))) = steps.last() else {
            panic!("{steps:?}")
        };
        assert_eq!(spec.command.value.as_deref(), Some("/bin/echo"));
        assert_eq!(spec.command.arguments, ["/bin/echo", "entry", "x"]);
        assert_eq!(spec.cwd, PathBuf::from("/work"));
        let env: std::collections::HashMap<_, _> = spec.environment.iter().cloned().collect();
        assert_eq!(env["FROM"], "image");
        assert_eq!(
            env["B"], "task",
            "the task's variables win over the image's"
        );
        assert_eq!(env["PATH"], "/bin");
        assert_eq!(
            run.info().command.as_ref().unwrap().value,
            None,
            "the task is kept"
        );

        // Neither a value nor an Entrypoint or Cmd: the task fails and says why.
        let empty = ImageConfig::default();
        let task = info(json!({"command": {"shell": false}}));
        let (run, steps) = TaskRun::launch(task, &base, PathBuf::from("/s"), None, Some(&empty));
        assert_eq!(
            states(&steps),
            [TaskState::TaskStarting, TaskState::TaskFailed]
        );
        let Some(Step::Report(failed)) = steps.last() else {
            panic!("{steps:?}")
        };
        let message = failed.message.as_deref().unwrap();
        assert!(message.contains("launch command of task 't1'"), "{message}");
        assert!(message.contains("neither Entrypoint nor Cmd"), "{message}");
        assert!(run.is_terminated());
        // Without an image such a command has no executable.
        let task = info(json!({"command": {"shell": false}}));
        let (_, steps) = TaskRun::launch(task, &base, PathBuf::from("/s"), None, None);
        let Some(Step::Report(failed)) = steps.last() else {
            panic!("{steps:?}")
        };
        assert_eq!(
            failed.message.as_deref(),
            Some("Executable of task 't1' is not specified")
        );
    }

    #[test]
    fn a_kill_while_starting_is_carried_out_once_started() {
        let now = Instant::now();
        let (mut run, _) = TaskRun::launch(info(json!({})), &[], PathBuf::from("/s"), None, None);
        assert!(run
            .kill(Duration::from_secs(1), KillCause::Request, now, true)
            .is_empty());
        assert!(run.is_killing());
        let steps = run.started(now, true);
        assert_eq!(
            states(&steps),
            [TaskState::TaskRunning, TaskState::TaskKilling]
        );
        assert!(steps.contains(&Step::Act(Action::Signal("t1".into(), Signal::Terminate))));
        assert_eq!(run.next_deadline(), Some(now + Duration::from_secs(1)));
        let steps = run.exited(Ok(ExitStatus::from_raw(libc::SIGTERM)));
        assert_eq!(states(&steps), [TaskState::TaskKilled]);
        assert!(run.is_terminated());
    }

    #[test]
    fn grace_prefers_the_kill_then_the_task_policy() {
        let (run, _) = TaskRun::launch(
            info(json!({"kill_policy": {"grace_period": {"nanoseconds": 7_000_000_000i64}}})),
            &[],
            PathBuf::from("/s"),
            None,
            None,
        );
        assert_eq!(run.grace(None), Duration::from_secs(7));
        let policy = KillPolicy {
            grace_period: Some(meseta_api::DurationInfo {
                nanoseconds: 1_000_000_000,
            }),
        };
        assert_eq!(run.grace(Some(&policy)), Duration::from_secs(1));
        let (plain, _) = TaskRun::launch(info(json!({})), &[], PathBuf::from("/s"), None, None);
        assert_eq!(plain.grace(None), Duration::from_secs(3));
    }
}
