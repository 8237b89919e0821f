//! The master's pure state machine: frameworks, agents, offers and tasks.
//!
//! Inputs are method calls carrying the current time (`now`, seconds since the epoch) and
//! any fresh ids; outputs are [`Effect`]s collected in order and drained by the caller, who
//! performs them (registry writes first, durable before anything after them is acted on).
//! The core owns no socket, clock, file or thread.

mod agents;
mod allocation;
mod drain;
mod frameworks;
mod holdings;
mod ledger;
mod maintenance;
mod offers;
mod operations;
mod quota;
mod quota_enforcement;
mod reconcile;
mod refused;
mod reservations;
mod shared;
mod snapshot;
mod task_groups;
mod task_record;
mod tasks;
mod weights;

pub use frameworks::{validate_role, HEARTBEAT_INTERVAL_SECS};
pub use holdings::Holdings;
pub use reservations::ResourceOp;
pub use shared::Shared;
pub use snapshot::Snapshot;
pub use task_record::{StatusRecord, TaskRecord, TaskResources, V0Task};
pub use weights::{format_weights, initial_weights, parse_weights, validate_weight, WeightInfo};

use crate::registry::{RegistryChange, RegistryState};
use meseta_api::internal::ToAgent;
use meseta_api::scheduler::Event;
use meseta_api::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// How many completed tasks and frameworks the master remembers (like Mesos's
/// `--max_completed_tasks_per_framework` and `--max_completed_frameworks`).
pub const MAX_COMPLETED_TASKS: usize = 1000;
pub const MAX_COMPLETED_FRAMEWORKS: usize = 50;

/// Something the I/O layer must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write to the registry; durable before any later effect is performed.
    Persist(RegistryChange),
    /// Send an event on a framework's subscription stream.
    ToStream(String, Event),
    /// Close a framework's subscription stream (after a failover or teardown).
    CloseStream(String),
    /// Send a message on an agent's link.
    ToLink(String, ToAgent),
    /// Close an agent's link.
    CloseLink(String),
    /// Broadcast to operator API subscribers.
    Operator(meseta_api::operator::Event),
}

/// An error answered synchronously to an HTTP caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError {
            status: 403,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: 404,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: 409,
            message: message.into(),
        }
    }
}

/// Tunables of the core (from the master's flags).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub offer_timeout: Option<f64>,
    pub agent_ping_timeout: f64,
    pub agent_reregister_timeout: f64,
    /// `--min_allocatable_resources` alternatives (default `cpus:0.01|mem:32`).
    pub min_allocatable: Vec<crate::allocator::MinQuantities>,
}

/// A framework known to the master.
#[derive(Debug, Clone)]
pub struct Framework {
    pub info: FrameworkInfo,
    /// The current subscription stream, when connected.
    pub stream_id: Option<String>,
    /// Learned from the registry or an agent, not yet resubscribed to this master.
    pub recovered: bool,
    pub active: bool,
    pub suppressed_roles: BTreeSet<String>,
    pub registered_time: Option<f64>,
    pub reregistered_time: Option<f64>,
    pub unregistered_time: Option<f64>,
    /// When the failover timeout started (disconnected after having been connected).
    pub failover_deadline: Option<f64>,
    /// Tasks of this framework: task id → agent id. Shared on its own, so that copying a
    /// framework that a snapshot shares (an offer made) does not copy it.
    pub tasks: Shared<BTreeMap<TaskId, AgentId>>,
    pub offers: BTreeSet<OfferId>,
    pub filters: Vec<RefuseFilter>,
    pub completed_tasks: Shared<VecDeque<Shared<TaskRecord>>>,
}

impl Framework {
    pub fn id(&self) -> &FrameworkId {
        self.info
            .id
            .as_ref()
            .expect("frameworks in the core always have an id")
    }
    pub fn connected(&self) -> bool {
        self.stream_id.is_some()
    }
    pub fn partition_aware(&self) -> bool {
        self.info.has_capability(CapabilityType::PartitionAware)
    }
    pub fn roles(&self) -> Vec<String> {
        self.info.effective_roles()
    }
}

/// A `refuse_seconds` filter: offers from `agent_id` within `resources` are not made
/// to the framework until `expires`. The resources are shared with the allocator's index
/// of filters and with other filters refusing the same (see the `refused` module).
#[derive(Debug, Clone, PartialEq)]
pub struct RefuseFilter {
    pub agent_id: AgentId,
    pub resources: std::sync::Arc<Resources>,
    pub expires: f64,
}

/// What the master knows of an agent's connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AgentLink {
    /// Linked now.
    Connected,
    /// Link dropped at this time; unreachable after the ping timeout.
    Disconnected(f64),
    /// Known from the registry after a master restart; must reregister by the deadline.
    Recovering(f64),
    /// Marked unreachable at this time.
    Unreachable(f64),
}

/// An executor known to run on an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorEntry {
    pub info: ExecutorInfo,
    pub framework_id: FrameworkId,
}

/// An agent admitted to the cluster.
#[derive(Debug, Clone)]
pub struct Agent {
    pub info: AgentInfo,
    pub endpoint: String,
    pub link: AgentLink,
    pub link_id: Option<String>,
    /// Its resources, and what tasks, executors and offers hold of them.
    pub holdings: Holdings,
    /// Shared on its own, so that copying an agent that a snapshot shares (an offer made)
    /// does not copy it.
    pub tasks: Shared<BTreeMap<(FrameworkId, TaskId), Shared<TaskRecord>>>,
    pub executors: BTreeMap<(FrameworkId, ExecutorId), ExecutorEntry>,
    pub registered_time: f64,
    pub reregistered_time: Option<f64>,
    pub capabilities: Vec<String>,
    /// DEACTIVATE_AGENT: no offers are made on it until REACTIVATE_AGENT (kept in the
    /// registry).
    pub deactivated: bool,
    /// DRAIN_AGENT: draining or drained (kept in the registry).
    pub drain: Option<meseta_api::maintenance::DrainInfo>,
}

impl Agent {
    pub fn id(&self) -> &AgentId {
        self.info
            .id
            .as_ref()
            .expect("agents in the core always have an id")
    }
    pub fn pid(&self) -> String {
        format!("slave(1)@{}", self.endpoint)
    }
    pub fn total(&self) -> &Resources {
        self.holdings.total()
    }
    /// What may be offered ([`Holdings::available`]).
    pub fn available(&self) -> Arc<Resources> {
        self.holdings.available()
    }
    pub fn used_total(&self) -> Resources {
        self.holdings.used_total()
    }
}

/// An outstanding offer.
#[derive(Debug, Clone)]
pub struct OfferEntry {
    pub offer: Offer,
    /// The role the resources are allocated to.
    pub role: String,
    pub resources: Resources,
    pub created: f64,
}

/// The master's state.
pub struct Core {
    pub master_info: MasterInfo,
    pub config: CoreConfig,
    pub start_time: f64,
    pub frameworks: BTreeMap<FrameworkId, Shared<Framework>>,
    pub completed_frameworks: VecDeque<Shared<Framework>>,
    /// Frameworks torn down or removed; they may not subscribe again.
    pub removed_frameworks: BTreeSet<FrameworkId>,
    pub agents: BTreeMap<AgentId, Shared<Agent>>,
    /// The agent on each open link, so that an agent's post finds it without a search
    /// (entries go when the link closes or the agent registers on another one).
    links: std::collections::HashMap<String, AgentId>,
    /// Agents marked gone by an operator.
    pub gone_agents: BTreeSet<AgentId>,
    pub offers: BTreeMap<OfferId, Shared<OfferEntry>>,
    /// Role weights set by `--weights` or UPDATE_WEIGHTS (a role not listed weighs 1).
    pub weights: BTreeMap<String, f64>,
    /// Role quotas set by UPDATE_QUOTA (kept in the registry).
    pub quotas: BTreeMap<String, meseta_api::quota::QuotaConfig>,
    /// The maintenance schedule, machine modes and inverse offers.
    pub maintenance: maintenance::Maintenance,
    /// The statuses of offer operations that frameworks gave ids.
    pub operations: operations::OperationTracker,
    /// The allocator's memory between passes.
    allocator: crate::allocator::Allocator,
    /// The cluster total and what frameworks hold, summed across passes.
    ledger: ledger::Ledger,
    /// Active refuse filters per framework, indexed for the allocator.
    filter_index: std::collections::HashMap<FrameworkId, allocation::IndexedFilters>,
    /// The resources that refuse filters refuse, one copy of each distinct set.
    refused: refused::RefusedSets,
    next_framework: u64,
    next_agent: u64,
    next_offer: u64,
    effects: Vec<Effect>,
    /// Counters for `/metrics/snapshot`.
    pub metrics: BTreeMap<&'static str, u64>,
    /// Whether any operator API subscriber listens; operator events are only built then.
    pub operator_observed: bool,
    /// The resources of the task recorded last, shared with the next if they are equal.
    last_task_resources: Option<TaskResources>,
}

impl Core {
    /// A master starting from what its registry remembers.
    pub fn new(
        master_info: MasterInfo,
        config: CoreConfig,
        registry: RegistryState,
        now: f64,
    ) -> Core {
        let mut core = Core {
            master_info,
            config,
            start_time: now,
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            removed_frameworks: registry.removed_frameworks,
            agents: BTreeMap::new(),
            gone_agents: registry.gone_agents,
            links: Default::default(),
            offers: BTreeMap::new(),
            weights: registry.weights,
            quotas: registry.quotas,
            maintenance: maintenance::Maintenance::from_record(registry.maintenance),
            operations: Default::default(),
            allocator: crate::allocator::Allocator::new(),
            ledger: Default::default(),
            filter_index: Default::default(),
            refused: Default::default(),
            next_framework: 0,
            next_agent: 0,
            next_offer: 0,
            effects: Vec::new(),
            metrics: BTreeMap::new(),
            operator_observed: false,
            last_task_resources: None,
        };
        let deadline = now + core.config.agent_reregister_timeout;
        for (id, admitted) in registry.agents {
            let checkpointed = registry.checkpointed.get(&id).cloned().unwrap_or_default();
            let total = reservations::agent_total(&id, &admitted.info, &checkpointed);
            core.agents.insert(
                id,
                Agent {
                    holdings: Holdings::new(total),
                    info: admitted.info,
                    endpoint: admitted.endpoint,
                    link: AgentLink::Recovering(deadline),
                    link_id: None,
                    tasks: Shared::default(),
                    executors: BTreeMap::new(),
                    registered_time: now,
                    reregistered_time: None,
                    capabilities: Vec::new(),
                    deactivated: admitted.deactivated,
                    drain: admitted.drain,
                }
                .into(),
            );
        }
        for (id, info) in registry.frameworks {
            core.frameworks
                .insert(id, Framework::recovered(info).into());
        }
        core
    }

    /// Takes the effects produced so far.
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn emit(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn count(&mut self, name: &'static str) {
        *self.metrics.entry(name).or_insert(0) += 1;
    }

    fn new_framework_id(&mut self) -> FrameworkId {
        loop {
            let id = FrameworkId::new(format!(
                "{}-{:04}",
                self.master_info.id, self.next_framework
            ));
            self.next_framework += 1;
            if !self.frameworks.contains_key(&id) && !self.removed_frameworks.contains(&id) {
                return id;
            }
        }
    }

    fn new_agent_id(&mut self) -> AgentId {
        loop {
            let id = AgentId::new(format!("{}-S{}", self.master_info.id, self.next_agent));
            self.next_agent += 1;
            if !self.agents.contains_key(&id) && !self.gone_agents.contains(&id) {
                return id;
            }
        }
    }

    fn new_offer_id(&mut self) -> OfferId {
        let id = OfferId::new(format!("{}-O{}", self.master_info.id, self.next_offer));
        self.next_offer += 1;
        id
    }

    /// A task's resources, the same list as the previous task's when they are equal (tasks
    /// are mostly launched in runs of one shape).
    fn task_resources(&mut self, list: Vec<Resource>) -> TaskResources {
        let resources = match &self.last_task_resources {
            Some(last) => last.reuse_for(list),
            None => TaskResources::new(list),
        };
        self.last_task_resources = Some(resources.clone());
        resources
    }

    /// Sends an event to a framework if it is connected.
    fn send_to_framework(&mut self, framework_id: &FrameworkId, event: Event) {
        if let Some(stream) = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.stream_id.clone())
        {
            self.emit(Effect::ToStream(stream, event));
        }
    }

    /// Sends a status update as the framework may see it: states it does not know (it is
    /// not PARTITION_AWARE) become TASK_LOST.
    fn send_update(&mut self, framework_id: &FrameworkId, mut status: TaskStatus) {
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.partition_aware());
        status.state = status.state.for_framework(partition_aware);
        self.send_to_framework(
            framework_id,
            Event::Update(meseta_api::scheduler::Update { status }),
        );
    }

    /// Sends a message to an agent if it is linked.
    fn send_to_agent(&mut self, agent_id: &AgentId, message: ToAgent) -> bool {
        match self.agents.get(agent_id).map(|a| (a.link, &a.link_id)) {
            Some((AgentLink::Connected, Some(link))) => {
                let link = link.clone();
                self.emit(Effect::ToLink(link, message));
                true
            }
            _ => false,
        }
    }

    /// Runs the timers due at `now`: framework failover, offer timeout, agent
    /// unreachability and reregistration deadlines, expired filters (and the refused
    /// resource sets no filter uses any more).
    pub fn tick(&mut self, now: f64) {
        self.expire_failovers(now);
        self.expire_offers(now);
        self.expire_agents(now);
        self.advance_drains(now);
        // Only frameworks with an expired filter are touched (a touch copies a framework
        // that a snapshot shares).
        for framework in self.frameworks.values_mut() {
            if framework.filters.iter().any(|f| f.expires <= now) {
                framework.filters.retain(|f| f.expires > now);
            }
        }
        self.refused.sweep();
    }
}

impl Framework {
    fn recovered(info: FrameworkInfo) -> Framework {
        Framework {
            info,
            stream_id: None,
            recovered: true,
            active: false,
            suppressed_roles: BTreeSet::new(),
            registered_time: None,
            reregistered_time: None,
            unregistered_time: None,
            failover_deadline: None,
            tasks: Shared::default(),
            offers: BTreeSet::new(),
            filters: Vec::new(),
            completed_tasks: Shared::default(),
        }
    }
}

/// The status the master generates itself (no uuid: not retried, not acknowledged).
fn master_status(
    task_id: &TaskId,
    state: TaskState,
    reason: Reason,
    message: impl Into<String>,
    agent_id: Option<&AgentId>,
    now: f64,
) -> TaskStatus {
    let mut status = TaskStatus::new(task_id.clone(), state);
    status.source = Some(StatusSource::SourceMaster);
    status.reason = Some(reason);
    status.message = Some(message.into());
    status.agent_id = agent_id.cloned();
    status.timestamp = Some(now);
    status
}

#[cfg(test)]
pub(crate) mod tests;
