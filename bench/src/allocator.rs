//! The allocator benchmark: one full allocation pass (`meseta_master::allocator::allocate`)
//! over a synthetic cluster shaped like Mesos's `HierarchicalAllocator_BENCHMARK_Test`
//! DeclineOffers setup, timed repeatedly in-process. No master, no network: the pure
//! function only. Every pass gets the same request (the allocator does not mutate it), so
//! each pass does the full work. With `--quota-roles R`, every framework has a role of
//! its own with a guarantee (like Mesos's quota benchmark), so stage 1 runs too.
//!
//! Then the incremental allocator (`meseta_master::allocator::Allocator`): after a first
//! pass whose offers are all taken, each cycle frees one task's resources on 1% of the
//! agents (a different 1% each time; `--changed-agents` sets how many) and times the pass
//! that follows.

use crate::stats::percentile;
use anyhow::{bail, Result};
use meseta_api::{AgentId, FrameworkId, Resources};
use meseta_master::allocator::{
    allocate, default_min_allocatable, AllocationRequest, Allocator, Decision, FrameworkDemand,
    RoleQuota,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Every agent's total, as in Mesos's allocator benchmarks.
const AGENT_TOTAL: &str = "cpus:24;mem:4096;ports:[31000-32000]";
/// What a used agent (every other one) has allocated to one framework.
const AGENT_USED: &str = "cpus:12;mem:2048;ports:[31000-31499]";
/// What is then still free on a used agent (`AGENT_TOTAL` less `AGENT_USED`).
const AGENT_FREE_WHEN_USED: &str = "cpus:12;mem:2048;ports:[31500-32000]";
/// Each quota role's guarantee (what one used agent holds).
const ROLE_GUARANTEE: [(&str, f64); 2] = [("cpus", 12.0), ("mem", 2048.0)];
/// What an ending task frees in the incremental cycles.
const TASK: &str = "cpus:1;mem:128";

#[derive(clap::Args)]
pub struct AllocatorArgs {
    /// How many agents (default 10,000, or the number of quota roles).
    #[arg(long)]
    agents: Option<usize>,
    /// How many frameworks asking for offers (default 1,000, or the number of quota
    /// roles).
    #[arg(long)]
    frameworks: Option<usize>,
    /// How many roles the frameworks are spread over, round-robin (1: all in `*`).
    #[arg(long, default_value_t = 1)]
    roles: usize,
    /// Roles with a quota guarantee of cpus:12;mem:2048 each; the frameworks are spread
    /// over them (this replaces --roles).
    #[arg(long)]
    quota_roles: Option<usize>,
    /// How many timed allocation passes.
    #[arg(long, default_value_t = 20)]
    cycles: usize,
    /// On how many agents a task ends before each incremental pass (default 1% of them,
    /// at least one).
    #[arg(long)]
    changed_agents: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct AllocatorReport {
    agents: usize,
    frameworks: usize,
    roles: usize,
    quota_roles: usize,
    cycles: usize,
    p50_cycle_ms: f64,
    p99_cycle_ms: f64,
    offers_per_cycle: usize,
    /// Incremental passes after 1% of the agents freed a task.
    p50_incremental_ms: f64,
    p99_incremental_ms: f64,
    incremental_agents_per_cycle: usize,
    goal_ms: Option<f64>,
    mesos_published_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_mesos: Option<f64>,
}

/// Our goal and Mesos's published figure (ms per pass) for a cluster size (and number of
/// quota roles), where known.
pub fn reference_ms(
    agents: usize,
    frameworks: usize,
    quota_roles: usize,
) -> (Option<f64>, Option<f64>) {
    match (agents, frameworks, quota_roles) {
        (1_000, 100, 0) => (Some(10.0), None),
        (10_000, 1_000, 0) => (Some(100.0), Some(1100.0)),
        (20_000, 2_000, 0) => (Some(250.0), Some(3800.0)),
        (3_000, 3_000, 3_000) => (Some(300.0), Some(15000.0)),
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
/// framework i is in role i mod `roles`. With `quota`, each role has a guarantee of
/// `ROLE_GUARANTEE`.
pub fn build_request(
    agents: usize,
    frameworks: usize,
    roles: usize,
    quota: bool,
) -> Result<AllocationRequest> {
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
                filters: Default::default(),
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
        agent_list.push((AgentId::new(format!("agent-{i:06}")), Arc::new(free)));
    }
    let guarantee = RoleQuota {
        guarantees: ROLE_GUARANTEE
            .iter()
            .map(|(n, v)| (n.to_string(), *v))
            .collect(),
        limits: BTreeMap::new(),
    };
    let quotas = if quota {
        (0..roles)
            .map(|i| (role_name(i, roles), guarantee.clone()))
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(AllocationRequest {
        agents: Arc::new(agent_list),
        agents_in_id_order: true,
        quotas,
        role_allocated: AllocationRequest::sum_role_allocations(&demands),
        frameworks: demands,
        cluster_total,
        weights: BTreeMap::new(),
        // Mesos's default `--min_allocatable_resources`.
        min_allocatable: default_min_allocatable(),
    })
}

pub fn run(args: AllocatorArgs) -> Result<AllocatorReport> {
    if args.cycles == 0 {
        bail!("--cycles must be at least 1");
    }
    let quota_roles = args.quota_roles.unwrap_or(0);
    if args.quota_roles == Some(0) {
        bail!("--quota-roles must be at least 1");
    }
    let default_size = |plain: usize| if quota_roles > 0 { quota_roles } else { plain };
    let agents = args.agents.unwrap_or(default_size(10_000));
    let frameworks = args.frameworks.unwrap_or(default_size(1_000));
    let roles = if quota_roles > 0 {
        quota_roles
    } else {
        args.roles.max(1)
    };
    let started = Instant::now();
    let mut request = build_request(agents, frameworks, roles, quota_roles > 0)?;
    eprintln!(
        "allocator: built {agents} agents × {frameworks} frameworks in {roles} role(s) ({quota_roles} with quota) in {:.0} ms",
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
    let changed = args.changed_agents.unwrap_or(agents / 100).max(1);
    let (incremental_ms, incremental_agents) =
        time_incremental(&mut request, args.cycles, changed)?;
    let p50 = percentile(&cycle_ms, 50.0).unwrap_or(f64::NAN);
    let (goal_ms, mesos_published_ms) = reference_ms(agents, frameworks, quota_roles);
    Ok(AllocatorReport {
        agents,
        frameworks,
        roles,
        quota_roles,
        cycles: args.cycles,
        p50_cycle_ms: p50,
        p99_cycle_ms: percentile(&cycle_ms, 99.0).unwrap_or(f64::NAN),
        offers_per_cycle: offers.unwrap_or(0),
        p50_incremental_ms: percentile(&incremental_ms, 50.0).unwrap_or(f64::NAN),
        p99_incremental_ms: percentile(&incremental_ms, 99.0).unwrap_or(f64::NAN),
        incremental_agents_per_cycle: incremental_agents,
        goal_ms,
        mesos_published_ms,
        ratio_to_mesos: mesos_published_ms.map(|m| p50 / m),
    })
}

/// Makes the offers: each agent gives up what it was offered, each framework holds it.
fn take(
    request: &mut AllocationRequest,
    index: &BTreeMap<FrameworkId, usize>,
    decisions: &[Decision],
) {
    let agents: BTreeMap<AgentId, usize> = request
        .agents
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.clone(), i))
        .collect();
    let list = Arc::make_mut(&mut request.agents);
    for d in decisions {
        Arc::make_mut(&mut list[agents[&d.agent_id]].1).subtract_all(&d.resources);
        let f = &mut request.frameworks[index[&d.framework_id]];
        f.allocated
            .entry(d.role.clone())
            .or_default()
            .add_all(&d.resources);
        request
            .role_allocated
            .entry(d.role.clone())
            .or_default()
            .add_all(&d.resources);
    }
}

/// Times `cycles` incremental passes, each after `changed` agents (at most as many as the
/// first pass offered) freed a task of the framework holding it. Returns the times and the
/// agents per cycle.
fn time_incremental(
    request: &mut AllocationRequest,
    cycles: usize,
    changed: usize,
) -> Result<(Vec<f64>, usize)> {
    let index: BTreeMap<FrameworkId, usize> = request
        .frameworks
        .iter()
        .enumerate()
        .map(|(i, f)| (f.framework_id.clone(), i))
        .collect();
    let mut allocator = Allocator::new();
    let first = allocator.allocate(request);
    take(request, &index, &first);
    // Who holds what where, to free a task of theirs.
    let mut holders: Vec<(usize, usize, String)> = Vec::new();
    for d in &first {
        let a = request.agents.iter().position(|(id, _)| *id == d.agent_id);
        if let Some(a) = a {
            holders.push((a, index[&d.framework_id], d.role.clone()));
        }
    }
    if holders.is_empty() {
        bail!("the first pass made no offers");
    }
    let task = Resources::parse(TASK)?;
    let per_cycle = changed.min(holders.len());
    let mut times = Vec::with_capacity(cycles);
    for cycle in 0..cycles {
        for k in 0..per_cycle {
            let (a, f, role) = holders[(cycle * per_cycle + k) % holders.len()].clone();
            Arc::make_mut(&mut Arc::make_mut(&mut request.agents)[a].1).add_all(&task);
            if let Some(held) = request.frameworks[f].allocated.get_mut(&role) {
                held.subtract_all(&task);
            }
            if let Some(held) = request.role_allocated.get_mut(&role) {
                held.subtract_all(&task);
            }
        }
        let start = Instant::now();
        let decisions = allocator.allocate(request);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "allocator: incremental pass {}: {:.2} ms over {} agents, {} offers",
            cycle + 1,
            ms,
            allocator.last_pass_agents,
            decisions.len()
        );
        times.push(ms);
        take(request, &index, &decisions);
    }
    Ok((times, per_cycle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape() {
        let request = build_request(10, 3, 2, false).unwrap();
        assert_eq!(request.agents.len(), 10);
        assert_eq!(request.frameworks.len(), 3);
        assert_eq!(request.cluster_total.scalar("cpus"), 240.0);
        assert_eq!(request.cluster_total.scalar("mem"), 40960.0);
        // Even agents are half used, odd ones free.
        assert_eq!(request.agents[0].1.scalar("cpus"), 12.0);
        assert_eq!(*request.agents[1].1, Resources::parse(AGENT_TOTAL).unwrap());
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
        let request = build_request(4, 2, 1, false).unwrap();
        assert!(request.frameworks.iter().all(|f| f.roles == ["*"]));
        assert_eq!(request.role_allocated["*"].scalar("mem"), 4096.0);
    }

    #[test]
    fn small_pass_offers_every_agent() {
        let request = build_request(20, 5, 1, false).unwrap();
        let decisions = allocate(&request);
        // Each agent's free resources go whole to one framework.
        assert_eq!(decisions.len(), 20);
    }

    #[test]
    fn quota_roles_are_guaranteed_first() {
        // 4 agents, 4 frameworks in 4 quota roles: frameworks 0 and 1 hold a used agent
        // each (their guarantee met); 2 and 3 get their guarantees in stage 1.
        let request = build_request(4, 4, 4, true).unwrap();
        assert_eq!(request.quotas.len(), 4);
        let decisions = allocate(&request);
        for role in ["role2", "role3"] {
            let cpus: f64 = decisions
                .iter()
                .filter(|d| d.role == role)
                .map(|d| d.resources.scalar("cpus"))
                .sum();
            assert!(cpus >= 12.0, "{role} got {cpus} cpus");
        }
    }

    #[test]
    fn incremental_cycles_free_and_reoffer() {
        let mut request = build_request(200, 10, 1, false).unwrap();
        let (times, per_cycle) = time_incremental(&mut request, 3, 2).unwrap();
        assert_eq!(times.len(), 3);
        assert_eq!(per_cycle, 2);
    }

    #[test]
    fn references() {
        assert_eq!(reference_ms(10_000, 1_000, 0), (Some(100.0), Some(1100.0)));
        assert_eq!(reference_ms(20_000, 2_000, 0), (Some(250.0), Some(3800.0)));
        assert_eq!(reference_ms(1_000, 100, 0), (Some(10.0), None));
        assert_eq!(
            reference_ms(3_000, 3_000, 3_000),
            (Some(300.0), Some(15000.0))
        );
        assert_eq!(reference_ms(50_000, 1_000, 0), (None, None));
    }
}
