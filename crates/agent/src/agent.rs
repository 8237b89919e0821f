//! The agent's actor: the one task that owns the agent's mutable state (bookkeeping,
//! status update manager, executor event streams). It takes [`Command`]s from the HTTP
//! handlers, the master link and its own timers, and sends its effects out: checkpoint
//! writes and master messages through the [`Outbox`], events to executors, signals to
//! containers.

use crate::book::{
    self, Book, Cleanup, Delivery, ExecutorState, KillOutcome, NewRun, RunOutcome, Termination,
};
use crate::command::{Command, ContainerEntry, ExecutorReply};
use crate::executor_auth::{verify_claims, Claims};
use crate::fetcher::Fetcher;
use crate::gc::Gc;
use crate::launch::{self, RunContext};
use crate::launching::{launch_end, LaunchEnd, Launches};
use crate::outbox::{Batch, Outbox};
use crate::store::{ExecutorRecord, Recovered, StoreOp, TaskRecord};
use crate::updates::{Action, Persist, UpdateManager};
use crate::volumes::Placement;
use crate::{paths, views, volumes, AgentConfig, RecoverPolicy};
use meseta_api::executor::{self as exec, CallKind, Event};
use meseta_api::internal::{self, RegisterAgent, Registered, ToAgent, ToMaster};
use meseta_api::json::new_uuid_bytes;
use meseta_api::{
    AgentInfo, CapabilityType, ContainerId, ExecutorId, ExecutorType, FrameworkId, FrameworkInfo,
    MasterInfo, Reason, Resources, StatusSource, TaskGroupInfo, TaskId, TaskState, TaskStatus,
};
use meseta_containerizer::image::{ImageService, Provisioned};
use meseta_containerizer::{ExitFuture, Launcher, Signal};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Commands handled before the batch of effects they produced is flushed.
const MAX_COMMANDS_PER_BATCH: usize = 256;

/// Counters behind `/metrics/snapshot`.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub tasks_finished: u64,
    pub tasks_failed: u64,
    pub tasks_killed: u64,
    pub tasks_lost: u64,
    pub tasks_dropped: u64,
    pub tasks_gone: u64,
    pub tasks_error: u64,
    pub valid_status_updates: u64,
    pub invalid_status_updates: u64,
    pub valid_framework_messages: u64,
    pub invalid_framework_messages: u64,
    pub executors_terminated: u64,
    pub container_launch_errors: u64,
    pub recovery_errors: u64,
}

impl Counters {
    fn count_terminal(&mut self, state: TaskState) {
        let counter = match state {
            TaskState::TaskFinished => &mut self.tasks_finished,
            TaskState::TaskFailed => &mut self.tasks_failed,
            TaskState::TaskKilled => &mut self.tasks_killed,
            TaskState::TaskLost => &mut self.tasks_lost,
            TaskState::TaskDropped => &mut self.tasks_dropped,
            TaskState::TaskError => &mut self.tasks_error,
            TaskState::TaskGone | TaskState::TaskGoneByOperator => &mut self.tasks_gone,
            _ => return,
        };
        *counter += 1;
    }
}

/// The agent's state, owned by the actor task.
pub struct Agent {
    pub(crate) config: Arc<AgentConfig>,
    pub(crate) flags: Arc<Vec<(String, String)>>,
    pub(crate) book: Book,
    pub(crate) updates: UpdateManager,
    pub(crate) agent_info: AgentInfo,
    pub(crate) total: Resources,
    /// Dynamic reservations and persistent volumes, as the master last sent them.
    checkpointed: Resources,
    pub(crate) master: Option<MasterInfo>,
    pub(crate) registered: bool,
    pub(crate) start_time: f64,
    pub(crate) counters: Counters,
    /// `ip:port` (the hostname when bound to all addresses), for the master and `pid`.
    pub(crate) endpoint: String,
    /// Where executors reach the agent.
    executor_endpoint: String,
    /// The executor API's Unix socket (`MESOS_DOMAIN_SOCKET`), when served.
    executor_socket: Option<PathBuf>,
    launcher: Arc<dyn Launcher>,
    images: Arc<ImageService>,
    fetcher: Arc<Fetcher>,
    /// Containers about to be launched whose pre-launch step is done, with the root
    /// filesystem provisioned for them (when they have an image).
    prepared: HashMap<ContainerId, Option<Provisioned>>,
    /// Containers whose URIs are being fetched; dropping the sender cancels the fetch.
    fetching: HashMap<ContainerId, oneshot::Sender<()>>,
    /// The launcher thread, and the containers it is launching.
    launches: Launches,
    launching: HashSet<ContainerId>,
    streams: HashMap<(FrameworkId, ExecutorId), mpsc::UnboundedSender<Event>>,
    batch: Batch,
    outbox: Outbox,
    commands: mpsc::Sender<Command>,
    /// Removes finished runs' sandboxes.
    pub(crate) gc: Gc,
    switch_user: bool,
    /// Set when the master shut this agent down.
    stopped: bool,
}

/// What an executor's pre-launch step does: provision its image, fetch its URIs into its
/// sandbox as its user.
struct Preparation {
    image: Option<crate::images::ImageRequest>,
    uris: Vec<serde_json::Value>,
    sandbox: PathBuf,
    user: Option<String>,
}

/// Seconds since the epoch, as Mesos timestamps are.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the actor is built from.
pub struct Parts {
    pub config: Arc<AgentConfig>,
    pub flags: Arc<Vec<(String, String)>>,
    pub agent_info: AgentInfo,
    pub total: Resources,
    pub launcher: Arc<dyn Launcher>,
    pub images: Arc<ImageService>,
    pub outbox: Outbox,
    pub commands: mpsc::Sender<Command>,
    pub gc: Gc,
    /// The executor API's Unix socket, when the agent serves one.
    pub executor_socket: Option<PathBuf>,
}

impl Agent {
    pub fn new(parts: Parts) -> Agent {
        let (ip, port) = (parts.config.ip, parts.config.port);
        let endpoint = match ip.is_unspecified() {
            true => format!("{}:{port}", parts.agent_info.hostname),
            false => format!("{ip}:{port}"),
        };
        let executor_endpoint = match ip.is_unspecified() {
            true => format!("127.0.0.1:{port}"),
            false => endpoint.clone(),
        };
        let fetcher = Arc::new(Fetcher::new(&parts.config.work_dir, &parts.config.fetcher));
        let launches = Launches::spawn(parts.launcher.clone(), parts.commands.clone());
        Agent {
            config: parts.config,
            flags: parts.flags,
            book: Book::new(),
            updates: UpdateManager::new(),
            agent_info: parts.agent_info,
            total: parts.total,
            checkpointed: Resources::new(),
            master: None,
            registered: false,
            start_time: now_secs(),
            counters: Counters::default(),
            endpoint,
            executor_endpoint,
            executor_socket: parts.executor_socket,
            launcher: parts.launcher,
            images: parts.images,
            fetcher,
            prepared: HashMap::new(),
            fetching: HashMap::new(),
            launches,
            launching: HashSet::new(),
            streams: HashMap::new(),
            batch: Batch::default(),
            outbox: parts.outbox,
            commands: parts.commands,
            gc: parts.gc,
            switch_user: nix::unistd::geteuid().is_root(),
            stopped: false,
        }
    }

    /// Handles commands until `shutdown` resolves, the master shuts the agent down, or
    /// every sender is gone. Returns whether the master shut it down.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> bool {
        tokio::pin!(shutdown);
        loop {
            let deadline = self.updates.next_deadline();
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command);
                    for _ in 1..MAX_COMMANDS_PER_BATCH {
                        match commands.try_recv() {
                            Ok(command) => self.handle(command),
                            Err(_) => break,
                        }
                    }
                }
                _ = sleep_until(deadline) => {
                    let actions = self.updates.due(Instant::now());
                    self.run_actions(actions);
                }
                _ = &mut shutdown => {
                    self.clean_shutdown();
                    self.flush();
                    break;
                }
            }
            self.flush();
            if self.stopped {
                break;
            }
        }
        self.stopped
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            self.outbox.send(std::mem::take(&mut self.batch));
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Registration(reply) => {
                let _ = reply.send(self.registration());
            }
            Command::Registered(registered) => self.registered(registered),
            Command::Disconnected => {
                if self.registered {
                    tracing::warn!("disconnected from the master");
                }
                self.registered = false;
            }
            Command::FromMaster(message) => self.master_message(message),
            Command::Executor(call, claims, reply) => {
                let _ = reply.send(self.executor_call(call, claims.as_ref()));
            }
            Command::ExecutorExited {
                framework_id,
                executor_id,
                container_id,
                status,
            } => self.executor_exited(&framework_id, &executor_id, &container_id, status),
            Command::Prepared {
                framework_id,
                executor_id,
                container_id,
                result,
            } => self.prepared(&framework_id, &executor_id, container_id, result),
            Command::Launched {
                framework_id,
                executor_id,
                container_id,
                result,
            } => self.launched(&framework_id, &executor_id, container_id, result),
            Command::RegistrationTimeout {
                framework_id,
                executor_id,
                container_id,
            } => self.registration_timeout(&framework_id, &executor_id, &container_id),
            Command::EscalateKill {
                framework_id,
                executor_id,
                container_id,
            } => {
                let process = self
                    .book
                    .executor(&framework_id, &executor_id)
                    .filter(|e| {
                        e.container_id == container_id && e.state != ExecutorState::Terminated
                    })
                    .and_then(|e| e.process);
                if let Some(process) = process {
                    tracing::info!("killing executor {executor_id} of framework {framework_id} after its grace period");
                    self.signal(process, Signal::Kill);
                }
            }
            Command::View(view, reply) => {
                let _ = reply.send(views::render(self, view));
            }
            Command::SandboxRoots(reply) => {
                let _ = reply.send(self.sandbox_roots());
            }
            Command::Containers(reply) => {
                let _ = reply.send(self.containers());
            }
        }
    }

    // ----- recovery -------------------------------------------------------------------

    /// Rebuilds the state checkpointed by an earlier run and re-adopts (or, with
    /// `--recover=cleanup`, kills) the executors that are still alive.
    pub fn recover(&mut self, recovered: Recovered) {
        if let Some(id) = recovered.agent_id {
            tracing::info!("recovering agent {id}");
            self.agent_info.id = Some(id);
        }
        match Resources::from_list(recovered.checkpointed_resources) {
            Ok(checkpointed) => self.set_checkpointed(checkpointed),
            Err(e) => {
                tracing::error!("ignoring unreadable checkpointed resources: {e}");
                self.counters.recovery_errors += 1;
            }
        }
        for framework in recovered.frameworks {
            self.book.upsert_framework(framework);
        }
        for (framework_id, record) in recovered.executors {
            let Some(framework) = self.book.frameworks.get_mut(&framework_id) else {
                // An executor of a framework that does not checkpoint, left by a crash.
                let orphan = record.process.and_then(|p| self.launcher.recover(p));
                if let Some(orphan) = orphan {
                    let id = &record.info.executor_id;
                    tracing::info!("killing orphaned executor {id} of framework {framework_id}");
                    self.signal(orphan.process, Signal::Kill);
                }
                let id = record.info.executor_id;
                self.batch
                    .ops
                    .push(StoreOp::DeleteExecutor(framework_id, id));
                continue;
            };
            framework.executors.insert(
                record.info.executor_id.clone(),
                book::Executor {
                    info: record.info,
                    container_id: record.container_id,
                    directory: record.directory,
                    command_executor: record.command_executor,
                    state: ExecutorState::Registering,
                    process: record.process,
                    queued: Vec::new(),
                    queued_groups: Vec::new(),
                    launched: Default::default(),
                    terminated: Default::default(),
                    completed: Default::default(),
                    killing: Default::default(),
                    termination: None,
                },
            );
        }
        for (framework_id, record) in recovered.tasks {
            let Some(e) = self.book.executor_mut(&framework_id, &record.executor_id) else {
                self.counters.recovery_errors += 1;
                continue;
            };
            let id = record.info.task_id.clone();
            if record.queued {
                e.requeue(record.info, record.group);
            } else if record.task.state.is_terminal() {
                e.terminated.insert(
                    id,
                    book::TaskEntry {
                        info: record.info,
                        task: record.task,
                    },
                );
            } else {
                e.launched.insert(
                    id,
                    book::TaskEntry {
                        info: record.info,
                        task: record.task,
                    },
                );
            }
        }
        for (framework_id, seq, status) in recovered.updates {
            self.updates.recover(&framework_id, seq, status);
        }
        let runs: Vec<(
            FrameworkId,
            ExecutorId,
            ContainerId,
            Option<meseta_containerizer::ProcessRef>,
        )> = self
            .book
            .frameworks
            .iter()
            .flat_map(|(fid, f)| {
                f.executors.values().map(move |e| {
                    (
                        fid.clone(),
                        e.info.executor_id.clone(),
                        e.container_id.clone(),
                        e.process,
                    )
                })
            })
            .collect();
        for (fid, eid, cid, process) in runs {
            let adopted = process.and_then(|p| self.launcher.recover(p));
            match (adopted, self.config.recover) {
                (Some(launched), RecoverPolicy::Reconnect) => {
                    tracing::info!(
                        "reconnecting to executor {eid} of framework {fid} (pid {})",
                        launched.process.pid
                    );
                    self.watch(&fid, &eid, &cid, launched.exited);
                    self.registration_timer(&fid, &eid, &cid);
                }
                (Some(launched), RecoverPolicy::Cleanup) => {
                    tracing::info!("--recover=cleanup: killing executor {eid} of framework {fid}");
                    if let Some(e) = self.book.executor_mut(&fid, &eid) {
                        e.state = ExecutorState::Terminating;
                    }
                    self.signal(launched.process, Signal::Kill);
                    self.watch(&fid, &eid, &cid, launched.exited);
                }
                (None, _) => {
                    tracing::info!("executor {eid} of framework {fid} is gone");
                    self.executor_exited(&fid, &eid, &cid, None);
                }
            }
        }
        let known: Vec<_> = self
            .book
            .frameworks
            .values()
            .flat_map(|f| f.executors.values())
            .filter_map(|e| e.process)
            .collect();
        self.launcher.destroy_unknown(&known);
        let containers = self
            .book
            .frameworks
            .values()
            .flat_map(|f| f.executors.values())
            .map(|e| e.container_id.to_string())
            .collect();
        crate::images::release_orphans(&self.images, containers);
        let known: HashSet<PathBuf> = self.sandbox_roots().into_iter().collect();
        self.gc.recover(&self.config.work_dir, &known);
        self.flush();
    }

    // ----- the master link ------------------------------------------------------------

    fn registration(&self) -> RegisterAgent {
        let mut tasks = self.book.registration_tasks();
        for task in &mut tasks {
            if let Some(head) = self.updates.head(&task.framework_id, &task.task_id) {
                task.status_update_state = Some(head.state);
                task.status_update_uuid = head.uuid.clone();
            }
        }
        RegisterAgent {
            version: internal::LINK_VERSION,
            agent_info: self.agent_info.clone(),
            endpoint: self.endpoint.clone(),
            tasks,
            executors: self.book.registration_executors(),
            frameworks: self
                .book
                .frameworks
                .values()
                .map(|f| f.info.clone())
                .collect(),
            capabilities: Vec::new(),
            checkpointed_resources: self.checkpointed.clone().into_vec(),
        }
    }

    /// CHECKPOINT_RESOURCES: stores the master's list and brings the volumes in step.
    fn checkpoint_resources(&mut self, message: internal::CheckpointResources) {
        match Resources::from_list(message.resources) {
            Ok(checkpointed) => {
                self.batch.ops.push(StoreOp::CheckpointedResources(
                    checkpointed.clone().into_vec(),
                ));
                self.set_checkpointed(checkpointed);
            }
            Err(e) => {
                tracing::error!("ignoring invalid checkpointed resources from the master: {e}")
            }
        }
    }

    /// Takes a new set of checkpointed resources: volume directories and the total.
    fn set_checkpointed(&mut self, checkpointed: Resources) {
        let mut in_use = Resources::new();
        for framework in self.book.frameworks.values() {
            for executor in framework.executors.values() {
                in_use.add_all(&executor.used_resources());
            }
        }
        let before = std::mem::replace(&mut self.checkpointed, checkpointed);
        for problem in volumes::sync(&self.config.work_dir, &before, &self.checkpointed, &in_use) {
            tracing::warn!("{problem}");
        }
        let base = Resources::from_list(self.agent_info.resources.clone()).unwrap_or_default();
        match base.apply_checkpointed(&self.checkpointed) {
            Ok(total) => self.total = total,
            Err(e) => tracing::error!("{e}"),
        }
    }

    fn registered(&mut self, registered: Registered) {
        if self.agent_info.id.as_ref() != Some(&registered.agent_id) {
            if let Some(old) = &self.agent_info.id {
                tracing::warn!(
                    "the master gave this agent a new id {} (was {old})",
                    registered.agent_id
                );
            }
            self.agent_info.id = Some(registered.agent_id.clone());
            self.batch
                .ops
                .push(StoreOp::AgentId(registered.agent_id.clone()));
        }
        self.batch
            .ops
            .push(StoreOp::AgentInfo(self.agent_info.clone()));
        tracing::info!("registered with the master as {}", registered.agent_id);
        self.master = Some(registered.master_info);
        self.registered = true;
        let actions = self.updates.resend_all(Instant::now());
        self.run_actions(actions);
    }

    fn master_message(&mut self, message: ToAgent) {
        match message {
            ToAgent::Registered(registered) => self.registered(registered),
            ToAgent::CheckpointResources(message) => self.checkpoint_resources(message),
            ToAgent::RunTask(run) => self.run_task(run),
            ToAgent::RunTaskGroup(group) => self.run_task_group(group),
            ToAgent::KillTask(kill) => self.kill_task(kill),
            ToAgent::Acknowledge(ack) => {
                match self.updates.acknowledge(
                    &ack.framework_id,
                    &ack.task_id,
                    &ack.uuid,
                    Instant::now(),
                ) {
                    Ok(actions) => self.run_actions(actions),
                    Err(ignored) => tracing::debug!("ignoring acknowledgement: {ignored}"),
                }
            }
            ToAgent::FrameworkMessage(message) => {
                let delivered = self.send_event(
                    &message.framework_id,
                    &message.executor_id,
                    Event::Message(exec::Message { data: message.data }),
                );
                if delivered {
                    self.counters.valid_framework_messages += 1;
                } else {
                    self.counters.invalid_framework_messages += 1;
                    tracing::warn!(
                        "dropping a framework message for executor {} of framework {}: not subscribed",
                        message.executor_id,
                        message.framework_id
                    );
                }
            }
            ToAgent::ShutdownFramework(shutdown) => self.shutdown_framework(&shutdown.framework_id),
            ToAgent::ShutdownExecutor(shutdown) => {
                self.shutdown_executor(&shutdown.framework_id, &shutdown.executor_id)
            }
            ToAgent::UpdateFramework(update) => {
                let Some(fid) = update.framework_info.id.clone() else {
                    return;
                };
                if self.book.framework(&fid).is_some() {
                    if update.framework_info.checkpoint {
                        self.batch
                            .ops
                            .push(StoreOp::PutFramework(update.framework_info.clone()));
                    }
                    self.book.upsert_framework(update.framework_info);
                }
            }
            ToAgent::ReconcileTasks(reconcile) => {
                let fid = reconcile.framework_id;
                for task_id in reconcile.task_ids {
                    if self.book.knows_task(&fid, &task_id)
                        || self.updates.head(&fid, &task_id).is_some()
                    {
                        continue;
                    }
                    self.agent_update(
                        &fid,
                        task_id,
                        None,
                        Termination {
                            state: TaskState::TaskDropped,
                            reason: Reason::ReasonReconciliation,
                            message: "Reconciliation: task is unknown to the agent".to_string(),
                        },
                    );
                }
            }
            ToAgent::Shutdown(shutdown) => {
                tracing::warn!("the master shut this agent down: {}", shutdown.message);
                let processes: Vec<_> = self
                    .book
                    .frameworks
                    .values()
                    .flat_map(|f| f.executors.values())
                    .filter_map(|e| e.process)
                    .collect();
                for process in processes {
                    self.signal(process, Signal::Kill);
                }
                self.batch.ops.push(StoreOp::ForgetAll);
                self.batch.messages.clear();
                self.stopped = true;
            }
            ToAgent::Ping => {}
        }
    }

    fn run_task(&mut self, run: internal::RunTask) {
        let internal::RunTask { framework, task } = run;
        let Some(fid) = framework.id.clone() else {
            tracing::warn!("RUN_TASK for task {} without a framework id", task.task_id);
            return;
        };
        let command_executor = task.executor.is_none();
        let executor = match &task.executor {
            Some(e) => meseta_api::ExecutorInfo {
                framework_id: Some(fid.clone()),
                ..e.clone()
            },
            None => launch::command_executor_info(&task, &fid, &self.config.meseta_binary),
        };
        let eid = executor.executor_id.clone();
        let invalid = (command_executor && task.command.is_none())
            .then(|| "A task needs either a command or an executor".to_string());
        let ids = vec![task.task_id.clone()];
        let Some(new_run) = self.admit(framework, &executor, std::slice::from_ref(&task), invalid)
        else {
            return;
        };
        let outcome = self
            .book
            .run_task(&fid, executor, command_executor, task, new_run);
        self.run_outcome(&fid, &eid, &ids, outcome);
    }

    /// RUN_TASK_GROUP: the group's tasks go to its DEFAULT executor together (launched
    /// for them if it is not running), which runs them as `meseta executor --default`.
    fn run_task_group(&mut self, run: internal::RunTaskGroup) {
        let internal::RunTaskGroup {
            framework,
            executor,
            task_group,
        } = run;
        let Some(fid) = framework.id.clone() else {
            tracing::warn!(
                "RUN_TASK_GROUP for executor {} without a framework id",
                executor.executor_id
            );
            return;
        };
        let executor = meseta_api::ExecutorInfo {
            framework_id: Some(fid.clone()),
            ..executor
        };
        let eid = executor.executor_id.clone();
        let ids: Vec<TaskId> = task_group.tasks.iter().map(|t| t.task_id.clone()).collect();
        let invalid = if executor.kind != Some(ExecutorType::Default) {
            Some("The executor of a task group must be of type DEFAULT".to_string())
        } else if ids.is_empty() {
            Some("A task group must contain at least one task".to_string())
        } else if ids.iter().any(|id| !paths::is_safe_component(&id.value)) {
            Some("The ids of a task group's tasks must be usable as directory names (no '/', '.' or '..')".to_string())
        } else {
            None
        };
        let Some(new_run) = self.admit(framework, &executor, &task_group.tasks, invalid) else {
            return;
        };
        let outcome = self
            .book
            .run_task_group(&fid, executor, task_group.tasks, new_run);
        self.run_outcome(&fid, &eid, &ids, outcome);
    }

    /// What RUN_TASK and RUN_TASK_GROUP share before the book takes the tasks: the
    /// framework is recorded (and checkpointed), the ids checked for use as directory
    /// names (besides the caller's own check, `invalid`), the persistent volumes linked
    /// into the sandbox. Returns the identity of a new executor run, or `None` when the
    /// tasks were refused (their updates are sent).
    fn admit(
        &mut self,
        framework: FrameworkInfo,
        executor: &meseta_api::ExecutorInfo,
        tasks: &[meseta_api::TaskInfo],
        invalid: Option<String>,
    ) -> Option<NewRun> {
        let fid = framework.id.clone().unwrap_or_default();
        let eid = &executor.executor_id;
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.task_id.clone()).collect();
        let checkpoint = framework.checkpoint;
        self.book.upsert_framework(framework.clone());
        let invalid = if !paths::is_safe_component(&fid.value)
            || !paths::is_safe_component(&eid.value)
        {
            Some("Framework and executor ids must be usable as directory names (no '/', '.' or '..')".to_string())
        } else {
            invalid
        };
        if let Some(message) = invalid {
            let termination = Termination {
                state: TaskState::TaskError,
                reason: Reason::ReasonTaskInvalid,
                message,
            };
            self.refuse(&fid, eid, &ids, termination);
            return None;
        }
        if checkpoint {
            self.batch.ops.push(StoreOp::PutFramework(framework));
        }
        let container_id = ContainerId::new(uuid::Uuid::new_v4().to_string());
        let directory = launch::sandbox_of(
            &self.config.work_dir,
            &self.agent_id(),
            &fid,
            eid,
            &container_id.value,
        );
        let running = self
            .book
            .executor(&fid, eid)
            .filter(|e| e.state != ExecutorState::Terminated);
        let sandbox = running.map_or_else(|| directory.clone(), |e| e.directory.clone());
        // A launcher that mounts volumes does so when it starts the container; one
        // already started gets links.
        let started = running
            .is_some_and(|e| e.process.is_some() || self.launching.contains(&e.container_id));
        let placement = match started {
            false if self.launcher.mounts_persistent_volumes() => Placement::MountPoint,
            _ => Placement::Link,
        };
        let resources: Vec<_> = tasks
            .iter()
            .flat_map(|t| &t.resources)
            .chain(&executor.resources)
            .cloned()
            .collect();
        if let Err(message) =
            volumes::place_in_sandbox(&self.config.work_dir, &sandbox, &resources, placement)
        {
            let termination = Termination {
                state: TaskState::TaskFailed,
                reason: Reason::ReasonContainerLaunchFailed,
                message,
            };
            self.refuse(&fid, eid, &ids, termination);
            return None;
        }
        Some(NewRun {
            container_id,
            directory,
        })
    }

    /// Acts on the book's answer to RUN_TASK or RUN_TASK_GROUP for the tasks `ids`.
    fn run_outcome(
        &mut self,
        fid: &FrameworkId,
        eid: &ExecutorId,
        ids: &[TaskId],
        outcome: RunOutcome,
    ) {
        match outcome {
            RunOutcome::LaunchExecutor => {
                for id in ids {
                    self.checkpoint_task(fid, eid, id, true);
                }
                self.launch_executor(fid, eid);
            }
            RunOutcome::Queued => {
                for id in ids {
                    self.checkpoint_task(fid, eid, id, true);
                }
            }
            RunOutcome::Deliver(task) => {
                self.checkpoint_task(fid, eid, &task.task_id, false);
                self.send_event(fid, eid, Event::Launch(exec::Launch { task }));
            }
            RunOutcome::DeliverGroup(tasks) => {
                for id in ids {
                    self.checkpoint_task(fid, eid, id, false);
                }
                self.send_event(fid, eid, delivery_event(Delivery::Group(tasks)));
            }
            RunOutcome::Rejected(termination) => self.refuse(fid, eid, ids, termination),
        }
    }

    /// Ends tasks that will not run with `termination`.
    fn refuse(
        &mut self,
        fid: &FrameworkId,
        eid: &ExecutorId,
        ids: &[TaskId],
        termination: Termination,
    ) {
        for id in ids {
            self.agent_update(fid, id.clone(), Some(eid.clone()), termination.clone());
        }
        let _ = self.book.reap(fid, None);
    }

    fn kill_task(&mut self, kill: internal::KillTask) {
        let fid = kill.framework_id;
        if self.book.framework(&fid).is_none() {
            tracing::warn!(
                "ignoring kill of task {} of unknown framework {fid}",
                kill.task_id
            );
            return;
        }
        match self.book.kill_task(&fid, &kill.task_id) {
            KillOutcome::Unknown => self.agent_update(
                &fid,
                kill.task_id,
                None,
                Termination {
                    state: TaskState::TaskDropped,
                    reason: Reason::ReasonExecutorTerminated,
                    message: "Cannot find executor".to_string(),
                },
            ),
            KillOutcome::KillNow {
                executor_id,
                reason,
                idle,
                group,
            } => {
                let message = "Killed before delivery to the executor".to_string();
                let termination = Termination {
                    state: TaskState::TaskKilled,
                    reason,
                    message,
                };
                for task_id in std::iter::once(kill.task_id).chain(group) {
                    let eid = Some(executor_id.clone());
                    self.agent_update(&fid, task_id, eid, termination.clone());
                }
                if idle {
                    self.shutdown_executor(&fid, &executor_id);
                }
            }
            KillOutcome::Forward { executor_id } => {
                let event = Event::Kill(exec::Kill {
                    task_id: kill.task_id,
                    kill_policy: kill.kill_policy,
                });
                self.send_event(&fid, &executor_id, event);
            }
            KillOutcome::Ignore => {}
        }
    }

    fn shutdown_framework(&mut self, fid: &FrameworkId) {
        tracing::info!("shutting down framework {fid}");
        let actions = self.updates.remove_framework(fid);
        self.run_actions(actions);
        for eid in self.book.begin_framework_shutdown(fid) {
            self.shutdown_executor(fid, &eid);
        }
        let cleanup = self.book.reap(fid, None);
        self.apply_cleanup(fid, None, cleanup);
    }

    fn shutdown_executor(&mut self, fid: &FrameworkId, eid: &ExecutorId) {
        let Some(subscribed) = self.book.begin_shutdown(fid, eid) else {
            return;
        };
        let Some(e) = self.book.executor(fid, eid) else {
            return;
        };
        let grace = launch::grace_period(&e.info, self.config.executor_shutdown_grace_period);
        let (cid, process) = (e.container_id.clone(), e.process);
        tracing::info!("shutting down executor {eid} of framework {fid}");
        if process.is_none() {
            self.fetching.remove(&cid);
        }
        if subscribed {
            self.send_event(fid, eid, Event::Shutdown);
        } else if let Some(process) = process {
            self.signal(process, Signal::Terminate);
        }
        let command = Command::EscalateKill {
            framework_id: fid.clone(),
            executor_id: eid.clone(),
            container_id: cid,
        };
        self.after(grace, command);
    }

    // ----- executors ------------------------------------------------------------------

    fn agent_id(&self) -> String {
        self.agent_info
            .id
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    fn launch_executor(&mut self, fid: &FrameworkId, eid: &ExecutorId) {
        let agent_id = self.agent_id();
        let Some(framework) = self.book.framework(fid) else {
            return;
        };
        let Some(e) = framework.executors.get(eid) else {
            return;
        };
        let token =
            (self.config.executor_auth.as_ref()).map(|a| a.token(fid, eid, &e.container_id));
        let info = launch::runnable(&e.info, &self.config.meseta_binary);
        let ctx = RunContext {
            container_id: &e.container_id.value,
            resources: e.used_resources(),
            agent_id: &agent_id,
            endpoint: &self.executor_endpoint,
            domain_socket: self.executor_socket.as_deref(),
            framework: &framework.info,
            executor: &info,
            directory: &e.directory,
            command_executor: e.command_executor,
            shutdown_grace_period: launch::grace_period(
                &e.info,
                self.config.executor_shutdown_grace_period,
            ),
            switch_user: self.switch_user,
            inherited: std::env::vars().collect(),
            image: self.prepared.get(&e.container_id).and_then(Option::as_ref),
            work_dir: &self.config.work_dir,
            authentication_token: token.as_deref(),
        };
        let cid = e.container_id.clone();
        if !self.prepared.contains_key(&cid) {
            let uris = (e.info.command.as_ref()).map_or_else(Vec::new, |c| c.uris.clone());
            match crate::images::requested_by(&e.info) {
                Ok(None) if uris.is_empty() => {}
                Ok(image) => {
                    let user = self.switch_user.then(|| ctx.user());
                    let sandbox = e.directory.clone();
                    let preparation = Preparation {
                        image,
                        uris,
                        sandbox,
                        user,
                    };
                    return self.prepare(fid, eid, cid, preparation);
                }
                Err(message) => return self.launch_failed(fid, eid, &cid, message),
            }
        }
        let spec = paths::create_sandbox(&e.directory)
            .map_err(|err| format!("creating the sandbox {}: {err}", e.directory.display()))
            .and_then(|()| ctx.launch_spec());
        match spec {
            Ok(spec) => {
                self.launching.insert(cid.clone());
                self.launches.start(fid.clone(), eid.clone(), cid, spec);
            }
            Err(message) => self.launch_failed(fid, eid, &cid, message),
        }
    }

    /// The executor's state while `cid` is still its run and has no process yet.
    fn unstarted_state(
        &self,
        fid: &FrameworkId,
        eid: &ExecutorId,
        cid: &ContainerId,
    ) -> Option<ExecutorState> {
        self.book
            .executor(fid, eid)
            .filter(|e| &e.container_id == cid && e.process.is_none())
            .map(|e| e.state)
    }

    /// A launch came back from the launcher thread (see [`launch_end`]).
    fn launched(
        &mut self,
        fid: &FrameworkId,
        eid: &ExecutorId,
        cid: ContainerId,
        result: Result<meseta_containerizer::Launched, String>,
    ) {
        self.launching.remove(&cid);
        let state = self.unstarted_state(fid, eid, &cid);
        let subscribed = self.streams.contains_key(&(fid.clone(), eid.clone()));
        match (launch_end(state, subscribed, result.is_ok()), result) {
            (
                LaunchEnd::Adopt {
                    registration_timer,
                    terminate,
                },
                Ok(launched),
            ) => {
                tracing::info!(
                    "launched executor {eid} of framework {fid} (pid {})",
                    launched.process.pid
                );
                if let Some(e) = self.book.executor_mut(fid, eid) {
                    e.process = Some(launched.process);
                }
                self.checkpoint_executor(fid, eid);
                self.watch(fid, eid, &cid, launched.exited);
                if registration_timer {
                    self.registration_timer(fid, eid, &cid);
                }
                if terminate {
                    self.signal(launched.process, Signal::Terminate);
                }
            }
            (LaunchEnd::Discard, Ok(launched)) => {
                tracing::info!(
                    "executor {eid} of framework {fid} is gone; killing the process just launched for it (pid {})",
                    launched.process.pid
                );
                self.signal(launched.process, Signal::Kill);
                let (launcher, process) = (self.launcher.clone(), launched.process);
                tokio::spawn(async move {
                    launched.exited.await;
                    launcher.termination(process);
                });
            }
            (LaunchEnd::Failed, Err(message)) => self.launch_failed(fid, eid, &cid, message),
            (LaunchEnd::Ended, Err(_)) => self.executor_exited(fid, eid, &cid, None),
            (_, result) => {
                if let Err(message) = result {
                    tracing::debug!("a launch for the gone executor {eid} failed: {message}");
                }
            }
        }
    }

    /// Fails the executor's tasks with REASON_CONTAINER_LAUNCH_FAILED and `message`.
    fn launch_failed(
        &mut self,
        fid: &FrameworkId,
        eid: &ExecutorId,
        cid: &ContainerId,
        message: String,
    ) {
        tracing::warn!("failed to launch executor {eid} of framework {fid}: {message}");
        self.counters.container_launch_errors += 1;
        if let Some(e) = self.book.executor_mut(fid, eid) {
            e.termination = Some(Termination {
                state: TaskState::TaskFailed,
                reason: Reason::ReasonContainerLaunchFailed,
                message: format!("Failed to launch container: {message}"),
            });
        }
        self.executor_exited(fid, eid, cid, None);
    }

    /// Provisions the executor's image and fetches its URIs into its sandbox off the
    /// actor; [`Command::Prepared`] brings the result back.
    fn prepare(&mut self, fid: &FrameworkId, eid: &ExecutorId, cid: ContainerId, p: Preparation) {
        let (images, commands) = (self.images.clone(), self.commands.clone());
        let fetcher = self.fetcher.clone();
        let (framework_id, executor_id) = (fid.clone(), eid.clone());
        let (cancel, cancelled) = oneshot::channel::<()>();
        if !p.uris.is_empty() {
            self.fetching.insert(cid.clone(), cancel);
        }
        tokio::spawn(async move {
            let result = async {
                let provisioned = match &p.image {
                    Some(request) => {
                        Some(crate::images::provision(&images, &cid.value, request).await?)
                    }
                    None => None,
                };
                if !p.uris.is_empty() {
                    paths::create_sandbox(&p.sandbox).map_err(|err| {
                        format!("creating the sandbox {}: {err}", p.sandbox.display())
                    })?;
                    let fetched = fetcher.fetch(&p.uris, &p.sandbox, p.user.as_deref());
                    tokio::select! {
                        biased;
                        _ = cancelled => Err("the executor was shut down during the fetch")?,
                        fetched = fetched => fetched.map_err(|e| e.to_string())?,
                    }
                }
                Ok(provisioned)
            }
            .await;
            let _ = commands
                .send(Command::Prepared {
                    framework_id,
                    executor_id,
                    container_id: cid,
                    result,
                })
                .await;
        });
    }

    /// Launches the executor whose image and URIs are ready, fails its tasks when they
    /// could not be, and cleans up when it was shut down meanwhile.
    fn prepared(
        &mut self,
        fid: &FrameworkId,
        eid: &ExecutorId,
        cid: ContainerId,
        result: Result<Option<Provisioned>, String>,
    ) {
        self.fetching.remove(&cid);
        let state = self.unstarted_state(fid, eid, &cid);
        match (state, result) {
            (Some(ExecutorState::Registering), Ok(provisioned)) => {
                self.prepared.insert(cid, provisioned);
                self.launch_executor(fid, eid);
            }
            (Some(ExecutorState::Registering), Err(message)) => {
                self.launch_failed(fid, eid, &cid, message)
            }
            (Some(_), _) => self.executor_exited(fid, eid, &cid, None),
            (None, _) => crate::images::release(&self.images, &cid.value),
        }
    }

    fn watch(&self, fid: &FrameworkId, eid: &ExecutorId, cid: &ContainerId, exited: ExitFuture) {
        let commands = self.commands.clone();
        let (framework_id, executor_id, container_id) = (fid.clone(), eid.clone(), cid.clone());
        tokio::spawn(async move {
            let status = exited.await;
            let _ = commands
                .send(Command::ExecutorExited {
                    framework_id,
                    executor_id,
                    container_id,
                    status,
                })
                .await;
        });
    }

    fn registration_timer(&self, fid: &FrameworkId, eid: &ExecutorId, cid: &ContainerId) {
        let command = Command::RegistrationTimeout {
            framework_id: fid.clone(),
            executor_id: eid.clone(),
            container_id: cid.clone(),
        };
        self.after(self.config.executor_registration_timeout, command);
    }

    fn after(&self, delay: Duration, command: Command) {
        let commands = self.commands.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = commands.send(command).await;
        });
    }

    fn signal(&self, process: meseta_containerizer::ProcessRef, signal: Signal) {
        if let Err(e) = self.launcher.signal(process, signal) {
            tracing::warn!("{e}");
        }
    }

    fn registration_timeout(&mut self, fid: &FrameworkId, eid: &ExecutorId, cid: &ContainerId) {
        let timeout = self.config.executor_registration_timeout;
        let Some(e) = self.book.executor_mut(fid, eid) else {
            return;
        };
        if &e.container_id != cid || e.state != ExecutorState::Registering {
            return;
        }
        tracing::warn!("executor {eid} of framework {fid} did not subscribe in time; killing it");
        e.state = ExecutorState::Terminating;
        e.termination = Some(Termination {
            state: TaskState::TaskFailed,
            reason: Reason::ReasonExecutorRegistrationTimeout,
            message: format!(
                "Executor did not register within {}",
                meseta_api::duration::format(timeout)
            ),
        });
        if let Some(process) = e.process {
            self.signal(process, Signal::Kill);
        }
    }

    fn executor_exited(
        &mut self,
        fid: &FrameworkId,
        eid: &ExecutorId,
        cid: &ContainerId,
        status: Option<i32>,
    ) {
        // A container the launcher ended (a limit) fails its tasks with that reason.
        let process = self.book.executor(fid, eid).and_then(|e| e.process);
        let limitation = process.and_then(|p| self.launcher.termination(p));
        if let (Some(t), Some(e)) = (limitation, self.book.executor_mut(fid, eid)) {
            if e.container_id == *cid && e.termination.is_none() {
                e.termination = Some(launch::limitation_termination(t));
            }
        }
        let Some(exited) = self.book.executor_exited(fid, eid, cid) else {
            return;
        };
        self.prepared.remove(cid);
        crate::images::release(&self.images, &cid.value);
        tracing::info!("executor {eid} of framework {fid} exited (wait status {status:?})");
        self.counters.executors_terminated += 1;
        self.streams.remove(&(fid.clone(), eid.clone()));
        if !exited.framework_terminating {
            for (task_id, killing) in &exited.live_tasks {
                let termination = book::exit_termination(&exited, *killing, status);
                self.agent_update(fid, task_id.clone(), Some(eid.clone()), termination);
            }
        }
        if !exited.command_executor && !exited.framework_terminating {
            self.batch
                .messages
                .push(ToMaster::ExitedExecutor(internal::ExitedExecutor {
                    framework_id: fid.clone(),
                    executor_id: eid.clone(),
                    status,
                    resources: exited.executor_resources,
                }));
        }
        let cleanup = self.book.reap(fid, Some(eid));
        self.apply_cleanup(fid, Some(eid), cleanup);
    }

    fn executor_call(&mut self, call: exec::Call, claims: Option<&Claims>) -> ExecutorReply {
        let (fid, eid) = (call.framework_id, call.executor_id);
        let Some(e) = self.book.executor(&fid, &eid) else {
            let what = if self.book.framework(&fid).is_none() {
                format!("Framework {fid} is not known to this agent")
            } else {
                format!("Executor {eid} of framework {fid} is not known to this agent")
            };
            return match call.kind {
                CallKind::Heartbeat => ExecutorReply::Accepted,
                _ => ExecutorReply::Rejected(400, what),
            };
        };
        if let (Some(claims), false) = (claims, matches!(call.kind, CallKind::Heartbeat)) {
            if let Err(message) = verify_claims(claims, &fid, &eid, &e.container_id) {
                return ExecutorReply::Rejected(403, message);
            }
        }
        // A terminating executor still reports how its tasks ended (Mesos drops executor
        // updates only while the whole framework is shutting down).
        let subscribed = matches!(e.state, ExecutorState::Running | ExecutorState::Terminating)
            && self.streams.contains_key(&(fid.clone(), eid.clone()));
        match call.kind {
            CallKind::Subscribe(subscribe) => self.subscribe(&fid, &eid, subscribe),
            CallKind::Heartbeat => ExecutorReply::Accepted,
            CallKind::Update(_) | CallKind::Message(_) if !subscribed => ExecutorReply::Rejected(
                403,
                format!("Executor {eid} of framework {fid} has not subscribed"),
            ),
            CallKind::Update(update) => {
                self.executor_update(&fid, &eid, update.status);
                ExecutorReply::Accepted
            }
            CallKind::Message(message) => {
                self.batch
                    .messages
                    .push(ToMaster::ExecutorMessage(internal::FrameworkMessage {
                        framework_id: fid,
                        executor_id: eid,
                        data: message.data,
                    }));
                ExecutorReply::Accepted
            }
        }
    }

    fn subscribe(
        &mut self,
        fid: &FrameworkId,
        eid: &ExecutorId,
        subscribe: exec::Subscribe,
    ) -> ExecutorReply {
        let queued = match self
            .book
            .subscribe(fid, eid, subscribe.unacknowledged_tasks)
        {
            Ok(queued) => queued,
            Err(e) => return ExecutorReply::Rejected(400, e.to_string()),
        };
        let framework = self.book.framework(fid).expect("subscribed").info.clone();
        let e = self.book.executor(fid, eid).expect("subscribed");
        tracing::info!("executor {eid} of framework {fid} subscribed");
        let (tx, rx) = mpsc::unbounded_channel();
        let subscribed = exec::Subscribed {
            executor_info: meseta_api::ExecutorInfo {
                framework_id: Some(fid.clone()),
                ..e.info.clone()
            },
            framework_info: framework,
            agent_info: self.agent_info.clone(),
            container_id: Some(e.container_id.clone()),
        };
        let _ = tx.send(Event::Subscribed(subscribed));
        for delivery in queued {
            let _ = tx.send(delivery_event(delivery));
        }
        self.streams.insert((fid.clone(), eid.clone()), tx);
        let launched: Vec<TaskId> = self
            .book
            .executor(fid, eid)
            .map(|e| e.launched.keys().cloned().collect())
            .unwrap_or_default();
        for task_id in launched {
            self.checkpoint_task(fid, eid, &task_id, false);
        }
        for update in subscribe.unacknowledged_updates {
            self.executor_update(fid, eid, update.status);
        }
        ExecutorReply::Subscribed(rx)
    }

    fn executor_update(&mut self, fid: &FrameworkId, eid: &ExecutorId, mut status: TaskStatus) {
        status.source = Some(StatusSource::SourceExecutor);
        status.agent_id = self.agent_info.id.clone();
        status.executor_id = Some(eid.clone());
        if status.timestamp.is_none() {
            status.timestamp = Some(now_secs());
        }
        self.status_update(fid, status);
    }

    fn send_event(&self, fid: &FrameworkId, eid: &ExecutorId, event: Event) -> bool {
        self.streams
            .get(&(fid.clone(), eid.clone()))
            .is_some_and(|tx| tx.send(event).is_ok())
    }

    // ----- status updates -------------------------------------------------------------

    /// A status update the agent itself generates.
    fn agent_update(
        &mut self,
        fid: &FrameworkId,
        task_id: TaskId,
        executor_id: Option<ExecutorId>,
        t: Termination,
    ) {
        let state = match self.book.framework(fid) {
            Some(f) => t
                .state
                .for_framework(f.info.has_capability(CapabilityType::PartitionAware)),
            None => t.state,
        };
        let mut status = TaskStatus::new(task_id, state);
        status.source = Some(StatusSource::SourceAgent);
        status.reason = Some(t.reason);
        status.message = Some(t.message);
        status.agent_id = self.agent_info.id.clone();
        status.executor_id = executor_id;
        status.timestamp = Some(now_secs());
        status.uuid = Some(new_uuid_bytes());
        self.status_update(fid, status);
    }

    fn status_update(&mut self, fid: &FrameworkId, status: TaskStatus) {
        let checkpoint = self.checkpointing(fid);
        match self
            .updates
            .update(fid, status.clone(), checkpoint, Instant::now())
        {
            Err(ignored) => tracing::debug!("{ignored}"),
            Ok(actions) => {
                self.counters.valid_status_updates += 1;
                if let Some((eid, entry)) = self.book.record_status(fid, &status) {
                    let first_terminal = entry
                        .task
                        .statuses
                        .iter()
                        .filter(|s| s.state.is_terminal())
                        .count()
                        == 1;
                    if status.state.is_terminal() && first_terminal {
                        self.counters.count_terminal(status.state);
                    }
                    if checkpoint {
                        let record = TaskRecord {
                            executor_id: eid,
                            info: entry.info,
                            task: entry.task,
                            queued: false,
                            group: Vec::new(),
                        };
                        self.batch.ops.push(StoreOp::PutTask(fid.clone(), record));
                    }
                }
                self.run_actions(actions);
            }
        }
    }

    fn run_actions(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Persist(Persist::Put {
                    framework_id,
                    seq,
                    status,
                }) => self.batch.ops.push(StoreOp::PutUpdate {
                    framework_id,
                    seq,
                    status,
                }),
                Action::Persist(Persist::Delete {
                    framework_id,
                    task_id,
                    seq,
                }) => self.batch.ops.push(StoreOp::DeleteUpdate {
                    framework_id,
                    task_id,
                    seq,
                }),
                Action::Forward(mut update) if self.registered => {
                    update.latest_state = self
                        .book
                        .task_executor(&update.framework_id, &update.status.task_id)
                        .and_then(|e| {
                            let id = &update.status.task_id;
                            e.launched
                                .get(id)
                                .or_else(|| e.terminated.get(id))
                                .map(|t| t.task.state)
                        });
                    self.batch.messages.push(ToMaster::StatusUpdate(update));
                }
                Action::Forward(_) => {}
                Action::Acknowledged {
                    framework_id,
                    status,
                } => self.acknowledged(&framework_id, status),
            }
        }
    }

    fn acknowledged(&mut self, fid: &FrameworkId, status: TaskStatus) {
        if let (Some(StatusSource::SourceExecutor), Some(eid), Some(uuid)) =
            (status.source, &status.executor_id, &status.uuid)
        {
            let event = Event::Acknowledged(exec::Acknowledged {
                task_id: status.task_id.clone(),
                uuid: uuid.clone(),
            });
            self.send_event(fid, eid, event);
        }
        if status.state.is_terminal() {
            let checkpoint = self.checkpointing(fid);
            let eid = self
                .book
                .task_executor(fid, &status.task_id)
                .map(|e| e.info.executor_id.clone());
            let cleanup = self.book.acknowledged_terminal(fid, &status.task_id);
            if checkpoint {
                self.batch
                    .ops
                    .push(StoreOp::DeleteTask(fid.clone(), status.task_id.clone()));
            }
            self.apply_cleanup(fid, eid.as_ref(), cleanup);
        }
    }

    // ----- checkpoints ----------------------------------------------------------------

    fn checkpointing(&self, fid: &FrameworkId) -> bool {
        self.book.framework(fid).is_some_and(|f| f.info.checkpoint)
    }

    /// Every executor's record is written, also for frameworks that do not checkpoint,
    /// so that an agent restarting after a crash finds (and kills) their orphans.
    fn checkpoint_executor(&mut self, fid: &FrameworkId, eid: &ExecutorId) {
        let Some(e) = self.book.executor(fid, eid) else {
            return;
        };
        let record = ExecutorRecord {
            info: e.info.clone(),
            container_id: e.container_id.clone(),
            directory: e.directory.clone(),
            command_executor: e.command_executor,
            process: e.process,
        };
        self.batch
            .ops
            .push(StoreOp::PutExecutor(fid.clone(), record));
    }

    fn checkpoint_task(
        &mut self,
        fid: &FrameworkId,
        eid: &ExecutorId,
        task_id: &TaskId,
        queued: bool,
    ) {
        if !self.checkpointing(fid) {
            return;
        }
        let Some(framework) = self.book.framework(fid) else {
            return;
        };
        let Some(e) = framework.executors.get(eid) else {
            return;
        };
        let entry = match e.queued.iter().find(|t| &t.task_id == task_id) {
            Some(info) => Some(book::TaskEntry {
                info: info.clone(),
                task: e
                    .live_and_unacked_tasks(&framework.info)
                    .into_iter()
                    .find(|t| &t.task_id == task_id)
                    .expect("queued task is listed"),
            }),
            None => e.launched.get(task_id).cloned(),
        };
        if let Some(entry) = entry {
            let record = TaskRecord {
                executor_id: eid.clone(),
                info: entry.info,
                task: entry.task,
                queued,
                group: e.queued_group_of(task_id),
            };
            self.batch.ops.push(StoreOp::PutTask(fid.clone(), record));
        }
    }

    fn apply_cleanup(&mut self, fid: &FrameworkId, eid: Option<&ExecutorId>, cleanup: Cleanup) {
        if let (true, Some(eid)) = (cleanup.executor_completed, eid) {
            self.batch
                .ops
                .push(StoreOp::DeleteExecutor(fid.clone(), eid.clone()));
            if let Some(run) = self.book.completed_run(fid, eid) {
                self.gc.finished(run.to_path_buf());
            }
        }
        if cleanup.framework_completed {
            self.batch.ops.push(StoreOp::DeleteFramework(fid.clone()));
        }
    }

    // ----- shutdown and views -----------------------------------------------------------

    /// The agent is stopping: checkpointed executors keep running (a restarted agent
    /// recovers them); the others are killed.
    fn clean_shutdown(&mut self) {
        let doomed: Vec<_> = self
            .book
            .frameworks
            .values()
            .filter(|f| !f.info.checkpoint)
            .flat_map(|f| f.executors.values())
            .filter_map(|e| e.process)
            .collect();
        for process in doomed {
            self.signal(process, Signal::Kill);
        }
        self.streams.clear();
    }

    fn sandbox_roots(&self) -> Vec<PathBuf> {
        let live = self.book.frameworks.values();
        let done = self.book.completed_frameworks.iter();
        live.chain(done)
            .flat_map(|f| f.executors.values().chain(f.completed_executors.iter()))
            .map(|e| e.directory.clone())
            .collect()
    }

    fn containers(&self) -> Vec<ContainerEntry> {
        self.book
            .frameworks
            .iter()
            .flat_map(|(fid, f)| {
                f.executors
                    .values()
                    .filter(|e| e.state != ExecutorState::Terminated)
                    .map(move |e| ContainerEntry {
                        framework_id: fid.clone(),
                        executor_id: e.info.executor_id.clone(),
                        executor_name: e.info.name.clone().unwrap_or_default(),
                        source: e.info.source.clone().unwrap_or_default(),
                        container_id: e.container_id.clone(),
                        process: e.process,
                        resources: e.used_resources().into_vec(),
                    })
            })
            .collect()
    }
}

/// The event that hands queued tasks to their executor.
fn delivery_event(delivery: Delivery) -> Event {
    match delivery {
        Delivery::Task(task) => Event::Launch(exec::Launch { task }),
        Delivery::Group(tasks) => Event::LaunchGroup(exec::LaunchGroupEvent {
            task_group: TaskGroupInfo { tasks },
        }),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
