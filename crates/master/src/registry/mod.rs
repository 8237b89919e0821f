//! The registry: what the master must not forget across restarts (admitted agents, agents
//! marked gone, frameworks and the frameworks removed for good, role weights, role quotas,
//! each agent's checkpointed resources, the maintenance schedule and machines down). [`Registry`] is the
//! storage seam a later replicated implementation plugs into; [`RedbRegistry`] is the
//! durable local store (every commit is fsynced).

mod redb_store;

pub use redb_store::RedbRegistry;

use meseta_api::maintenance::{DrainInfo, MachineId, Schedule};
use meseta_api::quota::QuotaConfig;
use meseta_api::{AgentId, AgentInfo, FrameworkId, FrameworkInfo, Resources};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// An agent the master admitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdmittedAgent {
    pub info: AgentInfo,
    /// `ip:port` of the agent's HTTP endpoint.
    pub endpoint: String,
    /// Deactivated by an operator (DEACTIVATE_AGENT): offered nothing until reactivated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deactivated: bool,
    /// DRAIN_AGENT: draining or drained, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainInfo>,
}

/// The maintenance schedule and the machines in maintenance (DOWN); the machines in the
/// schedule but not down are DRAINING.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceRecord {
    pub schedule: Schedule,
    #[serde(default)]
    pub down: Vec<MachineId>,
}

/// Everything the registry holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryState {
    pub agents: BTreeMap<AgentId, AdmittedAgent>,
    pub gone_agents: BTreeSet<AgentId>,
    pub frameworks: BTreeMap<FrameworkId, FrameworkInfo>,
    pub removed_frameworks: BTreeSet<FrameworkId>,
    /// Role weights set through the API (or `--weights` at a first start).
    pub weights: BTreeMap<String, f64>,
    /// Role quotas set through UPDATE_QUOTA (or SET_QUOTA), by role.
    pub quotas: BTreeMap<String, QuotaConfig>,
    /// Each agent's dynamic reservations and persistent volumes.
    pub checkpointed: BTreeMap<AgentId, Resources>,
    pub maintenance: MaintenanceRecord,
}

/// One durable change.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryChange {
    /// Admit or update an agent.
    PutAgent(AgentId, AdmittedAgent),
    /// An operator marked the agent gone: it may never come back.
    MarkAgentGone(AgentId),
    /// Add or update a framework.
    PutFramework(FrameworkId, FrameworkInfo),
    /// The framework was removed for good.
    RemoveFramework(FrameworkId),
    /// Set these roles' weights (other roles keep theirs).
    PutWeights(BTreeMap<String, f64>),
    /// Set these roles' quotas; a default config (no guarantees, no limits) removes one.
    PutQuotas(Vec<QuotaConfig>),
    /// Replace an agent's checkpointed resources (dynamic reservations, volumes).
    PutCheckpointedResources(AgentId, Resources),
    /// Forget an agent (its machine went down for maintenance); it may register again.
    RemoveAgent(AgentId),
    /// Replace the maintenance schedule and the machines down.
    PutMaintenance(MaintenanceRecord),
}

impl RegistryState {
    /// Applies a change in memory (what the store does durably).
    pub fn apply(&mut self, change: &RegistryChange) {
        match change {
            RegistryChange::PutAgent(id, agent) => {
                self.agents.insert(id.clone(), agent.clone());
            }
            RegistryChange::MarkAgentGone(id) => {
                self.agents.remove(id);
                self.checkpointed.remove(id);
                self.gone_agents.insert(id.clone());
            }
            RegistryChange::PutFramework(id, info) => {
                self.frameworks.insert(id.clone(), info.clone());
            }
            RegistryChange::RemoveFramework(id) => {
                self.frameworks.remove(id);
                self.removed_frameworks.insert(id.clone());
            }
            RegistryChange::PutWeights(weights) => {
                self.weights
                    .extend(weights.iter().map(|(r, w)| (r.clone(), *w)));
            }
            RegistryChange::PutCheckpointedResources(id, resources) => {
                if resources.is_empty() {
                    self.checkpointed.remove(id);
                } else {
                    self.checkpointed.insert(id.clone(), resources.clone());
                }
            }
            RegistryChange::RemoveAgent(id) => {
                self.agents.remove(id);
                self.checkpointed.remove(id);
            }
            RegistryChange::PutMaintenance(record) => {
                self.maintenance = record.clone();
            }
            RegistryChange::PutQuotas(configs) => {
                for config in configs {
                    if config.is_default() {
                        self.quotas.remove(&config.role);
                    } else {
                        self.quotas.insert(config.role.clone(), config.clone());
                    }
                }
            }
        }
    }
}

/// Why the registry could not be read or written.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("cannot open the registry at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the registry at {path} is unreadable: {message}")]
    Corrupt { path: String, message: String },
    #[error("registry write failed: {0}")]
    Write(String),
}

/// Durable storage of the registry.
pub trait Registry: Send {
    /// Reads everything stored.
    fn load(&self) -> Result<RegistryState, RegistryError>;
    /// Applies changes atomically and durably.
    fn apply(&mut self, changes: &[RegistryChange]) -> Result<(), RegistryError>;
}
