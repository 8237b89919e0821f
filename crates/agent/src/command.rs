//! The typed commands that HTTP handlers, the master link and timers send to the agent's
//! actor (the one owner of its state), with the answers they await.

use meseta_api::internal::{RegisterAgent, Registered, ToAgent};
use meseta_api::{executor, ContainerId, ExecutorId, FrameworkId, Resource};
use meseta_containerizer::ProcessRef;
use serde_json::Value;
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

/// The actor's answer to an executor call.
#[derive(Debug)]
pub enum ExecutorReply {
    /// SUBSCRIBE accepted: stream these events.
    Subscribed(mpsc::UnboundedReceiver<executor::Event>),
    /// 202.
    Accepted,
    /// An error status with its message.
    Rejected(u16, String),
}

/// The read-only views the actor renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// v0 `/state`.
    StateV0,
    /// `/metrics/snapshot`.
    Metrics,
    /// v1 GET_STATE payload.
    GetState,
    GetFrameworks,
    GetExecutors,
    GetTasks,
    GetAgent,
}

/// A running container, for usage statistics (read outside the actor).
#[derive(Clone, Debug)]
pub struct ContainerEntry {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub executor_name: String,
    pub source: String,
    pub container_id: ContainerId,
    pub process: Option<ProcessRef>,
    pub resources: Vec<Resource>,
}

/// Everything the actor handles.
#[derive(Debug)]
pub enum Command {
    /// The link wants the registration message to send.
    Registration(oneshot::Sender<RegisterAgent>),
    /// The master accepted the (re)registration.
    Registered(Registered),
    /// A message from the master.
    FromMaster(ToAgent),
    /// The link dropped.
    Disconnected,
    /// An executor call (already parsed and validated), with its token's claims when
    /// executors authenticate.
    Executor(
        executor::Call,
        Option<crate::executor_auth::Claims>,
        oneshot::Sender<ExecutorReply>,
    ),
    /// An executor's process exited.
    ExecutorExited {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        container_id: ContainerId,
        status: Option<i32>,
    },
    /// An executor's pre-launch step ended: its image provisioned (when it has one) and
    /// its URIs fetched, or the message says why not.
    Prepared {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        container_id: ContainerId,
        result: Result<Option<meseta_containerizer::image::Provisioned>, String>,
    },
    /// An executor's launch ended off the actor: its process, or why there is none.
    Launched {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        container_id: ContainerId,
        result: Result<meseta_containerizer::Launched, String>,
    },
    /// An executor's registration timeout fired.
    RegistrationTimeout {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        container_id: ContainerId,
    },
    /// An executor's shutdown grace period ended: kill what is left.
    EscalateKill {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        container_id: ContainerId,
    },
    /// Render a view.
    View(View, oneshot::Sender<Value>),
    /// The sandboxes `/files` may serve.
    SandboxRoots(oneshot::Sender<Vec<PathBuf>>),
    /// The live containers.
    Containers(oneshot::Sender<Vec<ContainerEntry>>),
}
