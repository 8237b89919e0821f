//! The command executor's decisions, as a pure state machine: inputs (agent events, the
//! end of a subscription, the task's start and exit, health-probe results, the passing of
//! time) go in, [`Action`]s come out. It owns no socket, process or clock: the current
//! [`Instant`] comes with every input, and uuids, wall-clock time and jitter come from
//! [`Sources`]. It follows Mesos's `src/launcher/executor.cpp`:
//!
//! - LAUNCH sends TASK_STARTING, runs the command, then sends TASK_RUNNING;
//! - KILL sends TASK_KILLING (with that capability), SIGTERM, and SIGKILL after the grace
//!   period (the KILL's kill policy, else the task's, else 3 s); a later KILL may only
//!   shorten it; SHUTDOWN kills with the shutdown grace period less 2 s;
//! - the exit gives TASK_FINISHED, TASK_KILLED (when killed) or TASK_FAILED, with the
//!   message `Command exited with status N` / `Command terminated with signal NAME`;
//! - every update is kept until ACKNOWLEDGED; a re-SUBSCRIBE carries the unacknowledged
//!   updates and the task while none of its updates was acknowledged;
//! - a lost stream is retried with backoff for the recovery timeout when the framework
//!   checkpoints; otherwise the executor kills its task and exits;
//! - the executor exits once the terminal update is acknowledged, or 60 s after sending it.
//!
//! Contract with the driver: an [`Action::Launch`] is answered by [`Input::Started`] or
//! [`Input::LaunchFailed`] before any other input.

use crate::config::Config;
use crate::exit;
use crate::health::HealthTracker;
use meseta_api::backoff::Backoff;
use meseta_api::executor::{Acknowledged, Call, CallKind, Event, Kill, Subscribe, Update};
use meseta_api::json::Bytes;
use meseta_api::{
    AgentId, CapabilityType, CommandInfo, FrameworkInfo, HealthCheck, HealthCheckType, Reason,
    StatusSource, TaskId, TaskInfo, TaskState, TaskStatus,
};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// Mesos's default kill grace period when no kill policy gives one.
/// Taken off the shutdown grace period so that TASK_KILLED goes out before the agent
/// destroys the container (Mesos: the reap interval plus one second).
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);
/// How long to wait for the acknowledgement of the terminal update while subscribed.
pub const ACK_WAIT: Duration = Duration::from_secs(60);

/// Where uuids, wall-clock time and randomness come from.
pub trait Sources {
    /// A fresh 16-byte status-update uuid.
    fn uuid(&mut self) -> Bytes;
    /// Seconds since the Unix epoch, for `TaskStatus.timestamp`.
    fn wall_clock(&mut self) -> f64;
    /// A number in `[0, 1)` for backoff jitter.
    fn jitter(&mut self) -> f64;
}

/// Everything the driver needs to start the task's process.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchSpec {
    pub task_id: TaskId,
    pub command: CommandInfo,
    /// The complete environment of the process.
    pub environment: Vec<(String, String)>,
    /// The working directory (the sandbox).
    pub cwd: PathBuf,
}

/// A signal for the task's process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Kill,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open a subscription stream with this SUBSCRIBE call (none is open).
    Subscribe(Call),
    /// POST this UPDATE call on the current subscription.
    Send(Call),
    /// Start the task's process.
    Launch(LaunchSpec),
    /// Start probing the task's health (results come back as [`Input::Health`]).
    StartHealthChecks {
        check: HealthCheck,
        environment: Vec<(String, String)>,
        cwd: PathBuf,
    },
    /// Stop probing.
    StopHealthChecks,
    /// Signal the task's process group.
    Signal(Signal),
    /// Exit the executor with this code.
    Exit(i32),
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// An event on the subscription stream.
    Event(Box<Event>),
    /// The subscription attempt failed or the stream ended (why).
    StreamEnded(String),
    /// The task's process started.
    Started,
    /// The task's process could not be started (why).
    LaunchFailed(String),
    /// The task's process exited (or could not be waited for: why).
    Exited(Result<ExitStatus, String>),
    /// One health probe's result: `Err(why)` when unhealthy.
    Health(Result<(), String>),
    /// Time passed (a deadline from [`Core::next_deadline`] may be due).
    Tick,
}

impl From<Event> for Input {
    fn from(event: Event) -> Input {
        Input::Event(Box::new(event))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Link {
    /// A SUBSCRIBE is in flight; it carried the updates with these uuids.
    Connecting {
        included: Vec<Bytes>,
    },
    Subscribed,
    Waiting {
        retry_at: Instant,
    },
    /// Given up on the agent; no more subscriptions.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KillCause {
    Request,
    HealthCheck,
    MaxCompletionTime,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// No task launched yet.
    Idle,
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

#[derive(Clone, Debug)]
struct TaskData {
    info: TaskInfo,
    acknowledged: bool,
}

/// The command executor's state.
pub struct Core<S> {
    config: Config,
    sources: S,
    link: Link,
    backoff: Backoff,
    recovery_deadline: Option<Instant>,
    framework_info: Option<FrameworkInfo>,
    agent_id: Option<AgentId>,
    task: Option<TaskData>,
    launch_environment: Vec<(String, String)>,
    phase: Phase,
    unacknowledged: Vec<Update>,
    last_status: Option<TaskStatus>,
    health: Option<HealthTracker>,
    completion_at: Option<Instant>,
    ack_wait_until: Option<Instant>,
    out: Vec<Action>,
}

impl<S: Sources> Core<S> {
    pub fn new(config: Config, sources: S) -> Core<S> {
        let backoff = Backoff::new(config.subscription_backoff_max);
        Core {
            config,
            sources,
            link: Link::Closed,
            backoff,
            recovery_deadline: None,
            framework_info: None,
            agent_id: None,
            task: None,
            launch_environment: Vec::new(),
            phase: Phase::Idle,
            unacknowledged: Vec::new(),
            last_status: None,
            health: None,
            completion_at: None,
            ack_wait_until: None,
            out: Vec::new(),
        }
    }

    /// The first subscription; it is retried until the recovery timeout.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        self.recovery_deadline = Some(now + self.config.recovery_timeout);
        self.open();
        std::mem::take(&mut self.out)
    }

    /// The earliest moment at which [`Input::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = match self.link {
            Link::Waiting { retry_at } => [Some(retry_at), self.recovery_deadline],
            _ => [None, None],
        };
        let escalation = match self.phase {
            Phase::Killing { escalation_at, .. } => escalation_at,
            _ => None,
        };
        retry
            .into_iter()
            .chain([escalation, self.completion_at, self.ack_wait_until])
            .flatten()
            .min()
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        match input {
            Input::Event(event) => self.on_event(*event, now),
            Input::StreamEnded(why) => self.on_stream_ended(&why, now),
            Input::Started => self.on_started(now),
            Input::LaunchFailed(why) => {
                if self.phase != Phase::Idle || self.task.is_none() {
                    return Vec::new();
                }
                self.phase = Phase::Terminated;
                let message = format!("Failed to launch the command: {why}");
                self.forward_state(TaskState::TaskFailed, Some(message), None, now);
            }
            Input::Exited(status) => self.on_exited(status, now),
            Input::Health(result) => self.on_health(result, now),
            Input::Tick => self.on_tick(now),
        }
        std::mem::take(&mut self.out)
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Subscribed(subscribed) => {
                if subscribed.executor_info.executor_id != self.config.executor_id {
                    tracing::warn!(
                        "SUBSCRIBED names executor '{}', not '{}'",
                        subscribed.executor_info.executor_id,
                        self.config.executor_id
                    );
                }
                tracing::info!(
                    "subscribed to the agent on {}",
                    subscribed.agent_info.hostname
                );
                self.framework_info = Some(subscribed.framework_info);
                self.agent_id = subscribed.agent_info.id;
                self.on_subscribed(now);
            }
            Event::Launch(launch) => self.on_launch(launch.task, now),
            Event::LaunchGroup(_) => {
                tracing::error!("LAUNCH_GROUP is not supported by the command executor");
                self.shutdown(now);
            }
            Event::Kill(kill) => self.on_kill(kill, now),
            Event::Acknowledged(ack) => self.on_acknowledged(ack),
            Event::Shutdown => {
                tracing::info!("shutting down");
                self.shutdown(now);
            }
            Event::Error(error) => tracing::error!("error from the agent: {}", error.message),
            Event::Message(_) | Event::Heartbeat => {}
        }
    }

    fn on_subscribed(&mut self, now: Instant) {
        let included = match std::mem::replace(&mut self.link, Link::Subscribed) {
            Link::Connecting { included } => included,
            _ => Vec::new(),
        };
        self.recovery_deadline = None;
        self.backoff.reset();
        // Updates made after the SUBSCRIBE was built go out now.
        let late: Vec<Update> = self
            .unacknowledged
            .iter()
            .filter(|u| {
                !u.status
                    .uuid
                    .as_ref()
                    .is_some_and(|id| included.contains(id))
            })
            .cloned()
            .collect();
        for update in late {
            self.out.push(Action::Send(self.update_call(update)));
        }
        if self.terminal_update_pending() {
            self.ack_wait_until = Some(now + ACK_WAIT);
        }
    }

    fn on_launch(&mut self, task: TaskInfo, now: Instant) {
        if self.task.is_some() {
            let message = "Attempted to run multiple tasks using a \"command\" executor";
            let status = self.status(task.task_id, TaskState::TaskFailed);
            self.forward(
                TaskStatus {
                    message: Some(message.to_string()),
                    ..status
                },
                now,
            );
            return;
        }
        tracing::info!("starting task {}", task.task_id);
        let task_id = task.task_id.clone();
        let command = task.command.clone();
        let role = task
            .resources
            .first()
            .and_then(|r| r.allocation_info.as_ref())
            .and_then(|a| a.role.clone());
        self.task = Some(TaskData {
            info: task,
            acknowledged: false,
        });
        self.forward_state(TaskState::TaskStarting, None, None, now);
        let invalid = match &command {
            None => Some(format!("Expecting task '{task_id}' to have a command")),
            Some(c) if c.value.is_none() && c.shell => Some(format!(
                "Shell command of task '{task_id}' is not specified"
            )),
            Some(c) if c.value.is_none() => {
                Some(format!("Executable of task '{task_id}' is not specified"))
            }
            Some(_) => None,
        };
        let command = match (command, invalid) {
            (Some(command), None) => command,
            (_, why) => {
                self.phase = Phase::Terminated;
                self.forward_state(TaskState::TaskFailed, why, None, now);
                return;
            }
        };
        let environment = task_environment(&self.config.environment, &command, role);
        self.launch_environment = environment.clone();
        self.out.push(Action::Launch(LaunchSpec {
            task_id,
            command,
            environment,
            cwd: self.config.sandbox.clone(),
        }));
    }

    fn on_started(&mut self, now: Instant) {
        let Some(task) = self.task.as_ref().map(|t| t.info.clone()) else {
            return;
        };
        if self.phase != Phase::Idle {
            return;
        }
        self.phase = Phase::Running;
        self.forward_state(TaskState::TaskRunning, None, None, now);
        if let Some(check) = &task.health_check {
            match usable_health_check(check) {
                Ok(()) => {
                    self.health = Some(HealthTracker::new(check, now));
                    self.out.push(Action::StartHealthChecks {
                        check: check.clone(),
                        environment: self.launch_environment.clone(),
                        cwd: self.config.sandbox.clone(),
                    });
                }
                Err(why) => tracing::error!("not health checking task {}: {why}", task.task_id),
            }
        }
        if let Some(limit) = task.max_completion_time.filter(|d| d.nanoseconds > 0) {
            self.completion_at = Some(now + limit.as_duration());
        }
    }

    fn on_exited(&mut self, status: Result<ExitStatus, String>, now: Instant) {
        let cause = match self.phase {
            Phase::Running => None,
            Phase::Killing { cause, .. } => Some(cause),
            Phase::Idle | Phase::Terminated => return,
        };
        self.phase = Phase::Terminated;
        self.completion_at = None;
        self.stop_health_checks();
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
        tracing::info!("{message}");
        let mut update = self.status(self.task_id(), state);
        update.message = Some(message);
        update.reason = reason;
        if cause == Some(KillCause::HealthCheck) {
            update.healthy = Some(false);
        }
        self.forward(update, now);
    }

    fn on_health(&mut self, result: Result<(), String>, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        let Some(tracker) = self.health.as_mut() else {
            return;
        };
        if let Err(why) = &result {
            tracing::warn!("health check failed: {why}");
        }
        let Some(report) = tracker.record(result.is_ok(), now) else {
            return;
        };
        let Some(last) = self.last_status.clone() else {
            return;
        };
        let update = TaskStatus {
            uuid: Some(self.sources.uuid()),
            timestamp: Some(self.sources.wall_clock()),
            reason: Some(Reason::ReasonTaskHealthCheckStatusUpdated),
            healthy: Some(report.healthy),
            ..last
        };
        self.forward(update, now);
        if report.kill {
            let grace = self.task_grace(None);
            self.kill(grace, KillCause::HealthCheck, now);
        }
    }

    fn on_kill(&mut self, kill: Kill, now: Instant) {
        let Some(task) = &self.task else {
            tracing::error!(
                "KILL for task {} before any task was launched; exiting",
                kill.task_id
            );
            self.link = Link::Closed;
            self.out.push(Action::Exit(1));
            return;
        };
        if task.info.task_id != kill.task_id {
            tracing::warn!("ignoring KILL for unknown task {}", kill.task_id);
            return;
        }
        let grace = self.task_grace(kill.kill_policy.as_ref());
        tracing::info!(
            "received kill for task {} with grace period of {grace:?}",
            kill.task_id
        );
        self.kill(grace, KillCause::Request, now);
    }

    fn on_acknowledged(&mut self, ack: Acknowledged) {
        let Some(index) = self
            .unacknowledged
            .iter()
            .position(|u| u.status.uuid.as_ref() == Some(&ack.uuid))
        else {
            tracing::warn!(
                "acknowledgement for unknown status update of task {}",
                ack.task_id
            );
            return;
        };
        let update = self.unacknowledged.remove(index);
        if let Some(task) = &mut self.task {
            task.acknowledged = true;
        }
        if update.status.state.is_terminal() && update.status.task_id == self.task_id() {
            self.link = Link::Closed;
            self.out.push(Action::Exit(0));
        }
    }

    fn on_stream_ended(&mut self, why: &str, now: Instant) {
        match self.link {
            Link::Closed | Link::Waiting { .. } => {}
            Link::Subscribed => {
                self.ack_wait_until = None;
                if !self.config.checkpoint {
                    tracing::warn!(
                        "lost the agent ({why}); the framework does not checkpoint, so shutting down"
                    );
                    self.give_up(now);
                    return;
                }
                tracing::warn!("lost the agent ({why}); reconnecting");
                self.recovery_deadline = Some(now + self.config.recovery_timeout);
                self.backoff.reset();
                self.wait(now);
            }
            Link::Connecting { .. } => {
                tracing::info!("subscription failed ({why}); retrying");
                self.wait(now);
            }
        }
    }

    fn on_tick(&mut self, now: Instant) {
        if let Link::Waiting { retry_at } = self.link {
            if self.recovery_deadline.is_some_and(|d| d <= now) {
                tracing::warn!("could not reach the agent within the recovery timeout");
                self.give_up(now);
            } else if retry_at <= now {
                self.open();
            }
        }
        if let Phase::Killing {
            escalation_at: Some(at),
            cause,
            started,
        } = self.phase
        {
            if at <= now {
                tracing::info!("task did not terminate in time; sending SIGKILL");
                self.out.push(Action::Signal(Signal::Kill));
                self.phase = Phase::Killing {
                    cause,
                    started,
                    escalation_at: None,
                };
            }
        }
        if self.completion_at.is_some_and(|at| at <= now) {
            self.completion_at = None;
            tracing::info!("task exceeded its maximum completion time");
            self.kill(Duration::ZERO, KillCause::MaxCompletionTime, now);
        }
        if self.ack_wait_until.is_some_and(|at| at <= now) {
            self.ack_wait_until = None;
            if self.link == Link::Subscribed {
                tracing::warn!("no acknowledgement of the terminal update; exiting");
                self.link = Link::Closed;
                self.out.push(Action::Exit(0));
            }
        }
    }

    /// Kills the task (or shortens a kill in progress), as Mesos's `kill()`.
    fn kill(&mut self, grace: Duration, cause: KillCause, now: Instant) {
        match self.phase {
            Phase::Running => {
                self.completion_at = None;
                let killing_capable = self
                    .framework_info
                    .as_ref()
                    .is_some_and(|f| f.has_capability(CapabilityType::TaskKillingState));
                if cause != KillCause::MaxCompletionTime && killing_capable {
                    self.forward_state(TaskState::TaskKilling, None, None, now);
                }
                self.stop_health_checks();
                self.out.push(Action::Signal(Signal::Terminate));
                self.phase = Phase::Killing {
                    cause,
                    started: now,
                    escalation_at: Some(now + grace),
                };
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
            }
            Phase::Killing { .. } | Phase::Idle | Phase::Terminated => {}
        }
    }

    fn shutdown(&mut self, now: Instant) {
        match self.phase {
            Phase::Idle => {
                self.link = Link::Closed;
                self.out.push(Action::Exit(0));
            }
            Phase::Running | Phase::Killing { .. } => {
                let grace = self
                    .config
                    .shutdown_grace_period
                    .saturating_sub(SHUTDOWN_MARGIN);
                self.kill(grace, KillCause::Request, now);
            }
            Phase::Terminated => {}
        }
    }

    /// Stops talking to the agent: kills the task and exits once it is gone.
    fn give_up(&mut self, now: Instant) {
        self.link = Link::Closed;
        self.recovery_deadline = None;
        match self.phase {
            Phase::Idle | Phase::Terminated => self.out.push(Action::Exit(0)),
            Phase::Running | Phase::Killing { .. } => self.shutdown(now),
        }
    }

    fn open(&mut self) {
        let included = self
            .unacknowledged
            .iter()
            .filter_map(|u| u.status.uuid.clone())
            .collect();
        let subscribe = Subscribe {
            unacknowledged_tasks: self
                .task
                .iter()
                .filter(|t| !t.acknowledged)
                .map(|t| t.info.clone())
                .collect(),
            unacknowledged_updates: self.unacknowledged.clone(),
        };
        self.link = Link::Connecting { included };
        self.out
            .push(Action::Subscribe(self.call(CallKind::Subscribe(subscribe))));
    }

    fn wait(&mut self, now: Instant) {
        let pause = self.backoff.next(self.sources.jitter());
        self.link = Link::Waiting {
            retry_at: now + pause,
        };
    }

    fn stop_health_checks(&mut self) {
        if self.health.take().is_some() {
            self.out.push(Action::StopHealthChecks);
        }
    }

    fn forward_state(
        &mut self,
        state: TaskState,
        message: Option<String>,
        reason: Option<Reason>,
        now: Instant,
    ) {
        let mut status = self.status(self.task_id(), state);
        status.message = message;
        status.reason = reason;
        self.forward(status, now);
    }

    /// Records an update as unacknowledged and sends it if subscribed.
    fn forward(&mut self, status: TaskStatus, now: Instant) {
        let ours = status.task_id == self.task_id();
        let terminal = status.state.is_terminal();
        if ours {
            self.last_status = Some(status.clone());
        }
        let update = Update { status };
        self.unacknowledged.push(update.clone());
        match self.link {
            Link::Subscribed => {
                self.out.push(Action::Send(self.update_call(update)));
                if ours && terminal {
                    self.ack_wait_until = Some(now + ACK_WAIT);
                }
            }
            Link::Closed if ours && terminal => self.out.push(Action::Exit(0)),
            _ => {}
        }
    }

    fn status(&mut self, task_id: TaskId, state: TaskState) -> TaskStatus {
        TaskStatus {
            source: Some(StatusSource::SourceExecutor),
            uuid: Some(self.sources.uuid()),
            timestamp: Some(self.sources.wall_clock()),
            executor_id: Some(self.config.executor_id.clone()),
            agent_id: self.agent_id.clone(),
            ..TaskStatus::new(task_id, state)
        }
    }

    fn terminal_update_pending(&self) -> bool {
        let ours = self.task_id();
        self.unacknowledged
            .iter()
            .any(|u| u.status.task_id == ours && u.status.state.is_terminal())
    }

    fn task_id(&self) -> TaskId {
        self.task
            .as_ref()
            .map(|t| t.info.task_id.clone())
            .unwrap_or_default()
    }

    /// The grace period of a kill: the override's, else the task's policy's, else 3 s.
    fn task_grace(&self, kill_override: Option<&meseta_api::KillPolicy>) -> Duration {
        let task_policy = self.task.as_ref().and_then(|t| t.info.kill_policy.as_ref());
        kill_override
            .and_then(|p| p.grace_period)
            .or_else(|| task_policy.and_then(|p| p.grace_period))
            .unwrap_or(meseta_api::KillPolicy::DEFAULT_GRACE_PERIOD)
            .as_duration()
    }

    fn update_call(&self, update: Update) -> Call {
        self.call(CallKind::Update(update))
    }

    fn call(&self, kind: CallKind) -> Call {
        Call {
            executor_id: self.config.executor_id.clone(),
            framework_id: self.config.framework_id.clone(),
            kind,
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
mod tests;
