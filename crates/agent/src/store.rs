//! The checkpoint store (`<work_dir>/meta/agent.redb`): the agent id and the info it
//! registered with, its checkpointed resources (dynamic reservations and persistent
//! volumes, as the master last sent them), and for checkpointing frameworks their info, executors (with container id, sandbox and pid),
//! tasks and unacknowledged status updates. Writes come in batches ([`Store::apply`]),
//! one durable transaction each, so that many updates share one fsync.

use meseta_api::{
    AgentId, AgentInfo, ContainerId, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo,
    Resource, Task, TaskId, TaskInfo, TaskStatus,
};
use meseta_containerizer::ProcessRef;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FRAMEWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("frameworks");
const EXECUTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("executors");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const UPDATES: TableDefinition<&str, &[u8]> = TableDefinition::new("updates");
/// The `meta` key of the checkpointed resources.
const CHECKPOINTED_KEY: &str = "checkpointed_resources";
const AGENT_INFO_KEY: &str = "agent_info";
const TABLES: [TableDefinition<&str, &[u8]>; 5] = [META, FRAMEWORKS, EXECUTORS, TASKS, UPDATES];

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("checkpoint store: {0}")]
    Db(Box<redb::Error>),
    #[error("checkpoint store: creating {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("checkpoint store: corrupt record {0}: {1}")]
    Corrupt(String, serde_json::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(Box::new(e.into())) }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A checkpointed executor run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutorRecord {
    pub info: ExecutorInfo,
    pub container_id: ContainerId,
    pub directory: PathBuf,
    pub command_executor: bool,
    pub process: Option<ProcessRef>,
}

/// A checkpointed task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub executor_id: ExecutorId,
    pub info: TaskInfo,
    pub task: Task,
    /// Not yet handed to its executor.
    pub queued: bool,
    /// For a queued task that came in a task group: the ids of the group's tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group: Vec<TaskId>,
}

/// One write.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreOp {
    AgentId(AgentId),
    /// The info the agent last registered with (for `--reconfiguration-policy`).
    AgentInfo(AgentInfo),
    /// Replaces the checkpointed resources.
    CheckpointedResources(Vec<Resource>),
    PutFramework(FrameworkInfo),
    /// Removes the framework with its executors, tasks and updates.
    DeleteFramework(FrameworkId),
    PutExecutor(FrameworkId, ExecutorRecord),
    DeleteExecutor(FrameworkId, ExecutorId),
    PutTask(FrameworkId, TaskRecord),
    DeleteTask(FrameworkId, TaskId),
    PutUpdate {
        framework_id: FrameworkId,
        seq: u64,
        status: TaskStatus,
    },
    DeleteUpdate {
        framework_id: FrameworkId,
        task_id: TaskId,
        seq: u64,
    },
    /// Forgets everything, the agent id included (the master shut this agent down).
    ForgetAll,
}

/// Everything read back at startup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovered {
    pub agent_id: Option<AgentId>,
    pub agent_info: Option<AgentInfo>,
    pub checkpointed_resources: Vec<Resource>,
    pub frameworks: Vec<FrameworkInfo>,
    pub executors: Vec<(FrameworkId, ExecutorRecord)>,
    pub tasks: Vec<(FrameworkId, TaskRecord)>,
    /// In sequence order within each task.
    pub updates: Vec<(FrameworkId, u64, TaskStatus)>,
}

/// The open checkpoint database.
pub struct Store {
    db: Database,
}

fn key2(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

fn update_key(framework: &str, task: &str, seq: u64) -> String {
    format!("{framework}\0{task}\0{seq:020}")
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("checkpoint records serialize")
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.to_path_buf(), e))?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        for table in TABLES {
            txn.open_table(table)?;
        }
        txn.commit()?;
        Ok(Store { db })
    }

    /// Reads everything back.
    pub fn load(&self) -> Result<Recovered, StoreError> {
        let txn = self.db.begin_read()?;
        let read =
            |table: TableDefinition<&str, &[u8]>| -> Result<Vec<(String, Vec<u8>)>, StoreError> {
                let t = txn.open_table(table)?;
                let mut out = Vec::new();
                for item in t.iter()? {
                    let (k, v) = item?;
                    out.push((k.value().to_string(), v.value().to_vec()));
                }
                Ok(out)
            };
        fn parse<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
            serde_json::from_slice(bytes)
                .map_err(|e| StoreError::Corrupt(key.replace('\0', "/"), e))
        }
        let mut out = Recovered::default();
        for (k, v) in read(META)? {
            match k.as_str() {
                "agent_id" => out.agent_id = Some(AgentId::new(String::from_utf8_lossy(&v))),
                AGENT_INFO_KEY => out.agent_info = Some(parse(&k, &v)?),
                CHECKPOINTED_KEY => out.checkpointed_resources = parse(&k, &v)?,
                _ => {}
            }
        }
        for (k, v) in read(FRAMEWORKS)? {
            out.frameworks.push(parse(&k, &v)?);
        }
        for (k, v) in read(EXECUTORS)? {
            let framework = k.split('\0').next().unwrap_or_default();
            out.executors
                .push((FrameworkId::new(framework), parse(&k, &v)?));
        }
        for (k, v) in read(TASKS)? {
            let framework = k.split('\0').next().unwrap_or_default();
            out.tasks
                .push((FrameworkId::new(framework), parse(&k, &v)?));
        }
        for (k, v) in read(UPDATES)? {
            let mut parts = k.split('\0');
            let framework = parts.next().unwrap_or_default();
            let seq = parts.nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            out.updates
                .push((FrameworkId::new(framework), seq, parse(&k, &v)?));
        }
        Ok(out)
    }

    /// Applies a batch of writes in one durable transaction.
    pub fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let mut frameworks = txn.open_table(FRAMEWORKS)?;
            let mut executors = txn.open_table(EXECUTORS)?;
            let mut tasks = txn.open_table(TASKS)?;
            let mut updates = txn.open_table(UPDATES)?;
            for op in ops {
                match op {
                    StoreOp::ForgetAll => {
                        for table in [
                            &mut meta,
                            &mut frameworks,
                            &mut executors,
                            &mut tasks,
                            &mut updates,
                        ] {
                            table.retain(|_, _| false)?;
                        }
                    }
                    StoreOp::AgentId(id) => {
                        meta.insert("agent_id", id.value.as_bytes())?;
                    }
                    StoreOp::AgentInfo(info) => {
                        meta.insert(AGENT_INFO_KEY, to_json(info).as_slice())?;
                    }
                    StoreOp::CheckpointedResources(resources) => {
                        meta.insert(CHECKPOINTED_KEY, to_json(resources).as_slice())?;
                    }
                    StoreOp::PutFramework(info) => {
                        let id = info.id.as_ref().map(|i| i.as_str()).unwrap_or_default();
                        frameworks.insert(id, to_json(info).as_slice())?;
                    }
                    StoreOp::DeleteFramework(id) => {
                        frameworks.remove(id.as_str())?;
                        let prefix = format!("{}\0", id.value);
                        let end = format!("{}\u{1}", id.value);
                        for table in [&mut executors, &mut tasks, &mut updates] {
                            let keys: Vec<String> = table
                                .range(prefix.as_str()..end.as_str())?
                                .map(|item| item.map(|(k, _)| k.value().to_string()))
                                .collect::<Result<_, _>>()?;
                            for key in keys {
                                table.remove(key.as_str())?;
                            }
                        }
                    }
                    StoreOp::PutExecutor(framework, record) => {
                        let key = key2(&framework.value, &record.info.executor_id.value);
                        executors.insert(key.as_str(), to_json(record).as_slice())?;
                    }
                    StoreOp::DeleteExecutor(framework, executor) => {
                        executors.remove(key2(&framework.value, &executor.value).as_str())?;
                    }
                    StoreOp::PutTask(framework, record) => {
                        let key = key2(&framework.value, &record.task.task_id.value);
                        tasks.insert(key.as_str(), to_json(record).as_slice())?;
                    }
                    StoreOp::DeleteTask(framework, task) => {
                        tasks.remove(key2(&framework.value, &task.value).as_str())?;
                    }
                    StoreOp::PutUpdate {
                        framework_id,
                        seq,
                        status,
                    } => {
                        let key = update_key(&framework_id.value, &status.task_id.value, *seq);
                        updates.insert(key.as_str(), to_json(status).as_slice())?;
                    }
                    StoreOp::DeleteUpdate {
                        framework_id,
                        task_id,
                        seq,
                    } => {
                        updates.remove(
                            update_key(&framework_id.value, &task_id.value, *seq).as_str(),
                        )?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::{AgentId, TaskState};

    fn framework(id: &str) -> FrameworkInfo {
        serde_json::from_value(
            serde_json::json!({"user":"u","name":"n","id":{"value":id},"checkpoint":true}),
        )
        .unwrap()
    }

    fn executor(id: &str) -> ExecutorRecord {
        ExecutorRecord {
            info: serde_json::from_value(serde_json::json!({"executor_id":{"value":id}})).unwrap(),
            container_id: ContainerId::new("c"),
            directory: PathBuf::from("/sandbox"),
            command_executor: false,
            process: Some(ProcessRef {
                pid: 7,
                start_time: 9,
            }),
        }
    }

    fn status(task: &str, n: u8) -> TaskStatus {
        let mut s = TaskStatus::new(TaskId::new(task), TaskState::TaskRunning);
        s.uuid = Some(meseta_api::json::Bytes(vec![n; 16]));
        s
    }

    #[test]
    fn round_trips_and_deletes_a_framework_with_everything_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta/agent.redb");
        let f1 = FrameworkId::new("f1");
        let f10 = FrameworkId::new("f10");
        {
            let store = Store::open(&path).unwrap();
            store
                .apply(&[
                    StoreOp::AgentId(AgentId::new("A-S1")),
                    StoreOp::PutFramework(framework("f1")),
                    StoreOp::PutFramework(framework("f10")),
                    StoreOp::PutExecutor(f1.clone(), executor("e")),
                    StoreOp::PutExecutor(f10.clone(), executor("e")),
                    StoreOp::PutUpdate {
                        framework_id: f1.clone(),
                        seq: 10,
                        status: status("t", 2),
                    },
                    StoreOp::PutUpdate {
                        framework_id: f1.clone(),
                        seq: 9,
                        status: status("t", 1),
                    },
                    StoreOp::PutUpdate {
                        framework_id: f10.clone(),
                        seq: 0,
                        status: status("t", 3),
                    },
                    StoreOp::DeleteUpdate {
                        framework_id: f10.clone(),
                        task_id: TaskId::new("t"),
                        seq: 0,
                    },
                ])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let r = store.load().unwrap();
        assert_eq!(r.agent_id, Some(AgentId::new("A-S1")));
        assert_eq!(r.frameworks.len(), 2);
        assert_eq!(
            r.executors,
            vec![(f1.clone(), executor("e")), (f10.clone(), executor("e"))]
        );
        let seqs: Vec<u64> = r.updates.iter().map(|u| u.1).collect();
        assert_eq!(seqs, vec![9, 10], "sequence order, not insertion order");
        store
            .apply(&[StoreOp::DeleteFramework(f1.clone())])
            .unwrap();
        let r = store.load().unwrap();
        assert_eq!(r.frameworks, vec![framework("f10")]);
        assert_eq!(
            r.executors,
            vec![(f10, executor("e"))],
            "f10 is not under f1's prefix"
        );
        assert!(r.updates.is_empty());
        store.apply(&[StoreOp::ForgetAll]).unwrap();
        assert_eq!(store.load().unwrap(), Recovered::default());
    }

    #[test]
    fn checkpointed_resources_are_replaced_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta/agent.redb");
        let reserved: Vec<Resource> = serde_json::from_value(serde_json::json!([
            {"name":"cpus","type":"SCALAR","scalar":{"value":1.0},
             "reservations":[{"type":"DYNAMIC","role":"r","principal":"p"}]}
        ]))
        .unwrap();
        {
            let store = Store::open(&path).unwrap();
            store
                .apply(&[
                    StoreOp::CheckpointedResources(vec![Resource::scalar("mem", 1.0)]),
                    StoreOp::CheckpointedResources(reserved.clone()),
                ])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.load().unwrap().checkpointed_resources, reserved);
        store.apply(&[StoreOp::ForgetAll]).unwrap();
        assert!(store.load().unwrap().checkpointed_resources.is_empty());
    }
}
