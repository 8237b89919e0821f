//! The internal master↔agent link (ours, versioned, never exposed to frameworks).
//!
//! Flow:
//! 1. The agent POSTs [`RegisterAgent`] as JSON to `/internal/v1/agent/link` on the master.
//!    The master answers 200 with a RecordIO stream of [`ToAgent`] messages, the first of
//!    which is `REGISTERED` (the agent id, and a link id naming this connection), or answers
//!    an error status with a message (for example 409 for a version the master cannot speak,
//!    or 403 for an agent the master marked gone).
//! 2. For everything else, the agent POSTs a JSON array of [`ToMaster`] messages (those
//!    queued since its last post, in order; at most [`MAX_MESSAGES_PER_POST`]) to
//!    `/internal/v1/agent/message` with the `Meseta-Link-Id` header; the master applies
//!    them in order and answers 202, or 409 when the link id is not the current one (the
//!    agent then reregisters).
//! 3. The master sends `PING` on the stream every few seconds; an agent that sees neither a
//!    message nor a ping for [`LINK_TIMEOUT_SECS`] reconnects and reregisters with what it
//!    runs. The master treats a dropped stream as a disconnected agent.

use crate::ids::*;
use crate::json::Bytes;
use crate::mesos::*;
use crate::resources::Resource;
use serde::{Deserialize, Serialize};

/// The link protocol version; both sides must speak the same one.
pub const LINK_VERSION: u32 = 3;

/// The most messages an agent puts in one post: a busy agent's messages share posts,
/// and one post stays small.
pub const MAX_MESSAGES_PER_POST: usize = 256;

/// The header carrying the link id on agent→master messages.
pub const LINK_ID_HEADER: &str = "Meseta-Link-Id";

/// The master's ping interval on the link.
pub const PING_INTERVAL_SECS: u64 = 5;

/// How long an agent waits without hearing from the master before it reconnects.
pub const LINK_TIMEOUT_SECS: u64 = 20;

/// The master's base URL for the link from `host:port` (an `http://` prefix is accepted too).
pub fn master_url(master: &str) -> String {
    let trimmed = master.trim().trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}

/// Agent registration (first or after any restart/disconnect).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterAgent {
    pub version: u32,
    /// `agent_info.id` is set when the agent reregisters with the id it was given.
    pub agent_info: AgentInfo,
    /// The agent's HTTP endpoint, `ip:port`, for the master's files proxy and for `pid`.
    pub endpoint: String,
    /// Tasks the agent knows (non-terminal or with unacknowledged updates).
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Executors the agent runs, with their framework ids set.
    #[serde(default)]
    pub executors: Vec<ExecutorInfo>,
    /// Frameworks of those tasks and executors.
    #[serde(default)]
    pub frameworks: Vec<FrameworkInfo>,
    /// Agent capabilities, opaque to us for now.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The dynamic reservations and persistent volumes the agent has checkpointed; the
    /// master takes them only when it does not know the agent's (its registry wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpointed_resources: Vec<Resource>,
}

tagged_union! {
    /// Master → agent messages, streamed on the link.
    pub enum ToAgent ("master-to-agent message") {
        Registered(Registered) = "REGISTERED" in "registered",
        RunTask(RunTask) = "RUN_TASK" in "run_task",
        RunTaskGroup(RunTaskGroup) = "RUN_TASK_GROUP" in "run_task_group",
        KillTask(KillTask) = "KILL_TASK" in "kill_task",
        Acknowledge(Acknowledge) = "ACKNOWLEDGE" in "acknowledge",
        FrameworkMessage(FrameworkMessage) = "FRAMEWORK_MESSAGE" in "framework_message",
        ShutdownFramework(ShutdownFramework) = "SHUTDOWN_FRAMEWORK" in "shutdown_framework",
        ShutdownExecutor(ShutdownExecutor) = "SHUTDOWN_EXECUTOR" in "shutdown_executor",
        UpdateFramework(UpdateFramework) = "UPDATE_FRAMEWORK" in "update_framework",
        ReconcileTasks(ReconcileTasks) = "RECONCILE_TASKS" in "reconcile_tasks",
        CheckpointResources(CheckpointResources) = "CHECKPOINT_RESOURCES" in "checkpoint_resources",
        Shutdown(ShutdownAgent) = "SHUTDOWN" in "shutdown",
        Ping = "PING",
    }
}

tagged_union! {
    /// Agent → master messages, POSTed one at a time.
    pub enum ToMaster ("agent-to-master message") {
        StatusUpdate(StatusUpdate) = "STATUS_UPDATE" in "status_update",
        ExecutorMessage(FrameworkMessage) = "EXECUTOR_MESSAGE" in "executor_message",
        ExitedExecutor(ExitedExecutor) = "EXITED_EXECUTOR" in "exited_executor",
    }
}

/// `REGISTERED`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub agent_id: AgentId,
    pub link_id: String,
    pub master_info: MasterInfo,
}

/// `RUN_TASK`: launch a task, with its executor (custom) or none (command task).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunTask {
    pub framework: FrameworkInfo,
    pub task: TaskInfo,
}

/// `RUN_TASK_GROUP`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunTaskGroup {
    pub framework: FrameworkInfo,
    pub executor: ExecutorInfo,
    pub task_group: TaskGroupInfo,
}

/// `KILL_TASK`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillTask {
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

/// `ACKNOWLEDGE`: a framework acknowledged a status update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Acknowledge {
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub uuid: Bytes,
}

/// `FRAMEWORK_MESSAGE` (master→agent) and `EXECUTOR_MESSAGE` (agent→master).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkMessage {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub data: Bytes,
}

/// `SHUTDOWN_FRAMEWORK`: kill every executor and task of the framework.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShutdownFramework {
    pub framework_id: FrameworkId,
}

/// `SHUTDOWN_EXECUTOR`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShutdownExecutor {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
}

/// `UPDATE_FRAMEWORK`: new FrameworkInfo after a framework resubscribed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateFramework {
    pub framework_info: FrameworkInfo,
}

/// `RECONCILE_TASKS`: the master's view of this agent's tasks after a reregistration; the
/// agent answers tasks it does not know with TASK_DROPPED updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconcileTasks {
    pub framework_id: FrameworkId,
    pub task_ids: Vec<TaskId>,
}

/// `CHECKPOINT_RESOURCES`: all of the agent's dynamic reservations and persistent
/// volumes, sent after every change and after each (re)registration. The agent stores
/// them, creates the volumes it lacks and removes the volumes no longer listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointResources {
    pub resources: Vec<Resource>,
}

/// `SHUTDOWN`: the master no longer accepts this agent (for example, marked gone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShutdownAgent {
    pub message: String,
}

/// `STATUS_UPDATE`: a checkpointed update, resent until acknowledged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub framework_id: FrameworkId,
    pub status: TaskStatus,
    /// The latest state the agent knows for the task (may be ahead of `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_state: Option<TaskState>,
}

/// `EXITED_EXECUTOR`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExitedExecutor {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    /// Wait status as Mesos reports it (exit code << 8, or the signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    /// Resources the executor (and its tasks) held, now free.
    #[serde(default)]
    pub resources: Vec<Resource>,
}

#[cfg(test)]
mod tests {
    use super::master_url;

    #[test]
    fn master_urls() {
        assert_eq!(master_url("127.0.0.1:5050"), "http://127.0.0.1:5050");
        assert_eq!(master_url("http://m:5050/"), "http://m:5050");
    }
}
