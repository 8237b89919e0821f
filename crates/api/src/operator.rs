//! The operator API (`/api/v1` on master and agent): calls, the response envelope and the
//! master's event stream. Response bodies are built by the master and agent, which own the
//! state they describe; this module fixes their envelope and names.

use crate::ids::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

tagged_union! {
    /// `master::Call.type` / `agent::Call.type` and its payload.
    pub enum Call ("operator call") {
        GetHealth = "GET_HEALTH",
        GetFlags = "GET_FLAGS",
        GetVersion = "GET_VERSION",
        GetMetrics(opt Value) = "GET_METRICS" in "get_metrics",
        GetLoggingLevel = "GET_LOGGING_LEVEL",
        SetLoggingLevel(Value) = "SET_LOGGING_LEVEL" in "set_logging_level",
        ListFiles(ListFiles) = "LIST_FILES" in "list_files",
        ReadFile(ReadFile) = "READ_FILE" in "read_file",
        GetState = "GET_STATE",
        GetAgents = "GET_AGENTS",
        GetAgent = "GET_AGENT",
        GetFrameworks = "GET_FRAMEWORKS",
        GetExecutors = "GET_EXECUTORS",
        GetTasks = "GET_TASKS",
        GetRoles = "GET_ROLES",
        GetMaster = "GET_MASTER",
        GetContainers(opt Value) = "GET_CONTAINERS" in "get_containers",
        GetOperations = "GET_OPERATIONS",
        GetWeights = "GET_WEIGHTS",
        UpdateWeights(Value) = "UPDATE_WEIGHTS" in "update_weights",
        ReserveResources(Value) = "RESERVE_RESOURCES" in "reserve_resources",
        UnreserveResources(Value) = "UNRESERVE_RESOURCES" in "unreserve_resources",
        CreateVolumes(Value) = "CREATE_VOLUMES" in "create_volumes",
        DestroyVolumes(Value) = "DESTROY_VOLUMES" in "destroy_volumes",
        GrowVolume(Value) = "GROW_VOLUME" in "grow_volume",
        ShrinkVolume(Value) = "SHRINK_VOLUME" in "shrink_volume",
        GetMaintenanceStatus = "GET_MAINTENANCE_STATUS",
        GetMaintenanceSchedule = "GET_MAINTENANCE_SCHEDULE",
        UpdateMaintenanceSchedule(Value) = "UPDATE_MAINTENANCE_SCHEDULE" in "update_maintenance_schedule",
        StartMaintenance(Value) = "START_MAINTENANCE" in "start_maintenance",
        StopMaintenance(Value) = "STOP_MAINTENANCE" in "stop_maintenance",
        DrainAgent(Value) = "DRAIN_AGENT" in "drain_agent",
        DeactivateAgent(Value) = "DEACTIVATE_AGENT" in "deactivate_agent",
        ReactivateAgent(Value) = "REACTIVATE_AGENT" in "reactivate_agent",
        GetQuota = "GET_QUOTA",
        UpdateQuota(Value) = "UPDATE_QUOTA" in "update_quota",
        SetQuota(Value) = "SET_QUOTA" in "set_quota",
        RemoveQuota(Value) = "REMOVE_QUOTA" in "remove_quota",
        Subscribe = "SUBSCRIBE",
        Teardown(Teardown) = "TEARDOWN" in "teardown",
        MarkAgentGone(MarkAgentGone) = "MARK_AGENT_GONE" in "mark_agent_gone",
        GetResourceProviders = "GET_RESOURCE_PROVIDERS",
        LaunchNestedContainer(Value) = "LAUNCH_NESTED_CONTAINER" in "launch_nested_container",
        WaitNestedContainer(Value) = "WAIT_NESTED_CONTAINER" in "wait_nested_container",
        KillNestedContainer(Value) = "KILL_NESTED_CONTAINER" in "kill_nested_container",
        RemoveNestedContainer(Value) = "REMOVE_NESTED_CONTAINER" in "remove_nested_container",
        LaunchNestedContainerSession(Value) = "LAUNCH_NESTED_CONTAINER_SESSION" in "launch_nested_container_session",
        AttachContainerInput(Value) = "ATTACH_CONTAINER_INPUT" in "attach_container_input",
        AttachContainerOutput(Value) = "ATTACH_CONTAINER_OUTPUT" in "attach_container_output",
        LaunchContainer(Value) = "LAUNCH_CONTAINER" in "launch_container",
        WaitContainer(Value) = "WAIT_CONTAINER" in "wait_container",
        KillContainer(Value) = "KILL_CONTAINER" in "kill_container",
        RemoveContainer(Value) = "REMOVE_CONTAINER" in "remove_container",
        PruneImages(opt Value) = "PRUNE_IMAGES" in "prune_images",
    }
}

/// `Call.ListFiles`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListFiles {
    pub path: String,
}

/// `Call.ReadFile`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadFile {
    pub path: String,
    #[serde(deserialize_with = "lenient_u64")]
    pub offset: u64,
    #[serde(
        default,
        deserialize_with = "opt_lenient_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub length: Option<u64>,
}

fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = crate::json::i64_lenient(d)?;
    u64::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is negative")))
}

fn opt_lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "lenient_u64")] u64);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// `Call.Teardown`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Teardown {
    pub framework_id: FrameworkId,
}

/// `Call.MarkAgentGone`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarkAgentGone {
    pub agent_id: AgentId,
}

/// The response envelope: `{"type":"GET_HEALTH","get_health":{…}}`.
pub fn response(type_name: &str, payload: Value) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("type".into(), Value::String(type_name.to_string()));
    if !payload.is_null() {
        object.insert(type_name.to_ascii_lowercase(), payload);
    }
    Value::Object(object)
}

tagged_union! {
    /// The master's operator event stream.
    pub enum Event ("operator event") {
        Subscribed(Value) = "SUBSCRIBED" in "subscribed",
        TaskAdded(Value) = "TASK_ADDED" in "task_added",
        TaskUpdated(Value) = "TASK_UPDATED" in "task_updated",
        AgentAdded(Value) = "AGENT_ADDED" in "agent_added",
        AgentRemoved(Value) = "AGENT_REMOVED" in "agent_removed",
        FrameworkAdded(Value) = "FRAMEWORK_ADDED" in "framework_added",
        FrameworkUpdated(Value) = "FRAMEWORK_UPDATED" in "framework_updated",
        FrameworkRemoved(Value) = "FRAMEWORK_REMOVED" in "framework_removed",
        Heartbeat = "HEARTBEAT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calls() {
        let c: Call = serde_json::from_str(r#"{"type":"GET_STATE"}"#).unwrap();
        assert_eq!(c, Call::GetState);
        let c: Call = serde_json::from_str(
            r#"{"type":"READ_FILE","read_file":{"path":"/x","offset":"3","length":10}}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            Call::ReadFile(ReadFile {
                path: "/x".into(),
                offset: 3,
                length: Some(10)
            })
        );
        assert!(serde_json::from_str::<Call>(r#"{"type":"TEARDOWN"}"#).is_err());
    }

    #[test]
    fn response_envelope() {
        assert_eq!(
            response("GET_HEALTH", serde_json::json!({"healthy":true})),
            serde_json::json!({"type":"GET_HEALTH","get_health":{"healthy":true}})
        );
    }
}
