//! Driving the allocator: what the core tells it (free agents, frameworks asking for
//! offers, what each role holds, weights and quotas) and turning its decisions into
//! offers. The core keeps an incremental [`crate::allocator::Allocator`], so a pass after
//! a few changes looks at the agents that changed only.

use super::*;
use crate::allocator::{AllocationRequest, FrameworkDemand};

impl Core {
    /// Runs one allocation pass and sends the resulting offers.
    pub fn allocate(&mut self, now: f64) {
        let request = self.allocation_request(now);
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

    fn allocation_request(&self, now: f64) -> AllocationRequest {
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
            cluster_total.add_all(&agent.total);
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
                filters: f
                    .filters
                    .iter()
                    .filter(|flt| flt.expires > now)
                    .map(|flt| (flt.agent_id.clone(), flt.resources.clone()))
                    .collect(),
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
    /// (the framework's first role when they carry none), offers by the role they were
    /// made for.
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
            for (framework_id, used) in &agent.used {
                let Some(default_role) = default_roles.get(framework_id) else {
                    continue;
                };
                let by_role = out.entry(framework_id.clone()).or_default();
                for r in used.iter() {
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
