//! Offer operation feedback (Mesos 1.6+): the `OperationStatus` of an operation that
//! carries an `id`, the UPDATE_OPERATION_STATUS event, the ACKNOWLEDGE_OPERATION_STATUS
//! and RECONCILE_OPERATIONS calls, and RECONCILE_OPERATIONS's answer.

use crate::ids::{AgentId, OperationId};
use crate::json::Bytes;
use crate::resources::Resource;
use serde::{Deserialize, Serialize};

/// `OperationState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationState {
    OperationUnsupported,
    OperationPending,
    OperationFinished,
    OperationFailed,
    OperationError,
    OperationDropped,
    OperationUnreachable,
    OperationGoneByOperator,
    OperationRecovering,
    OperationUnknown,
}

impl OperationState {
    /// Whether no later state follows.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationState::OperationFinished
                | OperationState::OperationFailed
                | OperationState::OperationError
                | OperationState::OperationDropped
                | OperationState::OperationGoneByOperator
        )
    }
}

/// `UUID`: `{"value": <bytes>}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uuid {
    pub value: Bytes,
}

/// `OperationStatus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<OperationId>,
    pub state: OperationState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub converted_resources: Vec<Resource>,
    /// Set when the framework must acknowledge the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
}

/// `Event.UpdateOperationStatus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateOperationStatus {
    pub status: OperationStatus,
}

/// `Call.AcknowledgeOperationStatus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AcknowledgeOperationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    pub uuid: Bytes,
    pub operation_id: OperationId,
}

/// `Call.ReconcileOperations.Operation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconcileOperation {
    pub operation_id: OperationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
}

/// `Call.ReconcileOperations`: no operations asks for all the framework's known ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileOperations {
    #[serde(default)]
    pub operations: Vec<ReconcileOperation>,
}

/// `Response.ReconcileOperations`, the answer to RECONCILE_OPERATIONS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconcileOperationsResponse {
    #[serde(default)]
    pub operation_statuses: Vec<OperationStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_and_calls_read_and_write_mesos_json() {
        let status = OperationStatus {
            operation_id: Some(OperationId::new("op1")),
            state: OperationState::OperationFinished,
            message: None,
            converted_resources: vec![],
            uuid: Some(Uuid {
                value: Bytes(vec![0, 1, 2]),
            }),
            agent_id: Some(AgentId::new("a1")),
        };
        let written = serde_json::to_value(&status).unwrap();
        assert_eq!(
            written,
            json!({"operation_id":{"value":"op1"},"state":"OPERATION_FINISHED",
                   "uuid":{"value":"AAEC"},"agent_id":{"value":"a1"}})
        );
        assert_eq!(
            serde_json::from_value::<OperationStatus>(written).unwrap(),
            status
        );
        let ack: AcknowledgeOperationStatus = serde_json::from_value(
            json!({"agent_id":{"value":"a1"},"uuid":"AAEC","operation_id":{"value":"op1"}}),
        )
        .unwrap();
        assert_eq!(ack.uuid, Bytes(vec![0, 1, 2]));
        let reconcile: ReconcileOperations = serde_json::from_value(json!({})).unwrap();
        assert!(reconcile.operations.is_empty());
        assert!(
            serde_json::from_value::<AcknowledgeOperationStatus>(json!({"uuid":"AAEC"})).is_err()
        );
    }

    #[test]
    fn only_final_states_are_terminal() {
        assert!(OperationState::OperationFinished.is_terminal());
        assert!(OperationState::OperationError.is_terminal());
        assert!(!OperationState::OperationPending.is_terminal());
        assert!(!OperationState::OperationUnknown.is_terminal());
    }
}
