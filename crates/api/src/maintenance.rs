//! Maintenance wire types: machines, unavailability windows, the schedule, machine modes
//! and statuses (operator API), inverse offers (scheduler API), and agent draining
//! (DRAIN_AGENT, `DrainInfo`), as Mesos's `maintenance.proto` and `mesos.proto` define
//! them.

use crate::ids::{AgentId, FrameworkId, OfferId};
use crate::json;
use crate::mesos::DurationInfo;
use serde::{Deserialize, Serialize};

/// `TimeInfo`: nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeInfo {
    #[serde(deserialize_with = "json::i64_lenient")]
    pub nanoseconds: i64,
}

impl TimeInfo {
    /// `secs` seconds since the epoch.
    pub fn from_secs_f64(secs: f64) -> TimeInfo {
        TimeInfo {
            nanoseconds: (secs * 1e9) as i64,
        }
    }
}

/// `Unavailability`: from `start`, for `duration` (forever when absent).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unavailability {
    pub start: TimeInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationInfo>,
}

/// `MachineID`: a machine is named by hostname and IP; a field left out is the empty
/// string, and hostnames compare case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MachineId {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl MachineId {
    /// The form machines are compared in: lower-case hostname, absent fields empty.
    pub fn normalized(&self) -> MachineId {
        MachineId {
            hostname: Some(
                self.hostname
                    .as_deref()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
            ),
            ip: Some(self.ip.clone().unwrap_or_default()),
        }
    }
}

impl std::fmt::Display for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.hostname.as_deref().unwrap_or_default(),
            self.ip.as_deref().unwrap_or_default()
        )
    }
}

/// `maintenance::Window`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    #[serde(default)]
    pub machine_ids: Vec<MachineId>,
    pub unavailability: Unavailability,
}

/// `maintenance::Schedule`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(default)]
    pub windows: Vec<Window>,
}

/// `MachineInfo.Mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MachineMode {
    #[serde(rename = "UP")]
    Up,
    #[serde(rename = "DRAINING")]
    Draining,
    #[serde(rename = "DOWN")]
    Down,
}

/// `InverseOfferStatus.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InverseOfferAnswer {
    #[serde(rename = "UNKNOWN")]
    Unknown,
    #[serde(rename = "ACCEPT")]
    Accept,
    #[serde(rename = "DECLINE")]
    Decline,
}

/// `InverseOfferStatus`: a framework's latest answer for a machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InverseOfferStatus {
    pub status: InverseOfferAnswer,
    pub framework_id: FrameworkId,
    pub timestamp: TimeInfo,
}

/// `maintenance::ClusterStatus.DrainingMachine`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrainingMachine {
    pub id: MachineId,
    #[serde(default)]
    pub statuses: Vec<InverseOfferStatus>,
}

/// `maintenance::ClusterStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    #[serde(default)]
    pub draining_machines: Vec<DrainingMachine>,
    #[serde(default)]
    pub down_machines: Vec<MachineId>,
}

/// `InverseOffer`: the master asks a framework to give back what it holds on an agent
/// before its unavailability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InverseOffer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    pub unavailability: Unavailability,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<crate::Resource>,
}

/// `Event.InverseOffers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InverseOffers {
    #[serde(default)]
    pub inverse_offers: Vec<InverseOffer>,
}

/// `Call.AcceptInverseOffers` and `Call.DeclineInverseOffers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InverseOfferAnswerCall {
    #[serde(default)]
    pub inverse_offer_ids: Vec<OfferId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<crate::Filters>,
}

/// The operator calls' payloads naming machines (START_MAINTENANCE, STOP_MAINTENANCE).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machines {
    #[serde(default)]
    pub machines: Vec<MachineId>,
}

/// `DrainState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrainState {
    /// Its tasks are being killed.
    #[serde(rename = "DRAINING")]
    Draining,
    /// Every task is terminal and acknowledged.
    #[serde(rename = "DRAINED")]
    Drained,
}

/// `DrainConfig`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DrainConfig {
    /// An upper bound on the tasks' kill grace periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grace_period: Option<DurationInfo>,
    /// Mark the agent gone once drained.
    #[serde(default)]
    pub mark_gone: bool,
}

/// `DrainInfo`, reported on GET_AGENTS entries.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrainInfo {
    pub state: DrainState,
    pub config: DrainConfig,
}

/// `Call.DrainAgent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrainAgent {
    pub agent_id: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grace_period: Option<DurationInfo>,
    #[serde(default)]
    pub mark_gone: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_round_trips_mesos_json() {
        let text = r#"{"windows":[{"machine_ids":[{"hostname":"Machine1","ip":"10.0.0.1"}],"unavailability":{"start":{"nanoseconds":1443830400000000000},"duration":{"nanoseconds":3600000000000}}}]}"#;
        let schedule: Schedule = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&schedule).unwrap(), text);
        assert_eq!(
            schedule.windows[0].machine_ids[0].normalized().hostname,
            Some("machine1".into())
        );
    }

    #[test]
    fn absent_machine_fields_are_empty() {
        let m: MachineId = serde_json::from_str(r#"{"hostname":"h"}"#).unwrap();
        assert_eq!(m.normalized().ip, Some(String::new()));
        assert_eq!(m.to_string(), "h/");
    }
}
