//! Driving the allocator: what the core tells it (free agents, frameworks asking for
//! offers, what each role holds, weights and quotas) and turning its decisions into
//! offers. The core keeps an incremental [`crate::allocator::Allocator`], so a pass after
//! a few changes looks at the agents that changed only.

use super::*;
use crate::allocator::{AllocationRequest, FrameworkDemand, RefuseFilters};
use std::sync::Arc;

/// A framework's active refuse filters as the allocator takes them (indexed by agent),
/// built when the core last needed them. Exact while no filter is added or cleared (the
/// core then drops it, see [`Core::filters_changed`]) and until the earliest expiry in it.
#[derive(Debug)]
pub(super) struct IndexedFilters {
    filters: Arc<RefuseFilters>,
    until: f64,
}

impl IndexedFilters {
    fn of(filters: &[RefuseFilter], now: f64) -> IndexedFilters {
        let mut index = RefuseFilters::new();
        let mut until = f64::INFINITY;
        for f in filters.iter().filter(|f| f.expires > now) {
            until = until.min(f.expires);
            index
                .entry(f.agent_id.clone())
                .or_default()
                .push(Arc::clone(&f.resources));
        }
        IndexedFilters {
            filters: Arc::new(index),
            until,
        }
    }
}

impl Core {
    /// Runs one allocation pass and sends the resulting offers.
    pub fn allocate(&mut self, now: f64) {
        self.index_filters(now);
        let request = self.allocation_request();
        let decisions = self.allocator.allocate(&request);
        for decision in decisions {
            self.make_offer(
                now,
                decision.framework_id,
                decision.agent_id,
                decision.role,
                decision.resources,
            );
        }
        self.make_inverse_offers(now);
    }

    /// A framework's refuse filters were added to or cleared: its index is rebuilt on the
    /// next pass.
    pub(super) fn filters_changed(&mut self, framework_id: &FrameworkId) {
        self.filter_index.remove(framework_id);
    }

    /// Brings the refuse filter index up to date for the frameworks asking for offers at
    /// `now`, rebuilding only the entries that a filter's expiry or change made stale.
    fn index_filters(&mut self, now: f64) {
        let frameworks = &self.frameworks;
        self.filter_index
            .retain(|id, indexed| indexed.until > now && frameworks.contains_key(id));
        for f in self.frameworks.values() {
            if f.connected() && f.active && !self.filter_index.contains_key(f.id()) {
                self.filter_index
                    .insert(f.id().clone(), IndexedFilters::of(&f.filters, now));
            }
        }
    }

    /// What the allocator looks at; the filter index is up to date (see
    /// [`Core::index_filters`]).
    fn allocation_request(&mut self) -> AllocationRequest {
        self.ledger.refresh(&self.agents, self.default_roles());
        #[cfg(test)]
        self.check_ledger();
        let mut held = self.ledger.held();
        let mut role_allocated: BTreeMap<String, Resources> = BTreeMap::new();
        for by_role in held.values() {
            for (role, resources) in by_role {
                role_allocated
                    .entry(role.clone())
                    .or_default()
                    .add_all(resources);
            }
        }
        let mut frameworks = Vec::new();
        for f in self.frameworks.values() {
            if !(f.connected() && f.active) {
                continue;
            }
            frameworks.push(FrameworkDemand {
                framework_id: f.id().clone(),
                roles: f
                    .roles()
                    .into_iter()
                    .filter(|r| !f.suppressed_roles.contains(r))
                    .collect(),
                allocated: held.remove(f.id()).unwrap_or_default(),
                gpu_capable: f.info.has_capability(CapabilityType::GpuResources),
                filters: Arc::clone(&self.filter_index[f.id()].filters),
            });
        }
        AllocationRequest {
            agents: self.ledger.offerable(),
            agents_in_id_order: true,
            frameworks,
            cluster_total: self.ledger.cluster_total(),
            role_allocated,
            weights: self.weights.clone(),
            min_allocatable: self.config.min_allocatable.clone(),
            quotas: self.role_quotas(),
        }
    }

    /// Every core test that allocates checks the ledger's running sums against sums
    /// made afresh, as quantities by name.
    #[cfg(test)]
    fn check_ledger(&self) {
        fn quantities(resources: &Resources) -> BTreeMap<String, f64> {
            let mut out: BTreeMap<String, f64> = BTreeMap::new();
            for r in resources.iter() {
                if let Some(s) = r.scalar {
                    *out.entry(r.name.clone()).or_default() += s.value;
                }
            }
            out.retain(|_, v| *v > 0.0);
            out.values_mut().for_each(|v| *v = (*v * 1000.0).round());
            out
        }
        type Held = BTreeMap<FrameworkId, BTreeMap<String, Resources>>;
        fn by_name(held: &Held) -> BTreeMap<(&FrameworkId, &String), BTreeMap<String, f64>> {
            held.iter()
                .flat_map(|(f, by_role)| by_role.iter().map(move |(role, r)| ((f, role), r)))
                .map(|(key, r)| (key, quantities(r)))
                .filter(|(_, q)| !q.is_empty())
                .collect()
        }
        let mut total = Resources::new();
        for agent in self.agents.values() {
            if agent.link == AgentLink::Connected {
                total.add_all(agent.total());
            }
        }
        assert_eq!(quantities(&self.ledger.cluster_total()), quantities(&total));
        assert_eq!(
            by_name(&self.ledger.held()),
            by_name(&self.framework_allocations())
        );
    }

    /// Each framework's role for used resources that carry no `allocation_info`: its
    /// first role, or `*`.
    fn default_roles(&self) -> BTreeMap<FrameworkId, String> {
        self.frameworks
            .values()
            .map(|f| {
                let role = f.roles().into_iter().next();
                (f.id().clone(), role.unwrap_or_else(|| "*".to_string()))
            })
            .collect()
    }

    /// What each framework holds (tasks, executors, outstanding offers) per role, summed
    /// over the agents (see [`Holdings::held_by_role`]).
    pub fn framework_allocations(&self) -> BTreeMap<FrameworkId, BTreeMap<String, Resources>> {
        let default_roles = self.default_roles();
        let mut out: BTreeMap<FrameworkId, BTreeMap<String, Resources>> = BTreeMap::new();
        for agent in self.agents.values() {
            let held = agent
                .holdings
                .held_by_role(|id| default_roles.get(id).map(String::as_str));
            for (framework_id, by_role) in held {
                let sum = out.entry(framework_id).or_default();
                for (role, resources) in by_role {
                    sum.entry(role).or_default().add_all(&resources);
                }
            }
        }
        out
    }

    /// What each role holds across all frameworks.
    pub fn role_allocations(&self) -> BTreeMap<String, Resources> {
        let mut out: BTreeMap<String, Resources> = BTreeMap::new();
        for by_role in self.framework_allocations().into_values() {
            for (role, resources) in by_role {
                out.entry(role).or_default().add_all(&resources);
            }
        }
        out
    }

    /// What one framework holds per role (see [`Core::framework_allocations`]).
    pub fn allocation_by_role(&self, framework: &Framework) -> BTreeMap<String, Resources> {
        self.framework_allocations()
            .remove(framework.id())
            .unwrap_or_default()
    }
}
