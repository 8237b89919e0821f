//! The registry in a redb file (`<work_dir>/registry.redb`), one table per kind of entry,
//! values as JSON, committed with immediate durability.

use super::{AdmittedAgent, Registry, RegistryChange, RegistryError, RegistryState};
use meseta_api::{AgentId, FrameworkId, FrameworkInfo, Resources};
use redb::{Database, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
const GONE_AGENTS: TableDefinition<&str, ()> = TableDefinition::new("gone_agents");
const FRAMEWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("frameworks");
const REMOVED_FRAMEWORKS: TableDefinition<&str, ()> = TableDefinition::new("removed_frameworks");
const WEIGHTS: TableDefinition<&str, f64> = TableDefinition::new("weights");
const CHECKPOINTED: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpointed_resources");
/// Role → its `QuotaConfig` as JSON.
const QUOTAS: TableDefinition<&str, &[u8]> = TableDefinition::new("quota");
/// One entry, [`MAINTENANCE_KEY`] → the `MaintenanceRecord` as JSON.
const MAINTENANCE: TableDefinition<&str, &[u8]> = TableDefinition::new("maintenance");
const MAINTENANCE_KEY: &str = "maintenance";

/// A redb-backed registry.
pub struct RedbRegistry {
    db: Database,
    path: PathBuf,
}

impl RedbRegistry {
    /// Opens (or creates) the registry file. An existing file that cannot be read is an
    /// error: the master never silently starts empty.
    pub fn open(path: &Path) -> Result<RedbRegistry, RegistryError> {
        let shown = path.display().to_string();
        let db = Database::create(path).map_err(|e| RegistryError::Open {
            path: shown.clone(),
            source: Box::new(e),
        })?;
        let registry = RedbRegistry {
            db,
            path: path.to_path_buf(),
        };
        registry.create_tables()?;
        Ok(registry)
    }

    fn corrupt(&self, message: impl std::fmt::Display) -> RegistryError {
        RegistryError::Corrupt {
            path: self.path.display().to_string(),
            message: message.to_string(),
        }
    }

    fn create_tables(&self) -> Result<(), RegistryError> {
        let txn = self.db.begin_write().map_err(|e| self.corrupt(e))?;
        txn.open_table(AGENTS).map_err(|e| self.corrupt(e))?;
        txn.open_table(GONE_AGENTS).map_err(|e| self.corrupt(e))?;
        txn.open_table(FRAMEWORKS).map_err(|e| self.corrupt(e))?;
        txn.open_table(REMOVED_FRAMEWORKS)
            .map_err(|e| self.corrupt(e))?;
        txn.open_table(WEIGHTS).map_err(|e| self.corrupt(e))?;
        txn.open_table(QUOTAS).map_err(|e| self.corrupt(e))?;
        txn.open_table(CHECKPOINTED).map_err(|e| self.corrupt(e))?;
        txn.open_table(MAINTENANCE).map_err(|e| self.corrupt(e))?;
        txn.commit().map_err(|e| self.corrupt(e))
    }
}

fn write_err(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Write(e.to_string())
}

impl Registry for RedbRegistry {
    fn load(&self) -> Result<RegistryState, RegistryError> {
        let txn = self.db.begin_read().map_err(|e| self.corrupt(e))?;
        let mut state = RegistryState::default();
        let agents = txn.open_table(AGENTS).map_err(|e| self.corrupt(e))?;
        for entry in agents.iter().map_err(|e| self.corrupt(e))? {
            let (key, value) = entry.map_err(|e| self.corrupt(e))?;
            let agent: AdmittedAgent = serde_json::from_slice(value.value())
                .map_err(|e| self.corrupt(format!("agent {}: {e}", key.value())))?;
            state.agents.insert(AgentId::new(key.value()), agent);
        }
        let gone = txn.open_table(GONE_AGENTS).map_err(|e| self.corrupt(e))?;
        for entry in gone.iter().map_err(|e| self.corrupt(e))? {
            let (key, _) = entry.map_err(|e| self.corrupt(e))?;
            state.gone_agents.insert(AgentId::new(key.value()));
        }
        let frameworks = txn.open_table(FRAMEWORKS).map_err(|e| self.corrupt(e))?;
        for entry in frameworks.iter().map_err(|e| self.corrupt(e))? {
            let (key, value) = entry.map_err(|e| self.corrupt(e))?;
            let info: FrameworkInfo = serde_json::from_slice(value.value())
                .map_err(|e| self.corrupt(format!("framework {}: {e}", key.value())))?;
            state.frameworks.insert(FrameworkId::new(key.value()), info);
        }
        let removed = txn
            .open_table(REMOVED_FRAMEWORKS)
            .map_err(|e| self.corrupt(e))?;
        for entry in removed.iter().map_err(|e| self.corrupt(e))? {
            let (key, _) = entry.map_err(|e| self.corrupt(e))?;
            state
                .removed_frameworks
                .insert(FrameworkId::new(key.value()));
        }
        let weights = txn.open_table(WEIGHTS).map_err(|e| self.corrupt(e))?;
        for entry in weights.iter().map_err(|e| self.corrupt(e))? {
            let (key, value) = entry.map_err(|e| self.corrupt(e))?;
            state.weights.insert(key.value().to_string(), value.value());
        }
        let quotas = txn.open_table(QUOTAS).map_err(|e| self.corrupt(e))?;
        for entry in quotas.iter().map_err(|e| self.corrupt(e))? {
            let (key, value) = entry.map_err(|e| self.corrupt(e))?;
            let config = serde_json::from_slice(value.value())
                .map_err(|e| self.corrupt(format!("quota of role {}: {e}", key.value())))?;
            state.quotas.insert(key.value().to_string(), config);
        }
        let checkpointed = txn.open_table(CHECKPOINTED).map_err(|e| self.corrupt(e))?;
        for entry in checkpointed.iter().map_err(|e| self.corrupt(e))? {
            let (key, value) = entry.map_err(|e| self.corrupt(e))?;
            let resources: Resources = serde_json::from_slice(value.value()).map_err(|e| {
                self.corrupt(format!("checkpointed resources of {}: {e}", key.value()))
            })?;
            state
                .checkpointed
                .insert(AgentId::new(key.value()), resources);
        }
        let maintenance = txn.open_table(MAINTENANCE).map_err(|e| self.corrupt(e))?;
        if let Some(value) = maintenance
            .get(MAINTENANCE_KEY)
            .map_err(|e| self.corrupt(e))?
        {
            state.maintenance = serde_json::from_slice(value.value())
                .map_err(|e| self.corrupt(format!("maintenance: {e}")))?;
        }
        Ok(state)
    }

    fn apply(&mut self, changes: &[RegistryChange]) -> Result<(), RegistryError> {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut agents = txn.open_table(AGENTS).map_err(write_err)?;
            let mut gone = txn.open_table(GONE_AGENTS).map_err(write_err)?;
            let mut frameworks = txn.open_table(FRAMEWORKS).map_err(write_err)?;
            let mut removed = txn.open_table(REMOVED_FRAMEWORKS).map_err(write_err)?;
            let mut weights = txn.open_table(WEIGHTS).map_err(write_err)?;
            let mut quotas = txn.open_table(QUOTAS).map_err(write_err)?;
            let mut checkpointed = txn.open_table(CHECKPOINTED).map_err(write_err)?;
            let mut maintenance = txn.open_table(MAINTENANCE).map_err(write_err)?;
            for change in changes {
                match change {
                    RegistryChange::PutAgent(id, agent) => {
                        let bytes = serde_json::to_vec(agent).map_err(write_err)?;
                        agents
                            .insert(id.as_str(), bytes.as_slice())
                            .map_err(write_err)?;
                    }
                    RegistryChange::MarkAgentGone(id) => {
                        agents.remove(id.as_str()).map_err(write_err)?;
                        checkpointed.remove(id.as_str()).map_err(write_err)?;
                        gone.insert(id.as_str(), ()).map_err(write_err)?;
                    }
                    RegistryChange::PutFramework(id, info) => {
                        let bytes = serde_json::to_vec(info).map_err(write_err)?;
                        frameworks
                            .insert(id.as_str(), bytes.as_slice())
                            .map_err(write_err)?;
                    }
                    RegistryChange::RemoveFramework(id) => {
                        frameworks.remove(id.as_str()).map_err(write_err)?;
                        removed.insert(id.as_str(), ()).map_err(write_err)?;
                    }
                    RegistryChange::PutWeights(update) => {
                        for (role, weight) in update {
                            weights.insert(role.as_str(), *weight).map_err(write_err)?;
                        }
                    }
                    RegistryChange::PutCheckpointedResources(id, resources)
                        if resources.is_empty() =>
                    {
                        checkpointed.remove(id.as_str()).map_err(write_err)?;
                    }
                    RegistryChange::PutCheckpointedResources(id, resources) => {
                        let bytes = serde_json::to_vec(resources).map_err(write_err)?;
                        checkpointed
                            .insert(id.as_str(), bytes.as_slice())
                            .map_err(write_err)?;
                    }
                    RegistryChange::RemoveAgent(id) => {
                        agents.remove(id.as_str()).map_err(write_err)?;
                        checkpointed.remove(id.as_str()).map_err(write_err)?;
                    }
                    RegistryChange::PutMaintenance(record) => {
                        let bytes = serde_json::to_vec(record).map_err(write_err)?;
                        maintenance
                            .insert(MAINTENANCE_KEY, bytes.as_slice())
                            .map_err(write_err)?;
                    }
                    RegistryChange::PutQuotas(configs) => {
                        for config in configs {
                            if config.is_default() {
                                quotas.remove(config.role.as_str()).map_err(write_err)?;
                            } else {
                                let bytes = serde_json::to_vec(config).map_err(write_err)?;
                                quotas
                                    .insert(config.role.as_str(), bytes.as_slice())
                                    .map_err(write_err)?;
                            }
                        }
                    }
                }
            }
        }
        txn.commit().map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::quota::QuotaConfig;

    fn agent_info(id: &str) -> AdmittedAgent {
        AdmittedAgent {
            info: serde_json::from_value(serde_json::json!({"hostname":"h","id":{"value":id}}))
                .unwrap(),
            endpoint: "127.0.0.1:5051".into(),
            deactivated: false,
            drain: None,
        }
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        let changes = vec![
            RegistryChange::PutAgent(AgentId::new("a1"), agent_info("a1")),
            RegistryChange::PutAgent(AgentId::new("a2"), agent_info("a2")),
            RegistryChange::MarkAgentGone(AgentId::new("a2")),
            RegistryChange::PutFramework(
                FrameworkId::new("f1"),
                serde_json::from_value(
                    serde_json::json!({"user":"u","name":"n","id":{"value":"f1"}}),
                )
                .unwrap(),
            ),
            RegistryChange::PutFramework(
                FrameworkId::new("f2"),
                serde_json::from_value(serde_json::json!({"user":"u","name":"n2"})).unwrap(),
            ),
            RegistryChange::RemoveFramework(FrameworkId::new("f2")),
            RegistryChange::PutWeights([("a".to_string(), 2.0), ("b".to_string(), 0.5)].into()),
            RegistryChange::PutWeights([("b".to_string(), 3.0)].into()),
            RegistryChange::PutQuotas(vec![quota("q", 2.0), quota("gone", 1.0)]),
            RegistryChange::PutQuotas(vec![QuotaConfig {
                role: "gone".into(),
                ..Default::default()
            }]),
        ];
        let mut expected = RegistryState::default();
        for c in &changes {
            expected.apply(c);
        }
        {
            let mut reg = RedbRegistry::open(&path).unwrap();
            reg.apply(&changes).unwrap();
        }
        let reg = RedbRegistry::open(&path).unwrap();
        assert_eq!(reg.load().unwrap(), expected);
        assert_eq!(expected.agents.len(), 1);
        assert!(expected.gone_agents.contains(&AgentId::new("a2")));
        assert_eq!(
            expected.weights,
            [("a".to_string(), 2.0), ("b".to_string(), 3.0)].into()
        );
        assert_eq!(
            expected.quotas.keys().collect::<Vec<_>>(),
            ["q"],
            "a default config removes the quota"
        );
    }

    #[test]
    fn maintenance_and_removed_agents_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        let record: super::super::MaintenanceRecord = serde_json::from_value(serde_json::json!({
            "schedule": {"windows": [{
                "machine_ids": [{"hostname": "h1", "ip": "10.0.0.1"}],
                "unavailability": {"start": {"nanoseconds": 5}}
            }]},
            "down": [{"hostname": "h1", "ip": "10.0.0.1"}]
        }))
        .unwrap();
        let changes = vec![
            RegistryChange::PutAgent(AgentId::new("a1"), agent_info("a1")),
            RegistryChange::PutAgent(AgentId::new("a2"), agent_info("a2")),
            RegistryChange::RemoveAgent(AgentId::new("a1")),
            RegistryChange::PutMaintenance(record.clone()),
        ];
        RedbRegistry::open(&path).unwrap().apply(&changes).unwrap();
        let loaded = RedbRegistry::open(&path).unwrap().load().unwrap();
        assert_eq!(loaded.maintenance, record);
        assert_eq!(
            loaded.agents.keys().collect::<Vec<_>>(),
            [&AgentId::new("a2")]
        );
        assert!(loaded.gone_agents.is_empty(), "removed is not gone");
    }

    fn quota(role: &str, cpus: f64) -> QuotaConfig {
        QuotaConfig {
            role: role.into(),
            guarantees: [(
                "cpus".to_string(),
                meseta_api::resources::Scalar { value: cpus },
            )]
            .into(),
            limits: Default::default(),
        }
    }

    #[test]
    fn agent_deactivation_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        let mut deactivated = agent_info("a1");
        deactivated.deactivated = true;
        {
            let mut reg = RedbRegistry::open(&path).unwrap();
            reg.apply(&[
                RegistryChange::PutAgent(AgentId::new("a1"), agent_info("a1")),
                RegistryChange::PutAgent(AgentId::new("a2"), agent_info("a2")),
                RegistryChange::PutAgent(AgentId::new("a1"), deactivated),
            ])
            .unwrap();
        }
        {
            let mut reg = RedbRegistry::open(&path).unwrap();
            let state = reg.load().unwrap();
            assert!(state.agents[&AgentId::new("a1")].deactivated);
            assert!(!state.agents[&AgentId::new("a2")].deactivated);
            // Reactivated: stored as such.
            reg.apply(&[RegistryChange::PutAgent(
                AgentId::new("a1"),
                agent_info("a1"),
            )])
            .unwrap();
        }
        let reg = RedbRegistry::open(&path).unwrap();
        assert!(!reg.load().unwrap().agents[&AgentId::new("a1")].deactivated);
    }

    #[test]
    fn agents_stored_before_deactivation_existed_load() {
        // Entries written without the `deactivated` field read as active.
        let agent: AdmittedAgent = serde_json::from_value(serde_json::json!({
            "info": {"hostname": "h", "id": {"value": "a1"}},
            "endpoint": "127.0.0.1:5051"
        }))
        .unwrap();
        assert!(!agent.deactivated);
    }

    #[test]
    fn weights_survive_reopen_and_update() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        {
            let mut reg = RedbRegistry::open(&path).unwrap();
            reg.apply(&[RegistryChange::PutWeights([("r".to_string(), 2.5)].into())])
                .unwrap();
        }
        {
            let mut reg = RedbRegistry::open(&path).unwrap();
            assert_eq!(reg.load().unwrap().weights, [("r".to_string(), 2.5)].into());
            reg.apply(&[RegistryChange::PutWeights(
                [("r".to_string(), 0.25), ("s/t".to_string(), 4.0)].into(),
            )])
            .unwrap();
        }
        let reg = RedbRegistry::open(&path).unwrap();
        assert_eq!(
            reg.load().unwrap().weights,
            [("r".to_string(), 0.25), ("s/t".to_string(), 4.0)].into()
        );
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        std::fs::write(&path, b"this is not a redb database, just some bytes that are long enough to look like a header............................................").unwrap();
        let err = RedbRegistry::open(&path).err().expect("must fail");
        assert!(err.to_string().contains("registry"), "{err}");
    }
}
