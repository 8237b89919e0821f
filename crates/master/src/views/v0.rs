//! The v0 views of the whole state that the Mesos UI and tools read: `/master/state`, and
//! its parts `/master/frameworks`, `/master/slaves` and `/master/tasks`, and
//! `/master/state-summary` (task counts per state).

use super::{active, framework_offers, registered, resources_json, Empty};
use crate::core::{
    Agent, AgentLink, ExecutorEntry, Framework, Shared, Snapshot, TaskRecord, V0Task,
};
use meseta_api::v0::V0Resources;
use meseta_api::{
    AgentId, AgentInfo, CapabilityType, CommandInfo, FrameworkId, MasterInfo, Resource, Resources,
    TaskState,
};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Serialize)]
struct V0Offer<'a> {
    id: &'a str,
    framework_id: &'a str,
    slave_id: &'a str,
    resources: V0Resources,
}

#[derive(Serialize)]
struct V0Executor<'a> {
    executor_id: &'a str,
    name: &'a str,
    framework_id: &'a str,
    command: &'a Option<CommandInfo>,
    resources: V0Resources,
    slave_id: &'a str,
}

/// A framework in the v0 model.
#[derive(Serialize)]
pub struct V0Framework<'a> {
    id: &'a str,
    name: &'a str,
    user: &'a str,
    hostname: &'a str,
    webui_url: &'a str,
    principal: &'a Option<String>,
    role: &'a str,
    roles: Vec<String>,
    capabilities: Vec<CapabilityType>,
    failover_timeout: f64,
    checkpoint: bool,
    active: bool,
    connected: bool,
    recovered: bool,
    registered_time: f64,
    reregistered_time: f64,
    unregistered_time: f64,
    resources: V0Resources,
    used_resources: V0Resources,
    offered_resources: V0Resources,
    unreachable_tasks: Empty,
    offers: Vec<V0Offer<'a>>,
    tasks: Vec<V0Task<'a>>,
    completed_tasks: Vec<V0Task<'a>>,
    executors: Vec<V0Executor<'a>>,
}

/// What the v0 frameworks are built from, gathered in one sweep over the agents: each
/// framework's executors (with their agents) and what its tasks and executors hold.
#[derive(Default)]
struct PerFramework<'a> {
    executors: Vec<(&'a Agent, &'a ExecutorEntry)>,
    used: Resources,
}

fn per_framework(snapshot: &Snapshot) -> HashMap<&FrameworkId, PerFramework<'_>> {
    let mut out: HashMap<&FrameworkId, PerFramework<'_>> = HashMap::new();
    for agent in snapshot.agents.values() {
        for executor in agent.executors.values() {
            out.entry(&executor.framework_id)
                .or_default()
                .executors
                .push((agent, executor));
        }
        for (framework_id, used) in agent.holdings.used() {
            out.entry(framework_id).or_default().used.add_all(used);
        }
    }
    out
}

/// The framework's tasks that agents hold, in task id order.
fn framework_tasks<'a>(snapshot: &'a Snapshot, f: &'a Framework) -> Vec<&'a TaskRecord> {
    f.tasks
        .iter()
        .filter_map(|(task_id, agent_id)| {
            snapshot
                .agents
                .get(agent_id)?
                .tasks
                .get(&(f.id().clone(), task_id.clone()))
        })
        .map(|t| &**t)
        .collect()
}

fn v0_framework<'a>(
    snapshot: &'a Snapshot,
    f: &'a Framework,
    gathered: Option<&PerFramework<'a>>,
) -> V0Framework<'a> {
    let nothing = Resources::new();
    let used = gathered.map_or(&nothing, |g| &g.used);
    let (offers, offered) = framework_offers(&snapshot.offers, &f.offers);
    let executors = gathered
        .into_iter()
        .flat_map(|g| g.executors.iter())
        .map(|&(a, e)| V0Executor {
            executor_id: e.info.executor_id.as_str(),
            name: e.info.name.as_deref().unwrap_or_default(),
            framework_id: f.id().as_str(),
            command: &e.info.command,
            resources: V0Resources::of(&e.info.resources),
            slave_id: a.id().as_str(),
        })
        .collect();
    V0Framework {
        id: f.id().as_str(),
        name: &f.info.name,
        user: &f.info.user,
        hostname: f.info.hostname.as_deref().unwrap_or_default(),
        webui_url: f.info.webui_url.as_deref().unwrap_or_default(),
        principal: &f.info.principal,
        role: f.info.role.as_deref().unwrap_or("*"),
        roles: f.roles(),
        capabilities: f.info.capabilities.iter().filter_map(|c| c.kind).collect(),
        failover_timeout: f.info.failover_timeout,
        checkpoint: f.info.checkpoint,
        active: f.active,
        connected: f.connected(),
        recovered: f.recovered,
        registered_time: f.registered_time.unwrap_or(0.0),
        reregistered_time: f.reregistered_time.unwrap_or(0.0),
        unregistered_time: f.unregistered_time.unwrap_or(0.0),
        resources: V0Resources::of(used.iter().chain(offered.iter())),
        used_resources: used.v0_map(),
        offered_resources: offered.v0_map(),
        unreachable_tasks: [],
        offers: offers
            .into_iter()
            .map(|o| V0Offer {
                id: o.offer.id.as_str(),
                framework_id: o.offer.framework_id.as_str(),
                slave_id: o.offer.agent_id.as_str(),
                resources: o.resources.v0_map(),
            })
            .collect(),
        tasks: framework_tasks(snapshot, f)
            .into_iter()
            .map(TaskRecord::v0)
            .collect(),
        completed_tasks: f.completed_tasks.iter().map(|t| t.v0()).collect(),
        executors,
    }
}

/// The frameworks and the completed frameworks in the v0 model.
fn v0_framework_lists<'a>(snapshot: &'a Snapshot) -> (Vec<V0Framework<'a>>, Vec<V0Framework<'a>>) {
    let gathered = per_framework(snapshot);
    let framework = |f: &'a Shared<Framework>| v0_framework(snapshot, f, gathered.get(f.id()));
    (
        snapshot.frameworks.values().map(framework).collect(),
        snapshot
            .completed_frameworks
            .iter()
            .map(framework)
            .collect(),
    )
}

/// An agent in the v0 model.
#[derive(Serialize)]
pub struct V0Agent<'a> {
    id: &'a str,
    pid: String,
    hostname: &'a str,
    port: u16,
    registered_time: f64,
    reregistered_time: Option<f64>,
    resources: V0Resources,
    used_resources: V0Resources,
    offered_resources: V0Resources,
    reserved_resources: BTreeMap<String, V0Resources>,
    unreserved_resources: V0Resources,
    reserved_resources_full: BTreeMap<String, Vec<Resource>>,
    unreserved_resources_full: Vec<Resource>,
    used_resources_full: Vec<Resource>,
    offered_resources_full: Vec<Resource>,
    attributes: Value,
    active: bool,
    deactivated: bool,
    version: &'static str,
    capabilities: &'a [String],
}

fn v0_agent(a: &Agent) -> V0Agent<'_> {
    let used = a.used_total();
    let unreserved = a.total().unreserved();
    let reserved = a.total().reserved_by_role();
    V0Agent {
        id: a.id().as_str(),
        pid: a.pid(),
        hostname: &a.info.hostname,
        port: a.info.port,
        registered_time: a.registered_time,
        reregistered_time: a.reregistered_time,
        resources: a.total().v0_map(),
        used_resources: used.v0_map(),
        offered_resources: a.holdings.offered().v0_map(),
        reserved_resources: reserved
            .iter()
            .map(|(role, r)| (role.clone(), r.v0_map()))
            .collect(),
        unreserved_resources: unreserved.v0_map(),
        reserved_resources_full: reserved
            .iter()
            .map(|(role, r)| (role.clone(), resources_json(r)))
            .collect(),
        unreserved_resources_full: resources_json(&unreserved),
        used_resources_full: resources_json(&used),
        offered_resources_full: resources_json(a.holdings.offered()),
        attributes: meseta_api::v0::attributes(&a.info.attributes),
        active: active(a),
        deactivated: a.deactivated,
        version: meseta_api::MESOS_VERSION,
        capabilities: &a.capabilities,
    }
}

fn v0_agents(snapshot: &Snapshot) -> Vec<V0Agent<'_>> {
    snapshot
        .agents
        .values()
        .filter(|a| registered(a))
        .map(|a| v0_agent(a))
        .collect()
}

fn recovered_agents(snapshot: &Snapshot) -> Vec<&AgentInfo> {
    snapshot
        .agents
        .values()
        .filter(|a| matches!(a.link, AgentLink::Recovering(_)))
        .map(|a| &a.info)
        .collect()
}

/// The v0 `/master/state` model.
#[derive(Serialize)]
pub struct V0State<'a> {
    version: &'static str,
    meseta_version: &'static str,
    start_time: f64,
    elected_time: f64,
    id: &'a str,
    pid: &'a Option<String>,
    hostname: &'a Option<String>,
    leader: &'a str,
    leader_info: &'a MasterInfo,
    activated_slaves: usize,
    deactivated_slaves: usize,
    unreachable_slaves: usize,
    flags: &'a Value,
    recovered_slaves: Vec<&'a AgentInfo>,
    orphan_tasks: Empty,
    unregistered_frameworks: Empty,
    #[serde(flatten)]
    build: Map<String, Value>,
    slaves: Vec<V0Agent<'a>>,
    frameworks: Vec<V0Framework<'a>>,
    completed_frameworks: Vec<V0Framework<'a>>,
}

pub fn v0_state<'a>(snapshot: &'a Snapshot, flags: &'a Value, leader: &'a str) -> V0State<'a> {
    let agents = || snapshot.agents.values();
    let activated = agents().filter(|a| active(a)).count();
    // Like Mesos: registered agents that are not active (disconnected or deactivated).
    let deactivated = agents().filter(|a| registered(a)).count() - activated;
    let unreachable = agents()
        .filter(|a| matches!(a.link, AgentLink::Unreachable(_)))
        .count();
    let (frameworks, completed_frameworks) = v0_framework_lists(snapshot);
    let master = &snapshot.master_info;
    V0State {
        version: meseta_api::MESOS_VERSION,
        meseta_version: meseta_api::MESETA_VERSION,
        start_time: snapshot.start_time,
        elected_time: snapshot.start_time,
        id: &master.id,
        pid: &master.pid,
        hostname: &master.hostname,
        leader,
        leader_info: master,
        activated_slaves: activated,
        deactivated_slaves: deactivated,
        unreachable_slaves: unreachable,
        flags,
        recovered_slaves: recovered_agents(snapshot),
        orphan_tasks: [],
        unregistered_frameworks: [],
        build: meseta_api::version::build_fields(),
        slaves: v0_agents(snapshot),
        frameworks,
        completed_frameworks,
    }
}

/// `/master/frameworks`.
#[derive(Serialize)]
pub struct V0Frameworks<'a> {
    frameworks: Vec<V0Framework<'a>>,
    completed_frameworks: Vec<V0Framework<'a>>,
    unregistered_frameworks: Empty,
}

pub fn v0_frameworks(snapshot: &Snapshot) -> V0Frameworks<'_> {
    let (frameworks, completed_frameworks) = v0_framework_lists(snapshot);
    V0Frameworks {
        frameworks,
        completed_frameworks,
        unregistered_frameworks: [],
    }
}

/// `/master/slaves`.
#[derive(Serialize)]
pub struct V0Slaves<'a> {
    slaves: Vec<V0Agent<'a>>,
    recovered_slaves: Vec<&'a AgentInfo>,
}

pub fn v0_slaves(snapshot: &Snapshot) -> V0Slaves<'_> {
    V0Slaves {
        slaves: v0_agents(snapshot),
        recovered_slaves: recovered_agents(snapshot),
    }
}

/// `/master/tasks`: the tasks of the (not completed) frameworks, each framework's running
/// ones then its completed ones.
#[derive(Serialize)]
pub struct V0Tasks<'a> {
    tasks: Vec<V0Task<'a>>,
}

pub fn v0_tasks(snapshot: &Snapshot) -> V0Tasks<'_> {
    let tasks = snapshot
        .frameworks
        .values()
        .flat_map(|f| {
            framework_tasks(snapshot, f)
                .into_iter()
                .chain(f.completed_tasks.iter().map(|t| &**t))
        })
        .map(TaskRecord::v0)
        .collect();
    V0Tasks { tasks }
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

/// Task counts by state.
#[derive(Default)]
struct StateCounts(HashMap<TaskState, u64>);

impl StateCounts {
    fn add<'a>(&mut self, tasks: impl Iterator<Item = &'a TaskRecord>) {
        for task in tasks {
            *self.0.entry(task.state).or_default() += 1;
        }
    }
}

impl Serialize for StateCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            SUMMARY_STATES
                .iter()
                .map(|s| (s.name(), self.0.get(s).copied().unwrap_or(0))),
        )
    }
}

#[derive(Serialize)]
struct SummaryAgent<'a> {
    #[serde(flatten)]
    agent: V0Agent<'a>,
    #[serde(flatten)]
    counts: StateCounts,
    framework_ids: BTreeSet<&'a str>,
}

#[derive(Serialize)]
struct SummaryFramework<'a> {
    id: &'a str,
    name: &'a str,
    pid: Option<()>,
    used_resources: V0Resources,
    offered_resources: V0Resources,
    capabilities: Vec<CapabilityType>,
    hostname: &'a str,
    webui_url: &'a str,
    active: bool,
    connected: bool,
    recovered: bool,
    slave_ids: BTreeSet<&'a str>,
    #[serde(flatten)]
    counts: StateCounts,
}

/// `/master/state-summary`: agents and frameworks with task counts per state.
#[derive(Serialize)]
pub struct V0StateSummary<'a> {
    hostname: &'a Option<String>,
    cluster: Option<()>,
    slaves: Vec<SummaryAgent<'a>>,
    frameworks: Vec<SummaryFramework<'a>>,
}

pub fn v0_state_summary(snapshot: &Snapshot) -> V0StateSummary<'_> {
    // Completed tasks by the agent they ran on, in one sweep.
    let mut completed_on: HashMap<&AgentId, Vec<&TaskRecord>> = HashMap::new();
    for task in snapshot
        .frameworks
        .values()
        .flat_map(|f| f.completed_tasks.iter())
    {
        completed_on
            .entry(&task.agent_id)
            .or_default()
            .push(&**task);
    }
    let slaves = snapshot
        .agents
        .values()
        .filter(|a| registered(a))
        .map(|a| {
            let mut counts = StateCounts::default();
            counts.add(a.tasks.values().map(|t| &**t));
            counts.add(completed_on.get(a.id()).into_iter().flatten().copied());
            SummaryAgent {
                agent: v0_agent(a),
                counts,
                framework_ids: a.tasks.keys().map(|(f, _)| f.as_str()).collect(),
            }
        })
        .collect();
    let gathered = per_framework(snapshot);
    let frameworks = snapshot
        .frameworks
        .values()
        .map(|f| {
            let active_tasks = framework_tasks(snapshot, f);
            let (_, offered) = framework_offers(&snapshot.offers, &f.offers);
            let mut counts = StateCounts::default();
            counts.add(active_tasks.iter().copied());
            counts.add(f.completed_tasks.iter().map(|t| &**t));
            SummaryFramework {
                id: f.id().as_str(),
                name: &f.info.name,
                pid: None,
                used_resources: gathered
                    .get(f.id())
                    .map(|g| g.used.v0_map())
                    .unwrap_or_else(|| Resources::new().v0_map()),
                offered_resources: offered.v0_map(),
                capabilities: f.info.capabilities.iter().filter_map(|c| c.kind).collect(),
                hostname: f.info.hostname.as_deref().unwrap_or_default(),
                webui_url: f.info.webui_url.as_deref().unwrap_or_default(),
                active: f.active,
                connected: f.connected(),
                recovered: f.recovered,
                slave_ids: active_tasks.iter().map(|t| t.agent_id.as_str()).collect(),
                counts,
            }
        })
        .collect();
    V0StateSummary {
        hostname: &snapshot.master_info.hostname,
        cluster: None,
        slaves,
        frameworks,
    }
}
