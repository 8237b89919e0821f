//! What an executor's pure state machine is fed ([`Input`]) and what it asks the driver to
//! do ([`Action`]), shared by the command executor (`core`) and the default executor
//! (`default_core`): both implement [`Machine`], which the driver runs. Every input or
//! action about a task names it, since the default executor runs many.

use crate::task::{Step, TaskRun};
use meseta_api::executor::{Call, Event};
use meseta_api::json::Bytes;
use meseta_api::{CommandInfo, HealthCheck, TaskId};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Instant;

/// Where uuids, wall-clock time and randomness come from.
pub trait Sources {
    /// A fresh 16-byte status-update uuid.
    fn uuid(&mut self) -> Bytes;
    /// Seconds since the Unix epoch, for `TaskStatus.timestamp`.
    fn wall_clock(&mut self) -> f64;
    /// A number in `[0, 1)` for backoff jitter.
    fn jitter(&mut self) -> f64;
}

/// Everything the driver needs to start a task's process.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchSpec {
    pub task_id: TaskId,
    pub command: CommandInfo,
    /// The complete environment of the process.
    pub environment: Vec<(String, String)>,
    /// The working directory (the task's sandbox).
    pub cwd: PathBuf,
    /// When set, the task's own sandbox: created before the start, with the task's
    /// `stdout` and `stderr` files in it. Otherwise the task writes to the executor's.
    pub output_dir: Option<PathBuf>,
}

/// A signal for a task's process group.
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
    /// Start a task's process; answered at once by [`Input::Started`] or
    /// [`Input::LaunchFailed`], before any other input.
    Launch(LaunchSpec),
    /// Start probing a task's health (results come back as [`Input::Health`]).
    StartHealthChecks {
        task_id: TaskId,
        check: HealthCheck,
        environment: Vec<(String, String)>,
        cwd: PathBuf,
    },
    /// Stop probing a task's health.
    StopHealthChecks(TaskId),
    /// Signal a task's process group.
    Signal(TaskId, Signal),
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
    /// A task's process started.
    Started(TaskId),
    /// A task's process could not be started (why).
    LaunchFailed(TaskId, String),
    /// A task's process exited (or could not be waited for: why).
    Exited(TaskId, Result<ExitStatus, String>),
    /// One health probe's result for a task: `Err(why)` when unhealthy.
    Health(TaskId, Result<(), String>),
    /// Time passed (a deadline from [`Machine::next_deadline`] may be due).
    Tick,
}

impl From<Event> for Input {
    fn from(event: Event) -> Input {
        Input::Event(Box::new(event))
    }
}

/// An executor's decisions: inputs in, actions out; the current [`Instant`] comes with
/// every call.
pub trait Machine {
    /// The first subscription.
    fn start(&mut self, now: Instant) -> Vec<Action>;
    /// Handles one input at `now`.
    fn handle(&mut self, input: Input, now: Instant) -> Vec<Action>;
    /// The earliest moment at which [`Input::Tick`] has something to do.
    fn next_deadline(&self) -> Option<Instant>;
}

/// The handlers an executor's state machine has, one per kind of input, for
/// [`dispatch`].
pub trait Handlers {
    fn on_event(&mut self, event: Event, now: Instant);
    fn on_stream_ended(&mut self, why: &str, now: Instant);
    /// Runs `f` on the task `id` when the machine runs it (with whether the framework
    /// takes TASK_KILLING), and carries out the steps it returns.
    fn on_task(
        &mut self,
        id: &TaskId,
        now: Instant,
        f: impl FnOnce(&mut TaskRun, bool) -> Vec<Step>,
    );
    fn on_tick(&mut self, now: Instant);
    /// The actions the handlers produced since the last call.
    fn take_actions(&mut self) -> Vec<Action>;
}

/// Hands `input` to its handler; the actions that came of it.
pub fn dispatch(machine: &mut impl Handlers, input: Input, now: Instant) -> Vec<Action> {
    match input {
        Input::Event(event) => machine.on_event(*event, now),
        Input::StreamEnded(why) => machine.on_stream_ended(&why, now),
        Input::Started(id) => machine.on_task(&id, now, |run, capable| run.started(now, capable)),
        Input::LaunchFailed(id, why) => machine.on_task(&id, now, |run, _| run.launch_failed(&why)),
        Input::Exited(id, status) => machine.on_task(&id, now, |run, _| run.exited(status)),
        Input::Health(id, result) => {
            machine.on_task(&id, now, |run, capable| run.health(result, now, capable))
        }
        Input::Tick => machine.on_tick(now),
    }
    machine.take_actions()
}
