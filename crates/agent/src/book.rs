//! The agent's bookkeeping, a pure core: frameworks → executors → tasks (queued for an
//! executor that has not subscribed, launched, terminated with the terminal update not yet
//! acknowledged, completed), executor lifecycle and the resources in use. No I/O: the
//! agent's actor calls these methods and acts on what they return.

use meseta_api::{
    ContainerId, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, Reason, Resource, Resources,
    Task, TaskId, TaskInfo, TaskState, TaskStatus,
};
use meseta_containerizer::ProcessRef;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// How many completed executors (per framework), tasks (per executor) and frameworks are kept.
const MAX_COMPLETED: usize = 50;

/// An executor's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorState {
    /// Launched (or recovered), not subscribed yet.
    Registering,
    /// Subscribed.
    Running,
    /// Being shut down.
    Terminating,
    /// Its process is gone.
    Terminated,
}

/// The status to give tasks still live when their executor goes away.
#[derive(Clone, Debug, PartialEq)]
pub struct Termination {
    pub state: TaskState,
    pub reason: Reason,
    pub message: String,
}

/// A task handed to (or recovered with) an executor.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEntry {
    pub info: TaskInfo,
    pub task: Task,
}

/// One executor run.
#[derive(Clone, Debug)]
pub struct Executor {
    pub info: ExecutorInfo,
    pub container_id: ContainerId,
    pub directory: PathBuf,
    pub command_executor: bool,
    pub state: ExecutorState,
    pub process: Option<ProcessRef>,
    /// Tasks waiting for the executor to subscribe, in arrival order.
    pub queued: Vec<TaskInfo>,
    /// The task groups among `queued` (each delivered whole as one LAUNCH_GROUP), by
    /// their tasks' ids; members no longer queued are ignored.
    pub queued_groups: Vec<Vec<TaskId>>,
    pub launched: BTreeMap<TaskId, TaskEntry>,
    pub terminated: BTreeMap<TaskId, TaskEntry>,
    pub completed: VecDeque<Task>,
    /// Tasks a KILL was sent for.
    pub killing: BTreeSet<TaskId>,
    /// Set when the agent decided why the executor ends (registration timeout, …).
    pub termination: Option<Termination>,
}

impl Executor {
    /// Queues a task recovered from a checkpoint, with the ids of the group it came in
    /// (empty for a task launched alone).
    pub fn requeue(&mut self, info: TaskInfo, group: Vec<TaskId>) {
        if !group.is_empty() && !self.queued_groups.contains(&group) {
            self.queued_groups.push(group);
        }
        self.queued.push(info);
    }

    /// The ids of the queued group `task` belongs to (empty when it is queued alone).
    pub fn queued_group_of(&self, task: &TaskId) -> Vec<TaskId> {
        let queued = |id: &TaskId| self.queued.iter().any(|q| &q.task_id == id);
        if !queued(task) {
            return Vec::new();
        }
        self.queued_groups
            .iter()
            .find(|g| g.contains(task))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `task` is queued, launched or terminated (and unacknowledged) here.
    fn holds(&self, task: &TaskId) -> bool {
        self.launched.contains_key(task)
            || self.terminated.contains_key(task)
            || self.queued.iter().any(|q| &q.task_id == task)
    }

    fn has_tasks(&self) -> bool {
        !self.queued.is_empty() || !self.launched.is_empty() || !self.terminated.is_empty()
    }

    /// Every task of this run that is not completed, with the queued ones as STAGING.
    pub fn live_and_unacked_tasks(&self, framework: &FrameworkInfo) -> Vec<Task> {
        let fid = framework.id.clone().unwrap_or_default();
        let mut out: Vec<Task> = self
            .queued
            .iter()
            .map(|info| {
                new_task(
                    info,
                    &fid,
                    framework,
                    &self.info.executor_id,
                    self.command_executor,
                )
            })
            .collect();
        out.extend(self.launched.values().map(|e| e.task.clone()));
        out.extend(self.terminated.values().map(|e| e.task.clone()));
        out
    }

    /// Resources held: the executor's own plus its non-terminal tasks'.
    pub fn used_resources(&self) -> Resources {
        let mut r = Resources::new();
        if self.state == ExecutorState::Terminated {
            return r;
        }
        let lists = std::iter::once(&self.info.resources)
            .chain(self.queued.iter().map(|t| &t.resources))
            .chain(self.launched.values().map(|e| &e.info.resources));
        for list in lists {
            for res in list {
                r.add(res);
            }
        }
        r
    }
}

/// The id of the executor holding `task` (see [`Executor::holds`]). A command
/// executor's id is its task's, so that executor is asked first; others are found by
/// walking the framework's executors (a status update used to walk them all, each
/// comparing ids, with hundreds of command executors at once).
fn holder_of(executors: &BTreeMap<ExecutorId, Executor>, task: &TaskId) -> Option<ExecutorId> {
    let same_id = ExecutorId {
        value: task.value.clone(),
    };
    if executors.get(&same_id).is_some_and(|e| e.holds(task)) {
        return Some(same_id);
    }
    executors
        .iter()
        .find(|(_, e)| e.holds(task))
        .map(|(id, _)| id.clone())
}

/// A framework with tasks on this agent.
#[derive(Clone, Debug)]
pub struct Framework {
    pub info: FrameworkInfo,
    pub terminating: bool,
    pub executors: BTreeMap<ExecutorId, Executor>,
    pub completed_executors: VecDeque<Executor>,
}

/// A new executor run's identity, chosen by the caller.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub container_id: ContainerId,
    pub directory: PathBuf,
}

/// What to do with a task the master asked us to run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome {
    /// A new executor was created with the task queued: launch it.
    LaunchExecutor,
    /// Queued for an executor that has not subscribed yet.
    Queued,
    /// The executor is subscribed: send it LAUNCH (the task is now launched).
    Deliver(TaskInfo),
    /// The executor is subscribed: send it LAUNCH_GROUP (the tasks are now launched).
    DeliverGroup(Vec<TaskInfo>),
    /// The task cannot run: answer with this status.
    Rejected(Termination),
}

/// What a subscribing executor gets of its queued tasks, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// A LAUNCH.
    Task(TaskInfo),
    /// A LAUNCH_GROUP.
    Group(Vec<TaskInfo>),
}

/// What to do with KILL_TASK.
#[derive(Clone, Debug, PartialEq)]
pub enum KillOutcome {
    /// The task is not here.
    Unknown,
    /// The task never reached its executor: it is killed now, with this reason. `idle`
    /// says the executor (not subscribed) has nothing left to run.
    KillNow {
        executor_id: ExecutorId,
        reason: Reason,
        idle: bool,
        /// The other tasks of its queued task group, killed with it (as Mesos does).
        group: Vec<TaskId>,
    },
    /// Send KILL to the subscribed executor.
    Forward { executor_id: ExecutorId },
    /// The executor is already going away; its exit settles the task.
    Ignore,
}

/// Why an executor's SUBSCRIBE is refused (all answered 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("Framework {0} is not known to this agent")]
    UnknownFramework(FrameworkId),
    #[error("Executor {0} of framework {1} is not known to this agent")]
    UnknownExecutor(ExecutorId, FrameworkId),
    #[error("Executor {0} is terminating or terminated")]
    Terminating(ExecutorId),
}

/// What an executor left behind when its process exited.
#[derive(Clone, Debug, PartialEq)]
pub struct Exited {
    pub command_executor: bool,
    pub framework_terminating: bool,
    /// Tasks that had not reached a terminal state, with whether a kill was under way.
    pub live_tasks: Vec<(TaskId, bool)>,
    pub termination: Option<Termination>,
    pub executor_resources: Vec<Resource>,
}

/// What was cleaned up after an acknowledgement or an exit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub executor_completed: bool,
    pub framework_completed: bool,
}

/// All frameworks, executors and tasks of the agent.
#[derive(Clone, Debug, Default)]
pub struct Book {
    pub frameworks: BTreeMap<FrameworkId, Framework>,
    pub completed_frameworks: VecDeque<Framework>,
}

fn new_task(
    info: &TaskInfo,
    framework_id: &FrameworkId,
    framework: &FrameworkInfo,
    executor_id: &ExecutorId,
    command_executor: bool,
) -> Task {
    let mut task = Task::from_info(info, framework_id, Some(framework.user.clone()));
    if !command_executor {
        task.executor_id = Some(executor_id.clone());
    }
    task
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T) {
    list.push_back(item);
    while list.len() > MAX_COMPLETED {
        list.pop_front();
    }
}

/// Queued tasks as they are delivered: each group whole, at the place of its first task.
fn deliveries(queued: Vec<TaskInfo>, groups: &[Vec<TaskId>]) -> Vec<Delivery> {
    let group_of = |task: &TaskInfo| groups.iter().position(|g| g.contains(&task.task_id));
    let mut out: Vec<Delivery> = Vec::new();
    let mut placed: BTreeMap<usize, usize> = BTreeMap::new();
    for task in queued {
        match group_of(&task) {
            None => out.push(Delivery::Task(task)),
            Some(g) => match placed.get(&g) {
                Some(&at) => {
                    if let Delivery::Group(tasks) = &mut out[at] {
                        tasks.push(task);
                    }
                }
                None => {
                    placed.insert(g, out.len());
                    out.push(Delivery::Group(vec![task]));
                }
            },
        }
    }
    out
}

impl Book {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn framework(&self, id: &FrameworkId) -> Option<&Framework> {
        self.frameworks.get(id)
    }

    pub fn executor(&self, framework: &FrameworkId, executor: &ExecutorId) -> Option<&Executor> {
        self.frameworks.get(framework)?.executors.get(executor)
    }

    pub fn executor_mut(
        &mut self,
        framework: &FrameworkId,
        executor: &ExecutorId,
    ) -> Option<&mut Executor> {
        self.frameworks
            .get_mut(framework)?
            .executors
            .get_mut(executor)
    }

    /// Adds a framework or refreshes its info (UPDATE_FRAMEWORK, or a new task). A
    /// completed framework that comes back is active again with its completed executors,
    /// so that their sandboxes stay in the agent's state.
    pub fn upsert_framework(&mut self, info: FrameworkInfo) {
        let id = info.id.clone().unwrap_or_default();
        match self.frameworks.get_mut(&id) {
            Some(f) => f.info = info,
            None => {
                let returning = self
                    .completed_frameworks
                    .iter()
                    .position(|f| f.info.id.as_ref() == Some(&id))
                    .and_then(|i| self.completed_frameworks.remove(i));
                self.frameworks.insert(
                    id,
                    Framework {
                        info,
                        terminating: false,
                        executors: BTreeMap::new(),
                        completed_executors: returning
                            .map(|f| f.completed_executors)
                            .unwrap_or_default(),
                    },
                );
            }
        }
    }

    /// Whether any executor of the framework has this task (queued, launched or
    /// terminated and unacknowledged).
    pub fn knows_task(&self, framework: &FrameworkId, task: &TaskId) -> bool {
        self.task_executor(framework, task).is_some()
    }

    /// The executor holding a task that is not completed.
    pub fn task_executor(&self, framework: &FrameworkId, task: &TaskId) -> Option<&Executor> {
        let executors = &self.frameworks.get(framework)?.executors;
        executors.get(&holder_of(executors, task)?)
    }

    /// RUN_TASK, after `upsert_framework`.
    pub fn run_task(
        &mut self,
        framework_id: &FrameworkId,
        executor: ExecutorInfo,
        command_executor: bool,
        task: TaskInfo,
        new_run: NewRun,
    ) -> RunOutcome {
        self.run(
            framework_id,
            executor,
            command_executor,
            vec![task],
            false,
            new_run,
        )
    }

    /// RUN_TASK_GROUP, after `upsert_framework`: the tasks are queued, delivered or
    /// refused together.
    pub fn run_task_group(
        &mut self,
        framework_id: &FrameworkId,
        executor: ExecutorInfo,
        tasks: Vec<TaskInfo>,
        new_run: NewRun,
    ) -> RunOutcome {
        self.run(framework_id, executor, false, tasks, true, new_run)
    }

    fn run(
        &mut self,
        framework_id: &FrameworkId,
        executor: ExecutorInfo,
        command_executor: bool,
        tasks: Vec<TaskInfo>,
        group: bool,
        new_run: NewRun,
    ) -> RunOutcome {
        let rejected = |state, reason, message: String| {
            RunOutcome::Rejected(Termination {
                state,
                reason,
                message,
            })
        };
        if let Some(task) = tasks
            .iter()
            .find(|t| self.knows_task(framework_id, &t.task_id))
        {
            return rejected(
                TaskState::TaskError,
                Reason::ReasonTaskInvalid,
                format!("Task {} is already running on this agent", task.task_id),
            );
        }
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return rejected(
                TaskState::TaskDropped,
                Reason::ReasonFrameworkRemoved,
                format!("Framework {framework_id} is not known to this agent"),
            );
        };
        if framework.terminating {
            return rejected(
                TaskState::TaskDropped,
                Reason::ReasonFrameworkRemoved,
                format!("Framework {framework_id} is being shut down"),
            );
        }
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.task_id.clone()).collect();
        let queued_groups = if group { vec![ids] } else { Vec::new() };
        let info = framework.info.clone();
        match framework.executors.get_mut(&executor.executor_id) {
            None => {
                framework.executors.insert(
                    executor.executor_id.clone(),
                    Executor {
                        info: executor,
                        container_id: new_run.container_id,
                        directory: new_run.directory,
                        command_executor,
                        state: ExecutorState::Registering,
                        process: None,
                        queued: tasks,
                        queued_groups,
                        launched: BTreeMap::new(),
                        terminated: BTreeMap::new(),
                        completed: VecDeque::new(),
                        killing: BTreeSet::new(),
                        termination: None,
                    },
                );
                RunOutcome::LaunchExecutor
            }
            Some(e) => match e.state {
                ExecutorState::Registering => {
                    e.queued.extend(tasks);
                    e.queued_groups.extend(queued_groups);
                    RunOutcome::Queued
                }
                ExecutorState::Running => {
                    for task in &tasks {
                        let entry = TaskEntry {
                            task: new_task(
                                task,
                                framework_id,
                                &info,
                                &e.info.executor_id,
                                e.command_executor,
                            ),
                            info: task.clone(),
                        };
                        e.launched.insert(task.task_id.clone(), entry);
                    }
                    let mut tasks = tasks;
                    if group || tasks.len() != 1 {
                        RunOutcome::DeliverGroup(tasks)
                    } else {
                        RunOutcome::Deliver(tasks.remove(0))
                    }
                }
                ExecutorState::Terminating | ExecutorState::Terminated => rejected(
                    TaskState::TaskDropped,
                    Reason::ReasonExecutorTerminated,
                    format!("Executor {} is terminating", e.info.executor_id),
                ),
            },
        }
    }

    /// An executor SUBSCRIBE: marks it running, keeps the tasks it reports that we do not
    /// know (after an agent restart), and returns the queued tasks to send as LAUNCH (or
    /// LAUNCH_GROUP, for those that came as a group).
    pub fn subscribe(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        unacknowledged_tasks: Vec<TaskInfo>,
    ) -> Result<Vec<Delivery>, SubscribeError> {
        let framework = self
            .frameworks
            .get_mut(framework_id)
            .ok_or_else(|| SubscribeError::UnknownFramework(framework_id.clone()))?;
        let info = framework.info.clone();
        let terminating = framework.terminating;
        let e = framework.executors.get_mut(executor_id).ok_or_else(|| {
            SubscribeError::UnknownExecutor(executor_id.clone(), framework_id.clone())
        })?;
        if terminating
            || matches!(
                e.state,
                ExecutorState::Terminating | ExecutorState::Terminated
            )
        {
            return Err(SubscribeError::Terminating(executor_id.clone()));
        }
        e.state = ExecutorState::Running;
        for task in unacknowledged_tasks {
            let known = e.launched.contains_key(&task.task_id)
                || e.terminated.contains_key(&task.task_id)
                || e.completed.iter().any(|c| c.task_id == task.task_id);
            if !known {
                let entry = TaskEntry {
                    task: new_task(&task, framework_id, &info, executor_id, e.command_executor),
                    info: task,
                };
                e.launched.insert(entry.info.task_id.clone(), entry);
            }
        }
        let queued = std::mem::take(&mut e.queued);
        let groups = std::mem::take(&mut e.queued_groups);
        for task in &queued {
            let entry = TaskEntry {
                task: new_task(task, framework_id, &info, executor_id, e.command_executor),
                info: task.clone(),
            };
            e.launched.insert(task.task_id.clone(), entry);
        }
        Ok(deliveries(queued, &groups))
    }

    /// Records a status of a task (from its executor or the agent): its state and status
    /// list; a terminal one moves the task to `terminated` (its resources are free).
    /// Returns the task's executor and entry as it now is, when the task is known.
    pub fn record_status(
        &mut self,
        framework_id: &FrameworkId,
        status: &TaskStatus,
    ) -> Option<(ExecutorId, TaskEntry)> {
        let framework = self.frameworks.get_mut(framework_id)?;
        let holder = holder_of(&framework.executors, &status.task_id)?;
        let e = framework.executors.get_mut(&holder)?;
        if let Some(pos) = e.queued.iter().position(|q| q.task_id == status.task_id) {
            let task = e.queued.remove(pos);
            let entry = TaskEntry {
                task: new_task(
                    &task,
                    framework_id,
                    &framework.info,
                    &e.info.executor_id,
                    e.command_executor,
                ),
                info: task,
            };
            e.launched.insert(status.task_id.clone(), entry);
        }
        let mut entry = match e.launched.remove(&status.task_id) {
            Some(entry) => entry,
            None => e.terminated.remove(&status.task_id)?,
        };
        let mut recorded = status.clone();
        recorded.data = None;
        entry.task.statuses.push(recorded);
        if !entry.task.state.is_terminal() {
            entry.task.state = status.state;
        }
        let snapshot = (e.info.executor_id.clone(), entry.clone());
        if entry.task.state.is_terminal() {
            e.killing.remove(&status.task_id);
            e.terminated.insert(status.task_id.clone(), entry);
        } else {
            e.launched.insert(status.task_id.clone(), entry);
        }
        Some(snapshot)
    }

    /// The framework acknowledged a terminal update: the task is completed.
    pub fn acknowledged_terminal(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) -> Cleanup {
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return Cleanup::default();
        };
        let Some(executor_id) = holder_of(&framework.executors, task_id) else {
            return Cleanup::default();
        };
        let e = framework.executors.get_mut(&executor_id).expect("found");
        let Some(entry) = e.terminated.remove(task_id) else {
            return Cleanup::default();
        };
        push_bounded(&mut e.completed, entry.task);
        self.reap(framework_id, Some(&executor_id))
    }

    /// Moves a terminated executor with no task left to the completed list, and its
    /// framework too when that was its last executor.
    /// Without an executor, only the framework is considered.
    pub fn reap(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: Option<&ExecutorId>,
    ) -> Cleanup {
        let mut cleanup = Cleanup::default();
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return cleanup;
        };
        let executor_id = executor_id.filter(|id| {
            framework
                .executors
                .get(*id)
                .is_some_and(|e| e.state == ExecutorState::Terminated && !e.has_tasks())
        });
        if let Some(executor_id) = executor_id {
            let e = framework.executors.remove(executor_id).expect("checked");
            push_bounded(&mut framework.completed_executors, e);
            cleanup.executor_completed = true;
        }
        if framework.executors.is_empty() {
            let f = self.frameworks.remove(framework_id).expect("present");
            push_bounded(&mut self.completed_frameworks, f);
            cleanup.framework_completed = true;
        }
        cleanup
    }

    /// KILL_TASK.
    pub fn kill_task(&mut self, framework_id: &FrameworkId, task_id: &TaskId) -> KillOutcome {
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return KillOutcome::Unknown;
        };
        let Some(e) = framework.executors.values_mut().find(|e| {
            e.launched.contains_key(task_id) || e.queued.iter().any(|q| &q.task_id == task_id)
        }) else {
            return if framework
                .executors
                .values()
                .any(|e| e.terminated.contains_key(task_id))
            {
                KillOutcome::Ignore
            } else {
                KillOutcome::Unknown
            };
        };
        let executor_id = e.info.executor_id.clone();
        let queued = e.queued.iter().any(|q| &q.task_id == task_id);
        let mut group = e.queued_group_of(task_id);
        group.retain(|id| id != task_id);
        match e.state {
            ExecutorState::Terminating | ExecutorState::Terminated => KillOutcome::Ignore,
            ExecutorState::Registering => {
                let reason = if queued {
                    Reason::ReasonTaskKilledDuringLaunch
                } else {
                    Reason::ReasonExecutorUnregistered
                };
                let others = e
                    .queued
                    .iter()
                    .filter(|q| &q.task_id != task_id && !group.contains(&q.task_id))
                    .count()
                    + e.launched.len()
                    - usize::from(!queued);
                KillOutcome::KillNow {
                    executor_id,
                    reason,
                    idle: others == 0,
                    group,
                }
            }
            ExecutorState::Running if queued => KillOutcome::KillNow {
                executor_id,
                reason: Reason::ReasonTaskKilledDuringLaunch,
                idle: false,
                group,
            },
            ExecutorState::Running => {
                e.killing.insert(task_id.clone());
                KillOutcome::Forward { executor_id }
            }
        }
    }

    /// Starts shutting an executor down; returns whether it was subscribed (and so gets
    /// a SHUTDOWN event first) or `None` when there is nothing to shut down.
    pub fn begin_shutdown(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) -> Option<bool> {
        let e = self.executor_mut(framework_id, executor_id)?;
        match e.state {
            ExecutorState::Terminating | ExecutorState::Terminated => None,
            state => {
                e.state = ExecutorState::Terminating;
                Some(state == ExecutorState::Running)
            }
        }
    }

    /// SHUTDOWN_FRAMEWORK: marks the framework terminating; returns its executors.
    pub fn begin_framework_shutdown(&mut self, framework_id: &FrameworkId) -> Vec<ExecutorId> {
        match self.frameworks.get_mut(framework_id) {
            Some(f) => {
                f.terminating = true;
                f.executors.keys().cloned().collect()
            }
            None => Vec::new(),
        }
    }

    /// The executor's process exited. `None` when it is not the current run.
    pub fn executor_exited(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        container_id: &ContainerId,
    ) -> Option<Exited> {
        let framework = self.frameworks.get_mut(framework_id)?;
        let framework_terminating = framework.terminating;
        let e = framework.executors.get_mut(executor_id)?;
        if &e.container_id != container_id || e.state == ExecutorState::Terminated {
            return None;
        }
        e.state = ExecutorState::Terminated;
        let live_tasks = e
            .queued
            .iter()
            .map(|t| &t.task_id)
            .chain(e.launched.keys())
            .map(|id| (id.clone(), e.killing.contains(id)))
            .collect();
        if framework_terminating {
            // The master already forgot these tasks: no updates, just forget them too.
            e.queued.clear();
            e.launched.clear();
            e.terminated.clear();
        }
        Some(Exited {
            command_executor: e.command_executor,
            framework_terminating,
            live_tasks,
            termination: e.termination.clone(),
            executor_resources: e.info.resources.clone(),
        })
    }

    /// Tasks to report when (re)registering: every task not completed.
    pub fn registration_tasks(&self) -> Vec<Task> {
        self.frameworks
            .values()
            .flat_map(|f| {
                f.executors
                    .values()
                    .flat_map(move |e| e.live_and_unacked_tasks(&f.info))
            })
            .collect()
    }

    /// Executors to report when (re)registering: live custom executors, with their
    /// framework id set (the master does not track command executors).
    pub fn registration_executors(&self) -> Vec<ExecutorInfo> {
        self.frameworks
            .iter()
            .flat_map(|(fid, f)| {
                f.executors
                    .values()
                    .filter(|e| !e.command_executor && e.state != ExecutorState::Terminated)
                    .map(move |e| ExecutorInfo {
                        framework_id: Some(fid.clone()),
                        ..e.info.clone()
                    })
            })
            .collect()
    }

    /// The sandbox of the executor's last completed run.
    pub fn completed_run(&self, framework: &FrameworkId, executor: &ExecutorId) -> Option<&Path> {
        let live = self.frameworks.get(framework);
        let done = || {
            let mut done = self.completed_frameworks.iter().rev();
            done.find(|f| f.info.id.as_ref() == Some(framework))
        };
        let f = live.or_else(done)?;
        let mut runs = f.completed_executors.iter().rev();
        let run = runs.find(|e| &e.info.executor_id == executor)?;
        Some(&run.directory)
    }

    /// Resources held by every executor and its tasks.
    pub fn used_resources(&self) -> Resources {
        let mut total = Resources::new();
        for e in self.frameworks.values().flat_map(|f| f.executors.values()) {
            total.add_all(&e.used_resources());
        }
        total
    }
}

/// The status for a task left live by its executor's exit (Mesos's
/// `sendExecutorTerminatedStatusUpdate`): the recorded termination when the agent caused
/// it, TASK_KILLED for a command task being killed, TASK_FAILED otherwise.
pub fn exit_termination(exited: &Exited, killing: bool, wait_status: Option<i32>) -> Termination {
    if let Some(t) = &exited.termination {
        return t.clone();
    }
    if exited.command_executor && killing {
        return Termination {
            state: TaskState::TaskKilled,
            reason: Reason::ReasonExecutorTerminated,
            message: "Command terminated while the task was being killed".to_string(),
        };
    }
    Termination {
        state: TaskState::TaskFailed,
        reason: Reason::ReasonExecutorTerminated,
        message: match wait_status {
            Some(s) if s & 0x7f != 0 => format!("Executor terminated by signal {}", s & 0x7f),
            Some(s) => format!("Executor exited with status {}", s >> 8),
            None => "Executor terminated".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fid() -> FrameworkId {
        FrameworkId::new("F")
    }

    fn framework() -> FrameworkInfo {
        serde_json::from_value(json!({"user":"alice","name":"fw","id":{"value":"F"}})).unwrap()
    }

    fn executor(id: &str) -> ExecutorInfo {
        serde_json::from_value(json!({"executor_id":{"value":id},
            "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}}]}))
        .unwrap()
    }

    fn task(id: &str) -> TaskInfo {
        serde_json::from_value(
            json!({"name":id,"task_id":{"value":id},"agent_id":{"value":"A"},
            "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1}}]}),
        )
        .unwrap()
    }

    fn run(id: &str) -> NewRun {
        NewRun {
            container_id: ContainerId::new(id),
            directory: PathBuf::from(format!("/sb/{id}")),
        }
    }

    fn status(task: &str, state: TaskState) -> TaskStatus {
        TaskStatus::new(TaskId::new(task), state)
    }

    fn book_with_running_executor() -> Book {
        let mut b = Book::new();
        b.upsert_framework(framework());
        assert_eq!(
            b.run_task(&fid(), executor("e"), false, task("t1"), run("c1")),
            RunOutcome::LaunchExecutor
        );
        assert_eq!(
            b.run_task(&fid(), executor("e"), false, task("t2"), run("c2")),
            RunOutcome::Queued
        );
        let delivered = b.subscribe(&fid(), &ExecutorId::new("e"), vec![]).unwrap();
        assert_eq!(
            delivered,
            [Delivery::Task(task("t1")), Delivery::Task(task("t2"))]
        );
        b
    }

    #[test]
    fn a_task_is_found_in_its_executor_whatever_the_executors_are_called() {
        let mut b = book_with_running_executor();
        // A command executor (its id is its task's), and an executor named like a task
        // that another executor holds.
        b.run_task(&fid(), executor("t3"), true, task("t3"), run("c3"));
        b.run_task(&fid(), executor("t1"), false, task("x"), run("c4"));
        let holder = |b: &Book, task: &str| {
            b.task_executor(&fid(), &TaskId::new(task))
                .map(|e| e.info.executor_id.value.to_string())
        };
        assert_eq!(holder(&b, "t1").as_deref(), Some("e"));
        assert_eq!(holder(&b, "t2").as_deref(), Some("e"));
        assert_eq!(
            holder(&b, "t3").as_deref(),
            Some("t3"),
            "queued in its executor"
        );
        assert_eq!(holder(&b, "x").as_deref(), Some("t1"));
        assert_eq!(holder(&b, "nope"), None);
        assert!(!b.knows_task(&FrameworkId::new("other"), &TaskId::new("t1")));

        let (eid, _) = b
            .record_status(&fid(), &status("t1", TaskState::TaskFinished))
            .unwrap();
        assert_eq!(eid, ExecutorId::new("e"));
        assert!(b
            .record_status(&fid(), &status("nope", TaskState::TaskRunning))
            .is_none());
        b.acknowledged_terminal(&fid(), &TaskId::new("t1"));
        let e = b.executor(&fid(), &ExecutorId::new("e")).unwrap();
        assert!(e.completed.iter().any(|t| t.task_id == TaskId::new("t1")));
        assert_eq!(holder(&b, "t1"), None, "completed");
        assert_eq!(holder(&b, "x").as_deref(), Some("t1"));
    }

    #[test]
    fn tasks_queue_until_subscribe_then_deliver_directly() {
        let mut b = book_with_running_executor();
        let e = b.executor(&fid(), &ExecutorId::new("e")).unwrap();
        assert_eq!(
            e.container_id,
            ContainerId::new("c1"),
            "the first run's identity is kept"
        );
        assert_eq!(e.launched.len(), 2);
        assert_eq!(
            e.launched[&TaskId::new("t1")].task.executor_id,
            Some(ExecutorId::new("e"))
        );
        assert!(matches!(
            b.run_task(&fid(), executor("e"), false, task("t3"), run("x")),
            RunOutcome::Deliver(_)
        ));
        assert!(matches!(
            b.run_task(&fid(), executor("e"), false, task("t3"), run("x")),
            RunOutcome::Rejected(Termination {
                state: TaskState::TaskError,
                ..
            })
        ));
        assert_eq!(b.used_resources().scalar("cpus"), 3.1);
        assert_eq!(b.registration_tasks().len(), 3);
        assert_eq!(b.registration_executors()[0].framework_id, Some(fid()));
    }

    #[test]
    fn unknown_framework_or_executor_cannot_subscribe() {
        let mut b = book_with_running_executor();
        assert!(matches!(
            b.subscribe(&FrameworkId::new("nope"), &ExecutorId::new("e"), vec![]),
            Err(SubscribeError::UnknownFramework(_))
        ));
        assert!(matches!(
            b.subscribe(&fid(), &ExecutorId::new("nope"), vec![]),
            Err(SubscribeError::UnknownExecutor(..))
        ));
        assert_eq!(b.begin_shutdown(&fid(), &ExecutorId::new("e")), Some(true));
        assert!(matches!(
            b.subscribe(&fid(), &ExecutorId::new("e"), vec![]),
            Err(SubscribeError::Terminating(_))
        ));
        assert_eq!(
            b.begin_shutdown(&fid(), &ExecutorId::new("e")),
            None,
            "already terminating"
        );
    }

    #[test]
    fn terminal_status_frees_resources_and_ack_completes() {
        let mut b = book_with_running_executor();
        let (_, running) = b
            .record_status(&fid(), &status("t1", TaskState::TaskRunning))
            .unwrap();
        assert_eq!(running.task.state, TaskState::TaskRunning);
        b.record_status(&fid(), &status("t1", TaskState::TaskFinished))
            .unwrap();
        let (executor_id, late) = b
            .record_status(&fid(), &status("t1", TaskState::TaskRunning))
            .unwrap();
        assert_eq!(executor_id, ExecutorId::new("e"));
        assert_eq!(
            late.task.state,
            TaskState::TaskFinished,
            "terminal is final"
        );
        assert_eq!(late.task.statuses.len(), 3);
        assert_eq!(b.used_resources().scalar("cpus"), 1.1);
        assert_eq!(
            b.acknowledged_terminal(&fid(), &TaskId::new("t1")),
            Cleanup::default()
        );
        let e = b.executor(&fid(), &ExecutorId::new("e")).unwrap();
        assert_eq!(e.completed.len(), 1);
        assert!(!b.knows_task(&fid(), &TaskId::new("t1")));
        assert!(b.knows_task(&fid(), &TaskId::new("t2")));
    }

    #[test]
    fn exit_reports_live_tasks_and_reaps_after_acks() {
        let mut b = book_with_running_executor();
        b.record_status(&fid(), &status("t1", TaskState::TaskFinished))
            .unwrap();
        assert!(b
            .executor_exited(&fid(), &ExecutorId::new("e"), &ContainerId::new("stale"))
            .is_none());
        let exited = b
            .executor_exited(&fid(), &ExecutorId::new("e"), &ContainerId::new("c1"))
            .unwrap();
        assert_eq!(exited.live_tasks, vec![(TaskId::new("t2"), false)]);
        assert!(
            b.executor_exited(&fid(), &ExecutorId::new("e"), &ContainerId::new("c1"))
                .is_none(),
            "once"
        );
        let t = exit_termination(&exited, false, Some(1 << 8));
        assert_eq!(
            (t.state, t.reason),
            (TaskState::TaskFailed, Reason::ReasonExecutorTerminated)
        );
        assert_eq!(t.message, "Executor exited with status 1");
        assert_eq!(
            exit_termination(&exited, false, Some(9)).message,
            "Executor terminated by signal 9"
        );
        b.record_status(&fid(), &status("t2", t.state)).unwrap();
        assert_eq!(b.used_resources().scalar("cpus"), 0.0);
        assert_eq!(
            b.acknowledged_terminal(&fid(), &TaskId::new("t1")),
            Cleanup::default()
        );
        let c = b.acknowledged_terminal(&fid(), &TaskId::new("t2"));
        assert_eq!(
            c,
            Cleanup {
                executor_completed: true,
                framework_completed: true
            }
        );
        assert!(b.frameworks.is_empty());
        assert_eq!(b.completed_frameworks[0].completed_executors.len(), 1);
        b.upsert_framework(framework());
        assert!(
            b.completed_frameworks.is_empty(),
            "a returning framework is active again"
        );
        assert_eq!(
            b.frameworks[&fid()].completed_executors.len(),
            1,
            "with its completed executors"
        );
    }

    #[test]
    fn killing_queued_and_launched_tasks() {
        let mut b = Book::new();
        b.upsert_framework(framework());
        b.run_task(&fid(), executor("e"), true, task("t1"), run("c1"));
        assert_eq!(
            b.kill_task(&fid(), &TaskId::new("t1")),
            KillOutcome::KillNow {
                executor_id: ExecutorId::new("e"),
                reason: Reason::ReasonTaskKilledDuringLaunch,
                idle: true,
                group: vec![]
            }
        );
        b.run_task(&fid(), executor("e"), true, task("t2"), run("c1"));
        assert!(matches!(
            b.kill_task(&fid(), &TaskId::new("t1")),
            KillOutcome::KillNow { idle: false, .. }
        ));
        b.subscribe(&fid(), &ExecutorId::new("e"), vec![]).unwrap();
        assert_eq!(
            b.kill_task(&fid(), &TaskId::new("t2")),
            KillOutcome::Forward {
                executor_id: ExecutorId::new("e")
            }
        );
        assert_eq!(
            b.kill_task(&fid(), &TaskId::new("zz")),
            KillOutcome::Unknown
        );
        let exited = b
            .executor_exited(&fid(), &ExecutorId::new("e"), &ContainerId::new("c1"))
            .unwrap();
        let live: Vec<_> = exited.live_tasks.clone();
        assert!(live.contains(&(TaskId::new("t2"), true)));
        let t = exit_termination(&exited, true, Some(15));
        assert_eq!(
            t.state,
            TaskState::TaskKilled,
            "a command task killed on request"
        );
    }

    #[test]
    fn recovered_launched_task_is_killed_without_its_executor() {
        let mut b = Book::new();
        b.upsert_framework(framework());
        b.run_task(&fid(), executor("e"), false, task("t1"), run("c1"));
        b.subscribe(&fid(), &ExecutorId::new("e"), vec![]).unwrap();
        b.executor_mut(&fid(), &ExecutorId::new("e")).unwrap().state = ExecutorState::Registering;
        assert_eq!(
            b.kill_task(&fid(), &TaskId::new("t1")),
            KillOutcome::KillNow {
                executor_id: ExecutorId::new("e"),
                reason: Reason::ReasonExecutorUnregistered,
                idle: true,
                group: vec![]
            }
        );
    }

    #[test]
    fn resubscribe_keeps_unknown_unacknowledged_tasks() {
        let mut b = book_with_running_executor();
        let delivered = b
            .subscribe(&fid(), &ExecutorId::new("e"), vec![task("t1"), task("t9")])
            .unwrap();
        assert!(delivered.is_empty());
        let e = b.executor(&fid(), &ExecutorId::new("e")).unwrap();
        assert_eq!(e.launched.len(), 3);
    }

    #[test]
    fn framework_shutdown_drops_tasks_silently() {
        let mut b = book_with_running_executor();
        assert_eq!(
            b.begin_framework_shutdown(&fid()),
            vec![ExecutorId::new("e")]
        );
        assert!(matches!(
            b.run_task(&fid(), executor("e2"), false, task("t5"), run("c5")),
            RunOutcome::Rejected(_)
        ));
        let exited = b
            .executor_exited(&fid(), &ExecutorId::new("e"), &ContainerId::new("c1"))
            .unwrap();
        assert!(exited.framework_terminating);
        assert_eq!(
            b.reap(&fid(), Some(&ExecutorId::new("e"))),
            Cleanup {
                executor_completed: true,
                framework_completed: true
            }
        );
    }

    fn default_executor(id: &str) -> ExecutorInfo {
        serde_json::from_value(json!({"type":"DEFAULT","executor_id":{"value":id},
            "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}}]}))
        .unwrap()
    }

    fn tasks(ids: &[&str]) -> Vec<TaskInfo> {
        ids.iter().map(|id| task(id)).collect()
    }

    #[test]
    fn task_groups_are_queued_and_delivered_whole() {
        let mut b = Book::new();
        b.upsert_framework(framework());
        let e = ExecutorId::new("g");
        assert_eq!(
            b.run_task_group(&fid(), default_executor("g"), tasks(&["a", "b"]), run("c1")),
            RunOutcome::LaunchExecutor
        );
        assert_eq!(
            b.run_task_group(&fid(), default_executor("g"), tasks(&["c"]), run("c2")),
            RunOutcome::Queued
        );
        let executor = b.executor(&fid(), &e).unwrap();
        assert!(!executor.command_executor);
        assert_eq!(executor.queued_group_of(&TaskId::new("b")).len(), 2);
        assert_eq!(b.used_resources().scalar("cpus"), 3.1);
        assert_eq!(
            b.subscribe(&fid(), &e, vec![]).unwrap(),
            [
                Delivery::Group(tasks(&["a", "b"])),
                Delivery::Group(tasks(&["c"]))
            ]
        );
        let executor = b.executor(&fid(), &e).unwrap();
        assert_eq!(executor.launched.len(), 3);
        assert_eq!(
            executor.launched[&TaskId::new("a")].task.executor_id,
            Some(e.clone())
        );
        assert!(executor.queued_groups.is_empty());
        assert_eq!(
            b.run_task_group(&fid(), default_executor("g"), tasks(&["d", "e"]), run("x")),
            RunOutcome::DeliverGroup(tasks(&["d", "e"]))
        );
        assert!(
            matches!(
                b.run_task_group(&fid(), default_executor("g"), tasks(&["f", "a"]), run("x")),
                RunOutcome::Rejected(Termination {
                    state: TaskState::TaskError,
                    ..
                })
            ),
            "a group with a task already here is refused whole"
        );
        assert!(!b.knows_task(&fid(), &TaskId::new("f")));
    }

    #[test]
    fn killing_a_queued_task_of_a_group_kills_the_group() {
        let mut b = Book::new();
        b.upsert_framework(framework());
        b.run_task_group(&fid(), default_executor("g"), tasks(&["a", "b"]), run("c1"));
        assert_eq!(
            b.kill_task(&fid(), &TaskId::new("a")),
            KillOutcome::KillNow {
                executor_id: ExecutorId::new("g"),
                reason: Reason::ReasonTaskKilledDuringLaunch,
                idle: true,
                group: vec![TaskId::new("b")]
            }
        );
        b.run_task_group(&fid(), default_executor("g"), tasks(&["c"]), run("c1"));
        assert!(matches!(
            b.kill_task(&fid(), &TaskId::new("b")),
            KillOutcome::KillNow { idle: false, ref group, .. } if group == &[TaskId::new("a")]
        ));
    }

    #[test]
    fn recovered_queued_tasks_keep_their_groups() {
        let mut b = Book::new();
        b.upsert_framework(framework());
        b.run_task_group(&fid(), default_executor("g"), tasks(&["a"]), run("c1"));
        let e = b.executor_mut(&fid(), &ExecutorId::new("g")).unwrap();
        e.queued.clear();
        e.queued_groups.clear();
        let group = vec![TaskId::new("b"), TaskId::new("c")];
        e.requeue(task("b"), group.clone());
        e.requeue(task("c"), group.clone());
        e.requeue(task("d"), vec![]);
        assert_eq!(e.queued_groups, [group]);
        assert!(e.queued_group_of(&TaskId::new("d")).is_empty());
        assert_eq!(
            b.subscribe(&fid(), &ExecutorId::new("g"), vec![]).unwrap(),
            [
                Delivery::Group(tasks(&["b", "c"])),
                Delivery::Task(task("d"))
            ]
        );
    }
}
