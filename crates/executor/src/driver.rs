//! The executors' event loop: it feeds a [`Machine`] (the command or the default
//! executor's core) with what happens (events from the agent, tasks' starts and exits,
//! health-probe results, the passing of time) and carries out its actions
//! (subscriptions, UPDATE calls, process spawning and signals, health probing, exit).

use crate::agent::{AgentLink, LinkError};
use crate::config::Config;
use crate::core::Core;
use crate::default_core::DefaultCore;
use crate::machine::{Action, Input, Machine, Sources};
use crate::probe;
use crate::process::TaskProcess;
use meseta_api::executor::Call;
use meseta_api::json::{self, Bytes};
use meseta_api::TaskId;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

/// How often a failed UPDATE is retried on the same subscription.
const SEND_ATTEMPTS: u32 = 3;
/// How long queued UPDATE calls get to go out when the executor exits.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Real uuids, clock and jitter.
struct SystemSources;

impl Sources for SystemSources {
    fn uuid(&mut self) -> Bytes {
        json::new_uuid_bytes()
    }

    fn wall_clock(&mut self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default()
    }

    fn jitter(&mut self) -> f64 {
        uuid::Uuid::new_v4().as_u128() as f64 / u128::MAX as f64
    }
}

/// Runs the command executor until it is done; returns its exit code.
pub async fn run(config: Config) -> Result<i32, LinkError> {
    let link = AgentLink::new(&config)?;
    drive(link, Core::new(config, SystemSources)).await
}

/// Runs the default executor (task groups) until it is done; returns its exit code.
pub async fn run_default(config: Config) -> Result<i32, LinkError> {
    let link = AgentLink::new(&config)?;
    drive(link, DefaultCore::new(config, SystemSources)).await
}

async fn drive(link: AgentLink, mut machine: impl Machine) -> Result<i32, LinkError> {
    let (inputs_tx, mut inputs) = mpsc::unbounded_channel();
    let (calls_tx, calls_rx) = mpsc::unbounded_channel();
    let sender = tokio::spawn(send_calls(link.clone(), calls_rx));
    let mut io = Io {
        link,
        inputs: inputs_tx,
        calls: calls_tx,
        stream: None,
        health: HashMap::new(),
        tasks: HashMap::new(),
    };
    let mut actions: VecDeque<Action> = machine.start(Instant::now()).into();
    let code = 'run: loop {
        while let Some(action) = actions.pop_front() {
            if let Some(code) = io.apply(action, &mut machine, &mut actions) {
                break 'run code;
            }
        }
        let input = match machine.next_deadline() {
            Some(deadline) => tokio::select! {
                input = inputs.recv() => input,
                _ = tokio::time::sleep_until(deadline.into()) => Some(Input::Tick),
            },
            None => inputs.recv().await,
        };
        // `io` holds a sender, so the channel never closes.
        let input = input.unwrap_or(Input::Tick);
        if let Input::Exited(task_id, _) = &input {
            io.tasks.remove(task_id);
        }
        actions.extend(machine.handle(input, Instant::now()));
    };
    io.stop();
    drop(io);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, sender).await;
    Ok(code)
}

/// The I/O the machine's actions drive.
struct Io {
    link: AgentLink,
    inputs: UnboundedSender<Input>,
    calls: UnboundedSender<Call>,
    stream: Option<JoinHandle<()>>,
    health: HashMap<TaskId, JoinHandle<()>>,
    /// The tasks' processes, until they exit.
    tasks: HashMap<TaskId, TaskProcess>,
}

impl Io {
    /// Carries out one action; returns the exit code when the executor is done.
    fn apply(
        &mut self,
        action: Action,
        machine: &mut impl Machine,
        actions: &mut VecDeque<Action>,
    ) -> Option<i32> {
        match action {
            Action::Subscribe(call) => {
                if let Some(old) = self.stream.take() {
                    old.abort();
                }
                let task = tokio::spawn(follow(self.link.clone(), call, self.inputs.clone()));
                self.stream = Some(task);
            }
            Action::Send(call) => {
                let _ = self.calls.send(call);
            }
            Action::Launch(spec) => {
                let task_id = spec.task_id.clone();
                let result = match TaskProcess::spawn(&spec) {
                    Ok((process, mut child)) => {
                        let inputs = self.inputs.clone();
                        let id = task_id.clone();
                        tokio::spawn(async move {
                            let status = child.wait().await.map_err(|e| e.to_string());
                            let _ = inputs.send(Input::Exited(id, status));
                        });
                        self.tasks.insert(task_id.clone(), process);
                        Input::Started(task_id)
                    }
                    Err(e) => {
                        tracing::error!("cannot launch task {task_id}: {e}");
                        Input::LaunchFailed(task_id, e.to_string())
                    }
                };
                // The answer to a launch comes before anything else.
                for next in machine.handle(result, Instant::now()).into_iter().rev() {
                    actions.push_front(next);
                }
            }
            Action::StartHealthChecks {
                task_id,
                check,
                environment,
                cwd,
            } => {
                self.stop_health_checks(&task_id);
                let probes = probe::run(
                    task_id.clone(),
                    check,
                    environment,
                    cwd,
                    self.inputs.clone(),
                );
                self.health.insert(task_id, tokio::spawn(probes));
            }
            Action::StopHealthChecks(task_id) => self.stop_health_checks(&task_id),
            Action::Signal(task_id, signal) => match self.tasks.get(&task_id) {
                Some(task) => task.signal(signal),
                None => tracing::debug!("not signalling task {task_id}: it has exited"),
            },
            Action::Exit(code) => return Some(code),
        }
        None
    }

    fn stop_health_checks(&mut self, task_id: &TaskId) {
        if let Some(probes) = self.health.remove(task_id) {
            probes.abort();
        }
    }

    fn stop(&mut self) {
        for (_, probes) in self.health.drain() {
            probes.abort();
        }
        if let Some(stream) = self.stream.take() {
            stream.abort();
        }
    }
}

/// Subscribes and forwards the stream's events until it ends.
async fn follow(link: AgentLink, call: Call, inputs: UnboundedSender<Input>) {
    let why = match link.subscribe(&call).await {
        Err(e) => e.to_string(),
        Ok(mut events) => loop {
            match events.next().await {
                Some(Ok(event)) => {
                    if inputs.send(Input::from(event)).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the agent closed the stream".to_string(),
            }
        },
    };
    let _ = inputs.send(Input::StreamEnded(why));
}

/// Sends UPDATE calls one at a time, in order. An update that cannot be sent stays
/// unacknowledged and goes out again with the next SUBSCRIBE.
async fn send_calls(link: AgentLink, mut calls: UnboundedReceiver<Call>) {
    while let Some(call) = calls.recv().await {
        for attempt in 1..=SEND_ATTEMPTS {
            match link.send(&call).await {
                Ok(()) => break,
                Err(LinkError::Rejected { status, .. }) if status < 500 => {
                    tracing::warn!("the agent rejected a {} call", call.kind.type_name());
                    break;
                }
                Err(e) if attempt == SEND_ATTEMPTS => {
                    tracing::warn!("could not send a {} call: {e}", call.kind.type_name());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await,
            }
        }
    }
}
