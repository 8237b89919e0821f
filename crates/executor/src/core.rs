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
//! The task's own run (launch, kill, health, exit) is a [`TaskRun`] and the link with its
//! reliable updates a [`Session`], both shared with the default executor.

use crate::config::Config;
use crate::machine::{dispatch, Action, Handlers, Input, Machine, Sources};
use crate::session::{Due, Session};
use crate::task::{KillCause, Step, TaskRun};
use meseta_api::executor::{Event, Kill};
use meseta_api::{TaskId, TaskInfo, TaskState, TaskStatus};
use std::time::{Duration, Instant};

/// Taken off the shutdown grace period so that TASK_KILLED goes out before the agent
/// destroys the container (Mesos: the reap interval plus one second).
pub(crate) const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);
/// How long to wait for the acknowledgement of the terminal update while subscribed.
pub const ACK_WAIT: Duration = Duration::from_secs(60);

/// The one task of a command executor.
struct CommandTask {
    run: TaskRun,
    /// Whether one of its updates was acknowledged (then a SUBSCRIBE no longer lists it).
    acknowledged: bool,
}

/// The command executor's state.
pub struct Core<S> {
    pub(crate) session: Session<S>,
    task: Option<CommandTask>,
    ack_wait_until: Option<Instant>,
    out: Vec<Action>,
}

impl<S: Sources> Core<S> {
    pub fn new(config: Config, sources: S) -> Core<S> {
        Core {
            session: Session::new(config, sources),
            task: None,
            ack_wait_until: None,
            out: Vec::new(),
        }
    }

    fn on_launch(&mut self, task: TaskInfo, now: Instant) {
        if self.task.is_some() {
            let message = "Attempted to run multiple tasks using a \"command\" executor";
            let status = self.session.status(task.task_id, TaskState::TaskFailed);
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
        let config = &self.session.config;
        let (run, steps) = TaskRun::launch(
            task,
            &config.environment,
            config.sandbox.clone(),
            None,
            config.image.as_ref(),
        );
        self.task = Some(CommandTask {
            run,
            acknowledged: false,
        });
        self.apply(steps, now);
    }

    fn on_kill(&mut self, kill: Kill, now: Instant) {
        let Some(task) = &mut self.task else {
            tracing::error!(
                "KILL for task {} before any task was launched; exiting",
                kill.task_id
            );
            self.session.close();
            self.out.push(Action::Exit(1));
            return;
        };
        if task.run.task_id() != &kill.task_id {
            tracing::warn!("ignoring KILL for unknown task {}", kill.task_id);
            return;
        }
        let grace = task.run.grace(kill.kill_policy.as_ref());
        tracing::info!(
            "received kill for task {} with grace period of {grace:?}",
            kill.task_id
        );
        let capable = self.session.killing_capable();
        let steps = task.run.kill(grace, KillCause::Request, now, capable);
        self.apply(steps, now);
    }

    fn shutdown(&mut self, now: Instant) {
        let grace = self
            .session
            .config
            .shutdown_grace_period
            .saturating_sub(SHUTDOWN_MARGIN);
        let capable = self.session.killing_capable();
        match &mut self.task {
            None => {
                self.session.close();
                self.out.push(Action::Exit(0));
            }
            Some(task) if task.run.is_terminated() => {}
            Some(task) => {
                let steps = task.run.kill(grace, KillCause::Request, now, capable);
                self.apply(steps, now);
            }
        }
    }

    /// The link is closed for good: kills the task and exits once it is gone.
    fn give_up(&mut self, now: Instant) {
        match &self.task {
            Some(task) if !task.run.is_terminated() => self.shutdown(now),
            _ => self.out.push(Action::Exit(0)),
        }
    }

    /// Carries out the task's steps: actions go out, reports become updates.
    fn apply(&mut self, steps: Vec<Step>, now: Instant) {
        for step in steps {
            match step {
                Step::Act(action) => self.out.push(action),
                Step::Report(report) => {
                    let status = self.session.status(self.task_id(), report.state);
                    self.forward(report.into_status(status), now);
                }
            }
        }
    }

    /// Sends an update reliably; the terminal one of the task starts the wait for its
    /// acknowledgement (or ends the executor when the link is closed).
    fn forward(&mut self, status: TaskStatus, now: Instant) {
        let ours = status.task_id == self.task_id();
        let terminal = status.state.is_terminal();
        match self.session.forward(status) {
            Some(send) => {
                self.out.push(send);
                if ours && terminal {
                    self.ack_wait_until = Some(now + ACK_WAIT);
                }
            }
            None if ours && terminal && self.session.is_closed() => self.out.push(Action::Exit(0)),
            None => {}
        }
    }

    fn task_id(&self) -> TaskId {
        self.task
            .as_ref()
            .map(|t| t.run.task_id().clone())
            .unwrap_or_default()
    }
}

impl<S: Sources> Handlers for Core<S> {
    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Subscribed(subscribed) => {
                let late = self.session.subscribed(subscribed);
                self.out.extend(late);
                if self.session.terminal_unacknowledged(&self.task_id()) {
                    self.ack_wait_until = Some(now + ACK_WAIT);
                }
            }
            Event::Launch(launch) => self.on_launch(launch.task, now),
            Event::LaunchGroup(_) => {
                tracing::error!("LAUNCH_GROUP is not supported by the command executor");
                self.shutdown(now);
            }
            Event::Kill(kill) => self.on_kill(kill, now),
            Event::Acknowledged(ack) => {
                let Some(update) = self.session.acknowledge(&ack) else {
                    return;
                };
                if let Some(task) = &mut self.task {
                    task.acknowledged = true;
                }
                if update.status.state.is_terminal() && update.status.task_id == self.task_id() {
                    self.session.close();
                    self.out.push(Action::Exit(0));
                }
            }
            Event::Shutdown => {
                tracing::info!("shutting down");
                self.shutdown(now);
            }
            Event::Error(error) => tracing::error!("error from the agent: {}", error.message),
            Event::Message(_) | Event::Heartbeat => {}
        }
    }

    /// Runs `f` on the task when `id` names it, and carries out its steps.
    fn on_task(
        &mut self,
        id: &TaskId,
        now: Instant,
        f: impl FnOnce(&mut TaskRun, bool) -> Vec<Step>,
    ) {
        let capable = self.session.killing_capable();
        let Some(task) = self.task.as_mut().filter(|t| t.run.task_id() == id) else {
            return;
        };
        let steps = f(&mut task.run, capable);
        self.apply(steps, now);
    }

    fn on_stream_ended(&mut self, why: &str, now: Instant) {
        if self.session.is_subscribed() {
            self.ack_wait_until = None;
        }
        if self.session.stream_ended(why, now) {
            self.give_up(now);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        match self.session.tick(now) {
            Due::Nothing => {}
            Due::Retry => {
                let tasks = self
                    .task
                    .iter()
                    .filter(|t| !t.acknowledged)
                    .map(|t| t.run.info().clone())
                    .collect();
                let subscribe = self.session.open(tasks);
                self.out.push(subscribe);
            }
            Due::GiveUp => self.give_up(now),
        }
        let capable = self.session.killing_capable();
        if let Some(task) = &mut self.task {
            let steps = task.run.tick(now, capable);
            self.apply(steps, now);
        }
        if self.ack_wait_until.is_some_and(|at| at <= now) {
            self.ack_wait_until = None;
            if self.session.is_subscribed() {
                tracing::warn!("no acknowledgement of the terminal update; exiting");
                self.session.close();
                self.out.push(Action::Exit(0));
            }
        }
    }
}

impl<S: Sources> Machine for Core<S> {
    fn start(&mut self, now: Instant) -> Vec<Action> {
        vec![self.session.start(now)]
    }

    fn next_deadline(&self) -> Option<Instant> {
        let task = self.task.as_ref().and_then(|t| t.run.next_deadline());
        [self.session.next_deadline(), task, self.ack_wait_until]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        dispatch(self, input, now)
    }
}

#[cfg(test)]
mod tests;
