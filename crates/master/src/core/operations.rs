//! Offer operation feedback: the latest status of each RESERVE, UNRESERVE, CREATE and
//! DESTROY that a framework gave an `id`, UPDATE_OPERATION_STATUS events,
//! ACKNOWLEDGE_OPERATION_STATUS and RECONCILE_OPERATIONS.
//!
//! The master applies these operations itself (the registry holds the result before the
//! agent hears of it), so it also writes their statuses: OPERATION_FINISHED with the
//! converted resources, OPERATION_ERROR when the operation is invalid, OPERATION_DROPPED
//! when the ACCEPT's offers are not valid. Each status carries a uuid; the operation is
//! kept until the framework acknowledges its terminal status, and a status not yet
//! acknowledged is sent again when the framework subscribes again. Reconciliation answers the
//! latest known status (without a uuid); an unknown operation is OPERATION_UNKNOWN, or
//! what its agent's state says (unreachable, recovering, gone). Operations without an id
//! get no feedback. Statuses do not survive a master restart.

use super::*;
use meseta_api::json::Bytes;
use meseta_api::operations::{
    AcknowledgeOperationStatus, OperationState, OperationStatus, ReconcileOperation,
    UpdateOperationStatus, Uuid,
};
use meseta_api::resources::{Resource, ResourceFormat};

/// The statuses of operations with ids, per framework.
#[derive(Debug, Default)]
pub struct OperationTracker {
    known: BTreeMap<FrameworkId, BTreeMap<OperationId, Tracked>>,
    next_uuid: u128,
}

/// An operation's latest status, and whether the framework acknowledged it.
#[derive(Debug)]
struct Tracked {
    status: OperationStatus,
    acknowledged: bool,
}

/// Why an acknowledgement changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("invalid uuid: {0} bytes, expected 16")]
    InvalidUuid(usize),
    #[error("operation '{0}' is not known")]
    Unknown(String),
    #[error("operation '{0}' has no status with that uuid")]
    Stale(String),
}

impl OperationTracker {
    /// Records an operation's new status and returns it as it is sent, with a uuid the
    /// framework acknowledges.
    pub fn record(
        &mut self,
        framework_id: &FrameworkId,
        mut status: OperationStatus,
    ) -> OperationStatus {
        let operation_id = status
            .operation_id
            .clone()
            .expect("only operations with ids are tracked");
        self.next_uuid += 1;
        status.uuid = Some(Uuid {
            value: Bytes(self.next_uuid.to_be_bytes().to_vec()),
        });
        self.known.entry(framework_id.clone()).or_default().insert(
            operation_id,
            Tracked {
                status: status.clone(),
                acknowledged: false,
            },
        );
        status
    }

    /// The framework's statuses not acknowledged yet, to send again when it subscribes.
    pub fn unacknowledged(&self, framework_id: &FrameworkId) -> Vec<OperationStatus> {
        self.known
            .get(framework_id)
            .map(|k| {
                k.values()
                    .filter(|t| !t.acknowledged)
                    .map(|t| t.status.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// ACKNOWLEDGE_OPERATION_STATUS: an acknowledged terminal status ends the tracking.
    pub fn acknowledge(
        &mut self,
        framework_id: &FrameworkId,
        ack: &AcknowledgeOperationStatus,
    ) -> Result<(), AckError> {
        if ack.uuid.0.len() != 16 {
            return Err(AckError::InvalidUuid(ack.uuid.0.len()));
        }
        let id = &ack.operation_id;
        let Some(operations) = self.known.get_mut(framework_id) else {
            return Err(AckError::Unknown(id.to_string()));
        };
        let Some(tracked) = operations.get_mut(id) else {
            return Err(AckError::Unknown(id.to_string()));
        };
        if tracked.status.uuid.as_ref().map(|u| &u.value) != Some(&ack.uuid) {
            return Err(AckError::Stale(id.to_string()));
        }
        tracked.acknowledged = true;
        if tracked.status.state.is_terminal() {
            operations.remove(id);
            if operations.is_empty() {
                self.known.remove(framework_id);
            }
        }
        Ok(())
    }

    /// RECONCILE_OPERATIONS: the latest status of each operation asked for (all known
    /// ones when none is named), without uuids. `agent_state` says what an unknown
    /// operation on an agent is when the agent is not plainly there.
    pub fn reconcile(
        &self,
        framework_id: &FrameworkId,
        asked: &[ReconcileOperation],
        agent_state: impl Fn(&AgentId) -> Option<OperationState>,
    ) -> Vec<OperationStatus> {
        let known = self.known.get(framework_id);
        let unacked = |s: &OperationStatus| OperationStatus {
            uuid: None,
            ..s.clone()
        };
        if asked.is_empty() {
            return known
                .map(|k| k.values().map(|t| unacked(&t.status)).collect())
                .unwrap_or_default();
        }
        asked
            .iter()
            .map(|a| match known.and_then(|k| k.get(&a.operation_id)) {
                Some(tracked) => unacked(&tracked.status),
                None => OperationStatus {
                    operation_id: Some(a.operation_id.clone()),
                    state: a
                        .agent_id
                        .as_ref()
                        .and_then(&agent_state)
                        .unwrap_or(OperationState::OperationUnknown),
                    message: None,
                    converted_resources: vec![],
                    uuid: None,
                    agent_id: a.agent_id.clone(),
                },
            })
            .collect()
    }

    /// A removed framework's operations are forgotten.
    pub fn forget(&mut self, framework_id: &FrameworkId) {
        self.known.remove(framework_id);
    }
}

/// An operation's outcome as the core reports it.
pub(super) enum Outcome<'a> {
    /// Applied; the resources it gave, allocated to this role.
    Finished(&'a Resources, &'a str),
    Error(String),
    Dropped(String),
}

impl Core {
    /// Reports an operation's outcome to its framework when the operation has an id.
    pub(super) fn operation_feedback(
        &mut self,
        framework_id: &FrameworkId,
        operation_id: Option<&OperationId>,
        agent_id: Option<&AgentId>,
        outcome: Outcome,
    ) {
        let Some(operation_id) = operation_id else {
            return;
        };
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let (state, message, converted) = match outcome {
            Outcome::Finished(converted, role) => (
                OperationState::OperationFinished,
                None,
                framework_resources(framework, role, converted),
            ),
            Outcome::Error(m) => (OperationState::OperationError, Some(m), vec![]),
            Outcome::Dropped(m) => (OperationState::OperationDropped, Some(m), vec![]),
        };
        let status = self.operations.record(
            framework_id,
            OperationStatus {
                operation_id: Some(operation_id.clone()),
                state,
                message,
                converted_resources: converted,
                uuid: None,
                agent_id: agent_id.cloned(),
            },
        );
        self.send_to_framework(
            framework_id,
            Event::UpdateOperationStatus(UpdateOperationStatus { status }),
        );
    }

    /// Sends a (re)subscribed framework the operation statuses it has not acknowledged.
    pub(super) fn resend_operation_statuses(&mut self, framework_id: &FrameworkId) {
        for status in self.operations.unacknowledged(framework_id) {
            self.send_to_framework(
                framework_id,
                Event::UpdateOperationStatus(UpdateOperationStatus { status }),
            );
        }
    }

    /// ACKNOWLEDGE_OPERATION_STATUS: 400 for a malformed uuid; a stale or unknown one
    /// changes nothing.
    pub fn acknowledge_operation_status(
        &mut self,
        framework_id: &FrameworkId,
        ack: AcknowledgeOperationStatus,
    ) -> Result<(), ApiError> {
        match self.operations.acknowledge(framework_id, &ack) {
            Ok(()) => Ok(()),
            Err(e @ AckError::InvalidUuid(_)) => Err(ApiError::bad_request(format!(
                "Invalid ACKNOWLEDGE_OPERATION_STATUS call: {e}"
            ))),
            Err(e) => {
                tracing::info!(framework = %framework_id, "operation status acknowledgement ignored: {e}");
                Ok(())
            }
        }
    }

    /// RECONCILE_OPERATIONS's answer.
    pub fn reconcile_operations(
        &self,
        framework_id: &FrameworkId,
        asked: &[ReconcileOperation],
    ) -> Vec<OperationStatus> {
        self.operations.reconcile(framework_id, asked, |agent_id| {
            if self.gone_agents.contains(agent_id) {
                return Some(OperationState::OperationGoneByOperator);
            }
            match self.agents.get(agent_id).map(|a| a.link) {
                Some(AgentLink::Unreachable(_)) => Some(OperationState::OperationUnreachable),
                Some(AgentLink::Recovering(_)) => Some(OperationState::OperationRecovering),
                _ => None,
            }
        })
    }
}

/// Resources as a framework reads them: in its reservation format, with `allocation_info`
/// when it is MULTI_ROLE.
pub(super) fn framework_resources(
    framework: &Framework,
    role: &str,
    resources: &Resources,
) -> Vec<Resource> {
    let format = resource_format(framework);
    if framework.info.has_capability(CapabilityType::MultiRole) {
        resources.allocated_to(Some(role)).in_format(format)
    } else {
        resources.in_format(format)
    }
}

/// The reservation format a framework reads: the refinement stack with
/// RESERVATION_REFINEMENT, else the old `role`/`reservation` form.
pub(super) fn resource_format(framework: &Framework) -> ResourceFormat {
    if framework
        .info
        .has_capability(CapabilityType::ReservationRefinement)
    {
        ResourceFormat::Refinement
    } else {
        ResourceFormat::PreRefinement
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, state: OperationState) -> OperationStatus {
        OperationStatus {
            operation_id: Some(OperationId::new(id)),
            state,
            message: None,
            converted_resources: vec![],
            uuid: None,
            agent_id: Some(AgentId::new("a1")),
        }
    }

    fn ack(id: &str, sent: &OperationStatus) -> AcknowledgeOperationStatus {
        AcknowledgeOperationStatus {
            agent_id: Some(AgentId::new("a1")),
            uuid: sent.uuid.clone().unwrap().value,
            operation_id: OperationId::new(id),
        }
    }

    fn asked(id: &str, agent: Option<&str>) -> ReconcileOperation {
        ReconcileOperation {
            operation_id: OperationId::new(id),
            agent_id: agent.map(AgentId::new),
        }
    }

    #[test]
    fn a_status_is_kept_until_its_terminal_status_is_acknowledged() {
        let (mut t, f) = (OperationTracker::default(), FrameworkId::new("f"));
        let first = t.record(&f, status("op", OperationState::OperationFinished));
        let second = t.record(&f, status("op2", OperationState::OperationError));
        assert_ne!(first.uuid, second.uuid);
        assert_eq!(first.uuid.as_ref().unwrap().value.0.len(), 16);
        let listed = t.reconcile(&f, &[], |_| None);
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|s| s.uuid.is_none()));
        // The other operation's uuid is stale for this one.
        let mut wrong = ack("op", &second);
        assert_eq!(t.acknowledge(&f, &wrong), Err(AckError::Stale("op".into())));
        wrong.uuid = Bytes(vec![1, 2]);
        assert_eq!(t.acknowledge(&f, &wrong), Err(AckError::InvalidUuid(2)));
        t.acknowledge(&f, &ack("op", &first)).unwrap();
        assert_eq!(
            t.acknowledge(&f, &ack("op", &first)),
            Err(AckError::Unknown("op".into()))
        );
        let left = t.reconcile(&f, &[asked("op", None), asked("op2", None)], |_| None);
        assert_eq!(left[0].state, OperationState::OperationUnknown);
        assert_eq!(left[1].state, OperationState::OperationError);
        t.forget(&f);
        assert!(t.reconcile(&f, &[], |_| None).is_empty());
    }

    #[test]
    fn a_pending_status_stays_after_its_acknowledgement() {
        let (mut t, f) = (OperationTracker::default(), FrameworkId::new("f"));
        let sent = t.record(&f, status("op", OperationState::OperationPending));
        assert_eq!(t.unacknowledged(&f), vec![sent.clone()]);
        t.acknowledge(&f, &ack("op", &sent)).unwrap();
        assert!(t.unacknowledged(&f).is_empty());
        let now = t.reconcile(&f, &[asked("op", None)], |_| None);
        assert_eq!(now[0].state, OperationState::OperationPending);
    }

    #[test]
    fn unknown_operations_take_their_agents_state() {
        let (t, f) = (OperationTracker::default(), FrameworkId::new("f"));
        let out = t.reconcile(
            &f,
            &[
                asked("x", Some("gone")),
                asked("y", Some("fine")),
                asked("z", None),
            ],
            |a| (a.as_str() == "gone").then_some(OperationState::OperationGoneByOperator),
        );
        let states: Vec<_> = out.iter().map(|s| s.state).collect();
        assert_eq!(
            states,
            [
                OperationState::OperationGoneByOperator,
                OperationState::OperationUnknown,
                OperationState::OperationUnknown
            ]
        );
        assert_eq!(out[0].agent_id, Some(AgentId::new("gone")));
        // Frameworks do not see each other's operations.
        let mut t = OperationTracker::default();
        t.record(&f, status("op", OperationState::OperationFinished));
        assert!(t
            .reconcile(&FrameworkId::new("g"), &[], |_| None)
            .is_empty());
    }
}
