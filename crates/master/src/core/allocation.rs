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
    fn allocation_request(&self) -> AllocationRequest {
        let agents = self
            .agents
            .values()
            .filter(|a| a.link == AgentLink::Connected && !a.deactivated)
            .map(|a| (a.id().clone(), a.available()))
            .collect();
        let mut cluster_total = Resources::new();
        for agent in self
            .agents
            .values()
            .filter(|a| a.link == AgentLink::Connected)
        {
            cluster_total.add_all(agent.total());
        }
        let mut held = self.framework_allocations();
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
            agents,
            frameworks,
            cluster_total,
            role_allocated,
            weights: self.weights.clone(),
            min_allocatable: self.config.min_allocatable.clone(),
            quotas: self.role_quotas(),
        }
    }

    /// What each framework holds (tasks, executors, outstanding offers) per role, in one
    /// sweep over the agents and offers: used resources by their `allocation_info` role
    /// (the framework's first role when they carry none; a shared volume once per agent
    /// however many tasks use it), offers by the role they were made for.
    pub fn framework_allocations(&self) -> BTreeMap<FrameworkId, BTreeMap<String, Resources>> {
        let default_roles: BTreeMap<&FrameworkId, String> = self
            .frameworks
            .values()
            .map(|f| {
                let role = f.roles().into_iter().next();
                (f.id(), role.unwrap_or_else(|| "*".to_string()))
            })
            .collect();
        let mut out: BTreeMap<FrameworkId, BTreeMap<String, Resources>> = BTreeMap::new();
        for agent in self.agents.values() {
            for (framework_id, used) in agent.holdings.used() {
                let Some(default_role) = default_roles.get(framework_id) else {
                    continue;
                };
                let by_role = out.entry(framework_id.clone()).or_default();
                let mut shared_seen: Vec<&Resource> = Vec::new();
                for r in used.iter() {
                    // A shared volume that several tasks use is held once.
                    if r.is_shared() {
                        if shared_seen.contains(&r) {
                            continue;
                        }
                        shared_seen.push(r);
                    }
                    let role = r.allocation_info.as_ref().and_then(|a| a.role.as_ref());
                    by_role
                        .entry(role.unwrap_or(default_role).clone())
                        .or_default()
                        .add(r);
                }
            }
        }
        for o in self.offers.values() {
            out.entry(o.offer.framework_id.clone())
                .or_default()
                .entry(o.role.clone())
                .or_default()
                .add_all(&o.resources);
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
