//! The framework's handle on its subscription: the typed calls (sent to the current
//! leader with the stream id) and the stream of events.

use crate::error::Error;
use futures::Stream;
use meseta_api::json::Bytes;
use meseta_api::scheduler::{
    Accept, Acknowledge, Call, CallKind, Decline, Event, Kill, Message, Reconcile, ReconcileTask,
    Roles, Shutdown,
};
use meseta_api::{
    AgentId, ExecutorId, Filters, FrameworkId, KillPolicy, Launch, OfferId, Operation,
    OperationType, TaskId, TaskInfo, TaskStatus,
};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};

/// How long a call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls in flight at once, and connections kept alive for them: more calls wait for a
/// free one, so a framework that acknowledges thousands of updates at once neither opens
/// thousands of connections to the master nor runs short of local ports.
pub(crate) const CALLS_IN_FLIGHT: usize = 16;

/// What the subscription and the calls share.
pub(crate) struct Shared {
    pub http: reqwest::Client,
    /// One permit per call in flight ([`CALLS_IN_FLIGHT`]).
    pub calls: Semaphore,
    /// The master as the user gave it (for messages).
    pub master: String,
    pub session: Mutex<Session>,
    /// Set to true to end the subscription.
    pub closed: watch::Sender<bool>,
}

/// The state of the subscription, as calls need it.
pub(crate) struct Session {
    /// The leading master's base URL.
    pub leader: String,
    pub framework_id: Option<FrameworkId>,
    /// The open stream's `Mesos-Stream-Id`; `None` while not subscribed.
    pub stream_id: Option<String>,
    pub subscribed: bool,
}

impl Shared {
    pub fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// POSTs a call to `/api/v1/scheduler` on `base`.
    pub async fn post(
        &self,
        base: &str,
        call: &Call,
        stream_id: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, Error> {
        let url = format!("{base}/api/v1/scheduler");
        let mut request = self
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(meseta_api::json::to_ascii_vec(call));
        if let Some(id) = stream_id {
            request = request.header("Mesos-Stream-Id", id);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        request
            .send()
            .await
            .map_err(|source| Error::Unreachable { url, source })
    }
}

/// The framework's handle for calls; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    pub(crate) shared: Arc<Shared>,
}

impl Scheduler {
    /// The framework's id, once the master assigned it.
    pub fn framework_id(&self) -> Option<FrameworkId> {
        self.shared.session().framework_id.clone()
    }

    /// The base URL of the master currently believed to lead (`http://host:port`).
    pub fn leader(&self) -> String {
        self.shared.session().leader.clone()
    }

    /// Whether a subscription is open.
    pub fn is_subscribed(&self) -> bool {
        self.shared.session().subscribed
    }

    /// Sends a call on the open subscription; `Ok` when the master accepted it.
    pub async fn call(&self, kind: CallKind) -> Result<(), Error> {
        let (leader, framework_id, stream_id) = {
            let session = self.shared.session();
            if !session.subscribed {
                return Err(Error::NotSubscribed);
            }
            (
                session.leader.clone(),
                session.framework_id.clone(),
                session.stream_id.clone(),
            )
        };
        let call = Call { framework_id, kind };
        let name = call.kind.type_name();
        let _in_flight = self.shared.calls.acquire().await.expect("never closed");
        let response = self
            .shared
            .post(&leader, &call, stream_id.as_deref(), Some(CALL_TIMEOUT))
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Err(Error::Rejected {
            call: name,
            status,
            body,
        })
    }

    /// ACCEPT: applies `operations` to the resources of `offer_ids`.
    pub async fn accept(
        &self,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Option<Filters>,
    ) -> Result<(), Error> {
        self.call(CallKind::Accept(Accept {
            offer_ids,
            operations,
            filters,
        }))
        .await
    }

    /// ACCEPT with one LAUNCH of `tasks`.
    pub async fn launch(
        &self,
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskInfo>,
        filters: Option<Filters>,
    ) -> Result<(), Error> {
        let launch = Operation {
            kind: OperationType::Launch,
            id: None,
            launch: Some(Launch { task_infos: tasks }),
            launch_group: None,
            reserve: None,
            unreserve: None,
            create: None,
            destroy: None,
        };
        self.accept(offer_ids, vec![launch], filters).await
    }

    /// DECLINE: gives offers back, refusing them for `filters.refuse_seconds`.
    pub async fn decline(
        &self,
        offer_ids: Vec<OfferId>,
        filters: Option<Filters>,
    ) -> Result<(), Error> {
        self.call(CallKind::Decline(Decline { offer_ids, filters }))
            .await
    }

    /// REVIVE: removes filters and resumes offers (for `roles`, or all when empty).
    pub async fn revive(&self, roles: Vec<String>) -> Result<(), Error> {
        self.call(CallKind::Revive(roles_payload(roles))).await
    }

    /// SUPPRESS: stops offers (for `roles`, or all when empty).
    pub async fn suppress(&self, roles: Vec<String>) -> Result<(), Error> {
        self.call(CallKind::Suppress(roles_payload(roles))).await
    }

    /// KILL: kills a task, optionally overriding its kill policy.
    pub async fn kill(
        &self,
        task_id: TaskId,
        agent_id: Option<AgentId>,
        kill_policy: Option<KillPolicy>,
    ) -> Result<(), Error> {
        self.call(CallKind::Kill(Kill {
            task_id,
            agent_id,
            kill_policy,
        }))
        .await
    }

    /// SHUTDOWN: stops an executor.
    pub async fn shutdown(&self, executor_id: ExecutorId, agent_id: AgentId) -> Result<(), Error> {
        self.call(CallKind::Shutdown(Shutdown {
            executor_id,
            agent_id,
        }))
        .await
    }

    /// ACKNOWLEDGE: confirms a status update.
    pub async fn acknowledge(
        &self,
        agent_id: AgentId,
        task_id: TaskId,
        uuid: Bytes,
    ) -> Result<(), Error> {
        self.call(CallKind::Acknowledge(Acknowledge {
            agent_id,
            task_id,
            uuid,
        }))
        .await
    }

    /// Acknowledges `status` if it asks for it (it has a uuid and an agent id); returns
    /// whether it did.
    pub async fn acknowledge_status(&self, status: &TaskStatus) -> Result<bool, Error> {
        let (Some(uuid), Some(agent_id)) = (&status.uuid, &status.agent_id) else {
            return Ok(false);
        };
        self.acknowledge(agent_id.clone(), status.task_id.clone(), uuid.clone())
            .await?;
        Ok(true)
    }

    /// RECONCILE: asks for the latest state of `tasks` (of all tasks when empty).
    pub async fn reconcile(&self, tasks: Vec<ReconcileTask>) -> Result<(), Error> {
        self.call(CallKind::Reconcile(Reconcile { tasks })).await
    }

    /// MESSAGE: sends `data` to an executor.
    pub async fn message(
        &self,
        agent_id: AgentId,
        executor_id: ExecutorId,
        data: Vec<u8>,
    ) -> Result<(), Error> {
        self.call(CallKind::Message(Message {
            agent_id,
            executor_id,
            data: Bytes(data),
        }))
        .await
    }

    /// TEARDOWN: removes the framework and its tasks, then closes the subscription.
    pub async fn teardown(&self) -> Result<(), Error> {
        let result = self.call(CallKind::Teardown).await;
        self.close();
        result
    }

    /// Closes the subscription without tearing the framework down (it fails over).
    pub fn close(&self) {
        self.shared.closed.send_replace(true);
    }
}

fn roles_payload(roles: Vec<String>) -> Option<Roles> {
    (!roles.is_empty()).then_some(Roles { roles })
}

/// The events of the subscription, across reconnections. It ends after an ERROR event,
/// after [`Scheduler::close`], or with an error when subscribing is hopeless.
pub struct Events {
    pub(crate) rx: mpsc::Receiver<Result<Event, Error>>,
}

impl Events {
    /// The next event.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        self.rx.recv().await
    }
}

impl Stream for Events {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
