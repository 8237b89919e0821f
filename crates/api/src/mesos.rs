//! The shared Mesos messages (`mesos.proto`): frameworks, agents, tasks, executors,
//! statuses and offers. Fields we do not interpret yet are kept as raw JSON so that they
//! round-trip unchanged (for example `container`, `discovery`, `labels`).

use crate::ids::*;
use crate::json::{self, Bytes};
use crate::resources::Resource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `FrameworkInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    pub user: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<FrameworkId>,
    #[serde(default, deserialize_with = "json::f64_lenient")]
    pub failover_timeout: f64,
    #[serde(default)]
    pub checkpoint: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_filters: Option<Value>,
}

impl FrameworkInfo {
    pub fn has_capability(&self, kind: CapabilityType) -> bool {
        self.capabilities.iter().any(|c| c.kind == Some(kind))
    }

    /// The roles this framework subscribes with: `roles` with MULTI_ROLE, else `role` or `*`.
    pub fn effective_roles(&self) -> Vec<String> {
        if self.has_capability(CapabilityType::MultiRole) {
            self.roles.clone()
        } else {
            vec![self.role.clone().unwrap_or_else(|| "*".to_string())]
        }
    }
}

/// `FrameworkInfo.Capability`; an unknown type name is dropped, leaving `{}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    #[serde(
        rename = "type",
        default,
        deserialize_with = "json::lenient_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<CapabilityType>,
}

impl Capability {
    pub fn new(kind: CapabilityType) -> Self {
        Self { kind: Some(kind) }
    }
}

/// `FrameworkInfo.Capability.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CapabilityType {
    RevocableResources,
    TaskKillingState,
    GpuResources,
    SharedResources,
    PartitionAware,
    MultiRole,
    ReservationRefinement,
    RegionAware,
}

/// `Address`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub port: u16,
}

/// `MasterInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MasterInfo {
    pub id: String,
    /// IPv4 address as a little-endian packed integer, as Mesos writes it.
    pub ip: u32,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Value>,
}

/// Packs an IPv4 address the way `MasterInfo.ip` carries it (network byte order in memory,
/// read as a little-endian integer).
pub fn packed_ipv4(ip: std::net::Ipv4Addr) -> u32 {
    u32::from_le_bytes(ip.octets())
}

/// `AgentInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub hostname: String,
    #[serde(default = "default_agent_port")]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Value>,
}

fn default_agent_port() -> u16 {
    5051
}

/// `Attribute`: TEXT, SCALAR, RANGES or SET.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: crate::resources::ValueType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalar: Option<crate::resources::Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<crate::resources::Ranges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<crate::resources::Set>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Text>,
}

/// `Value.Text`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub value: String,
}

/// `Environment.Variable`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentVariable {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Value>,
}

/// `Environment`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    #[serde(default)]
    pub variables: Vec<EnvironmentVariable>,
}

/// `CommandInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[serde(default = "default_true")]
    pub shell: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl CommandInfo {
    /// A shell command.
    pub fn shell(value: impl Into<String>) -> Self {
        CommandInfo {
            uris: Vec::new(),
            environment: None,
            shell: true,
            value: Some(value.into()),
            arguments: Vec::new(),
            user: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// `ExecutorInfo.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutorType {
    Unknown,
    Default,
    Custom,
}

/// `ExecutorInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    #[serde(
        rename = "type",
        default,
        deserialize_with = "json::lenient_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<ExecutorType>,
    pub executor_id: ExecutorId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_period: Option<DurationInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
}

/// `DurationInfo`: nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DurationInfo {
    #[serde(deserialize_with = "json::i64_lenient")]
    pub nanoseconds: i64,
}

impl DurationInfo {
    pub fn from_secs_f64(secs: f64) -> Self {
        Self {
            nanoseconds: (secs * 1e9) as i64,
        }
    }
    pub fn as_duration(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanoseconds.max(0) as u64)
    }
}

/// `KillPolicy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<DurationInfo>,
}

impl KillPolicy {
    /// The grace period of a kill when neither the task nor the kill names one (Mesos's
    /// executors wait 3 s between SIGTERM and SIGKILL).
    pub const DEFAULT_GRACE_PERIOD: DurationInfo = DurationInfo {
        nanoseconds: 3_000_000_000,
    };
}

/// `HealthCheck.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthCheckType {
    Unknown,
    Command,
    Http,
    Tcp,
}

/// `HealthCheck.HTTPCheckInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpCheckInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    pub port: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u32>,
}

/// `HealthCheck.TCPCheckInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpCheckInfo {
    pub port: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `HealthCheck`, with Mesos's defaults written out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    #[serde(default = "hc_delay", deserialize_with = "json::f64_lenient")]
    pub delay_seconds: f64,
    #[serde(default = "hc_interval", deserialize_with = "json::f64_lenient")]
    pub interval_seconds: f64,
    #[serde(default = "hc_timeout", deserialize_with = "json::f64_lenient")]
    pub timeout_seconds: f64,
    #[serde(default = "hc_failures")]
    pub consecutive_failures: u32,
    #[serde(default = "hc_grace", deserialize_with = "json::f64_lenient")]
    pub grace_period_seconds: f64,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "json::lenient_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<HealthCheckType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheckInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheckInfo>,
}

fn hc_delay() -> f64 {
    15.0
}
fn hc_interval() -> f64 {
    10.0
}
fn hc_timeout() -> f64 {
    20.0
}
fn hc_failures() -> u32 {
    3
}
fn hc_grace() -> f64 {
    10.0
}

/// `TaskInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub task_id: TaskId,
    pub agent_id: AgentId,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_time: Option<DurationInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
}

impl TaskInfo {
    /// A command task with nothing else set.
    pub fn command_task(
        name: impl Into<String>,
        task_id: TaskId,
        agent_id: AgentId,
        resources: Vec<Resource>,
        command: CommandInfo,
    ) -> TaskInfo {
        TaskInfo {
            name: name.into(),
            task_id,
            agent_id,
            resources,
            executor: None,
            command: Some(command),
            container: None,
            health_check: None,
            check: None,
            kill_policy: None,
            data: None,
            labels: None,
            discovery: None,
            max_completion_time: None,
            limits: None,
        }
    }
}

/// `TaskGroupInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskGroupInfo {
    #[serde(default)]
    pub tasks: Vec<TaskInfo>,
}

/// `TaskState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    TaskStaging,
    TaskStarting,
    TaskRunning,
    TaskKilling,
    TaskFinished,
    TaskFailed,
    TaskKilled,
    TaskError,
    TaskLost,
    TaskDropped,
    TaskUnreachable,
    TaskGone,
    TaskGoneByOperator,
    TaskUnknown,
}

impl TaskState {
    /// Whether no further update follows this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::TaskFinished
                | TaskState::TaskFailed
                | TaskState::TaskKilled
                | TaskState::TaskError
                | TaskState::TaskLost
                | TaskState::TaskDropped
                | TaskState::TaskGone
                | TaskState::TaskGoneByOperator
        )
    }

    /// The state a framework without PARTITION_AWARE sees instead of this one.
    pub fn for_framework(self, partition_aware: bool) -> TaskState {
        if partition_aware {
            return self;
        }
        match self {
            TaskState::TaskDropped
            | TaskState::TaskUnreachable
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator
            | TaskState::TaskUnknown => TaskState::TaskLost,
            other => other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskState::TaskStaging => "TASK_STAGING",
            TaskState::TaskStarting => "TASK_STARTING",
            TaskState::TaskRunning => "TASK_RUNNING",
            TaskState::TaskKilling => "TASK_KILLING",
            TaskState::TaskFinished => "TASK_FINISHED",
            TaskState::TaskFailed => "TASK_FAILED",
            TaskState::TaskKilled => "TASK_KILLED",
            TaskState::TaskError => "TASK_ERROR",
            TaskState::TaskLost => "TASK_LOST",
            TaskState::TaskDropped => "TASK_DROPPED",
            TaskState::TaskUnreachable => "TASK_UNREACHABLE",
            TaskState::TaskGone => "TASK_GONE",
            TaskState::TaskGoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::TaskUnknown => "TASK_UNKNOWN",
        }
    }
}

/// `TaskStatus.Source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusSource {
    SourceMaster,
    SourceAgent,
    SourceExecutor,
}

/// `TaskStatus.Reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    ReasonCommandExecutorFailed,
    ReasonContainerLaunchFailed,
    ReasonContainerLimitation,
    ReasonContainerLimitationDisk,
    ReasonContainerLimitationMemory,
    ReasonContainerPreempted,
    ReasonContainerUpdateFailed,
    ReasonMaxCompletionTimeReached,
    ReasonExecutorRegistrationTimeout,
    ReasonExecutorReregistrationTimeout,
    ReasonExecutorTerminated,
    ReasonExecutorUnregistered,
    ReasonFrameworkRemoved,
    ReasonGcError,
    ReasonInvalidFrameworkid,
    ReasonInvalidOffers,
    ReasonIoSwitchboardExited,
    ReasonMasterDisconnected,
    ReasonReconciliation,
    ReasonResourcesUnknown,
    ReasonAgentDisconnected,
    ReasonAgentDraining,
    ReasonAgentRemoved,
    ReasonAgentRemovedByOperator,
    ReasonAgentReregistered,
    ReasonAgentRestarted,
    ReasonAgentUnknown,
    ReasonTaskKilledDuringLaunch,
    ReasonTaskCheckStatusUpdated,
    ReasonTaskHealthCheckStatusUpdated,
    ReasonTaskGroupInvalid,
    ReasonTaskGroupUnauthorized,
    ReasonTaskInvalid,
    ReasonTaskUnauthorized,
    ReasonTaskUnknown,
}

/// `TaskStatus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: TaskId,
    pub state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(
        default,
        deserialize_with = "json::lenient_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub source: Option<StatusSource>,
    #[serde(
        default,
        deserialize_with = "json::lenient_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    #[serde(
        default,
        deserialize_with = "json::opt_f64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_status: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_status: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limitation: Option<Value>,
}

impl TaskStatus {
    /// A bare status with only the task id and state set.
    pub fn new(task_id: TaskId, state: TaskState) -> Self {
        TaskStatus {
            task_id,
            state,
            message: None,
            source: None,
            reason: None,
            data: None,
            agent_id: None,
            executor_id: None,
            timestamp: None,
            uuid: None,
            healthy: None,
            check_status: None,
            labels: None,
            container_status: None,
            unreachable_time: None,
            limitation: None,
        }
    }
}

/// `Filters`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    #[serde(default = "default_refuse", deserialize_with = "json::f64_lenient")]
    pub refuse_seconds: f64,
}

fn default_refuse() -> f64 {
    5.0
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            refuse_seconds: default_refuse(),
        }
    }
}

/// `Offer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executor_ids: Vec<ExecutorId>,
    /// When the agent's machine is scheduled for maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailability: Option<crate::maintenance::Unavailability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Value>,
}

/// `Resource.AllocationInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AllocationInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `Offer.Operation.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    Unknown,
    Launch,
    LaunchGroup,
    Reserve,
    Unreserve,
    Create,
    Destroy,
    GrowVolume,
    ShrinkVolume,
    CreateDisk,
    DestroyDisk,
}

/// `Offer.Operation.Launch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    #[serde(default)]
    pub task_infos: Vec<TaskInfo>,
}

/// `Offer.Operation.LaunchGroup`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroup {
    pub executor: ExecutorInfo,
    pub task_group: TaskGroupInfo,
}

/// `Offer.Operation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    #[serde(rename = "type")]
    pub kind: OperationType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<OperationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<LaunchGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreserve: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy: Option<Value>,
}

/// `Task`: the master's and agent's view of a launched task (operator API, state).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    pub agent_id: AgentId,
    pub state: TaskState,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub statuses: Vec<TaskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_update_state: Option<TaskState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_update_uuid: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Task {
    /// A freshly launched task (TASK_STAGING) from its TaskInfo.
    pub fn from_info(info: &TaskInfo, framework_id: &FrameworkId, user: Option<String>) -> Task {
        Task {
            name: info.name.clone(),
            task_id: info.task_id.clone(),
            framework_id: framework_id.clone(),
            executor_id: info.executor.as_ref().map(|e| e.executor_id.clone()),
            agent_id: info.agent_id.clone(),
            state: TaskState::TaskStaging,
            resources: info.resources.clone(),
            statuses: Vec::new(),
            status_update_state: None,
            status_update_uuid: None,
            labels: info.labels.clone(),
            discovery: info.discovery.clone(),
            container: info.container.clone(),
            health_check: info.health_check.clone(),
            kill_policy: info.kill_policy.clone(),
            user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framework_info_defaults_are_written() {
        let fi: FrameworkInfo = serde_json::from_str(
            r#"{"user":"u","name":"n","capabilities":[{"type":"NOT_A_THING"},{"type":"PARTITION_AWARE"}],"extra":1}"#,
        )
        .unwrap();
        assert!(fi.has_capability(CapabilityType::PartitionAware));
        let out = serde_json::to_value(&fi).unwrap();
        assert_eq!(out["failover_timeout"], 0.0);
        assert_eq!(out["checkpoint"], false);
        assert_eq!(out["capabilities"][0], serde_json::json!({}));
    }

    #[test]
    fn missing_required_field_is_rejected() {
        let err = serde_json::from_str::<FrameworkInfo>(r#"{"name":"n"}"#).unwrap_err();
        assert!(err.to_string().contains("user"), "{err}");
    }

    #[test]
    fn command_shell_defaults_to_true() {
        let c: CommandInfo = serde_json::from_str(r#"{"value":"true"}"#).unwrap();
        assert!(c.shell);
        assert_eq!(serde_json::to_value(&c).unwrap()["shell"], true);
    }

    #[test]
    fn non_partition_aware_frameworks_see_lost() {
        assert_eq!(
            TaskState::TaskGone.for_framework(false),
            TaskState::TaskLost
        );
        assert_eq!(TaskState::TaskGone.for_framework(true), TaskState::TaskGone);
        assert_eq!(
            TaskState::TaskRunning.for_framework(false),
            TaskState::TaskRunning
        );
    }

    #[test]
    fn task_state_names_match_serde() {
        for s in [
            TaskState::TaskStaging,
            TaskState::TaskGoneByOperator,
            TaskState::TaskKilling,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
    }

    #[test]
    fn packed_ip_matches_mesos() {
        assert_eq!(packed_ipv4("127.0.0.1".parse().unwrap()), 16777343);
    }
}
