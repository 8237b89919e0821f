//! What an allocation pass starts from, kept up to date across passes: the list of
//! agents that may be offered with their free resources, the total of the connected
//! agents, and what each framework holds per role on all agents. Building them afresh
//! each pass cost work in proportion to every agent and every framework's use of it,
//! however few had changed; the ledger remembers each agent's part (by its holdings'
//! generation, whether it was connected and whether it may be offered) and redoes only
//! the parts that changed.
//!
//! The allocator reads quantities only: scalars by name (shares, quota consumption), not
//! their reservations nor ranges and sets. So the ledger keeps one running sum per
//! scalar name of the total and per framework, role and scalar name held ("slots"), and
//! an agent's part is a short list of (slot, amount); kept to Mesos's fixed-point
//! precision, an amount taken out of a sum again leaves it exactly as before.

use super::shared::Shared;
use super::{Agent, AgentLink};
use crate::allocator::quota::fixed;
use crate::ordered_walk::advance_to;
use meseta_api::{AgentId, FrameworkId, Resource, Resources};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a running sum adds up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    /// One scalar of the connected agents' total.
    Total { name: String },
    /// One scalar a framework holds in a role.
    Held {
        framework_id: FrameworkId,
        role: String,
        name: String,
    },
}

/// One agent's part of the sums, as last counted (empty: counted for nothing).
#[derive(Debug, Default)]
struct Part {
    generation: u64,
    connected: bool,
    /// Connected and not deactivated: in the offerable list.
    offerable: bool,
    /// Amounts by slot index.
    amounts: Vec<(usize, f64)>,
}

/// The running sums, one per slot.
#[derive(Debug, Default)]
struct Sums {
    index: HashMap<Slot, usize>,
    slots: Vec<(Slot, f64)>,
}

/// Running sums over the agents; see the module documentation.
#[derive(Debug, Default)]
pub struct Ledger {
    parts: BTreeMap<AgentId, Part>,
    /// The default role of each framework the parts were counted with.
    default_roles: BTreeMap<FrameworkId, String>,
    sums: Sums,
    /// The agents that may be offered, in id order, with their free resources.
    offerable: Arc<Vec<(AgentId, Arc<Resources>)>>,
}

impl Ledger {
    /// Brings the sums and the offerable list up to date with `agents`. `default_roles`
    /// gives each known framework's role for used resources without `allocation_info`;
    /// when it differs from the last call's, every agent is counted again.
    pub fn refresh(
        &mut self,
        agents: &BTreeMap<AgentId, Shared<Agent>>,
        default_roles: BTreeMap<FrameworkId, String>,
    ) {
        if default_roles != self.default_roles {
            *self = Ledger {
                default_roles,
                ..Ledger::default()
            };
        }
        let (sums, roles) = (&mut self.sums, &self.default_roles);
        let mut gone = false;
        let mut new = Vec::new();
        // Agents whose place in the offerable list may have changed.
        let mut touched: Vec<&AgentId> = Vec::new();
        let mut parts = self.parts.iter_mut().peekable();
        for (id, agent) in agents {
            let this = advance_to(&mut parts, id, |seen, part| {
                sums.forget(std::mem::take(part));
                touched.push(seen);
                gone = true;
            });
            match this {
                Some((_, part)) if part.is_current(agent) => {}
                Some((_, part)) => {
                    sums.forget(std::mem::take(part));
                    *part = sums.count(agent, roles);
                    touched.push(id);
                }
                None => {
                    new.push((id.clone(), sums.count(agent, roles)));
                    touched.push(id);
                }
            }
        }
        for (seen, part) in parts {
            sums.forget(std::mem::take(part));
            touched.push(seen);
            gone = true;
        }
        let offerable = Arc::make_mut(&mut self.offerable);
        for id in touched {
            let listed = offerable.binary_search_by(|(listed, _)| listed.cmp(id));
            let now = agents
                .get(id)
                .filter(|a| is_offerable(a))
                .map(|a| a.available());
            match (listed, now) {
                (Ok(at), Some(free)) => offerable[at].1 = free,
                (Ok(at), None) => {
                    offerable.remove(at);
                }
                (Err(at), Some(free)) => offerable.insert(at, (id.clone(), free)),
                (Err(_), None) => {}
            }
        }
        if gone {
            self.parts.retain(|id, _| agents.contains_key(id));
        }
        self.parts.extend(new);
    }

    /// The agents that may be offered (connected, not deactivated), in id order, with
    /// their free resources; shared, so that a request costs no copy of it.
    pub fn offerable(&self) -> Arc<Vec<(AgentId, Arc<Resources>)>> {
        Arc::clone(&self.offerable)
    }

    /// The scalars of the connected agents' total (unreserved, by name).
    pub fn cluster_total(&self) -> Resources {
        let mut total = Resources::new();
        for (slot, sum) in self.sums.nonzero() {
            if let Slot::Total { name } = slot {
                total.add(&Resource::scalar(name, sum));
            }
        }
        total
    }

    /// The scalars each framework holds per role on all agents (unreserved, by name).
    pub fn held(&self) -> BTreeMap<FrameworkId, BTreeMap<String, Resources>> {
        let mut held: BTreeMap<FrameworkId, BTreeMap<String, Resources>> = BTreeMap::new();
        for (slot, sum) in self.sums.nonzero() {
            if let Slot::Held {
                framework_id,
                role,
                name,
            } = slot
            {
                held.entry(framework_id.clone())
                    .or_default()
                    .entry(role.clone())
                    .or_default()
                    .add(&Resource::scalar(name, sum));
            }
        }
        held
    }
}

impl Sums {
    /// Counts `agent`'s part into the sums.
    fn count(&mut self, agent: &Agent, default_roles: &BTreeMap<FrameworkId, String>) -> Part {
        let connected = agent.link == AgentLink::Connected;
        let mut amounts = Vec::new();
        if connected {
            for (name, value) in scalars(agent.total()) {
                amounts.push((self.slot(Slot::Total { name }), value));
            }
        }
        let held = agent
            .holdings
            .held_by_role(|id| default_roles.get(id).map(String::as_str));
        for (framework_id, by_role) in held {
            for (role, resources) in by_role {
                for (name, value) in scalars(&resources) {
                    let slot = Slot::Held {
                        framework_id: framework_id.clone(),
                        role: role.clone(),
                        name,
                    };
                    amounts.push((self.slot(slot), value));
                }
            }
        }
        for &(slot, value) in &amounts {
            self.add(slot, value);
        }
        Part {
            generation: agent.holdings.generation(),
            connected,
            offerable: is_offerable(agent),
            amounts,
        }
    }

    /// Takes `part` out of the sums.
    fn forget(&mut self, part: Part) {
        for (slot, value) in part.amounts {
            self.add(slot, -value);
        }
    }

    fn slot(&mut self, slot: Slot) -> usize {
        if let Some(&i) = self.index.get(&slot) {
            return i;
        }
        self.slots.push((slot.clone(), 0.0));
        self.index.insert(slot, self.slots.len() - 1);
        self.slots.len() - 1
    }

    fn add(&mut self, slot: usize, value: f64) {
        let sum = &mut self.slots[slot].1;
        *sum = fixed(*sum + value);
    }

    fn nonzero(&self) -> impl Iterator<Item = (&Slot, f64)> {
        self.slots
            .iter()
            .filter(|(_, sum)| *sum > 0.0)
            .map(|(slot, sum)| (slot, *sum))
    }
}

impl Part {
    fn is_current(&self, agent: &Agent) -> bool {
        self.generation == agent.holdings.generation()
            && self.connected == (agent.link == AgentLink::Connected)
            && self.offerable == is_offerable(agent)
    }
}

fn is_offerable(agent: &Agent) -> bool {
    agent.link == AgentLink::Connected && !agent.deactivated
}

/// The scalars of `resources`, summed by name.
fn scalars(resources: &Resources) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for r in resources.iter() {
        if let Some(s) = r.scalar {
            let sum = out.entry(r.name.clone()).or_default();
            *sum = fixed(*sum + s.value);
        }
    }
    out
}
