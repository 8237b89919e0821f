//! The allocator: a pure function from what is free and who wants it to offers.
//!
//! Frameworks are served in weighted-DRF order (smallest dominant share of cpus, mem, disk
//! and gpus first); each agent's free resources go to the first eligible framework and
//! role: unreserved resources plus those reserved for the role, without GPUs for
//! frameworks lacking GPU_RESOURCES, nothing below the minimum allocatable size, and
//! nothing a framework's refuse filter covers.

use meseta_api::{AgentId, FrameworkId, Resources};

/// Mesos's `--min_allocatable_resources` default: `cpus:0.01|mem:32`.
const MIN_CPUS: f64 = 0.01;
const MIN_MEM: f64 = 32.0;

/// Resources that count toward a dominant share.
const SHARE_RESOURCES: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

/// A framework asking for offers.
#[derive(Debug, Clone)]
pub struct FrameworkDemand {
    pub framework_id: FrameworkId,
    /// Roles the framework wants offers for (suppressed roles already removed).
    pub roles: Vec<String>,
    /// What it holds now (tasks, executors and outstanding offers).
    pub allocated: Resources,
    pub gpu_capable: bool,
    /// Active refuse filters: agent and the resources refused there.
    pub filters: Vec<(AgentId, Resources)>,
}

/// Everything one allocation pass looks at.
#[derive(Debug, Clone)]
pub struct AllocationRequest {
    /// Each connected agent with its free resources.
    pub agents: Vec<(AgentId, Resources)>,
    pub frameworks: Vec<FrameworkDemand>,
    pub cluster_total: Resources,
}

/// One offer to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub role: String,
    pub resources: Resources,
}

fn dominant_share(allocated: &Resources, total: &Resources) -> f64 {
    SHARE_RESOURCES
        .iter()
        .map(|name| {
            let t = total.scalar(name);
            if t > 0.0 {
                allocated.scalar(name) / t
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

/// The part of `free` a framework in `role` may be offered.
fn offerable(free: &Resources, role: &str, gpu_capable: bool) -> Resources {
    let mut out = Resources::new();
    for r in free.iter() {
        let reservation = r.reservation_role();
        let role_ok = reservation == "*"
            || reservation == role
            || role.starts_with(&format!("{reservation}/"));
        if role_ok && (gpu_capable || r.name != "gpus") {
            out.add(r);
        }
    }
    out
}

fn allocatable(resources: &Resources) -> bool {
    resources.scalar("cpus") >= MIN_CPUS || resources.scalar("mem") >= MIN_MEM
}

/// One allocation pass.
pub fn allocate(request: &AllocationRequest) -> Vec<Decision> {
    let mut shares: Vec<(f64, usize)> = request
        .frameworks
        .iter()
        .enumerate()
        .map(|(i, f)| (dominant_share(&f.allocated, &request.cluster_total), i))
        .collect();
    let mut allocated: Vec<Resources> = request
        .frameworks
        .iter()
        .map(|f| f.allocated.clone())
        .collect();
    let mut decisions = Vec::new();
    for (agent_id, free) in &request.agents {
        let mut free = free.clone();
        shares.sort_by(|a, b| {
            a.0.total_cmp(&b.0).then_with(|| {
                request.frameworks[a.1]
                    .framework_id
                    .cmp(&request.frameworks[b.1].framework_id)
            })
        });
        for slot in shares.iter_mut() {
            let framework = &request.frameworks[slot.1];
            for role in &framework.roles {
                let offer = offerable(&free, role, framework.gpu_capable);
                if offer.is_empty() || !allocatable(&offer) {
                    continue;
                }
                let filtered = framework
                    .filters
                    .iter()
                    .any(|(agent, refused)| agent == agent_id && refused.contains(&offer));
                if filtered {
                    continue;
                }
                free.subtract_all(&offer);
                allocated[slot.1].add_all(&offer);
                slot.0 = dominant_share(&allocated[slot.1], &request.cluster_total);
                decisions.push(Decision {
                    framework_id: framework.framework_id.clone(),
                    agent_id: agent_id.clone(),
                    role: role.clone(),
                    resources: offer,
                });
            }
            if free.is_empty() {
                break;
            }
        }
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn demand(id: &str, allocated: &str) -> FrameworkDemand {
        FrameworkDemand {
            framework_id: FrameworkId::new(id),
            roles: vec!["*".into()],
            allocated: Resources::parse(allocated).unwrap(),
            gpu_capable: false,
            filters: vec![],
        }
    }

    fn request(agents: usize, frameworks: Vec<FrameworkDemand>) -> AllocationRequest {
        let per_agent = Resources::parse("cpus:4;mem:4096;ports:[31000-32000]").unwrap();
        let mut total = Resources::new();
        for _ in 0..agents {
            total.add_all(&per_agent);
        }
        AllocationRequest {
            agents: (0..agents)
                .map(|i| (AgentId::new(format!("a{i}")), per_agent.clone()))
                .collect(),
            frameworks,
            cluster_total: total,
        }
    }

    #[test]
    fn lowest_share_goes_first() {
        let req = request(1, vec![demand("busy", "cpus:4"), demand("idle", "")]);
        let d = allocate(&req);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].framework_id, FrameworkId::new("idle"));
    }

    #[test]
    fn agents_are_spread_by_share() {
        let req = request(4, vec![demand("f1", ""), demand("f2", "")]);
        let d = allocate(&req);
        let f1 = d.iter().filter(|d| d.framework_id.as_str() == "f1").count();
        assert_eq!(f1, 2);
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn filters_and_gpus_and_reservations() {
        let mut f = demand("f", "");
        f.filters = vec![(
            AgentId::new("a0"),
            Resources::parse("cpus:4;mem:4096;ports:[31000-32000]").unwrap(),
        )];
        assert!(allocate(&request(1, vec![f])).is_empty());

        let mut req = request(1, vec![demand("f", "")]);
        req.agents[0].1 = Resources::parse("cpus:1;mem:64;gpus:1;cpus(web):2").unwrap();
        let d = allocate(&req);
        assert_eq!(d[0].resources.scalar("gpus"), 0.0);
        assert_eq!(d[0].resources.scalar("cpus"), 1.0);

        let mut web = demand("w", "");
        web.roles = vec!["web".into()];
        web.gpu_capable = true;
        req.frameworks = vec![web];
        let d = allocate(&req);
        assert_eq!(d[0].resources.scalar("cpus"), 3.0);
        assert_eq!(d[0].resources.scalar("gpus"), 1.0);
    }

    #[test]
    fn nothing_below_minimum() {
        let mut req = request(1, vec![demand("f", "")]);
        req.agents[0].1 = Resources::parse("cpus:0.001;mem:16").unwrap();
        assert!(allocate(&req).is_empty());
    }

    proptest! {
        #[test]
        fn never_offers_more_than_free(n_agents in 1usize..6, n_frameworks in 1usize..6, used in proptest::collection::vec(0u32..4, 6)) {
            let frameworks = (0..n_frameworks).map(|i| demand(&format!("f{i}"), &format!("cpus:{}", used[i]))).collect();
            let req = request(n_agents, frameworks);
            let decisions = allocate(&req);
            for (agent_id, free) in &req.agents {
                let mut offered = Resources::new();
                for d in decisions.iter().filter(|d| &d.agent_id == agent_id) {
                    offered.add_all(&d.resources);
                }
                prop_assert!(free.contains(&offered));
            }
            // Every agent with resources is offered to someone.
            prop_assert_eq!(decisions.len(), n_agents);
        }
    }
}
