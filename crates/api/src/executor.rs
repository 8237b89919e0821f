//! The executor API (`/api/v1/executor`): calls from executors to their agent and the
//! events the agent streams back.

use crate::ids::*;
use crate::json::Bytes;
use crate::mesos::*;
use serde::{Deserialize, Serialize};

/// An executor call: the union plus the required top-level ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub executor_id: ExecutorId,
    pub framework_id: FrameworkId,
    pub kind: CallKind,
}

tagged_union! {
    /// `executor::Call.type` and its payload.
    pub enum CallKind ("executor call") {
        Subscribe(Subscribe) = "SUBSCRIBE" in "subscribe",
        Update(Update) = "UPDATE" in "update",
        Message(Message) = "MESSAGE" in "message",
        Heartbeat = "HEARTBEAT",
    }
}

/// `Call.Subscribe`: what the executor has not had acknowledged yet (after a reconnect).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    #[serde(default)]
    pub unacknowledged_tasks: Vec<TaskInfo>,
    #[serde(default)]
    pub unacknowledged_updates: Vec<Update>,
}

/// `Call.Update`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub status: TaskStatus,
}

/// `Call.Message` and `Event.Message`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub data: Bytes,
}

tagged_union! {
    /// `executor::Event.type` and its payload.
    pub enum Event ("executor event") {
        Subscribed(Subscribed) = "SUBSCRIBED" in "subscribed",
        Launch(Launch) = "LAUNCH" in "launch",
        LaunchGroup(LaunchGroupEvent) = "LAUNCH_GROUP" in "launch_group",
        Kill(Kill) = "KILL" in "kill",
        Acknowledged(Acknowledged) = "ACKNOWLEDGED" in "acknowledged",
        Message(Message) = "MESSAGE" in "message",
        Error(crate::scheduler::Error) = "ERROR" in "error",
        Shutdown = "SHUTDOWN",
        Heartbeat = "HEARTBEAT",
    }
}

/// `Event.Subscribed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    pub executor_info: ExecutorInfo,
    pub framework_info: FrameworkInfo,
    pub agent_info: AgentInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerId>,
}

/// `Event.Launch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub task: TaskInfo,
}

/// `Event.LaunchGroup`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroupEvent {
    pub task_group: TaskGroupInfo,
}

/// `Event.Kill`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

/// `Event.Acknowledged`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub task_id: TaskId,
    pub uuid: Bytes,
}

impl Serialize for Call {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ids = [
            ("executor_id", self.executor_id.as_str()),
            ("framework_id", self.framework_id.as_str()),
        ];
        crate::union::serialize_union(s, &self.kind, &ids)
    }
}

impl<'de> Deserialize<'de> for Call {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let (kind, ids) = crate::union::deserialize_union(d, &["executor_id", "framework_id"])?;
        let [executor_id, framework_id] =
            <[Option<String>; 2]>::try_from(ids).expect("two ids asked for");
        let required = |id: Option<String>, field: &str| {
            id.ok_or_else(|| D::Error::custom(format!("Expecting '{field}' to be present")))
        };
        Ok(Call {
            executor_id: ExecutorId::new(required(executor_id, "executor_id")?),
            framework_id: FrameworkId::new(required(framework_id, "framework_id")?),
            kind,
        })
    }
}

impl Call {
    /// Mesos's checks on UPDATE: a 16-byte uuid, not TASK_STAGING.
    pub fn validate(&self) -> Result<(), String> {
        if let CallKind::Update(update) = &self.kind {
            let status = &update.status;
            match &status.uuid {
                Some(uuid) if uuid.len() == 16 => {}
                Some(uuid) => {
                    return Err(format!(
                        "Expecting 'uuid' to be 16 bytes, got {}",
                        uuid.len()
                    ))
                }
                None => return Err("Expecting 'uuid' to be present".to_string()),
            }
            if status.state == TaskState::TaskStaging {
                return Err("Executors are not allowed to send TASK_STAGING updates".to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_requires_ids() {
        let e = serde_json::from_str::<Call>(r#"{"type":"HEARTBEAT","executor_id":{"value":"e"}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("framework_id"), "{e}");
        let c: Call = serde_json::from_str(
            r#"{"type":"SUBSCRIBE","executor_id":{"value":"e"},"framework_id":{"value":"f"},"subscribe":{}}"#,
        )
        .unwrap();
        assert!(matches!(c.kind, CallKind::Subscribe(_)));
    }

    #[test]
    fn update_validation() {
        let c: Call = serde_json::from_str(
            r#"{"type":"UPDATE","executor_id":{"value":"e"},"framework_id":{"value":"f"},"update":{"status":{"task_id":{"value":"t"},"state":"TASK_STAGING","uuid":"AAAAAAAAAAAAAAAAAAAAAA=="}}}"#,
        )
        .unwrap();
        assert!(c.validate().unwrap_err().contains("TASK_STAGING"));
    }
}
