//! The scheduler API (`/api/v1/scheduler`): calls from frameworks and the events the
//! master streams back.

use crate::ids::*;
use crate::json::{self, Bytes};
use crate::maintenance::{InverseOfferAnswerCall, InverseOffers};
use crate::mesos::*;
use crate::operations::{AcknowledgeOperationStatus, ReconcileOperations, UpdateOperationStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A scheduler call: the union plus the top-level `framework_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub framework_id: Option<FrameworkId>,
    pub kind: CallKind,
}

tagged_union! {
    /// `scheduler::Call.type` and its payload.
    pub enum CallKind ("scheduler call") {
        Subscribe(Subscribe) = "SUBSCRIBE" in "subscribe",
        Teardown = "TEARDOWN",
        Accept(Accept) = "ACCEPT" in "accept",
        Decline(Decline) = "DECLINE" in "decline",
        AcceptInverseOffers(InverseOfferAnswerCall) = "ACCEPT_INVERSE_OFFERS" in "accept_inverse_offers",
        DeclineInverseOffers(InverseOfferAnswerCall) = "DECLINE_INVERSE_OFFERS" in "decline_inverse_offers",
        Revive(opt Roles) = "REVIVE" in "revive",
        Suppress(opt Roles) = "SUPPRESS" in "suppress",
        Kill(Kill) = "KILL" in "kill",
        Shutdown(Shutdown) = "SHUTDOWN" in "shutdown",
        Acknowledge(Acknowledge) = "ACKNOWLEDGE" in "acknowledge",
        AcknowledgeOperationStatus(AcknowledgeOperationStatus) = "ACKNOWLEDGE_OPERATION_STATUS" in "acknowledge_operation_status",
        Reconcile(Reconcile) = "RECONCILE" in "reconcile",
        ReconcileOperations(opt ReconcileOperations) = "RECONCILE_OPERATIONS" in "reconcile_operations",
        Message(Message) = "MESSAGE" in "message",
        Request(Value) = "REQUEST" in "request",
        UpdateFramework(UpdateFramework) = "UPDATE_FRAMEWORK" in "update_framework",
    }
}

/// `Call.Subscribe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    pub framework_info: FrameworkInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed_roles: Vec<String>,
}

/// `Call.Accept`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    #[serde(default)]
    pub offer_ids: Vec<OfferId>,
    #[serde(default)]
    pub operations: Vec<Operation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// `Call.Decline`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    #[serde(default)]
    pub offer_ids: Vec<OfferId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// `Call.Revive` and `Call.Suppress`: optional roles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Roles {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// `Call.Kill`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

/// `Call.Shutdown`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shutdown {
    pub executor_id: ExecutorId,
    pub agent_id: AgentId,
}

/// `Call.Acknowledge`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Acknowledge {
    pub agent_id: AgentId,
    pub task_id: TaskId,
    pub uuid: Bytes,
}

/// `Call.Reconcile.Task`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconcileTask {
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
}

/// `Call.Reconcile`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    #[serde(default)]
    pub tasks: Vec<ReconcileTask>,
}

/// `Call.Message`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub agent_id: AgentId,
    pub executor_id: ExecutorId,
    pub data: Bytes,
}

/// `Call.UpdateFramework`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateFramework {
    pub framework_info: FrameworkInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed_roles: Vec<String>,
}

tagged_union! {
    /// `scheduler::Event.type` and its payload.
    pub enum Event ("scheduler event") {
        Subscribed(Subscribed) = "SUBSCRIBED" in "subscribed",
        Offers(Offers) = "OFFERS" in "offers",
        InverseOffers(InverseOffers) = "INVERSE_OFFERS" in "inverse_offers",
        Rescind(Rescind) = "RESCIND" in "rescind",
        RescindInverseOffer(RescindInverseOffer) = "RESCIND_INVERSE_OFFER" in "rescind_inverse_offer",
        Update(Update) = "UPDATE" in "update",
        UpdateOperationStatus(UpdateOperationStatus) = "UPDATE_OPERATION_STATUS" in "update_operation_status",
        Message(EventMessage) = "MESSAGE" in "message",
        Failure(Failure) = "FAILURE" in "failure",
        Error(Error) = "ERROR" in "error",
        Heartbeat = "HEARTBEAT",
    }
}

/// `Event.Subscribed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    pub framework_id: FrameworkId,
    #[serde(
        default,
        deserialize_with = "json::opt_f64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat_interval_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_info: Option<MasterInfo>,
}

/// `Event.Offers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offers {
    #[serde(default)]
    pub offers: Vec<Offer>,
}

/// `Event.Rescind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rescind {
    pub offer_id: OfferId,
}

/// `Event.RescindInverseOffer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RescindInverseOffer {
    pub inverse_offer_id: OfferId,
}

/// `Event.Update`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub status: TaskStatus,
}

/// `Event.Message`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    pub agent_id: AgentId,
    pub executor_id: ExecutorId,
    pub data: Bytes,
}

/// `Event.Failure`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

/// `Event.Error`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Error {
    pub message: String,
}

impl Serialize for Call {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let id = self
            .framework_id
            .as_ref()
            .map(|id| ("framework_id", id.as_str()));
        crate::union::serialize_union(s, &self.kind, id.as_slice())
    }
}

impl<'de> Deserialize<'de> for Call {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, ids) = crate::union::deserialize_union(d, &["framework_id"])?;
        let [framework_id] = <[Option<String>; 1]>::try_from(ids).expect("one id asked for");
        Ok(Call {
            framework_id: framework_id.map(FrameworkId::new),
            kind,
        })
    }
}

impl Call {
    /// Mesos's validation beyond parsing: SUBSCRIBE's `framework_id` must equal
    /// `framework_info.id`; every other call needs a `framework_id`; ACKNOWLEDGE's uuid is
    /// 16 bytes.
    pub fn validate(&self) -> Result<(), String> {
        match &self.kind {
            CallKind::Subscribe(sub) => {
                if self.framework_id.is_some() && self.framework_id != sub.framework_info.id {
                    return Err(
                        "'framework_id' differs from 'subscribe.framework_info.id'".to_string()
                    );
                }
            }
            other => {
                if self.framework_id.is_none() {
                    return Err(format!(
                        "Expecting 'framework_id' to be present for {}",
                        other.type_name()
                    ));
                }
                if let CallKind::Acknowledge(ack) = other {
                    if ack.uuid.len() != 16 {
                        return Err(format!(
                            "Expecting 'uuid' to be 16 bytes, got {}",
                            ack.uuid.len()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_round_trips() {
        let text = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"demo","failover_timeout":604800,"checkpoint":true,"capabilities":[{"type":"PARTITION_AWARE"}]},"credentials":{"x":1}}}"#;
        let call: Call = serde_json::from_str(text).unwrap();
        assert!(call.validate().is_ok());
        let CallKind::Subscribe(sub) = &call.kind else {
            panic!()
        };
        assert_eq!(sub.framework_info.failover_timeout, 604800.0);
        let again: Call = serde_json::from_value(serde_json::to_value(&call).unwrap()).unwrap();
        assert_eq!(again, call);
    }

    #[test]
    fn clear_errors() {
        let e = serde_json::from_str::<Call>(r#"{"type":"ACCEPT","framework_id":{"value":"f"}}"#)
            .unwrap_err();
        assert!(
            e.to_string().contains("Expecting 'accept' to be present"),
            "{e}"
        );
        let e = serde_json::from_str::<Call>(r#"{"type":"BOGUS"}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("Unknown scheduler call type 'BOGUS'"),
            "{e}"
        );
        let e = serde_json::from_str::<Call>(r#"{"framework_id":{"value":"f"}}"#).unwrap_err();
        assert!(e.to_string().contains("'type'"), "{e}");
        let call: Call = serde_json::from_str(r#"{"type":"TEARDOWN"}"#).unwrap();
        assert!(call.validate().unwrap_err().contains("framework_id"));
        let call: Call = serde_json::from_str(
            r#"{"type":"ACKNOWLEDGE","framework_id":{"value":"f"},"acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AAAA"}}"#,
        )
        .unwrap();
        assert!(call.validate().unwrap_err().contains("16 bytes"));
    }

    #[test]
    fn optional_payloads() {
        let call: Call =
            serde_json::from_str(r#"{"type":"REVIVE","framework_id":{"value":"f"}}"#).unwrap();
        assert_eq!(call.kind, CallKind::Revive(None));
        let call: Call = serde_json::from_str(
            r#"{"type":"SUPPRESS","framework_id":{"value":"f"},"suppress":{"roles":["a"]}}"#,
        )
        .unwrap();
        assert_eq!(
            call.kind,
            CallKind::Suppress(Some(Roles {
                roles: vec!["a".into()]
            }))
        );
    }

    #[test]
    fn events_use_lowercase_payload_names() {
        let e = Event::Error(Error {
            message: "Framework failed over".into(),
        });
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":{"message":"Framework failed over"},"type":"ERROR"}"#
        );
        assert_eq!(
            serde_json::to_string(&Event::Heartbeat).unwrap(),
            r#"{"type":"HEARTBEAT"}"#
        );
    }
}
