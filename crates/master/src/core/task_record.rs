//! [`TaskRecord`]: what the master keeps of a task, kept small because a master holds
//! hundreds of thousands of them (running and completed). Compared with the API's `Task`:
//! tasks launched with the same resources share one list (and its v0 map), statuses keep
//! only what differs from their task (the task's own id, agent and executor are not
//! repeated; rare fields are boxed) and carry no `data`, and the task's rarely set fields
//! (labels, discovery, container, health check, kill policy) are boxed together. Uuids are
//! kept as the base64 text they are written as (encoded once, not at every view). Written
//! out (by hand, the text between two values copied whole) it is exactly the API's `Task`
//! (the operator API) or the v0 task.

use crate::prefetch::prefetch;
use base64::Engine;
use meseta_api::json::{self, Bytes, JsonText};
use meseta_api::{
    AgentId, ExecutorId, FrameworkId, HealthCheck, KillPolicy, Reason, Resource, StatusSource,
    Task, TaskId, TaskInfo, TaskState, TaskStatus,
};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

/// How many statuses a task keeps (the latest of each state is what matters).
const MAX_STATUSES_PER_TASK: usize = 16;

/// A task's resources, shared by the tasks launched with the same ones.
#[derive(Clone, Debug)]
pub struct TaskResources(Arc<ResourceList>);

#[derive(Debug)]
struct ResourceList {
    list: Vec<Resource>,
    /// The list's JSON text, written once for all the tasks sharing the list.
    json: OnceLock<Box<RawValue>>,
    /// The v0 map's JSON text (`{"cpus":0.1,…}`), likewise.
    v0: OnceLock<Box<RawValue>>,
}

/// `value`'s JSON text as the views write it (ASCII only), to be written as it is.
fn raw_json(value: &impl Serialize) -> Box<RawValue> {
    let text = String::from_utf8(meseta_api::json::to_ascii_vec(value)).expect("ASCII JSON");
    RawValue::from_string(text).expect("JSON that our serializer wrote")
}

impl TaskResources {
    pub fn new(list: Vec<Resource>) -> Self {
        TaskResources(Arc::new(ResourceList {
            list,
            json: OnceLock::new(),
            v0: OnceLock::new(),
        }))
    }

    /// These resources if they are `list`, else a new list.
    pub fn reuse_for(&self, list: Vec<Resource>) -> Self {
        if self.0.list == list {
            self.clone()
        } else {
            TaskResources::new(list)
        }
    }

    pub fn as_slice(&self) -> &[Resource] {
        &self.0.list
    }

    /// The list's JSON text.
    pub fn json(&self) -> &RawValue {
        self.0.json.get_or_init(|| raw_json(&self.0.list))
    }

    /// The JSON text of the v0 map of these resources.
    pub fn v0(&self) -> &RawValue {
        self.0
            .v0
            .get_or_init(|| raw_json(&meseta_api::v0::V0Resources::of(&self.0.list)))
    }
}

/// Protobuf `bytes` (a uuid) as the base64 text JSON carries. A 16-byte uuid's 24
/// characters are kept in place: a view reads the uuid of every status, and a pointer to
/// each would send it to another corner of the heap for every one of them.
#[derive(Clone, Debug, PartialEq)]
enum Base64 {
    Uuid([u8; 24]),
    Other(Box<str>),
}

impl Base64 {
    fn of(bytes: &Bytes) -> Base64 {
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes.0);
        match <[u8; 24]>::try_from(text.as_bytes()) {
            Ok(inline) => Base64::Uuid(inline),
            Err(_) => Base64::Other(text.into()),
        }
    }

    fn text(&self) -> &str {
        match self {
            Base64::Uuid(inline) => std::str::from_utf8(inline).expect("base64 is ASCII"),
            Base64::Other(text) => text,
        }
    }

    fn bytes(&self) -> Bytes {
        // Only text this type encoded is decoded.
        Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(self.text())
                .expect("base64 that was encoded here"),
        )
    }
}

/// How a status names one of its task's ids: not at all, by the task's own, or by another
/// (kept in the status's extras: statuses name their own task's agent and executor).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Naming {
    Absent,
    Same,
    Other,
}

impl Naming {
    fn of<T>(value: Option<&T>, is_same: impl FnOnce(&T) -> bool) -> Naming {
        match value {
            None => Naming::Absent,
            Some(v) if is_same(v) => Naming::Same,
            Some(_) => Naming::Other,
        }
    }

    /// The id named: `same` for the task's own, `other` for another.
    fn get<'a>(self, same: &'a str, other: Option<&'a str>) -> Option<&'a str> {
        match self {
            Naming::Absent => None,
            Naming::Same => Some(same),
            Naming::Other => other,
        }
    }
}

/// The rarely set fields of a status.
#[derive(Clone, Debug, Default, PartialEq)]
struct StatusExtras {
    /// The agent and executor it names when they are not its task's.
    other_agent_id: Option<AgentId>,
    other_executor_id: Option<ExecutorId>,
    check_status: Option<Value>,
    labels: Option<Value>,
    container_status: Option<Value>,
    unreachable_time: Option<Value>,
    limitation: Option<Value>,
}

/// A status of a task, without its `data`; its task id is the task's.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusRecord {
    pub state: TaskState,
    source: Option<StatusSource>,
    reason: Option<Reason>,
    healthy: Option<bool>,
    agent_id: Naming,
    executor_id: Naming,
    timestamp: Option<f64>,
    uuid: Option<Base64>,
    message: Option<Box<str>>,
    extras: Option<Box<StatusExtras>>,
}

impl StatusRecord {
    fn new(status: &TaskStatus, task: &TaskRecord) -> StatusRecord {
        let agent_id = Naming::of(status.agent_id.as_ref(), |a| a == &task.agent_id);
        let executor_id = Naming::of(status.executor_id.as_ref(), |e| {
            e.as_str() == task.status_executor()
        });
        let other = |naming: Naming| naming == Naming::Other;
        let extras = StatusExtras {
            other_agent_id: status.agent_id.clone().filter(|_| other(agent_id)),
            other_executor_id: status.executor_id.clone().filter(|_| other(executor_id)),
            check_status: status.check_status.clone(),
            labels: status.labels.clone(),
            container_status: status.container_status.clone(),
            unreachable_time: status.unreachable_time.clone(),
            limitation: status.limitation.clone(),
        };
        StatusRecord {
            state: status.state,
            source: status.source,
            reason: status.reason,
            healthy: status.healthy,
            agent_id,
            executor_id,
            timestamp: status.timestamp,
            uuid: status.uuid.as_ref().map(Base64::of),
            message: status.message.as_deref().map(Box::from),
            extras: (extras != StatusExtras::default()).then(|| Box::new(extras)),
        }
    }

    /// The agent the status names.
    fn agent_id<'a>(&'a self, task: &'a TaskRecord) -> Option<&'a str> {
        let other = self.extras.as_ref().and_then(|e| e.other_agent_id.as_ref());
        self.agent_id
            .get(task.agent_id.as_str(), other.map(AgentId::as_str))
    }

    /// The executor the status names.
    fn executor_id<'a>(&'a self, task: &'a TaskRecord) -> Option<&'a str> {
        let other = self
            .extras
            .as_ref()
            .and_then(|e| e.other_executor_id.as_ref());
        self.executor_id
            .get(task.status_executor(), other.map(ExecutorId::as_str))
    }

    /// The status as the API writes it.
    pub fn to_status(&self, task: &TaskRecord) -> TaskStatus {
        let extras = self.extras.as_deref().cloned().unwrap_or_default();
        TaskStatus {
            task_id: task.task_id.clone(),
            state: self.state,
            message: self.message.as_deref().map(String::from),
            source: self.source,
            reason: self.reason,
            data: None,
            agent_id: self.agent_id(task).map(AgentId::new),
            executor_id: self.executor_id(task).map(ExecutorId::new),
            timestamp: self.timestamp,
            uuid: self.uuid.as_ref().map(Base64::bytes),
            healthy: self.healthy,
            check_status: extras.check_status,
            labels: extras.labels,
            container_status: extras.container_status,
            unreachable_time: extras.unreachable_time,
            limitation: extras.limitation,
        }
    }

    pub fn timestamp(&self) -> Option<f64> {
        self.timestamp
    }

    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    pub fn container_status(&self) -> Option<&Value> {
        self.extras.as_ref()?.container_status.as_ref()
    }
}

/// The rarely set fields of a task.
#[derive(Clone, Debug, Default, PartialEq)]
struct TaskExtras {
    labels: Option<Value>,
    discovery: Option<Value>,
    container: Option<Value>,
    health_check: Option<HealthCheck>,
    kill_policy: Option<KillPolicy>,
}

/// What the master keeps of a task.
#[derive(Clone, Debug)]
pub struct TaskRecord {
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub executor_id: Option<ExecutorId>,
    /// The task's name when it is not its id.
    name: Option<Box<str>>,
    pub state: TaskState,
    /// The state and uuid of the latest update the agent forwarded.
    status_update_state: Option<TaskState>,
    status_update_uuid: Option<Base64>,
    pub resources: TaskResources,
    statuses: Vec<StatusRecord>,
    user: Option<Box<str>>,
    extras: Option<Box<TaskExtras>>,
}

impl TaskRecord {
    /// A task launched now (TASK_STAGING) on `agent_id`, with `resources` (its info's,
    /// maybe shared).
    pub fn launched(
        info: &TaskInfo,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        user: Option<String>,
        resources: TaskResources,
    ) -> TaskRecord {
        let mut task = Task::from_info(info, framework_id, user);
        task.agent_id = agent_id.clone();
        TaskRecord::new(task, Vec::new(), resources)
    }

    /// The record of a task an agent reports, with `resources` (its own, maybe shared).
    pub fn from_task(mut task: Task, resources: TaskResources) -> TaskRecord {
        let statuses = std::mem::take(&mut task.statuses);
        TaskRecord::new(task, statuses, resources)
    }

    fn new(task: Task, statuses: Vec<TaskStatus>, resources: TaskResources) -> TaskRecord {
        let extras = TaskExtras {
            labels: task.labels,
            discovery: task.discovery,
            container: task.container,
            health_check: task.health_check,
            kill_policy: task.kill_policy,
        };
        let mut record = TaskRecord {
            name: (task.name != task.task_id.as_str()).then(|| task.name.into()),
            // Its own copy of the text, next to the record: the decoded call's is wherever
            // that call was read, and views read every task's id (the maps share this one).
            task_id: TaskId::new(task.task_id.as_str()),
            framework_id: task.framework_id,
            agent_id: task.agent_id,
            executor_id: task.executor_id,
            state: task.state,
            status_update_state: task.status_update_state,
            status_update_uuid: task.status_update_uuid.as_ref().map(Base64::of),
            resources,
            statuses: Vec::new(),
            user: task.user.map(String::into_boxed_str),
            extras: (extras != TaskExtras::default()).then(|| Box::new(extras)),
        };
        for status in &statuses {
            record.push_status(status);
        }
        record
    }

    /// The agent forwarded an update of `state` with `uuid` (to be acknowledged).
    pub fn forwarded(&mut self, state: TaskState, uuid: Option<&Bytes>) {
        self.status_update_state = Some(state);
        self.status_update_uuid = uuid.map(Base64::of);
    }

    /// Whether acknowledging `uuid` completes the task: it is the uuid of the latest
    /// forwarded update, and that update is terminal.
    pub fn completed_by(&self, uuid: &Bytes) -> bool {
        self.status_update_state.is_some_and(TaskState::is_terminal)
            && self.status_update_uuid.as_ref() == Some(&Base64::of(uuid))
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.task_id.value)
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn kill_policy(&self) -> Option<&KillPolicy> {
        self.extras.as_ref()?.kill_policy.as_ref()
    }

    pub fn labels(&self) -> Option<&Value> {
        self.extras.as_ref()?.labels.as_ref()
    }

    pub fn discovery(&self) -> Option<&Value> {
        self.extras.as_ref()?.discovery.as_ref()
    }

    pub fn container(&self) -> Option<&Value> {
        self.extras.as_ref()?.container.as_ref()
    }

    pub fn statuses(&self) -> &[StatusRecord] {
        &self.statuses
    }

    /// The executor id its statuses usually carry: its executor's, or for a command task
    /// its own id (the command executor's id).
    fn status_executor(&self) -> &str {
        self.executor_id
            .as_ref()
            .map_or(self.task_id.as_str(), |e| e.as_str())
    }

    /// Records a status: it replaces the one of the same state, without its data; the
    /// oldest go beyond [`MAX_STATUSES_PER_TASK`].
    pub fn push_status(&mut self, status: &TaskStatus) {
        let record = StatusRecord::new(status, self);
        self.statuses.retain(|s| s.state != record.state);
        self.statuses.push(record);
        if self.statuses.len() > MAX_STATUSES_PER_TASK {
            self.statuses.remove(0);
        }
        // A vector grows by doubling from four; a task has a few statuses, held for long.
        self.statuses.shrink_to_fit();
    }

    /// The latest status of the task's current state, as the API writes it.
    pub fn status_of_state(&self) -> Option<TaskStatus> {
        self.statuses
            .iter()
            .find(|s| s.state == self.state)
            .map(|s| s.to_status(self))
    }

    /// The latest status, as the API writes it.
    pub fn last_status(&self) -> Option<TaskStatus> {
        self.statuses.last().map(|s| s.to_status(self))
    }

    /// Asks for the record's own memory ahead of its writing (see [`crate::prefetch`]).
    pub fn prefetch_record(&self) {
        let start = (self as *const TaskRecord).cast::<u8>();
        for line in (0..std::mem::size_of::<TaskRecord>()).step_by(64) {
            prefetch(start.wrapping_add(line));
        }
    }

    /// Asks for the memory the record points to that its writing reads: its id's text, its
    /// statuses, its agent's id and its user (the record itself must be at hand).
    pub fn prefetch_parts(&self) {
        prefetch(self.task_id.as_str());
        prefetch(self.agent_id.as_str());
        prefetch(self.statuses.as_ptr());
        if let Some(user) = &self.user {
            prefetch(&**user);
        }
    }
}

/// `,"key":`, the text before a field that is not an object's first.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":").as_bytes()
    };
}

/// Writes `{"value":"…"}`, as ids are written.
fn write_id(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(br#"{"value":"#);
    json::append_string(out, value);
    out.push(b'}');
}

/// Writes `key` and `value` when there is a value (the API's optional fields).
fn write_optional<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &[u8], value: Option<&T>) {
    if let Some(value) = value {
        out.extend_from_slice(key);
        json::append_ascii(out, value);
    }
}

/// Writes `items` as a JSON list, each by `write`.
fn write_list<T>(out: &mut Vec<u8>, items: &[T], mut write: impl FnMut(&T, &mut Vec<u8>)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out);
    }
    out.push(b']');
}

/// Writes `key` and an id when there is one.
fn write_optional_id(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
    if let Some(value) = value {
        out.extend_from_slice(key);
        write_id(out, value);
    }
}

impl StatusRecord {
    /// Writes the status as the API's `TaskStatus` (its fields in the message's order).
    fn write_json(&self, task: &TaskRecord, out: &mut Vec<u8>) {
        let extras = self.extras.as_deref();
        let extra = |f: fn(&StatusExtras) -> &Option<Value>| extras.and_then(|e| f(e).as_ref());
        out.extend_from_slice(br#"{"task_id":"#);
        write_id(out, task.task_id.as_str());
        out.extend_from_slice(key!("state"));
        json::append_ascii(out, &self.state);
        write_optional(out, key!("message"), self.message.as_deref());
        write_optional(out, key!("source"), self.source.as_ref());
        write_optional(out, key!("reason"), self.reason.as_ref());
        write_optional_id(out, key!("agent_id"), self.agent_id(task));
        write_optional_id(out, key!("executor_id"), self.executor_id(task));
        write_optional(out, key!("timestamp"), self.timestamp.as_ref());
        write_optional(out, key!("uuid"), self.uuid.as_ref().map(Base64::text));
        write_optional(out, key!("healthy"), self.healthy.as_ref());
        write_optional(out, key!("check_status"), extra(|e| &e.check_status));
        write_optional(out, key!("labels"), extra(|e| &e.labels));
        write_optional(
            out,
            key!("container_status"),
            extra(|e| &e.container_status),
        );
        write_optional(
            out,
            key!("unreachable_time"),
            extra(|e| &e.unreachable_time),
        );
        write_optional(out, key!("limitation"), extra(|e| &e.limitation));
        out.push(b'}');
    }
}

impl TaskRecord {
    /// Writes the task as the API's `Task` (its fields in the message's order). Written by
    /// hand, not derived: views write hundreds of thousands of tasks, and the text between
    /// two values (`"},"state":"`) is one copy here where a serializer writes it in pieces.
    fn write_json(&self, out: &mut Vec<u8>) {
        let extras = self.extras.as_deref();
        out.extend_from_slice(br#"{"name":"#);
        json::append_string(out, self.name());
        out.extend_from_slice(key!("task_id"));
        write_id(out, self.task_id.as_str());
        out.extend_from_slice(key!("framework_id"));
        write_id(out, self.framework_id.as_str());
        let executor = self.executor_id.as_ref().map(ExecutorId::as_str);
        write_optional_id(out, key!("executor_id"), executor);
        out.extend_from_slice(key!("agent_id"));
        write_id(out, self.agent_id.as_str());
        out.extend_from_slice(key!("state"));
        json::append_ascii(out, &self.state);
        out.extend_from_slice(key!("resources"));
        out.extend_from_slice(self.resources.json().get().as_bytes());
        out.extend_from_slice(key!("statuses"));
        write_list(out, &self.statuses, |status, out| {
            status.write_json(self, out)
        });
        write_optional(
            out,
            key!("status_update_state"),
            self.status_update_state.as_ref(),
        );
        let uuid = self.status_update_uuid.as_ref().map(Base64::text);
        write_optional(out, key!("status_update_uuid"), uuid);
        write_optional(out, key!("labels"), self.labels());
        write_optional(out, key!("discovery"), self.discovery());
        write_optional(out, key!("container"), self.container());
        write_optional(
            out,
            key!("health_check"),
            extras.and_then(|e| e.health_check.as_ref()),
        );
        write_optional(out, key!("kill_policy"), self.kill_policy());
        write_optional(out, key!("user"), self.user());
        out.push(b'}');
    }

    /// Writes the task as the v0 endpoints write it (Mesos's JSON model of a task).
    fn write_v0_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"id":"#);
        json::append_string(out, self.task_id.as_str());
        out.extend_from_slice(key!("name"));
        json::append_string(out, self.name());
        out.extend_from_slice(key!("framework_id"));
        json::append_string(out, self.framework_id.as_str());
        out.extend_from_slice(key!("executor_id"));
        let executor = self.executor_id.as_ref().map_or("", ExecutorId::as_str);
        json::append_string(out, executor);
        out.extend_from_slice(key!("slave_id"));
        json::append_string(out, self.agent_id.as_str());
        out.extend_from_slice(key!("state"));
        json::append_ascii(out, &self.state);
        out.extend_from_slice(key!("resources"));
        out.extend_from_slice(self.resources.v0().get().as_bytes());
        out.extend_from_slice(key!("statuses"));
        write_list(out, &self.statuses, |status, out| {
            out.extend_from_slice(br#"{"state":"#);
            json::append_ascii(out, &status.state);
            out.extend_from_slice(key!("timestamp"));
            json::append_ascii(out, &status.timestamp.unwrap_or(0.0));
            write_optional(out, key!("healthy"), status.healthy.as_ref());
            write_optional(out, key!("container_status"), status.container_status());
            out.push(b'}');
        });
        let labels = self.labels().and_then(|l| l.get("labels"));
        write_optional(out, key!("labels"), labels);
        write_optional(out, key!("discovery"), self.discovery());
        write_optional(out, key!("container"), self.container());
        write_optional(out, key!("user"), self.user());
        out.push(b'}');
    }

    /// The task as the v0 endpoints write it.
    pub fn v0(&self) -> V0Task<'_> {
        V0Task(self)
    }
}

/// A task as the v0 endpoints write it.
pub struct V0Task<'a>(&'a TaskRecord);

impl Serialize for V0Task<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_written(serializer, |text| self.0.write_v0_json(text))
    }
}

thread_local! {
    /// The text of the task being serialized, kept between tasks for its capacity.
    static TASK_TEXT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serializes the JSON text that `write` writes, as it is.
fn serialize_written<S: Serializer>(
    serializer: S,
    write: impl FnOnce(&mut Vec<u8>),
) -> Result<S::Ok, S::Error> {
    TASK_TEXT.with_borrow_mut(|text| {
        text.clear();
        write(text);
        let text = std::str::from_utf8(text).expect("the task's JSON is ASCII");
        JsonText(text).serialize(serializer)
    })
}

impl Serialize for TaskRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_written(serializer, |text| self.write_json(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(extra: Value) -> Task {
        let mut v = json!({
            "name": "n", "task_id": {"value": "t"}, "framework_id": {"value": "f"},
            "agent_id": {"value": "a"}, "state": "TASK_RUNNING",
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}}],
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn record(task: &Task) -> TaskRecord {
        TaskRecord::from_task(task.clone(), TaskResources::new(task.resources.clone()))
    }

    #[test]
    fn a_record_writes_the_task_it_keeps() {
        let plain = task(json!({"name": "t", "statuses": [
            {"task_id": {"value": "t"}, "state": "TASK_RUNNING", "agent_id": {"value": "a"},
             "executor_id": {"value": "t"}, "timestamp": 5.0, "uuid": "AAECAwQFBgcICQoLDA0ODw==", "source": "SOURCE_EXECUTOR"}
        ]}));
        let full = task(json!({
            "executor_id": {"value": "e"}, "status_update_state": "TASK_FINISHED",
            "status_update_uuid": "AQID", "user": "u", "labels": {"labels": [{"key": "k"}]},
            "discovery": {"visibility": "FRAMEWORK"}, "container": {"type": "MESOS"},
            "health_check": {"type": "COMMAND", "command": {"value": "true"}},
            "kill_policy": {"grace_period": {"nanoseconds": 5}},
            "statuses": [
                {"task_id": {"value": "t"}, "state": "TASK_STARTING", "agent_id": {"value": "other"},
                 "executor_id": {"value": "e"}, "message": "m", "reason": "REASON_COMMAND_EXECUTOR_FAILED",
                 "healthy": true, "check_status": {"type": "COMMAND"}, "labels": {"labels": []},
                 "container_status": {"executor_pid": 3}, "unreachable_time": {"nanoseconds": 1},
                 "limitation": {"message": "x"}},
                {"task_id": {"value": "t"}, "state": "TASK_RUNNING", "executor_id": {"value": "x"}}
            ]
        }));
        let escaped = task(
            json!({"name": "a \"b\"\\ \u{e9}\n", "user": "r\u{f6}\u{f6}t",
            "task_id": {"value": "t/\u{1F600}"}}),
        );
        for task in [plain, full, escaped] {
            let kept = record(&task);
            assert_eq!(
                String::from_utf8(json::to_ascii_vec(&kept)).unwrap(),
                String::from_utf8(json::to_ascii_vec(&task)).unwrap(),
                "the record's text is the task's, byte for byte"
            );
            assert_eq!(
                serde_json::to_value(&kept).unwrap(),
                serde_json::to_value(&task).unwrap()
            );
            let v0: Value = serde_json::from_slice(&json::to_ascii_vec(&kept.v0())).unwrap();
            assert_eq!(v0, meseta_api::v0::task(&task));
            let statuses: Vec<TaskStatus> =
                kept.statuses().iter().map(|s| s.to_status(&kept)).collect();
            assert_eq!(statuses, task.statuses);
        }
    }

    #[test]
    fn statuses_are_kept_one_per_state_without_data_and_at_most_sixteen() {
        let mut kept = record(&task(json!({})));
        let mut status = TaskStatus::new(TaskId::new("t"), TaskState::TaskRunning);
        status.data = Some(Bytes(vec![1; 1000]));
        kept.push_status(&status);
        status.message = Some("again".into());
        kept.push_status(&status);
        assert_eq!(kept.statuses().len(), 1);
        let last = kept.last_status().unwrap();
        assert_eq!((last.message.as_deref(), last.data), (Some("again"), None));
        for _ in 0..20 {
            for state in [TaskState::TaskStaging, TaskState::TaskStarting] {
                kept.push_status(&TaskStatus::new(TaskId::new("t"), state));
            }
        }
        assert_eq!(kept.statuses().len(), 3, "one per state");
        assert_eq!(
            kept.status_of_state().unwrap().state,
            TaskState::TaskRunning
        );
    }

    #[test]
    fn only_the_uuid_of_a_forwarded_terminal_update_completes_the_task() {
        let mut kept = record(&task(json!({})));
        let uuid = Bytes(vec![7; 16]);
        kept.forwarded(TaskState::TaskRunning, Some(&uuid));
        assert!(!kept.completed_by(&uuid), "not terminal");
        kept.forwarded(TaskState::TaskFinished, Some(&uuid));
        assert!(kept.completed_by(&uuid));
        assert!(!kept.completed_by(&Bytes(vec![8; 16])), "another update");
        kept.forwarded(TaskState::TaskFinished, None);
        assert!(!kept.completed_by(&uuid), "nothing to acknowledge");
    }

    #[test]
    fn equal_resources_are_shared_and_their_texts_written_once() {
        let first = TaskResources::new(task(json!({})).resources);
        let same = first.reuse_for(first.as_slice().to_vec());
        assert!(Arc::ptr_eq(&first.0, &same.0));
        let other = first.reuse_for(Vec::new());
        assert!(!Arc::ptr_eq(&first.0, &other.0));
        let v0: Value = serde_json::from_str(first.v0().get()).unwrap();
        assert_eq!(
            v0,
            json!({"cpus": 1.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0})
        );
        assert!(std::ptr::eq(first.v0(), same.v0()));
        let list: Vec<Resource> = serde_json::from_str(first.json().get()).unwrap();
        assert_eq!(list, first.as_slice());
        assert!(std::ptr::eq(first.json(), same.json()));
    }
}
