//! Read-only JSON views of the master's state: the operator API's messages (`Framework`,
//! `Agent`, GET_TASKS, …) and the v0 `/state` model that the Mesos UI and tools read.
//!
//! The views of the whole state (`operator`, `v0`) read a [`crate::core::Snapshot`] and are
//! typed `Serialize` structs written straight to bytes, so that they are built off the
//! service thread; the small ones (roles, metrics, GET_MASTER) read the core.

mod operator;
mod roles;
#[cfg(test)]
mod tests;
mod v0;

pub use operator::{
    agent_message, framework_allocated, framework_message, get_agents, get_executors,
    get_frameworks, get_state, get_tasks, GetState,
};
pub use roles::{get_roles, v0_roles};
pub use v0::{v0_frameworks, v0_slaves, v0_state, v0_state_summary, v0_tasks};

use crate::core::{Agent, AgentLink, Core, OfferEntry, Shared};
use meseta_api::resources::ResourceFormat;
use meseta_api::{OfferId, Resource, Resources};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// `TimeInfo`.
#[derive(Serialize)]
pub struct TimeInfo {
    nanoseconds: i64,
}

pub fn time_info(seconds: f64) -> TimeInfo {
    TimeInfo {
        nanoseconds: (seconds * 1e9) as i64,
    }
}

/// Resources as the operator API writes them (Mesos's endpoint format).
fn resources_json(resources: &Resources) -> Vec<Resource> {
    resources.in_format(ResourceFormat::Endpoint)
}

/// An empty JSON array.
type Empty = [(); 0];

/// The outstanding offers of a framework, and what they hold.
fn framework_offers<'a>(
    offers: &'a BTreeMap<OfferId, Shared<OfferEntry>>,
    ids: &'a std::collections::BTreeSet<OfferId>,
) -> (Vec<&'a OfferEntry>, Resources) {
    let entries: Vec<&OfferEntry> = ids
        .iter()
        .filter_map(|id| offers.get(id))
        .map(|o| &**o)
        .collect();
    let mut all = Resources::new();
    for o in &entries {
        all.add_all(&o.resources);
    }
    (entries, all)
}

/// Whether an agent counts as active (linked and not deactivated).
fn active(a: &Agent) -> bool {
    a.link == AgentLink::Connected && !a.deactivated
}

/// Registered agents: neither recovering from the registry nor unreachable.
fn registered(a: &Agent) -> bool {
    !matches!(a.link, AgentLink::Recovering(_) | AgentLink::Unreachable(_))
}

/// GET_MASTER.
pub fn get_master(core: &Core) -> Value {
    json!({
        "master_info": core.master_info,
        "start_time": core.start_time,
        "elected_time": core.start_time,
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
        total.add_all(agent.total());
        used.add_all(&agent.used_total());
    }
    for name in ["cpus", "mem", "disk", "gpus"] {
        m.insert(format!("master/{name}_total"), json!(total.scalar(name)));
        m.insert(format!("master/{name}_used"), json!(used.scalar(name)));
    }
    Value::Object(m)
}
