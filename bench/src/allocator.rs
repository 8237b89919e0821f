//! The allocator benchmark: one full allocation pass (`meseta_master::allocator::allocate`)
//! over a synthetic cluster shaped like Mesos's `HierarchicalAllocator_BENCHMARK_Test`
//! DeclineOffers setup, timed repeatedly in-process. No master, no network: the pure
//! function only. Every pass gets the same request (the allocator does not mutate it), so
//! each pass does the full work.

use crate::stats::percentile;
use anyhow::{bail, Result};
use meseta_api::{AgentId, FrameworkId, Resources};
use meseta_master::allocator::{
    allocate, default_min_allocatable, AllocationRequest, FrameworkDemand,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Every agent's total, as in Mesos's allocator benchmarks.
const AGENT_TOTAL: &str = "cpus:24;mem:4096;ports:[31000-32000]";
/// What a used agent (every other one) has allocated to one framework.
const AGENT_USED: &str = "cpus:12;mem:2048;ports:[31000-31499]";
/// What is then still free on a used agent (`AGENT_TOTAL` less `AGENT_USED`).
const AGENT_FREE_WHEN_USED: &str = "cpus:12;mem:2048;ports:[31500-32000]";

#[derive(clap::Args)]
pub struct AllocatorArgs {
    /// How many agents.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// How many frameworks asking for offers.
    #[arg(long, default_value_t = 1_000)]
    frameworks: usize,
    /// How many roles the frameworks are spread over, round-robin (1: all in `*`).
    #[arg(long, default_value_t = 1)]
    roles: usize,
    /// Roles with a quota (not implemented yet: the run fails if this is given).
    #[arg(long)]
    quota_roles: Option<usize>,
    /// How many timed allocation passes.
    #[arg(long, default_value_t = 20)]
    cycles: usize,
}

#[derive(Debug, Serialize)]
pub struct AllocatorReport {
    agents: usize,
    frameworks: usize,
    roles: usize,
    cycles: usize,
    p50_cycle_ms: f64,
    p99_cycle_ms: f64,
    offers_per_cycle: usize,
    goal_ms: Option<f64>,
    mesos_published_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_mesos: Option<f64>,
}

/// Our goal and Mesos 1.8's published figure (ms per pass) for a cluster size, where known.
pub fn reference_ms(agents: usize, frameworks: usize) -> (Option<f64>, Option<f64>) {
    match (agents, frameworks) {
        (1_000, 100) => (Some(10.0), None),
        (10_000, 1_000) => (Some(100.0), Some(1100.0)),
        (20_000, 2_000) => (Some(250.0), Some(3800.0)),
        _ => (None, None),
    }
}

/// The name of role `index` of `roles`: `*` when there is one role.
fn role_name(index: usize, roles: usize) -> String {
    if roles <= 1 {
        "*".to_string()
    } else {
        format!("role{index}")
    }
}

/// The request: `agents` agents of `AGENT_TOTAL`, every even-numbered one half used by
/// a framework (agent 2k by framework k mod `frameworks`, in that framework's role);
/// framework i is in role i mod `roles`.
pub fn build_request(agents: usize, frameworks: usize, roles: usize) -> Result<AllocationRequest> {
    if frameworks == 0 {
        bail!("--frameworks must be at least 1");
    }
    let total = Resources::parse(AGENT_TOTAL)?;
    let used = Resources::parse(AGENT_USED)?;
    let free_when_used = Resources::parse(AGENT_FREE_WHEN_USED)?;
    let mut demands: Vec<FrameworkDemand> = (0..frameworks)
        .map(|i| {
            let role = role_name(i % roles.max(1), roles);
            FrameworkDemand {
                framework_id: FrameworkId::new(format!("framework-{i:06}")),
                roles: vec![role.clone()],
                allocated: [(role, Resources::new())].into_iter().collect(),
                gpu_capable: false,
                filters: vec![],
            }
        })
        .collect();
    let mut cluster_total = Resources::new();
    let mut agent_list = Vec::with_capacity(agents);
    for i in 0..agents {
        cluster_total.add_all(&total);
        let free = if i % 2 == 0 {
            let demand = &mut demands[(i / 2) % frameworks];
            let role = demand.roles[0].clone();
            if let Some(held) = demand.allocated.get_mut(&role) {
                held.add_all(&used);
            }
            free_when_used.clone()
        } else {
            total.clone()
        };
        agent_list.push((AgentId::new(format!("agent-{i:06}")), free));
    }
    Ok(AllocationRequest {
        agents: agent_list,
        role_allocated: AllocationRequest::sum_role_allocations(&demands),
        frameworks: demands,
        cluster_total,
        weights: BTreeMap::new(),
        // Mesos's default `--min_allocatable_resources`.
        min_allocatable: default_min_allocatable(),
    })
}

pub fn run(args: AllocatorArgs) -> Result<AllocatorReport> {
    if let Some(n) = args.quota_roles {
        bail!("--quota-roles {n}: quota is not implemented yet in the allocator");
    }
    if args.cycles == 0 {
        bail!("--cycles must be at least 1");
    }
    let roles = args.roles.max(1);
    let started = Instant::now();
    let request = build_request(args.agents, args.frameworks, roles)?;
    eprintln!(
        "allocator: built {} agents × {} frameworks in {} role(s) in {:.0} ms",
        args.agents,
        args.frameworks,
        roles,
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut cycle_ms = Vec::with_capacity(args.cycles);
    let mut offers: Option<usize> = None;
    for cycle in 0..args.cycles {
        let start = Instant::now();
        let decisions = allocate(&request);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "allocator: pass {}: {:.1} ms, {} offers",
            cycle + 1,
            ms,
            decisions.len()
        );
        match offers {
            None => offers = Some(decisions.len()),
            Some(n) if n != decisions.len() => {
                bail!(
                    "pass {} made {} offers, the first {n}",
                    cycle + 1,
                    decisions.len()
                )
            }
            Some(_) => {}
        }
        cycle_ms.push(ms);
        drop(decisions);
    }
    let p50 = percentile(&cycle_ms, 50.0).unwrap_or(f64::NAN);
    let p99 = percentile(&cycle_ms, 99.0).unwrap_or(f64::NAN);
    let (goal_ms, mesos_published_ms) = reference_ms(args.agents, args.frameworks);
    Ok(AllocatorReport {
        agents: args.agents,
        frameworks: args.frameworks,
        roles,
        cycles: args.cycles,
        p50_cycle_ms: p50,
        p99_cycle_ms: p99,
        offers_per_cycle: offers.unwrap_or(0),
        goal_ms,
        mesos_published_ms,
        ratio_to_mesos: mesos_published_ms.map(|m| p50 / m),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape() {
        let request = build_request(10, 3, 2).unwrap();
        assert_eq!(request.agents.len(), 10);
        assert_eq!(request.frameworks.len(), 3);
        assert_eq!(request.cluster_total.scalar("cpus"), 240.0);
        assert_eq!(request.cluster_total.scalar("mem"), 40960.0);
        // Even agents are half used, odd ones free.
        assert_eq!(request.agents[0].1.scalar("cpus"), 12.0);
        assert_eq!(request.agents[1].1, Resources::parse(AGENT_TOTAL).unwrap());
        // Used plus free is the agent's total.
        let mut whole = Resources::parse(AGENT_USED).unwrap();
        whole.add_all(&request.agents[0].1);
        assert!(whole.contains(&Resources::parse(AGENT_TOTAL).unwrap()));
        assert!(Resources::parse(AGENT_TOTAL).unwrap().contains(&whole));
        // Frameworks round-robin over the roles; 5 used agents over 3 frameworks.
        let roles: Vec<&str> = request
            .frameworks
            .iter()
            .map(|f| f.roles[0].as_str())
            .collect();
        assert_eq!(roles, ["role0", "role1", "role0"]);
        let cpus: Vec<f64> = request
            .frameworks
            .iter()
            .map(|f| f.allocated[&f.roles[0]].scalar("cpus"))
            .collect();
        assert_eq!(cpus, [24.0, 24.0, 12.0]);
        assert_eq!(request.role_allocated["role0"].scalar("cpus"), 36.0);
        assert_eq!(request.role_allocated["role1"].scalar("cpus"), 24.0);
    }

    #[test]
    fn one_role_is_star() {
        let request = build_request(4, 2, 1).unwrap();
        assert!(request.frameworks.iter().all(|f| f.roles == ["*"]));
        assert_eq!(request.role_allocated["*"].scalar("mem"), 4096.0);
    }

    #[test]
    fn small_pass_offers_every_agent() {
        let request = build_request(20, 5, 1).unwrap();
        let decisions = allocate(&request);
        // Each agent's free resources go whole to one framework.
        assert_eq!(decisions.len(), 20);
    }

    #[test]
    fn references() {
        assert_eq!(reference_ms(10_000, 1_000), (Some(100.0), Some(1100.0)));
        assert_eq!(reference_ms(20_000, 2_000), (Some(250.0), Some(3800.0)));
        assert_eq!(reference_ms(1_000, 100), (Some(10.0), None));
        assert_eq!(reference_ms(50_000, 1_000), (None, None));
    }
}
