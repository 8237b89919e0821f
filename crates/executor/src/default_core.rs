//! The default executor's decisions (`meseta executor --default`, after Mesos's
//! `src/launcher/default_executor.cpp`), as a pure state machine over the same inputs and
//! actions as the command executor:
//!
//! - LAUNCH_GROUP runs each task of the group as its own process, in its own sandbox
//!   `tasks/<task id>` under the executor's (its `stdout` and `stderr` there, and
//!   `MESOS_SANDBOX` naming it), with its own TASK_STARTING, TASK_RUNNING and terminal
//!   update, health checks and maximum completion time (a [`TaskRun`] each); LAUNCH is
//!   refused by shutting down, as Mesos does;
//! - KILL kills that task with its grace period (the KILL's kill policy, else the task's,
//!   else 3 s); when a task of a group ends TASK_FAILED or TASK_KILLED, the group's other
//!   tasks are killed ([`Groups`]);
//! - SHUTDOWN kills every task with the shutdown grace period less 2 s; KILL and
//!   LAUNCH_GROUP are ignored from then on;
//! - the executor exits once no task is left running and every update is acknowledged,
//!   or 60 s after its last task ended while subscribed;
//! - the link (subscription, retries, recovery timeout, unacknowledged updates) is the
//!   command executor's [`Session`]; a re-SUBSCRIBE lists the live tasks none of whose
//!   updates was acknowledged; a lost link without checkpointing, or the recovery timeout,
//!   kills every task and exits.

use crate::config::Config;
use crate::core::{ACK_WAIT, SHUTDOWN_MARGIN};
use crate::groups::Groups;
use crate::machine::{dispatch, Action, Handlers, Input, Machine, Sources};
use crate::session::{Due, Session};
use crate::task::{KillCause, Step, TaskRun};
use meseta_api::executor::{Event, Kill};
use meseta_api::{TaskGroupInfo, TaskId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The directory of the executor's sandbox that holds its tasks' sandboxes.
const TASKS_DIRECTORY: &str = "tasks";

/// A live task of the default executor.
struct GroupTask {
    run: TaskRun,
    /// Whether one of its updates was acknowledged (then a SUBSCRIBE no longer lists it).
    acknowledged: bool,
}

/// The default executor's state.
pub struct DefaultCore<S> {
    pub(crate) session: Session<S>,
    /// The tasks whose process has not ended.
    tasks: BTreeMap<TaskId, GroupTask>,
    groups: Groups,
    shutting_down: bool,
    /// When to exit with updates still unacknowledged (no task left).
    exit_at: Option<Instant>,
    out: Vec<Action>,
}

impl<S: Sources> DefaultCore<S> {
    pub fn new(config: Config, sources: S) -> DefaultCore<S> {
        DefaultCore {
            session: Session::new(config, sources),
            tasks: BTreeMap::new(),
            groups: Groups::default(),
            shutting_down: false,
            exit_at: None,
            out: Vec::new(),
        }
    }

    fn on_launch_group(&mut self, group: TaskGroupInfo, now: Instant) {
        if self.shutting_down {
            tracing::warn!("ignoring LAUNCH_GROUP: the executor is shutting down");
            return;
        }
        let ids: Vec<TaskId> = group.tasks.iter().map(|t| t.task_id.clone()).collect();
        tracing::info!("launching task group {ids:?}");
        self.groups.add(ids);
        self.exit_at = None;
        // Every task of the group is known before any of its updates is handled, so
        // that a task failing at once kills the others.
        let mut launched = Vec::new();
        for info in group.tasks {
            let id = info.task_id.clone();
            if self.tasks.contains_key(&id) {
                tracing::error!("task {id} is already running in this executor; ignoring it");
                continue;
            }
            let config = &self.session.config;
            let sandbox = task_sandbox(&config.sandbox, &id);
            let base = with_sandbox(&config.environment, &sandbox);
            let (run, steps) = TaskRun::launch(info, &base, sandbox.clone(), Some(sandbox), None);
            let task = GroupTask {
                run,
                acknowledged: false,
            };
            self.tasks.insert(id.clone(), task);
            launched.push((id, steps));
        }
        for (id, steps) in launched {
            self.apply(&id, steps, now);
        }
    }

    fn on_kill(&mut self, kill: Kill, now: Instant) {
        if self.shutting_down {
            tracing::warn!(
                "ignoring KILL of task {}: the executor is shutting down",
                kill.task_id
            );
            return;
        }
        let capable = self.session.killing_capable();
        let Some(task) = self.tasks.get_mut(&kill.task_id) else {
            tracing::warn!("ignoring KILL of task {}: it is not running", kill.task_id);
            return;
        };
        let grace = task.run.grace(kill.kill_policy.as_ref());
        tracing::info!(
            "received kill for task {} with grace period of {grace:?}",
            kill.task_id
        );
        let steps = task.run.kill(grace, KillCause::Request, now, capable);
        self.apply(&kill.task_id, steps, now);
    }

    fn shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            tracing::warn!("ignoring SHUTDOWN: already shutting down");
            return;
        }
        tracing::info!("shutting down");
        self.kill_all(now);
    }

    /// The link is closed for good: kills every task and exits once they are gone.
    fn give_up(&mut self, now: Instant) {
        self.kill_all(now);
    }

    /// Kills every task with the shutdown grace period less the margin.
    fn kill_all(&mut self, now: Instant) {
        let grace = self
            .session
            .config
            .shutdown_grace_period
            .saturating_sub(SHUTDOWN_MARGIN);
        self.shutting_down = true;
        if self.tasks.is_empty() {
            return self.finish(now);
        }
        let ids: Vec<TaskId> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.on_task(&id, now, |run, capable| {
                run.kill(grace, KillCause::Request, now, capable)
            });
        }
    }

    /// Carries out a task's steps: actions go out, reports become updates; a terminal
    /// one ends the task.
    fn apply(&mut self, id: &TaskId, steps: Vec<Step>, now: Instant) {
        for step in steps {
            match step {
                Step::Act(action) => self.out.push(action),
                Step::Report(report) => {
                    let state = report.state;
                    let status = report.into_status(self.session.status(id.clone(), state));
                    if let Some(send) = self.session.forward(status) {
                        self.out.push(send);
                    }
                    if state.is_terminal() {
                        self.ended(id, state, now);
                    }
                }
            }
        }
    }

    /// A task ended in `state`: the rest of its group may have to be killed, and the
    /// executor ends with its last task.
    fn ended(&mut self, id: &TaskId, state: meseta_api::TaskState, now: Instant) {
        self.tasks.remove(id);
        let doomed = self.groups.ended(id, state, self.shutting_down);
        if !doomed.is_empty() {
            tracing::info!("task {id} ended {state:?}: killing the rest of its group {doomed:?}");
        }
        for other in doomed {
            let killing = self.tasks.get(&other).is_some_and(|t| t.run.is_killing());
            if !killing {
                self.on_task(&other, now, |run, capable| {
                    let grace = run.grace(None);
                    run.kill(grace, KillCause::Request, now, capable)
                });
            }
        }
        if self.tasks.is_empty() {
            self.finish(now);
        }
    }

    /// No task is left: exit once every update is acknowledged (or the link is gone),
    /// else wait a while for the acknowledgements.
    fn finish(&mut self, now: Instant) {
        if self.session.is_closed() || self.session.unacknowledged.is_empty() {
            self.exit();
        } else if self.session.is_subscribed() {
            self.exit_at = Some(now + ACK_WAIT);
        }
    }

    fn exit(&mut self) {
        self.session.close();
        self.out.push(Action::Exit(0));
    }
}

impl<S: Sources> Handlers for DefaultCore<S> {
    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Subscribed(subscribed) => {
                let late = self.session.subscribed(subscribed);
                self.out.extend(late);
                if self.tasks.is_empty() && !self.session.unacknowledged.is_empty() {
                    self.exit_at = Some(now + ACK_WAIT);
                }
            }
            Event::Launch(launch) => {
                tracing::error!(
                    "LAUNCH of task {} is not supported by the default executor; shutting down",
                    launch.task.task_id
                );
                self.shutdown(now);
            }
            Event::LaunchGroup(launch) => self.on_launch_group(launch.task_group, now),
            Event::Kill(kill) => self.on_kill(kill, now),
            Event::Acknowledged(ack) => {
                let Some(update) = self.session.acknowledge(&ack) else {
                    return;
                };
                if let Some(task) = self.tasks.get_mut(&update.status.task_id) {
                    task.acknowledged = true;
                }
                if self.tasks.is_empty() && self.session.unacknowledged.is_empty() {
                    self.exit();
                }
            }
            Event::Shutdown => self.shutdown(now),
            Event::Error(error) => tracing::error!("error from the agent: {}", error.message),
            Event::Message(_) | Event::Heartbeat => {}
        }
    }

    /// Runs `f` on the live task `id`, and carries out its steps.
    fn on_task(
        &mut self,
        id: &TaskId,
        now: Instant,
        f: impl FnOnce(&mut TaskRun, bool) -> Vec<Step>,
    ) {
        let capable = self.session.killing_capable();
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        let steps = f(&mut task.run, capable);
        self.apply(id, steps, now);
    }

    fn on_stream_ended(&mut self, why: &str, now: Instant) {
        if self.session.is_subscribed() {
            self.exit_at = None;
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
                    .tasks
                    .values()
                    .filter(|t| !t.acknowledged)
                    .map(|t| t.run.info().clone())
                    .collect();
                let subscribe = self.session.open(tasks);
                self.out.push(subscribe);
            }
            Due::GiveUp => self.give_up(now),
        }
        let ids: Vec<TaskId> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.on_task(&id, now, |run, capable| run.tick(now, capable));
        }
        if self.exit_at.is_some_and(|at| at <= now) {
            self.exit_at = None;
            if self.session.is_subscribed() {
                tracing::warn!("no acknowledgement of the last updates; exiting");
                self.exit();
            }
        }
    }
}

impl<S: Sources> Machine for DefaultCore<S> {
    fn start(&mut self, now: Instant) -> Vec<Action> {
        vec![self.session.start(now)]
    }

    fn next_deadline(&self) -> Option<Instant> {
        let tasks = self.tasks.values().filter_map(|t| t.run.next_deadline());
        [self.session.next_deadline(), self.exit_at]
            .into_iter()
            .flatten()
            .chain(tasks)
            .min()
    }

    fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        dispatch(self, input, now)
    }
}

/// A task's sandbox: `tasks/<task id>` in the executor's.
fn task_sandbox(executor_sandbox: &Path, task_id: &TaskId) -> PathBuf {
    executor_sandbox
        .join(TASKS_DIRECTORY)
        .join(task_id.as_str())
}

/// The executor's environment with `MESOS_SANDBOX` naming the task's sandbox.
fn with_sandbox(base: &[(String, String)], sandbox: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| k != "MESOS_SANDBOX")
        .cloned()
        .collect();
    env.push(("MESOS_SANDBOX".to_string(), sandbox.display().to_string()));
    env
}

#[cfg(test)]
mod tests;
