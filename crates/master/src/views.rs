//! Read-only JSON views of the master's state: the operator API's messages (`Framework`,
//! `Agent`, GET_TASKS, …) and the v0 `/state` model that the Mesos UI and tools read.

use crate::core::{Agent, AgentLink, Core, ExecutorEntry, Framework};
use meseta_api::resources::ResourceFormat;
use meseta_api::{AgentId, FrameworkId, Resources, Task, TaskState};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// `TimeInfo`.
pub fn time_info(seconds: f64) -> Value {
    json!({"nanoseconds": (seconds * 1e9) as i64})
}

fn resources_json(resources: &Resources) -> Value {
    serde_json::to_value(resources.in_format(ResourceFormat::Endpoint))
        .expect("resources serialize")
}

fn framework_allocated(core: &Core, framework: &Framework) -> Resources {
    let mut all = Resources::new();
    for agent in core.agents.values() {
        if let Some(used) = agent.used.get(framework.id()) {
            all.add_all(used);
        }
    }
    all
}

fn framework_offered(core: &Core, framework: &Framework) -> Resources {
    let mut all = Resources::new();
    for id in &framework.offers {
        if let Some(o) = core.offers.get(id) {
            all.add_all(&o.resources);
        }
    }
    all
}

/// The operator API's `Framework` message.
pub fn framework_message(core: &Core, f: &Framework) -> Value {
    let mut out = json!({
        "framework_info": f.info,
        "active": f.active,
        "connected": f.connected(),
        "recovered": f.recovered,
        "offers": f.offers.iter().filter_map(|id| core.offers.get(id)).map(|o| &o.offer).collect::<Vec<_>>(),
        "inverse_offers": [],
        "allocated_resources": resources_json(&framework_allocated(core, f)),
        "offered_resources": resources_json(&framework_offered(core, f)),
    });
    let object = out.as_object_mut().expect("object");
    for (key, time) in [
        ("registered_time", f.registered_time),
        ("reregistered_time", f.reregistered_time),
        ("unregistered_time", f.unregistered_time),
    ] {
        if let Some(t) = time {
            object.insert(key.into(), time_info(t));
        }
    }
    out
}

/// The operator API's `Agent` message.
pub fn agent_message(core: &Core, agent_id: &AgentId) -> Value {
    let Some(a) = core.agents.get(agent_id) else {
        return Value::Null;
    };
    let mut out = json!({
        "agent_info": a.info,
        "active": a.link == AgentLink::Connected && !a.deactivated,
        "deactivated": a.deactivated,
        "version": meseta_api::MESOS_VERSION,
        "pid": a.pid(),
        "registered_time": time_info(a.registered_time),
        "total_resources": resources_json(&a.total),
        "allocated_resources": resources_json(&a.used_total()),
        "offered_resources": resources_json(&a.offered),
        "capabilities": a.capabilities.iter().map(|c| json!({"type": c})).collect::<Vec<_>>(),
    });
    if let Some(t) = a.reregistered_time {
        out["reregistered_time"] = time_info(t);
    }
    if let Some(drain) = a.drain {
        out["drain_info"] = json!(drain);
    }
    out
}

/// GET_AGENTS.
pub fn get_agents(core: &Core) -> Value {
    let (recovering, live): (Vec<&Agent>, Vec<&Agent>) = core
        .agents
        .values()
        .partition(|a| matches!(a.link, AgentLink::Recovering(_)));
    let agents = live
        .iter()
        .filter(|a| !matches!(a.link, AgentLink::Unreachable(_)))
        .map(|a| agent_message(core, a.id()))
        .collect();
    object([
        ("agents", Value::Array(agents)),
        (
            "recovered_agents",
            json!(recovering.iter().map(|a| &a.info).collect::<Vec<_>>()),
        ),
    ])
}

/// An object of already built values, moved in (`json!` would copy each).
fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// GET_FRAMEWORKS.
pub fn get_frameworks(core: &Core) -> Value {
    let message = |f| framework_message(core, f);
    object([
        (
            "frameworks",
            core.frameworks.values().map(message).collect(),
        ),
        (
            "completed_frameworks",
            core.completed_frameworks.iter().map(message).collect(),
        ),
    ])
}

/// GET_TASKS.
pub fn get_tasks(core: &Core) -> Value {
    let mut tasks: Vec<&Task> = Vec::new();
    let mut unreachable: Vec<&Task> = Vec::new();
    for agent in core.agents.values() {
        for task in agent.tasks.values() {
            if matches!(agent.link, AgentLink::Unreachable(_)) {
                unreachable.push(task);
            } else {
                tasks.push(task);
            }
        }
    }
    let completed: Vec<&Task> = core
        .frameworks
        .values()
        .chain(core.completed_frameworks.iter())
        .flat_map(|f| f.completed_tasks.iter())
        .collect();
    json!({
        "pending_tasks": [],
        "tasks": tasks,
        "unreachable_tasks": unreachable,
        "completed_tasks": completed,
        "orphan_tasks": [],
    })
}

/// GET_EXECUTORS.
pub fn get_executors(core: &Core) -> Value {
    let executors: Vec<Value> = core
        .agents
        .values()
        .flat_map(|a| {
            a.executors
                .values()
                .map(move |e| json!({"executor_info": e.info, "agent_id": a.id()}))
        })
        .collect();
    object([
        ("executors", Value::Array(executors)),
        ("orphan_executors", json!([])),
    ])
}

mod roles;
pub use roles::{get_roles, v0_roles};

/// GET_MASTER.
pub fn get_master(core: &Core) -> Value {
    json!({
        "master_info": core.master_info,
        "start_time": core.start_time,
        "elected_time": core.start_time,
    })
}

/// GET_STATE.
pub fn get_state(core: &Core) -> Value {
    object([
        ("get_tasks", get_tasks(core)),
        ("get_executors", get_executors(core)),
        ("get_frameworks", get_frameworks(core)),
        ("get_agents", get_agents(core)),
    ])
}

/// Each framework's executors with their agents, gathered in one sweep.
type ExecutorsByFramework<'a> = BTreeMap<&'a FrameworkId, Vec<(&'a Agent, &'a ExecutorEntry)>>;

fn executors_by_framework(core: &Core) -> ExecutorsByFramework<'_> {
    let mut out: ExecutorsByFramework<'_> = BTreeMap::new();
    for agent in core.agents.values() {
        for executor in agent.executors.values() {
            out.entry(&executor.framework_id)
                .or_default()
                .push((agent, executor));
        }
    }
    out
}

fn v0_framework(core: &Core, f: &Framework, all_executors: &ExecutorsByFramework<'_>) -> Value {
    let used = framework_allocated(core, f);
    let offered = framework_offered(core, f);
    let tasks: Vec<Value> = f
        .tasks
        .iter()
        .filter_map(|(task_id, agent_id)| {
            core.agents
                .get(agent_id)?
                .tasks
                .get(&(f.id().clone(), task_id.clone()))
        })
        .map(meseta_api::v0::task)
        .collect();
    let executors: Vec<Value> = all_executors
        .get(f.id())
        .into_iter()
        .flatten()
        .map(|&(a, e)| {
            json!({
                "executor_id": e.info.executor_id.value,
                "name": e.info.name.clone().unwrap_or_default(),
                "framework_id": f.id().value,
                "command": e.info.command,
                "resources": Resources::from_list(e.info.resources.clone()).unwrap_or_default().to_v0_map(),
                "slave_id": a.id().value,
            })
        })
        .collect();
    let mut held = used.clone();
    held.add_all(&offered);
    let capabilities: Vec<Value> = f
        .info
        .capabilities
        .iter()
        .filter_map(|c| c.kind)
        .map(|k| json!(k))
        .collect();
    let completed: Value = f.completed_tasks.iter().map(meseta_api::v0::task).collect();
    let mut out = json!({
        "id": f.id().value,
        "name": f.info.name,
        "user": f.info.user,
        "hostname": f.info.hostname.clone().unwrap_or_default(),
        "webui_url": f.info.webui_url.clone().unwrap_or_default(),
        "principal": f.info.principal,
        "role": f.info.role.clone().unwrap_or_else(|| "*".into()),
        "roles": f.roles(),
        "capabilities": capabilities,
        "failover_timeout": f.info.failover_timeout,
        "checkpoint": f.info.checkpoint,
        "active": f.active,
        "connected": f.connected(),
        "recovered": f.recovered,
        "registered_time": f.registered_time.unwrap_or(0.0),
        "reregistered_time": f.reregistered_time.unwrap_or(0.0),
        "unregistered_time": f.unregistered_time.unwrap_or(0.0),
        "resources": held.to_v0_map(),
        "used_resources": used.to_v0_map(),
        "offered_resources": offered.to_v0_map(),
        "unreachable_tasks": [],
        "offers": f.offers.iter().filter_map(|id| core.offers.get(id)).map(|o| json!({
            "id": o.offer.id.value,
            "framework_id": o.offer.framework_id.value,
            "slave_id": o.offer.agent_id.value,
            "resources": o.resources.to_v0_map(),
        })).collect::<Vec<_>>(),
    });
    // The big lists are moved in, not copied by `json!`.
    out["tasks"] = Value::Array(tasks);
    out["completed_tasks"] = completed;
    out["executors"] = Value::Array(executors);
    out
}

fn v0_agent(a: &Agent) -> Value {
    let used = a.used_total();
    let unreserved = a.total.unreserved();
    let reserved = a.total.reserved_by_role();
    let reserved_map: Map<String, Value> = reserved
        .iter()
        .map(|(role, r)| (role.clone(), Value::Object(r.to_v0_map())))
        .collect();
    let reserved_full: Map<String, Value> = reserved
        .iter()
        .map(|(role, r)| (role.clone(), resources_json(r)))
        .collect();

    json!({
        "id": a.id().value,
        "pid": a.pid(),
        "hostname": a.info.hostname,
        "port": a.info.port,
        "registered_time": a.registered_time,
        "reregistered_time": a.reregistered_time,
        "resources": a.total.to_v0_map(),
        "used_resources": used.to_v0_map(),
        "offered_resources": a.offered.to_v0_map(),
        "reserved_resources": reserved_map,
        "unreserved_resources": unreserved.to_v0_map(),
        "reserved_resources_full": reserved_full,
        "unreserved_resources_full": resources_json(&unreserved),
        "used_resources_full": resources_json(&used),
        "offered_resources_full": resources_json(&a.offered),
        "attributes": meseta_api::v0::attributes(&a.info.attributes),
        "active": a.link == AgentLink::Connected && !a.deactivated,
        "deactivated": a.deactivated,
        "version": meseta_api::MESOS_VERSION,
        "capabilities": a.capabilities,
    })
}

/// The v0 `/master/state` model.
pub fn v0_state(core: &Core, flags: &Value, leader: &str) -> Value {
    let active = core
        .agents
        .values()
        .filter(|a| a.link == AgentLink::Connected && !a.deactivated)
        .count();
    // Like Mesos: registered agents that are not active (disconnected or deactivated).
    let inactive = core
        .agents
        .values()
        .filter(|a| !matches!(a.link, AgentLink::Recovering(_) | AgentLink::Unreachable(_)))
        .count()
        - active;
    let unreachable = core
        .agents
        .values()
        .filter(|a| matches!(a.link, AgentLink::Unreachable(_)))
        .count();
    let executors = executors_by_framework(core);
    let framework = |f| v0_framework(core, f, &executors);
    let slaves: Value = core
        .agents
        .values()
        .filter(|a| !matches!(a.link, AgentLink::Recovering(_) | AgentLink::Unreachable(_)))
        .map(v0_agent)
        .collect();
    let mut out = json!({
        "version": meseta_api::MESOS_VERSION,
        "meseta_version": meseta_api::MESETA_VERSION,
        "start_time": core.start_time,
        "elected_time": core.start_time,
        "id": core.master_info.id,
        "pid": core.master_info.pid,
        "hostname": core.master_info.hostname,
        "leader": leader,
        "leader_info": core.master_info,
        "activated_slaves": active,
        "deactivated_slaves": inactive,
        "unreachable_slaves": unreachable,
        "flags": flags,
        "recovered_slaves": core.agents.values().filter(|a| matches!(a.link, AgentLink::Recovering(_))).map(|a| &a.info).collect::<Vec<_>>(),
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    });
    for (name, value) in meseta_api::version::build_fields() {
        out[name] = value;
    }
    out["slaves"] = slaves;
    out["frameworks"] = core.frameworks.values().map(framework).collect();
    out["completed_frameworks"] = core.completed_frameworks.iter().map(framework).collect();
    out
}

/// The task states `/master/state-summary` counts per agent and per framework.
const SUMMARY_STATES: [TaskState; 10] = [
    TaskState::TaskStaging,
    TaskState::TaskStarting,
    TaskState::TaskRunning,
    TaskState::TaskKilling,
    TaskState::TaskFinished,
    TaskState::TaskKilled,
    TaskState::TaskFailed,
    TaskState::TaskLost,
    TaskState::TaskError,
    TaskState::TaskUnreachable,
];

fn state_counts<'a>(tasks: impl Iterator<Item = &'a Task>) -> Map<String, Value> {
    let mut counts: std::collections::HashMap<TaskState, u64> = Default::default();
    for task in tasks {
        *counts.entry(task.state).or_default() += 1;
    }
    SUMMARY_STATES
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                json!(counts.get(s).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// Completed tasks that ran on `agent_id`.
fn completed_on<'a>(core: &'a Core, agent_id: &'a AgentId) -> impl Iterator<Item = &'a Task> {
    core.frameworks
        .values()
        .flat_map(|f| f.completed_tasks.iter())
        .filter(move |t| &t.agent_id == agent_id)
}

/// `/master/state-summary`: agents and frameworks with task counts per state.
pub fn v0_state_summary(core: &Core) -> Value {
    let slaves: Vec<Value> = core
        .agents
        .values()
        .filter(|a| !matches!(a.link, AgentLink::Recovering(_) | AgentLink::Unreachable(_)))
        .map(|a| {
            let mut v = v0_agent(a);
            let counts = state_counts(a.tasks.values().chain(completed_on(core, a.id())));
            let object = v.as_object_mut().expect("object");
            object.extend(counts);
            let framework_ids: std::collections::BTreeSet<&str> =
                a.tasks.keys().map(|(f, _)| f.as_str()).collect();
            object.insert("framework_ids".into(), json!(framework_ids));
            v
        })
        .collect();
    let frameworks: Vec<Value> = core
        .frameworks
        .values()
        .map(|f| {
            let active: Vec<&Task> = f
                .tasks
                .iter()
                .filter_map(|(task_id, agent_id)| core.agents.get(agent_id)?.tasks.get(&(f.id().clone(), task_id.clone())))
                .collect();
            let slave_ids: std::collections::BTreeSet<&str> = active.iter().map(|t| t.agent_id.as_str()).collect();
            let mut v = json!({
                "id": f.id().value,
                "name": f.info.name,
                "pid": Value::Null,
                "used_resources": framework_allocated(core, f).to_v0_map(),
                "offered_resources": framework_offered(core, f).to_v0_map(),
                "capabilities": f.info.capabilities.iter().filter_map(|c| c.kind).collect::<Vec<_>>(),
                "hostname": f.info.hostname.clone().unwrap_or_default(),
                "webui_url": f.info.webui_url.clone().unwrap_or_default(),
                "active": f.active,
                "connected": f.connected(),
                "recovered": f.recovered,
                "slave_ids": slave_ids,
            });
            v.as_object_mut()
                .expect("object")
                .extend(state_counts(active.into_iter().chain(f.completed_tasks.iter())));
            v
        })
        .collect();
    json!({
        "hostname": core.master_info.hostname,
        "cluster": Value::Null,
        "slaves": slaves,
        "frameworks": frameworks,
    })
}

/// `/metrics/snapshot`: a flat map of numbers.
pub fn metrics(core: &Core) -> Value {
    let mut m = Map::new();
    let count = |pred: &dyn Fn(&Agent) -> bool| core.agents.values().filter(|a| pred(a)).count();
    m.insert("master/elected".into(), json!(1.0));
    m.insert("master/uptime_secs".into(), json!(0.0));
    m.insert(
        "master/slaves_active".into(),
        json!(count(&|a| a.link == AgentLink::Connected && !a.deactivated)),
    );
    m.insert(
        "master/slaves_connected".into(),
        json!(count(&|a| a.link == AgentLink::Connected)),
    );
    m.insert(
        "master/slaves_inactive".into(),
        json!(count(&|a| a.link == AgentLink::Connected && a.deactivated)),
    );
    m.insert(
        "master/slaves_disconnected".into(),
        json!(count(&|a| matches!(a.link, AgentLink::Disconnected(_)))),
    );
    m.insert(
        "master/slaves_unreachable".into(),
        json!(count(&|a| matches!(a.link, AgentLink::Unreachable(_)))),
    );
    m.insert(
        "master/frameworks_active".into(),
        json!(core.frameworks.values().filter(|f| f.active).count()),
    );
    m.insert(
        "master/frameworks_connected".into(),
        json!(core.frameworks.values().filter(|f| f.connected()).count()),
    );
    m.insert(
        "master/frameworks_disconnected".into(),
        json!(core.frameworks.values().filter(|f| !f.connected()).count()),
    );
    m.insert("master/outstanding_offers".into(), json!(core.offers.len()));
    let mut by_state: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for agent in core.agents.values() {
        for task in agent.tasks.values() {
            *by_state.entry(task.state.name()).or_default() += 1;
        }
    }
    for state in [
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_RUNNING",
        "TASK_KILLING",
        "TASK_UNREACHABLE",
    ] {
        let key = format!(
            "master/tasks_{}",
            state.trim_start_matches("TASK_").to_ascii_lowercase()
        );
        m.insert(key, json!(by_state.get(state).copied().unwrap_or(0)));
    }
    for (name, value) in &core.metrics {
        m.insert((*name).to_string(), json!(value));
    }
    let mut total = Resources::new();
    let mut used = Resources::new();
    for agent in core
        .agents
        .values()
        .filter(|a| a.link == AgentLink::Connected)
    {
        total.add_all(&agent.total);
        used.add_all(&agent.used_total());
    }
    for name in ["cpus", "mem", "disk", "gpus"] {
        m.insert(format!("master/{name}_total"), json!(total.scalar(name)));
        m.insert(format!("master/{name}_used"), json!(used.scalar(name)));
    }
    Value::Object(m)
}
