//! The operator API's views of the whole state: GET_STATE and its parts (GET_TASKS,
//! GET_EXECUTORS, GET_FRAMEWORKS, GET_AGENTS), with the `Framework` and `Agent` messages
//! that operator events carry too.

use super::{active, framework_offers, resources_json, time_info, Empty, TimeInfo};
use crate::core::{Agent, AgentLink, Framework, OfferEntry, Shared, Snapshot, TaskRecord};
use meseta_api::maintenance::DrainInfo;
use meseta_api::{
    AgentId, AgentInfo, ExecutorInfo, FrameworkId, FrameworkInfo, Offer, OfferId, Resource,
    Resources,
};
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};

/// What a framework's tasks and executors hold on all agents.
pub fn framework_allocated<'a>(
    agents: impl Iterator<Item = &'a Shared<Agent>>,
    framework_id: &FrameworkId,
) -> Resources {
    let mut all = Resources::new();
    for agent in agents {
        if let Some(used) = agent.holdings.used().get(framework_id) {
            all.add_all(used);
        }
    }
    all
}

/// What each framework's tasks and executors hold, in one sweep over the agents.
fn allocated_by_framework(snapshot: &Snapshot) -> HashMap<&FrameworkId, Resources> {
    let mut out: HashMap<&FrameworkId, Resources> = HashMap::new();
    for agent in snapshot.agents.values() {
        for (framework_id, used) in agent.holdings.used() {
            out.entry(framework_id).or_default().add_all(used);
        }
    }
    out
}

/// The operator API's `Framework` message.
#[derive(Serialize)]
pub struct FrameworkMessage<'a> {
    framework_info: &'a FrameworkInfo,
    active: bool,
    connected: bool,
    recovered: bool,
    offers: Vec<&'a Offer>,
    inverse_offers: Empty,
    allocated_resources: Vec<Resource>,
    offered_resources: Vec<Resource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registered_time: Option<TimeInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reregistered_time: Option<TimeInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unregistered_time: Option<TimeInfo>,
}

/// The `Framework` message of `f`, whose tasks and executors hold `allocated`.
pub fn framework_message<'a>(
    offers: &'a BTreeMap<OfferId, Shared<OfferEntry>>,
    allocated: &Resources,
    f: &'a Framework,
) -> FrameworkMessage<'a> {
    let (entries, offered) = framework_offers(offers, &f.offers);
    FrameworkMessage {
        framework_info: &f.info,
        active: f.active,
        connected: f.connected(),
        recovered: f.recovered,
        offers: entries.into_iter().map(|o| &o.offer).collect(),
        inverse_offers: [],
        allocated_resources: resources_json(allocated),
        offered_resources: resources_json(&offered),
        registered_time: f.registered_time.map(time_info),
        reregistered_time: f.reregistered_time.map(time_info),
        unregistered_time: f.unregistered_time.map(time_info),
    }
}

/// `{"type": …}`, as capabilities are listed.
#[derive(Serialize)]
struct Typed<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

/// The operator API's `Agent` message.
#[derive(Serialize)]
pub struct AgentMessage<'a> {
    agent_info: &'a AgentInfo,
    active: bool,
    deactivated: bool,
    version: &'static str,
    pid: String,
    registered_time: TimeInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    reregistered_time: Option<TimeInfo>,
    total_resources: Vec<Resource>,
    allocated_resources: Vec<Resource>,
    offered_resources: Vec<Resource>,
    capabilities: Vec<Typed<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_info: Option<DrainInfo>,
}

pub fn agent_message(a: &Agent) -> AgentMessage<'_> {
    AgentMessage {
        agent_info: &a.info,
        active: active(a),
        deactivated: a.deactivated,
        version: meseta_api::MESOS_VERSION,
        pid: a.pid(),
        registered_time: time_info(a.registered_time),
        reregistered_time: a.reregistered_time.map(time_info),
        total_resources: resources_json(a.total()),
        allocated_resources: resources_json(&a.used_total()),
        offered_resources: resources_json(a.holdings.offered()),
        capabilities: a.capabilities.iter().map(|c| Typed { kind: c }).collect(),
        drain_info: a.drain,
    }
}

/// GET_AGENTS.
#[derive(Serialize)]
pub struct GetAgents<'a> {
    agents: Vec<AgentMessage<'a>>,
    recovered_agents: Vec<&'a AgentInfo>,
}

pub fn get_agents(snapshot: &Snapshot) -> GetAgents<'_> {
    let mut agents = Vec::new();
    let mut recovered_agents = Vec::new();
    for a in snapshot.agents.values() {
        match a.link {
            AgentLink::Recovering(_) => recovered_agents.push(&a.info),
            AgentLink::Unreachable(_) => {}
            _ => agents.push(agent_message(a)),
        }
    }
    GetAgents {
        agents,
        recovered_agents,
    }
}

/// GET_FRAMEWORKS.
#[derive(Serialize)]
pub struct GetFrameworks<'a> {
    frameworks: Vec<FrameworkMessage<'a>>,
    completed_frameworks: Vec<FrameworkMessage<'a>>,
}

pub fn get_frameworks<'a>(snapshot: &'a Snapshot) -> GetFrameworks<'a> {
    let allocated = allocated_by_framework(snapshot);
    let none = Resources::new();
    let message = |f: &'a Shared<Framework>| {
        let held = allocated.get(f.id()).unwrap_or(&none);
        framework_message(&snapshot.offers, held, f)
    };
    GetFrameworks {
        frameworks: snapshot.frameworks.values().map(message).collect(),
        completed_frameworks: snapshot.completed_frameworks.iter().map(message).collect(),
    }
}

/// GET_TASKS.
#[derive(Serialize)]
pub struct GetTasks<'a> {
    pending_tasks: Empty,
    tasks: TaskList<'a>,
    unreachable_tasks: TaskList<'a>,
    completed_tasks: TaskList<'a>,
    orphan_tasks: Empty,
}

/// How many tasks ahead of the one being written a list asks for the memory of their
/// parts, and twice as many for their records.
const PREFETCH_AHEAD: usize = 4;

/// Tasks written as a list, with the memory of those a few places ahead asked for while
/// one is written: each task's record and texts are elsewhere on the heap, and without it
/// writing a long list mostly waits for their first loads.
pub struct TaskList<'a>(Vec<&'a TaskRecord>);

impl Serialize for TaskList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tasks = &self.0;
        let mut list = serializer.serialize_seq(Some(tasks.len()))?;
        for (i, task) in tasks.iter().enumerate() {
            if let Some(far) = tasks.get(i + 2 * PREFETCH_AHEAD) {
                far.prefetch_record();
            }
            if let Some(near) = tasks.get(i + PREFETCH_AHEAD) {
                near.prefetch_parts();
            }
            list.serialize_element(task)?;
        }
        list.end()
    }
}

pub fn get_tasks(snapshot: &Snapshot) -> GetTasks<'_> {
    let mut tasks = Vec::new();
    let mut unreachable_tasks = Vec::new();
    for agent in snapshot.agents.values() {
        let list = match agent.link {
            AgentLink::Unreachable(_) => &mut unreachable_tasks,
            _ => &mut tasks,
        };
        list.extend(agent.tasks.values().map(|t| &**t));
    }
    let completed_tasks = snapshot
        .frameworks
        .values()
        .chain(snapshot.completed_frameworks.iter())
        .flat_map(|f| f.completed_tasks.iter().map(|t| &**t))
        .collect();
    GetTasks {
        pending_tasks: [],
        tasks: TaskList(tasks),
        unreachable_tasks: TaskList(unreachable_tasks),
        completed_tasks: TaskList(completed_tasks),
        orphan_tasks: [],
    }
}

/// One of GET_EXECUTORS's executors.
#[derive(Serialize)]
pub struct ExecutorMessage<'a> {
    executor_info: &'a ExecutorInfo,
    agent_id: &'a AgentId,
}

/// GET_EXECUTORS.
#[derive(Serialize)]
pub struct GetExecutors<'a> {
    executors: Vec<ExecutorMessage<'a>>,
    orphan_executors: Empty,
}

pub fn get_executors(snapshot: &Snapshot) -> GetExecutors<'_> {
    let executors = snapshot
        .agents
        .values()
        .flat_map(|a| {
            a.executors.values().map(move |e| ExecutorMessage {
                executor_info: &e.info,
                agent_id: a.id(),
            })
        })
        .collect();
    GetExecutors {
        executors,
        orphan_executors: [],
    }
}

/// GET_STATE.
#[derive(Serialize)]
pub struct GetState<'a> {
    get_tasks: GetTasks<'a>,
    get_executors: GetExecutors<'a>,
    get_frameworks: GetFrameworks<'a>,
    get_agents: GetAgents<'a>,
}

pub fn get_state(snapshot: &Snapshot) -> GetState<'_> {
    GetState {
        get_tasks: get_tasks(snapshot),
        get_executors: get_executors(snapshot),
        get_frameworks: get_frameworks(snapshot),
        get_agents: get_agents(snapshot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TaskResources;
    use meseta_api::Task;

    #[test]
    fn a_task_list_is_written_as_the_plain_list_of_its_tasks() {
        let records: Vec<TaskRecord> = (0..20)
            .map(|i| {
                let task: Task = serde_json::from_value(serde_json::json!({
                    "name": format!("t{i}"), "task_id": {"value": format!("t{i}")},
                    "framework_id": {"value": "f"}, "agent_id": {"value": format!("a{}", i % 3)},
                    "state": "TASK_RUNNING", "user": "u",
                    "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}}],
                    "statuses": [{"task_id": {"value": format!("t{i}")}, "state": "TASK_RUNNING"}]
                }))
                .unwrap();
                let resources = TaskResources::new(task.resources.clone());
                TaskRecord::from_task(task, resources)
            })
            .collect();
        for n in [0, 1, 5, 20] {
            let tasks: Vec<&TaskRecord> = records[..n].iter().collect();
            assert_eq!(
                meseta_api::json::to_ascii_vec(&TaskList(tasks.clone())),
                meseta_api::json::to_ascii_vec(&tasks),
                "{n} tasks"
            );
        }
    }
}
