//! Driving the allocator: what the core tells it (free agents, frameworks asking for
//! offers, what each role holds) and turning its decisions into offers.

use super::*;
use crate::allocator::{self, AllocationRequest, FrameworkDemand};

impl Core {
    /// Runs one allocation pass and sends the resulting offers.
    pub fn allocate(&mut self, now: f64) {
        let request = self.allocation_request(now);
        let decisions = allocator::allocate(&request);
        for decision in decisions {
            self.make_offer(
                now,
                decision.framework_id,
                decision.agent_id,
                decision.role,
                decision.resources,
            );
        }
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
        let mut role_allocated: BTreeMap<String, Resources> = BTreeMap::new();
        let mut frameworks = Vec::new();
        for f in self.frameworks.values() {
            let allocated = self.allocation_by_role(f);
            for (role, held) in &allocated {
                role_allocated
                    .entry(role.clone())
                    .or_default()
                    .add_all(held);
            }
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
                allocated,
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
        }
    }

    /// What a framework holds (tasks, executors, outstanding offers) per role: used
    /// resources by their `allocation_info` role (the framework's first role when they
    /// carry none), offers by the role they were made for.
    pub fn allocation_by_role(&self, framework: &Framework) -> BTreeMap<String, Resources> {
        let default_role = framework
            .roles()
            .into_iter()
            .next()
            .unwrap_or_else(|| "*".to_string());
        let mut by_role: BTreeMap<String, Resources> = BTreeMap::new();
        for agent in self.agents.values() {
            let Some(used) = agent.used.get(framework.id()) else {
                continue;
            };
            for r in used.iter() {
                let role = r
                    .allocation_info
                    .as_ref()
                    .and_then(|a| a.role.clone())
                    .unwrap_or_else(|| default_role.clone());
                by_role.entry(role).or_default().add(r);
            }
        }
        for offer_id in &framework.offers {
            if let Some(o) = self.offers.get(offer_id) {
                by_role
                    .entry(o.role.clone())
                    .or_default()
                    .add_all(&o.resources);
            }
        }
        by_role
    }

}
