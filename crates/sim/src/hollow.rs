//! One hollow agent's bookkeeping as a pure state machine: inputs are master messages
//! ([`ToAgent`], acknowledgements included), timer ticks and link changes; outputs are
//! the [`ToMaster`] messages to post. Tasks run without any process: a launched task
//! goes TASK_STARTING, TASK_RUNNING and, after the task duration, TASK_FINISHED. A task
//! whose shell command is `sleep N` runs N seconds instead of the agent's task duration.
//!
//! Status updates follow the real agent's status update manager: per task, one update
//! in flight at a time, the next only after the master relays the framework's
//! acknowledgement of the head; the head is resent after every (re)registration and
//! when unacknowledged for a while (10 s doubling up to 10 min).

use meseta_api::internal::{
    RegisterAgent, Registered, StatusUpdate, ToAgent, ToMaster, LINK_VERSION,
};
use meseta_api::json::new_uuid_bytes;
use meseta_api::{
    AgentId, AgentInfo, CapabilityType, ExecutorId, FrameworkId, FrameworkInfo, Reason,
    StatusSource, Task, TaskId, TaskInfo, TaskState, TaskStatus,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

/// The first retry interval of an unacknowledged update.
pub const RETRY_MIN: Duration = Duration::from_secs(10);
/// The longest retry interval.
pub const RETRY_MAX: Duration = Duration::from_secs(600);

/// Counters a hollow agent keeps for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tasks launched.
    pub launched: u64,
    /// Tasks now running (launched and not yet terminal).
    pub running: u64,
    /// Tasks that reached TASK_FINISHED.
    pub finished: u64,
    /// Tasks that reached another terminal state.
    pub failed_or_killed: u64,
}

#[derive(Debug)]
struct SimTask {
    task: Task,
    executor_id: ExecutorId,
    /// When the task finishes by itself (None once terminal or killed).
    finish_at: Option<Instant>,
    /// Updates not yet acknowledged, the head first.
    pending: VecDeque<TaskStatus>,
    /// When the head was last sent (None: not sent since the last (re)registration).
    sent_at: Option<Instant>,
    retry: Duration,
}

impl SimTask {
    fn terminal(&self) -> bool {
        self.task.state.is_terminal()
    }
}

/// One simulated agent.
#[derive(Debug)]
pub struct HollowAgent {
    info: AgentInfo,
    endpoint: String,
    task_duration: Duration,
    registered: bool,
    stopped: bool,
    frameworks: BTreeMap<FrameworkId, FrameworkInfo>,
    tasks: BTreeMap<(FrameworkId, TaskId), SimTask>,
    counts: Counts,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl HollowAgent {
    /// A hollow agent announcing `info` (without an id) and the fake `endpoint`.
    pub fn new(info: AgentInfo, endpoint: String, task_duration: Duration) -> Self {
        HollowAgent {
            info,
            endpoint,
            task_duration,
            registered: false,
            stopped: false,
            frameworks: BTreeMap::new(),
            tasks: BTreeMap::new(),
            counts: Counts::default(),
        }
    }

    pub fn agent_id(&self) -> Option<&AgentId> {
        self.info.id.as_ref()
    }

    pub fn hostname(&self) -> &str {
        &self.info.hostname
    }

    pub fn registered(&self) -> bool {
        self.registered
    }

    /// Whether the master shut this agent down.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The registration to send: with the agent id once known, and every task that is
    /// live or has unacknowledged updates.
    pub fn registration(&self) -> RegisterAgent {
        let tasks: Vec<Task> = self
            .tasks
            .values()
            .map(|t| {
                let mut task = t.task.clone();
                if let Some(head) = t.pending.front() {
                    task.status_update_state = Some(head.state);
                    task.status_update_uuid = head.uuid.clone();
                }
                task
            })
            .collect();
        let frameworks = self
            .frameworks
            .iter()
            .filter(|(fid, _)| self.tasks.keys().any(|(f, _)| f == *fid))
            .map(|(_, info)| info.clone())
            .collect();
        RegisterAgent {
            version: LINK_VERSION,
            agent_info: self.info.clone(),
            endpoint: self.endpoint.clone(),
            tasks,
            executors: Vec::new(),
            frameworks,
            capabilities: Vec::new(),
            checkpointed_resources: Vec::new(),
        }
    }

    /// The link dropped: nothing is in flight any more.
    pub fn disconnected(&mut self) {
        self.registered = false;
        for task in self.tasks.values_mut() {
            task.sent_at = None;
        }
    }

    /// A message from the master.
    pub fn on_message(&mut self, now: Instant, message: ToAgent) -> Vec<ToMaster> {
        let mut out = Vec::new();
        match message {
            ToAgent::Registered(registered) => self.on_registered(registered),
            ToAgent::RunTask(run) => {
                let fid = run.framework.id.clone().unwrap_or_default();
                let user = run.framework.user.clone();
                self.frameworks.insert(fid.clone(), run.framework);
                self.run_task(now, &fid, run.task, Some(user));
            }
            ToAgent::RunTaskGroup(group) => {
                let fid = group.framework.id.clone().unwrap_or_default();
                self.frameworks.insert(fid.clone(), group.framework);
                for info in group.task_group.tasks {
                    let key = (fid.clone(), info.task_id.clone());
                    let mut task = Task::from_info(&info, &fid, None);
                    task.executor_id = Some(group.executor.executor_id.clone());
                    self.tasks.insert(
                        key.clone(),
                        SimTask {
                            task,
                            executor_id: group.executor.executor_id.clone(),
                            finish_at: None,
                            pending: VecDeque::new(),
                            sent_at: None,
                            retry: RETRY_MIN,
                        },
                    );
                    self.counts.launched += 1;
                    self.counts.running += 1;
                    self.transition(
                        &key,
                        TaskState::TaskFailed,
                        StatusSource::SourceAgent,
                        Some(Reason::ReasonContainerLaunchFailed),
                        Some("Task groups are not supported by hollow agents".into()),
                    );
                }
            }
            ToAgent::KillTask(kill) => {
                let key = (kill.framework_id, kill.task_id);
                match self.tasks.get(&key) {
                    Some(t) if !t.terminal() => self.transition(
                        &key,
                        TaskState::TaskKilled,
                        StatusSource::SourceExecutor,
                        None,
                        Some("Killed by the hollow agent".into()),
                    ),
                    Some(_) => {}
                    None => self.unknown_task(&key.0, key.1),
                }
            }
            ToAgent::Acknowledge(ack) => {
                let key = (ack.framework_id, ack.task_id);
                if let Some(task) = self.tasks.get_mut(&key) {
                    if task.pending.front().and_then(|h| h.uuid.as_ref()) == Some(&ack.uuid) {
                        task.pending.pop_front();
                        task.sent_at = None;
                        task.retry = RETRY_MIN;
                        if task.pending.is_empty() && task.terminal() {
                            self.tasks.remove(&key);
                        }
                    }
                }
            }
            ToAgent::ShutdownFramework(shutdown) => {
                let fid = shutdown.framework_id;
                let keys: Vec<_> = self
                    .tasks
                    .keys()
                    .filter(|(f, _)| *f == fid)
                    .cloned()
                    .collect();
                for key in keys {
                    if let Some(task) = self.tasks.remove(&key) {
                        if !task.terminal() {
                            self.counts.running -= 1;
                            self.counts.failed_or_killed += 1;
                        }
                    }
                }
                self.frameworks.remove(&fid);
            }
            ToAgent::ShutdownExecutor(shutdown) => {
                let keys: Vec<_> = self
                    .tasks
                    .iter()
                    .filter(|((f, _), t)| {
                        *f == shutdown.framework_id
                            && t.executor_id == shutdown.executor_id
                            && !t.terminal()
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in keys {
                    self.transition(
                        &key,
                        TaskState::TaskKilled,
                        StatusSource::SourceExecutor,
                        None,
                        Some("The executor was shut down".into()),
                    );
                }
            }
            ToAgent::UpdateFramework(update) => {
                let info = update.framework_info;
                if let Some(fid) = info.id.clone() {
                    if self.frameworks.contains_key(&fid) {
                        self.frameworks.insert(fid, info);
                    }
                }
            }
            ToAgent::ReconcileTasks(reconcile) => {
                let fid = reconcile.framework_id;
                for task_id in reconcile.task_ids {
                    if !self.tasks.contains_key(&(fid.clone(), task_id.clone())) {
                        self.unknown_task(&fid, task_id);
                    }
                }
            }
            ToAgent::Shutdown(_) => {
                self.stopped = true;
                self.registered = false;
                self.tasks.clear();
                self.counts.running = 0;
            }
            ToAgent::FrameworkMessage(_) | ToAgent::CheckpointResources(_) | ToAgent::Ping => {}
        }
        self.pump(now, &mut out);
        out
    }

    /// Time passed: tasks finish, unacknowledged heads are retried.
    /// When [`HollowAgent::on_tick`] next has something to do: the earliest end of a
    /// running task or retry of an unacknowledged update (None: nothing until a message
    /// comes).
    pub fn next_due(&self) -> Option<Instant> {
        let retry = |t: &SimTask| {
            t.sent_at
                .filter(|_| self.registered)
                .map(|sent| sent + t.retry)
        };
        self.tasks
            .values()
            .flat_map(|t| [t.finish_at, retry(t)])
            .flatten()
            .min()
    }

    pub fn on_tick(&mut self, now: Instant) -> Vec<ToMaster> {
        let due: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.finish_at.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.transition(
                &key,
                TaskState::TaskFinished,
                StatusSource::SourceExecutor,
                None,
                Some("Command exited with status 0".into()),
            );
        }
        let mut out = Vec::new();
        if self.registered {
            for task in self.tasks.values_mut() {
                if let Some(sent) = task.sent_at {
                    if now.duration_since(sent) >= task.retry {
                        task.sent_at = None;
                        task.retry = (task.retry * 2).min(RETRY_MAX);
                    }
                }
            }
        }
        self.pump(now, &mut out);
        out
    }

    fn on_registered(&mut self, registered: Registered) {
        self.info.id = Some(registered.agent_id);
        self.registered = true;
        for task in self.tasks.values_mut() {
            task.sent_at = None;
            task.retry = RETRY_MIN;
        }
    }

    fn run_task(&mut self, now: Instant, fid: &FrameworkId, info: TaskInfo, user: Option<String>) {
        let key = (fid.clone(), info.task_id.clone());
        if self.tasks.contains_key(&key) {
            return;
        }
        let executor_id = info
            .executor
            .as_ref()
            .map(|e| e.executor_id.clone())
            .unwrap_or_else(|| ExecutorId::new(info.task_id.as_str()));
        let mut task = Task::from_info(&info, fid, user);
        task.executor_id = None;
        self.tasks.insert(
            key.clone(),
            SimTask {
                task,
                executor_id,
                finish_at: None,
                pending: VecDeque::new(),
                sent_at: None,
                retry: RETRY_MIN,
            },
        );
        self.counts.launched += 1;
        self.counts.running += 1;
        for state in [TaskState::TaskStarting, TaskState::TaskRunning] {
            self.transition(&key, state, StatusSource::SourceExecutor, None, None);
        }
        let duration = simulated_duration(&info, self.task_duration);
        if let Some(task) = self.tasks.get_mut(&key) {
            task.finish_at = Some(now + duration);
        }
    }

    /// Answers a task this agent does not know (TASK_DROPPED, or TASK_LOST for
    /// frameworks that are not partition-aware); such updates are sent once, unretried.
    fn unknown_task(&mut self, fid: &FrameworkId, task_id: TaskId) {
        let partition_aware = self
            .frameworks
            .get(fid)
            .is_none_or(|f| f.has_capability(CapabilityType::PartitionAware));
        let key = (fid.clone(), task_id.clone());
        let info: TaskInfo = serde_json::from_value(serde_json::json!({
            "name": task_id.value,
            "task_id": task_id,
            "agent_id": self.info.id.clone().unwrap_or_default(),
        }))
        .expect("a minimal TaskInfo");
        let task = Task::from_info(&info, fid, None);
        self.tasks.insert(
            key.clone(),
            SimTask {
                task,
                executor_id: ExecutorId::new(task_id.as_str()),
                finish_at: None,
                pending: VecDeque::new(),
                sent_at: None,
                retry: RETRY_MIN,
            },
        );
        // Not counted: the task never ran here.
        self.counts.running += 1;
        self.transition(
            &key,
            TaskState::TaskDropped.for_framework(partition_aware),
            StatusSource::SourceAgent,
            Some(Reason::ReasonReconciliation),
            Some("Reconciliation: task is unknown to the agent".into()),
        );
        self.counts.failed_or_killed -= 1;
    }

    /// Moves a task to `state` and queues its update.
    fn transition(
        &mut self,
        key: &(FrameworkId, TaskId),
        state: TaskState,
        source: StatusSource,
        reason: Option<Reason>,
        message: Option<String>,
    ) {
        let agent_id = self.info.id.clone();
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        if task.terminal() {
            return;
        }
        let mut status = TaskStatus::new(key.1.clone(), state);
        status.source = Some(source);
        status.reason = reason;
        status.message = message;
        status.agent_id = agent_id;
        status.executor_id = Some(task.executor_id.clone());
        status.timestamp = Some(now_secs());
        status.uuid = Some(new_uuid_bytes());
        task.task.state = state;
        task.task.statuses.push(status.clone());
        task.pending.push_back(status);
        if state.is_terminal() {
            task.finish_at = None;
            self.counts.running -= 1;
            if state == TaskState::TaskFinished {
                self.counts.finished += 1;
            } else {
                self.counts.failed_or_killed += 1;
            }
        }
    }

    /// Sends every head that is not in flight, while registered.
    fn pump(&mut self, now: Instant, out: &mut Vec<ToMaster>) {
        if !self.registered {
            return;
        }
        for ((fid, _), task) in self.tasks.iter_mut() {
            if task.sent_at.is_some() {
                continue;
            }
            if let Some(head) = task.pending.front() {
                task.sent_at = Some(now);
                out.push(ToMaster::StatusUpdate(StatusUpdate {
                    framework_id: fid.clone(),
                    status: head.clone(),
                    latest_state: None,
                }));
            }
        }
    }
}

/// How long a hollow task runs: N seconds for a shell command `sleep N`, else `default`.
fn simulated_duration(info: &TaskInfo, default: Duration) -> Duration {
    info.command
        .as_ref()
        .filter(|c| c.shell)
        .and_then(|c| c.value.as_deref())
        .and_then(|v| v.trim().strip_prefix("sleep "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map_or(default, Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::internal::{Acknowledge, KillTask, ReconcileTasks, RunTask, ShutdownFramework};
    use meseta_api::MasterInfo;

    fn agent() -> HollowAgent {
        let info: AgentInfo =
            serde_json::from_value(serde_json::json!({"hostname": "sim-0", "port": 40000}))
                .unwrap();
        HollowAgent::new(info, "127.0.0.1:40000".into(), Duration::from_secs(1))
    }

    fn registered(agent: &mut HollowAgent, now: Instant) -> Vec<ToMaster> {
        let master_info: MasterInfo = serde_json::from_value(serde_json::json!({
            "id": "m", "ip": 0, "port": 5050, "hostname": "m"
        }))
        .unwrap();
        agent.on_message(
            now,
            ToAgent::Registered(Registered {
                agent_id: AgentId::new("A-S0"),
                link_id: "l1".into(),
                master_info,
            }),
        )
    }

    fn run(fid: &str, tid: &str) -> ToAgent {
        let framework: FrameworkInfo = serde_json::from_value(serde_json::json!({
            "id": {"value": fid}, "user": "u", "name": "f"
        }))
        .unwrap();
        let task: TaskInfo = serde_json::from_value(serde_json::json!({
            "name": tid, "task_id": {"value": tid}, "agent_id": {"value": "A-S0"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}],
            "command": {"value": "true"}
        }))
        .unwrap();
        ToAgent::RunTask(RunTask { framework, task })
    }

    fn updates(out: &[ToMaster]) -> Vec<(String, TaskState)> {
        out.iter()
            .map(|m| match m {
                ToMaster::StatusUpdate(u) => (u.status.task_id.to_string(), u.status.state),
                other => panic!("unexpected {}", other.type_name()),
            })
            .collect()
    }

    fn ack(out: &[ToMaster]) -> ToAgent {
        let ToMaster::StatusUpdate(u) = &out[0] else {
            panic!("not an update")
        };
        ToAgent::Acknowledge(Acknowledge {
            framework_id: u.framework_id.clone(),
            task_id: u.status.task_id.clone(),
            uuid: u.status.uuid.clone().unwrap(),
        })
    }

    #[test]
    fn registration_carries_version_and_endpoint() {
        let a = agent();
        let r = a.registration();
        assert_eq!(r.version, LINK_VERSION);
        assert_eq!(r.endpoint, "127.0.0.1:40000");
        assert!(r.agent_info.id.is_none() && r.tasks.is_empty());
    }

    #[test]
    fn a_task_runs_and_finishes_one_update_at_a_time() {
        let t0 = Instant::now();
        let mut a = agent();
        assert!(registered(&mut a, t0).is_empty());
        let out = a.on_message(t0, run("F", "t1"));
        assert_eq!(updates(&out), [("t1".into(), TaskState::TaskStarting)]);
        let ToMaster::StatusUpdate(u) = &out[0] else {
            unreachable!()
        };
        assert_eq!(u.status.source, Some(StatusSource::SourceExecutor));
        assert_eq!(u.status.agent_id, Some(AgentId::new("A-S0")));
        assert_eq!(u.status.executor_id, Some(ExecutorId::new("t1")));
        assert_eq!(u.status.uuid.as_ref().map(|b| b.len()), Some(16));
        assert!(u.status.timestamp.is_some());
        // Nothing more until the acknowledgement.
        assert!(a.on_tick(t0 + Duration::from_millis(100)).is_empty());
        let out = a.on_message(t0, ack(&out));
        assert_eq!(updates(&out), [("t1".into(), TaskState::TaskRunning)]);
        assert_eq!(a.next_due(), Some(t0 + Duration::from_secs(1)), "its end");
        // Finishes after the duration, but the update waits for RUNNING's ack.
        assert!(a.on_tick(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(a.counts().finished, 1);
        assert_eq!(a.counts().running, 0);
        let out = a.on_message(t0, ack(&out));
        assert_eq!(updates(&out), [("t1".into(), TaskState::TaskFinished)]);
        assert_eq!(a.registration().tasks.len(), 1);
        assert!(a.on_message(t0, ack(&out)).is_empty());
        assert!(a.registration().tasks.is_empty());
    }

    #[test]
    fn a_sleep_command_sets_the_task_duration() {
        let task = |command: serde_json::Value| -> TaskInfo {
            serde_json::from_value(serde_json::json!({
                "name": "t", "task_id": {"value": "t"}, "agent_id": {"value": "A-S0"},
                "command": command
            }))
            .unwrap()
        };
        let default = Duration::from_secs(1);
        let d = |c| simulated_duration(&task(c), default);
        assert_eq!(
            d(serde_json::json!({"value": "sleep 30"})),
            Duration::from_secs(30)
        );
        assert_eq!(
            d(serde_json::json!({"value": "sleep 0.25"})),
            Duration::from_millis(250)
        );
        assert_eq!(d(serde_json::json!({"value": "true"})), default);
        assert_eq!(d(serde_json::json!({"value": "sleep forever"})), default);
        assert_eq!(d(serde_json::json!({"value": "sleep -1"})), default);
        let argv = serde_json::json!({"value": "sleep 30", "shell": false});
        assert_eq!(d(argv), default);
    }

    #[test]
    fn a_wrong_uuid_does_not_acknowledge() {
        let t0 = Instant::now();
        let mut a = agent();
        registered(&mut a, t0);
        a.on_message(t0, run("F", "t1"));
        let wrong = ToAgent::Acknowledge(Acknowledge {
            framework_id: FrameworkId::new("F"),
            task_id: TaskId::new("t1"),
            uuid: new_uuid_bytes(),
        });
        assert!(a.on_message(t0, wrong).is_empty());
    }

    #[test]
    fn heads_are_resent_after_reregistration_and_on_retry() {
        let t0 = Instant::now();
        let mut a = agent();
        registered(&mut a, t0);
        a.on_message(t0, run("F", "t1"));
        a.disconnected();
        assert!(!a.registered());
        let r = a.registration();
        assert_eq!(r.agent_info.id, Some(AgentId::new("A-S0")));
        assert_eq!(r.tasks.len(), 1);
        assert_eq!(r.tasks[0].state, TaskState::TaskRunning);
        assert_eq!(
            r.tasks[0].status_update_state,
            Some(TaskState::TaskStarting)
        );
        assert_eq!(r.frameworks.len(), 1);
        // Unregistered: nothing is sent.
        assert!(a.on_tick(t0 + Duration::from_millis(1)).is_empty());
        let out = registered(&mut a, t0);
        assert_eq!(updates(&out), [("t1".into(), TaskState::TaskStarting)]);
        // The task's end is due first; the retry after 10 s without an acknowledgement
        // next.
        assert_eq!(a.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(a.on_tick(t0 + Duration::from_millis(500)).is_empty());
        let out = a.on_tick(t0 + RETRY_MIN);
        assert_eq!(updates(&out), [("t1".into(), TaskState::TaskStarting)]);
        assert_eq!(a.next_due(), Some(t0 + RETRY_MIN + 2 * RETRY_MIN));
        a.disconnected();
        assert_eq!(a.next_due(), None, "no retries while unregistered");
    }

    #[test]
    fn kill_reconcile_and_framework_shutdown() {
        let t0 = Instant::now();
        let mut a = agent();
        registered(&mut a, t0);
        let first = a.on_message(t0, run("F", "t1"));
        let kill = ToAgent::KillTask(KillTask {
            framework_id: FrameworkId::new("F"),
            task_id: TaskId::new("t1"),
            kill_policy: None,
        });
        assert!(a.on_message(t0, kill).is_empty());
        let out = a.on_message(t0, ack(&first));
        let out = a.on_message(t0, ack(&out));
        assert_eq!(updates(&out), [("t1".into(), TaskState::TaskKilled)]);
        assert_eq!(a.counts().failed_or_killed, 1);
        // Not finished later.
        a.on_message(t0, ack(&out));
        assert!(a.on_tick(t0 + Duration::from_secs(5)).is_empty());

        let out = a.on_message(
            t0,
            ToAgent::ReconcileTasks(ReconcileTasks {
                framework_id: FrameworkId::new("F"),
                task_ids: vec![TaskId::new("gone")],
            }),
        );
        // F is not partition-aware: TASK_LOST.
        assert_eq!(updates(&out), [("gone".into(), TaskState::TaskLost)]);

        a.on_message(t0, run("G", "t2"));
        assert_eq!(a.counts().running, 1);
        let out = a.on_message(
            t0,
            ToAgent::ShutdownFramework(ShutdownFramework {
                framework_id: FrameworkId::new("G"),
            }),
        );
        assert!(out.is_empty());
        assert_eq!(a.counts().running, 0);
        assert!(a
            .registration()
            .tasks
            .iter()
            .all(|t| t.framework_id.as_str() != "G"));
    }

    #[test]
    fn shutdown_stops_the_agent() {
        let t0 = Instant::now();
        let mut a = agent();
        registered(&mut a, t0);
        a.on_message(t0, ToAgent::Ping);
        assert!(!a.stopped());
        a.on_message(
            t0,
            ToAgent::Shutdown(meseta_api::internal::ShutdownAgent {
                message: "gone".into(),
            }),
        );
        assert!(a.stopped());
    }
}
