//! An executor's link to its agent and the reliability of its status updates, shared by
//! both executors, as Mesos's executor library keeps them: the subscription (connecting,
//! subscribed, waiting to retry with backoff, closed), the recovery timeout, the updates
//! not acknowledged yet (every SUBSCRIBE carries them; an update made while connecting
//! goes out once SUBSCRIBED arrives), and how a status is stamped (uuid, time, source,
//! executor and agent ids).
//!
//! Pure: the executor's state machine owns a [`Session`], feeds it what concerns the link
//! and gets back the calls to make.

use crate::config::Config;
use crate::machine::{Action, Sources};
use meseta_api::backoff::Backoff;
use meseta_api::executor::{Acknowledged, Call, CallKind, Subscribe, Subscribed, Update};
use meseta_api::json::Bytes;
use meseta_api::{
    AgentId, CapabilityType, FrameworkInfo, StatusSource, TaskId, TaskInfo, TaskState, TaskStatus,
};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq)]
enum Link {
    /// A SUBSCRIBE is in flight; it carried the updates with these uuids.
    Connecting {
        included: Vec<Bytes>,
    },
    Subscribed,
    Waiting {
        retry_at: Instant,
    },
    /// Given up on the agent; no more subscriptions.
    Closed,
}

/// What a deadline of the link means at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    /// Subscribe again (with [`Session::open`]).
    Retry,
    /// The recovery timeout passed: the link is closed; the executor must end its tasks.
    GiveUp,
}

/// The link and the updates in flight.
pub(crate) struct Session<S> {
    pub(crate) config: Config,
    sources: S,
    link: Link,
    backoff: Backoff,
    recovery_deadline: Option<Instant>,
    framework_info: Option<FrameworkInfo>,
    agent_id: Option<AgentId>,
    /// Every update sent or to send, until the agent acknowledges it.
    pub(crate) unacknowledged: Vec<Update>,
}

impl<S: Sources> Session<S> {
    pub fn new(config: Config, sources: S) -> Session<S> {
        let backoff = Backoff::new(config.subscription_backoff_max);
        Session {
            config,
            sources,
            link: Link::Closed,
            backoff,
            recovery_deadline: None,
            framework_info: None,
            agent_id: None,
            unacknowledged: Vec::new(),
        }
    }

    /// The first subscription; it is retried until the recovery timeout.
    pub fn start(&mut self, now: Instant) -> Action {
        self.recovery_deadline = Some(now + self.config.recovery_timeout);
        self.open(Vec::new())
    }

    /// A subscription carrying `unacknowledged_tasks` and every unacknowledged update.
    pub fn open(&mut self, unacknowledged_tasks: Vec<TaskInfo>) -> Action {
        let included = self
            .unacknowledged
            .iter()
            .filter_map(|u| u.status.uuid.clone())
            .collect();
        let subscribe = Subscribe {
            unacknowledged_tasks,
            unacknowledged_updates: self.unacknowledged.clone(),
        };
        self.link = Link::Connecting { included };
        Action::Subscribe(self.call(CallKind::Subscribe(subscribe)))
    }

    /// SUBSCRIBED: returns the updates made after the SUBSCRIBE was built, to send now.
    pub fn subscribed(&mut self, subscribed: Subscribed) -> Vec<Action> {
        if subscribed.executor_info.executor_id != self.config.executor_id {
            tracing::warn!(
                "SUBSCRIBED names executor '{}', not '{}'",
                subscribed.executor_info.executor_id,
                self.config.executor_id
            );
        }
        tracing::info!(
            "subscribed to the agent on {}",
            subscribed.agent_info.hostname
        );
        self.framework_info = Some(subscribed.framework_info);
        self.agent_id = subscribed.agent_info.id;
        let included = match std::mem::replace(&mut self.link, Link::Subscribed) {
            Link::Connecting { included } => included,
            _ => Vec::new(),
        };
        self.recovery_deadline = None;
        self.backoff.reset();
        self.unacknowledged
            .iter()
            .filter(|u| {
                !u.status
                    .uuid
                    .as_ref()
                    .is_some_and(|id| included.contains(id))
            })
            .map(|u| Action::Send(self.call(CallKind::Update(u.clone()))))
            .collect()
    }

    /// The subscription failed or its stream ended; returns whether the executor must give
    /// up (the link is then closed): when the framework does not checkpoint.
    pub fn stream_ended(&mut self, why: &str, now: Instant) -> bool {
        match self.link {
            Link::Closed | Link::Waiting { .. } => false,
            Link::Subscribed => {
                if !self.config.checkpoint {
                    tracing::warn!(
                        "lost the agent ({why}); the framework does not checkpoint, so shutting down"
                    );
                    self.close();
                    return true;
                }
                tracing::warn!("lost the agent ({why}); reconnecting");
                self.recovery_deadline = Some(now + self.config.recovery_timeout);
                self.backoff.reset();
                self.wait(now);
                false
            }
            Link::Connecting { .. } => {
                tracing::info!("subscription failed ({why}); retrying");
                self.wait(now);
                false
            }
        }
    }

    /// What the link's deadlines mean at `now`.
    pub fn tick(&mut self, now: Instant) -> Due {
        let Link::Waiting { retry_at } = self.link else {
            return Due::Nothing;
        };
        if self.recovery_deadline.is_some_and(|d| d <= now) {
            tracing::warn!("could not reach the agent within the recovery timeout");
            self.close();
            Due::GiveUp
        } else if retry_at <= now {
            Due::Retry
        } else {
            Due::Nothing
        }
    }

    /// The earliest moment at which [`Session::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.link {
            Link::Waiting { retry_at } => [Some(retry_at), self.recovery_deadline]
                .into_iter()
                .flatten()
                .min(),
            _ => None,
        }
    }

    /// Keeps an update until it is acknowledged; returns its UPDATE call when subscribed.
    pub fn forward(&mut self, status: TaskStatus) -> Option<Action> {
        let update = Update { status };
        self.unacknowledged.push(update.clone());
        (self.link == Link::Subscribed).then(|| Action::Send(self.call(CallKind::Update(update))))
    }

    /// ACKNOWLEDGED: the update it acknowledges, no longer kept.
    pub fn acknowledge(&mut self, ack: &Acknowledged) -> Option<Update> {
        let Some(index) = self
            .unacknowledged
            .iter()
            .position(|u| u.status.uuid.as_ref() == Some(&ack.uuid))
        else {
            tracing::warn!(
                "acknowledgement for unknown status update of task {}",
                ack.task_id
            );
            return None;
        };
        Some(self.unacknowledged.remove(index))
    }

    /// Whether a terminal update of `task_id` waits for its acknowledgement.
    pub fn terminal_unacknowledged(&self, task_id: &TaskId) -> bool {
        self.unacknowledged
            .iter()
            .any(|u| &u.status.task_id == task_id && u.status.state.is_terminal())
    }

    /// A fresh status of a task, stamped as this executor's.
    pub fn status(&mut self, task_id: TaskId, state: TaskState) -> TaskStatus {
        TaskStatus {
            source: Some(StatusSource::SourceExecutor),
            uuid: Some(self.sources.uuid()),
            timestamp: Some(self.sources.wall_clock()),
            executor_id: Some(self.config.executor_id.clone()),
            agent_id: self.agent_id.clone(),
            ..TaskStatus::new(task_id, state)
        }
    }

    /// Whether the framework handles TASK_KILLING.
    pub fn killing_capable(&self) -> bool {
        self.framework_info
            .as_ref()
            .is_some_and(|f| f.has_capability(CapabilityType::TaskKillingState))
    }

    pub fn is_subscribed(&self) -> bool {
        self.link == Link::Subscribed
    }

    pub fn is_closed(&self) -> bool {
        self.link == Link::Closed
    }

    /// Stops talking to the agent for good.
    pub fn close(&mut self) {
        self.link = Link::Closed;
        self.recovery_deadline = None;
    }

    fn wait(&mut self, now: Instant) {
        let pause = self.backoff.next(self.sources.jitter());
        self.link = Link::Waiting {
            retry_at: now + pause,
        };
    }

    fn call(&self, kind: CallKind) -> Call {
        Call {
            executor_id: self.config.executor_id.clone(),
            framework_id: self.config.framework_id.clone(),
            kind,
        }
    }
}
