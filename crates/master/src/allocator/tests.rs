//! Unit and property tests of the allocator.

use super::sorter;
use super::*;
use proptest::prelude::*;
use std::sync::Arc;

fn demand(id: &str, allocated: &str) -> FrameworkDemand {
    in_roles(id, &["*"], allocated)
}

/// A framework in `roles`, holding `allocated` in the first one.
fn in_roles(id: &str, roles: &[&str], allocated: &str) -> FrameworkDemand {
    FrameworkDemand {
        framework_id: FrameworkId::new(id),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        allocated: [(roles[0].to_string(), Resources::parse(allocated).unwrap())]
            .into_iter()
            .collect(),
        gpu_capable: false,
        filters: Arc::default(),
    }
}

fn request_with(
    agents: usize,
    per_agent: &str,
    frameworks: Vec<FrameworkDemand>,
    weights: &[(&str, f64)],
) -> AllocationRequest {
    let per_agent = Resources::parse(per_agent).unwrap();
    let mut total = Resources::new();
    for _ in 0..agents {
        total.add_all(&per_agent);
    }
    AllocationRequest {
        agents: Arc::new(
            (0..agents)
                .map(|i| {
                    (
                        AgentId::new(format!("a{i:04}")),
                        Arc::new(per_agent.clone()),
                    )
                })
                .collect(),
        ),
        agents_in_id_order: true,
        role_allocated: AllocationRequest::sum_role_allocations(&frameworks),
        frameworks,
        cluster_total: total,
        weights: weights.iter().map(|(r, w)| (r.to_string(), *w)).collect(),
        min_allocatable: default_min_allocatable(),
        quotas: BTreeMap::new(),
    }
}

/// Agent `a`'s free resources in `req`, to change.
fn free_mut(req: &mut AllocationRequest, a: usize) -> &mut Resources {
    Arc::make_mut(&mut Arc::make_mut(&mut req.agents)[a].1)
}

fn request(agents: usize, frameworks: Vec<FrameworkDemand>) -> AllocationRequest {
    request_with(
        agents,
        "cpus:4;mem:4096;ports:[31000-32000]",
        frameworks,
        &[],
    )
}

fn offered_to(decisions: &[Decision], id: &str) -> usize {
    decisions
        .iter()
        .filter(|d| d.framework_id.as_str() == id)
        .count()
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
    assert_eq!(offered_to(&d, "f1"), 2);
    assert_eq!(d.len(), 4);
}

#[test]
fn filters_and_gpus_and_reservations() {
    let mut f = demand("f", "");
    f.filters = Arc::new(RefuseFilters::from([(
        AgentId::new("a0000"),
        vec![Arc::new(
            Resources::parse("cpus:4;mem:4096;ports:[31000-32000]").unwrap(),
        )],
    )]));
    assert!(allocate(&request(1, vec![f])).is_empty());

    let mut req = request(1, vec![demand("f", "")]);
    Arc::make_mut(&mut req.agents)[0].1 =
        Arc::new(Resources::parse("cpus:1;mem:64;gpus:1;cpus(web):2").unwrap());
    let d = allocate(&req);
    assert_eq!(d[0].resources.scalar("gpus"), 0.0);
    assert_eq!(d[0].resources.scalar("cpus"), 1.0);

    let mut web = in_roles("w", &["web"], "");
    web.gpu_capable = true;
    req.frameworks = vec![web];
    let d = allocate(&req);
    assert_eq!(d[0].resources.scalar("cpus"), 3.0);
    assert_eq!(d[0].resources.scalar("gpus"), 1.0);
}

#[test]
fn nothing_below_minimum() {
    let mut req = request(1, vec![demand("f", "")]);
    Arc::make_mut(&mut req.agents)[0].1 = Arc::new(Resources::parse("cpus:0.001;mem:16").unwrap());
    assert!(allocate(&req).is_empty());
}

#[test]
fn min_allocatable_parses_mesos_format() {
    let alts = parse_min_allocatable("cpus:0.01|mem:32").unwrap();
    assert_eq!(alts, default_min_allocatable());
    let alts = parse_min_allocatable("cpus:1;mem:64|disk:10").unwrap();
    assert_eq!(alts.len(), 2);
    assert_eq!(alts[0]["cpus"], 1.0);
    assert_eq!(alts[0]["mem"], 64.0);
    assert_eq!(alts[1]["disk"], 10.0);
    assert_eq!(format_min_allocatable(&alts), "cpus:1;mem:64|disk:10");
    for bad in ["", "cpus:abc", "cpus:1|", "ports:[1-2]", "cpus:-1"] {
        assert!(
            parse_min_allocatable(bad).is_err(),
            "{bad} should be refused"
        );
    }
}

#[test]
fn min_allocatable_alternatives_are_honoured() {
    // An agent of cpus:2 with a minimum of cpus:3 offers nothing.
    let mut req = request_with(1, "cpus:2;mem:4096", vec![demand("f", "")], &[]);
    req.min_allocatable = parse_min_allocatable("cpus:3").unwrap();
    assert!(allocate(&req).is_empty());
    // Any alternative fully contained is enough.
    req.min_allocatable = parse_min_allocatable("cpus:3|mem:1024").unwrap();
    assert_eq!(allocate(&req).len(), 1);
    // Every quantity of an alternative must be there.
    req.min_allocatable = parse_min_allocatable("cpus:1;mem:8192").unwrap();
    assert!(allocate(&req).is_empty());
    req.min_allocatable = parse_min_allocatable("cpus:1;mem:2048").unwrap();
    assert_eq!(allocate(&req).len(), 1);
    // The default keeps the old behaviour: cpus:0.01 or mem:32.
    req.min_allocatable = default_min_allocatable();
    Arc::make_mut(&mut req.agents)[0].1 = Arc::new(Resources::parse("cpus:0.001;mem:40").unwrap());
    assert_eq!(allocate(&req).len(), 1);
}

#[test]
fn roles_are_ordered_before_frameworks() {
    // Role a holds 2 cpus through two frameworks (1 each); role b holds 1.5 through
    // one. Framework-level DRF would pick a's frameworks; role-level picks b.
    let frameworks = vec![
        in_roles("a1", &["a"], "cpus:1"),
        in_roles("a2", &["a"], "cpus:1"),
        in_roles("b1", &["b"], "cpus:1.5"),
    ];
    let d = allocate(&request(1, frameworks));
    assert_eq!(d[0].framework_id.as_str(), "b1");
    assert_eq!(d[0].role, "b");
}

#[test]
fn weight_divides_the_role_share() {
    // a holds twice what b holds, but weighs 3: its weighted share is smaller.
    let frameworks = vec![
        in_roles("fa", &["a"], "cpus:2"),
        in_roles("fb", &["b"], "cpus:1"),
    ];
    let mut req = request(1, frameworks);
    assert_eq!(allocate(&req)[0].framework_id.as_str(), "fb");
    req.weights.insert("a".into(), 3.0);
    assert_eq!(allocate(&req)[0].framework_id.as_str(), "fa");
}

#[test]
fn within_a_role_the_smallest_framework_goes_first() {
    let frameworks = vec![
        in_roles("f1", &["a"], "cpus:2"),
        in_roles("f2", &["a"], "cpus:1"),
    ];
    let d = allocate(&request(1, frameworks));
    assert_eq!(d[0].framework_id.as_str(), "f2");
}

#[test]
fn multi_role_allocation_counts_per_role() {
    // m holds 8 cpus in role x only; in role y it holds nothing, so as y's only
    // framework it is offered for y before role x's other framework (share 1/8).
    let m = FrameworkDemand {
        allocated: [("x".to_string(), Resources::parse("cpus:8").unwrap())]
            .into_iter()
            .collect(),
        ..in_roles("m", &["x", "y"], "")
    };
    let other = in_roles("o", &["x"], "cpus:1");
    let mut req = request(1, vec![m, other]);
    req.role_allocated.insert("y".into(), Resources::new());
    let d = allocate(&req);
    assert_eq!((d[0].framework_id.as_str(), d[0].role.as_str()), ("m", "y"));
    // Role x alone: its smallest framework in x is o.
    req.frameworks[0].roles = vec!["x".into()];
    assert_eq!(allocate(&req)[0].framework_id.as_str(), "o");
}

#[test]
fn allocations_of_frameworks_not_asking_count_for_the_role() {
    let frameworks = vec![in_roles("fa", &["a"], ""), in_roles("fb", &["b"], "")];
    let mut req = request(1, frameworks);
    req.role_allocated
        .insert("a".into(), Resources::parse("cpus:2").unwrap());
    assert_eq!(allocate(&req)[0].framework_id.as_str(), "fb");
}

/// Runs `rounds` allocation passes; after each, every framework launches one task
/// (`task`) out of each offer it got and declines the rest. Returns the frameworks'
/// dominant shares (of what their tasks use) after each round.
fn simulate(
    agents: usize,
    per_agent: &str,
    task: &str,
    frameworks: Vec<FrameworkDemand>,
    weights: &[(&str, f64)],
    rounds: usize,
) -> Vec<Vec<f64>> {
    let task = Resources::parse(task).unwrap();
    let mut req = request_with(agents, per_agent, frameworks, weights);
    let mut history = Vec::new();
    for _ in 0..rounds {
        req.role_allocated = AllocationRequest::sum_role_allocations(&req.frameworks);
        let decisions = allocate(&req);
        for d in decisions {
            if !d.resources.contains(&task) {
                continue;
            }
            let index = req
                .frameworks
                .iter()
                .position(|f| f.framework_id == d.framework_id)
                .unwrap();
            req.frameworks[index]
                .allocated
                .entry(d.role.clone())
                .or_default()
                .add_all(&task);
            let agent = Arc::make_mut(&mut req.agents)
                .iter_mut()
                .find(|a| a.0 == d.agent_id)
                .unwrap();
            Arc::make_mut(&mut agent.1).subtract_all(&task);
        }
        history.push(
            req.frameworks
                .iter()
                .map(|f| {
                    let mut all = Resources::new();
                    for held in f.allocated.values() {
                        all.add_all(held);
                    }
                    dominant_share(&all, &req.cluster_total)
                })
                .collect(),
        );
    }
    history
}

proptest! {
    #[test]
    fn never_offers_more_than_free(n_agents in 1usize..6, n_frameworks in 1usize..6, used in proptest::collection::vec(0u32..4, 6)) {
        let frameworks = (0..n_frameworks).map(|i| demand(&format!("f{i}"), &format!("cpus:{}", used[i]))).collect();
        let req = request(n_agents, frameworks);
        let decisions = allocate(&req);
        for (agent_id, free) in req.agents.iter() {
            let mut offered = Resources::new();
            for d in decisions.iter().filter(|d| &d.agent_id == agent_id) {
                offered.add_all(&d.resources);
            }
            prop_assert!(free.contains(&offered));
        }
        // Every agent with resources is offered to someone.
        prop_assert_eq!(decisions.len(), n_agents);
    }

    /// With several roles, weights, reservations and MULTI_ROLE frameworks, nothing is
    /// offered twice: each agent's offers together fit in its free resources, each
    /// offer is for one of the framework's roles and holds only what that role may use.
    #[test]
    fn no_resource_offered_twice(
        n_agents in 1usize..6,
        roles in proptest::collection::vec(proptest::collection::vec(0usize..3, 1..3), 1..6),
        weights in proptest::collection::vec(1u32..5, 3),
        reserved in proptest::collection::vec(0usize..4, 6),
    ) {
        let names = ["a", "b", "c"];
        let frameworks = roles.iter().enumerate().map(|(i, rs)| {
            let mut rs: Vec<&str> = rs.iter().map(|r| names[*r]).collect();
            rs.dedup();
            in_roles(&format!("f{i}"), &rs, "")
        }).collect();
        let weights: Vec<(&str, f64)> =
            names.iter().zip(&weights).map(|(n, w)| (*n, f64::from(*w) / 2.0)).collect();
        let mut req = request_with(n_agents, "cpus:4;mem:4096;ports:[31000-32000]", frameworks, &weights);
        for (i, agent) in Arc::make_mut(&mut req.agents).iter_mut().enumerate() {
            if let Some(role) = names.get(reserved[i]) {
                Arc::make_mut(&mut agent.1).add_all(&Resources::parse(&format!("cpus({role}):2;mem({role}):512")).unwrap());
            }
        }
        let decisions = allocate(&req);
        for (agent_id, free) in req.agents.iter() {
            let mut offered = Resources::new();
            for d in decisions.iter().filter(|d| &d.agent_id == agent_id) {
                offered.add_all(&d.resources);
            }
            prop_assert!(free.contains(&offered));
        }
        for d in &decisions {
            let f = req.frameworks.iter().find(|f| f.framework_id == d.framework_id).unwrap();
            prop_assert!(f.roles.contains(&d.role));
            for r in d.resources.iter() {
                let reservation = r.reservation_role();
                prop_assert!(reservation == "*" || reservation == d.role);
            }
            let pairs = decisions.iter().filter(|o| o.agent_id == d.agent_id && o.framework_id == d.framework_id && o.role == d.role).count();
            prop_assert_eq!(pairs, 1);
        }
    }

    /// Equal demand and weights: over repeated rounds (each framework launching one
    /// task out of each offer), the frameworks' dominant shares never differ by more
    /// than one task's share, whether they share a role or each has its own.
    #[test]
    fn equal_demand_stays_within_one_task(
        n_agents in 1usize..8,
        n_frameworks in 2usize..6,
        tasks_per_agent in 1u32..6,
        own_roles in any::<bool>(),
    ) {
        let frameworks: Vec<FrameworkDemand> = (0..n_frameworks).map(|i| {
            let role = if own_roles { format!("r{i}") } else { "*".to_string() };
            in_roles(&format!("f{i}"), &[role.as_str()], "")
        }).collect();
        let per_agent = format!("cpus:{tasks_per_agent};mem:{}", 256 * tasks_per_agent);
        let total_cpus = f64::from(tasks_per_agent) * n_agents as f64;
        let one_task = 1.0 / total_cpus;
        let rounds = tasks_per_agent as usize * n_agents + 2;
        for shares in simulate(n_agents, &per_agent, "cpus:1;mem:128", frameworks, &[], rounds) {
            let max = shares.iter().cloned().fold(0.0, f64::max);
            let min = shares.iter().cloned().fold(f64::MAX, f64::min);
            prop_assert!(max - min <= one_task + 1e-9, "shares {:?}, one task {}", shares, one_task);
        }
    }

    /// Weights 1 and 3, one framework each, many small agents (one task each): the
    /// shares end up 1:3. Greedy weighted DRF keeps |a/1 - b/3| within one agent, so
    /// with a + b = n the weight-1 role's count is within 3/4 of an agent of n/4; we
    /// allow one agent.
    #[test]
    fn weights_split_the_cluster(n_agents in 20usize..200) {
        let frameworks = vec![in_roles("light", &["light"], ""), in_roles("heavy", &["heavy"], "")];
        let req = request_with(n_agents, "cpus:1;mem:1024", frameworks, &[("light", 1.0), ("heavy", 3.0)]);
        let d = allocate(&req);
        prop_assert_eq!(d.len(), n_agents);
        let light = offered_to(&d, "light") as f64;
        prop_assert!((light - n_agents as f64 / 4.0).abs() <= 1.0, "light {} of {}", light, n_agents);
        // And over rounds of use: each launches a task per offer until the cluster is full.
        let frameworks = vec![in_roles("light", &["light"], ""), in_roles("heavy", &["heavy"], "")];
        let shares = simulate(n_agents, "cpus:4;mem:4096", "cpus:1;mem:1024", frameworks, &[("light", 1.0), ("heavy", 3.0)], 4 * n_agents);
        let last = shares.last().unwrap();
        let one_task = 1.0 / (4.0 * n_agents as f64);
        prop_assert!((last[0] - 0.25).abs() <= 3.0 * one_task, "final shares {:?}", last);
        prop_assert!((last[1] - 0.75).abs() <= 3.0 * one_task, "final shares {:?}", last);
    }
}

#[test]
fn roles_are_compared_hierarchically() {
    // a/x and a/y hold 1 cpu each (a: 2), b holds 1.5: b goes first although each of a's
    // children holds less than b.
    let frameworks = vec![
        in_roles("x", &["a/x"], "cpus:1"),
        in_roles("y", &["a/y"], "cpus:1"),
        in_roles("b", &["b"], "cpus:1.5"),
    ];
    let mut req = request(1, frameworks);
    assert_eq!(allocate(&req)[0].framework_id.as_str(), "b");
    // A weight on the parent role applies to its whole subtree.
    req.weights.insert("a".into(), 2.0);
    assert_eq!(allocate(&req)[0].framework_id.as_str(), "x");
}

#[test]
fn reservations_go_to_the_role_and_its_descendants() {
    let mut req = request(1, vec![in_roles("child", &["a/b"], "")]);
    Arc::make_mut(&mut req.agents)[0].1 =
        Arc::new(Resources::parse("cpus(a):2;mem(a):64;cpus(c):1").unwrap());
    let d = allocate(&req);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].resources,
        Resources::parse("cpus(a):2;mem(a):64").unwrap()
    );
}

fn quota(guarantees: &str, limits: &str) -> RoleQuota {
    let q = |text: &str| -> Quantities {
        Resources::parse(text)
            .unwrap()
            .iter()
            .map(|r| (r.name.clone(), r.scalar.unwrap().value))
            .collect()
    };
    RoleQuota {
        guarantees: q(guarantees),
        limits: q(limits),
    }
}

fn role_offered(decisions: &[Decision], role_prefix: &str, name: &str) -> f64 {
    decisions
        .iter()
        .filter(|d| sorter::is_ancestor_or_self(role_prefix, &d.role))
        .map(|d| d.resources.scalar(name))
        .sum()
}

#[test]
fn limits_cut_offers() {
    let mut req = request(3, vec![in_roles("f", &["dev"], "cpus:1")]);
    req.quotas.insert("dev".into(), quota("", "cpus:6"));
    let d = allocate(&req);
    // 1 held + 5 offered: the limit of 6; mem has no limit, so the third agent's mem is
    // offered without cpus.
    assert_eq!(role_offered(&d, "dev", "cpus"), 5.0);
    assert_eq!(d.len(), 3);
    assert_eq!(
        d[2].resources,
        Resources::parse("mem:4096;ports:[31000-32000]").unwrap()
    );
    // A parent's limit bounds its children together.
    let mut req = request(
        3,
        vec![in_roles("f1", &["p/a"], ""), in_roles("f2", &["p/b"], "")],
    );
    req.quotas.insert("p".into(), quota("", "cpus:5"));
    req.quotas.insert("p/a".into(), quota("", "cpus:4"));
    let d = allocate(&req);
    assert_eq!(role_offered(&d, "p", "cpus"), 5.0);
    assert!(role_offered(&d, "p/a", "cpus") <= 4.0);
}

#[test]
fn guarantees_come_first_and_headroom_is_held_back() {
    // 2 agents of 4 cpus; the greedy role is first by share, but q is guaranteed 6.
    let frameworks = vec![
        in_roles("greedy", &["g"], ""),
        in_roles("quota", &["q"], "cpus:1"),
    ];
    let mut req = request(2, frameworks);
    req.quotas.insert("q".into(), quota("cpus:6", ""));
    let d = allocate(&req);
    assert_eq!(role_offered(&d, "q", "cpus"), 5.0);
    assert_eq!(role_offered(&d, "g", "cpus"), 3.0);
    // Without q asking, the 5 cpus it still needs are held back from g.
    req.frameworks
        .retain(|f| f.framework_id.as_str() == "greedy");
    let d = allocate(&req);
    assert_eq!(role_offered(&d, "g", "cpus"), 3.0);
    // With the guarantee met (q holds 6), g gets everything.
    req.role_allocated
        .insert("q".into(), Resources::parse("cpus:6").unwrap());
    let d = allocate(&req);
    assert_eq!(role_offered(&d, "g", "cpus"), 8.0);
}

/// A random cluster for the quota and incremental properties: `agents` agents of
/// cpus:4;mem:1024, frameworks in roles under `a` and `b`, some holding resources.
fn quota_request(agents: usize, roles: &[usize], held: &[u32]) -> AllocationRequest {
    let names = ["a", "a/x", "a/y", "b"];
    let frameworks = roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            in_roles(
                &format!("f{i}"),
                &[names[r % names.len()]],
                &format!("cpus:{}", held[i % held.len()]),
            )
        })
        .collect();
    request_with(agents, "cpus:4;mem:1024", frameworks, &[])
}

proptest! {
    /// Limits are never exceeded (held plus offered, hierarchically), whatever the
    /// guarantees; guarantees are met when the cluster has room for them.
    #[test]
    fn quota_limits_hold_and_guarantees_are_met(
        n_agents in 1usize..6,
        roles in proptest::collection::vec(0usize..4, 1..6),
        held in proptest::collection::vec(0u32..3, 1..4),
        limits in proptest::collection::vec(proptest::option::of(1u32..12), 4),
        guarantees in proptest::collection::vec(proptest::option::of(1u32..6), 4),
    ) {
        let mut req = quota_request(n_agents, &roles, &held);
        let names = ["a", "a/x", "a/y", "b"];
        // What a's limit leaves for its children's guarantees.
        let mut parent_room = limits[0];
        for (i, role) in names.iter().enumerate() {
            let limit = limits[i].map(|l| format!("cpus:{l}")).unwrap_or_default();
            // Guarantees only on leaves, within their limits, and the children's
            // together within their parent's limit (satisfiable configs).
            let parent_limit = if role.starts_with("a/") { parent_room } else { None };
            let guarantee = match guarantees[i] {
                Some(g) if *role != "a" => {
                    let g = [limits[i], parent_limit].into_iter().flatten().fold(g, u32::min);
                    if role.starts_with("a/") {
                        parent_room = parent_room.map(|r| r - g);
                    }
                    format!("cpus:{g}")
                }
                _ => String::new(),
            };
            if !(limit.is_empty() && guarantee.is_empty()) {
                req.quotas.insert(role.to_string(), quota(&guarantee, &limit));
            }
        }
        let decisions = allocate(&req);
        let subtree_held = |role: &str| -> f64 {
            req.role_allocated.iter()
                .filter(|(r, _)| sorter::is_ancestor_or_self(role, r))
                .map(|(_, h)| h.scalar("cpus"))
                .sum()
        };
        for (role, q) in &req.quotas {
            let Some(limit) = q.limits.get("cpus") else { continue };
            let held = subtree_held(role);
            let offered = role_offered(&decisions, role, "cpus");
            prop_assert!(held >= *limit || held + offered <= limit + 1e-9,
                "role {} holds {} and is offered {} over its limit {}", role, held, offered, limit);
        }
        // Room for every guarantee: each role with a guarantee and a framework gets it.
        let guaranteed: f64 = req.quotas.values().filter_map(|q| q.guarantees.get("cpus")).sum();
        let free: f64 = req.agents.iter().map(|(_, f)| f.scalar("cpus")).sum();
        // Guarantees can all be met only if each limit leaves room for what the
        // guarantees below it still need.
        let need = |role: &str| -> f64 {
            req.quotas.iter()
                .filter(|(r, _)| sorter::is_ancestor_or_self(role, r))
                .filter_map(|(r, q)| q.guarantees.get("cpus").map(|g| (g - subtree_held(r)).max(0.0)))
                .sum()
        };
        let satisfiable = req.quotas.iter().all(|(r, q)| {
            q.limits.get("cpus").is_none_or(|l| need(r) <= l - subtree_held(r))
        });
        if guaranteed <= free && satisfiable {
            for (role, q) in &req.quotas {
                let Some(g) = q.guarantees.get("cpus") else { continue };
                if !req.frameworks.iter().any(|f| f.roles.contains(role)) { continue }
                let held = subtree_held(role);
                let offered = role_offered(&decisions, role, "cpus");
                prop_assert!(held + offered >= g - 1e-9 || req.agents.len() * 4 < (guaranteed as usize),
                    "role {} holds {} and is offered {}, guaranteed {}", role, held, offered, g);
            }
        }
    }

    /// Reserved resources (for a, a/x or b) go only to their role or its descendants.
    #[test]
    fn reserved_resources_only_to_their_subtree(
        n_agents in 1usize..5,
        roles in proptest::collection::vec(0usize..4, 1..6),
        reserved in proptest::collection::vec(0usize..4, 5),
    ) {
        let names = ["a", "a/x", "b", "none"];
        let mut req = quota_request(n_agents, &roles, &[0]);
        for (i, agent) in Arc::make_mut(&mut req.agents).iter_mut().enumerate() {
            if reserved[i] < 3 {
                let role = names[reserved[i]];
                Arc::make_mut(&mut agent.1).add_all(&Resources::parse(&format!("cpus({role}):2;mem({role}):64")).unwrap());
            }
        }
        for d in allocate(&req) {
            for r in d.resources.iter() {
                let reservation = r.reservation_role();
                prop_assert!(reservation == "*" || sorter::is_ancestor_or_self(reservation, &d.role),
                    "{} reserved for {} offered to {}", r.name, reservation, d.role);
            }
        }
    }

    /// The incremental allocator offers exactly what a full pass would, over a random
    /// history: offers are declined (sometimes with a filter), tasks launch and end,
    /// filters expire, roles are suppressed and revived, agents and frameworks come and
    /// go, quotas and weights change.
    #[test]
    fn incremental_equals_full(
        n_agents in 1usize..6,
        roles in proptest::collection::vec(0usize..4, 1..5),
        events in proptest::collection::vec((0u8..10, 0usize..100, 0usize..100), 1..30),
    ) {
        let names = ["a", "a/x", "a/y", "b"];
        let mut req = quota_request(n_agents, &roles, &[0]);
        let mut allocator = Allocator::new();
        // Outstanding offers and running tasks: (agent, framework, role, resources).
        let mut offers: Vec<(usize, usize, String, Resources)> = Vec::new();
        let mut tasks: Vec<(usize, usize, String, Resources)> = Vec::new();
        let mut all_frameworks = req.frameworks.clone();
        let mut added = 0;
        for (kind, x, y) in events {
            req.role_allocated = AllocationRequest::sum_role_allocations(&req.frameworks);
            let full = allocate(&req);
            let incremental = allocator.allocate(&req);
            prop_assert_eq!(&incremental, &full);
            for d in full {
                let a = req.agents.iter().position(|(id, _)| *id == d.agent_id).unwrap();
                let f = req.frameworks.iter().position(|f| f.framework_id == d.framework_id).unwrap();
                free_mut(&mut req, a).subtract_all(&d.resources);
                req.frameworks[f].allocated.entry(d.role.clone()).or_default().add_all(&d.resources);
                offers.push((a, f, d.role, d.resources));
            }
            let hold = |req: &mut AllocationRequest, f: usize, role: &str, r: &Resources, add: bool| {
                if let Some(fw) = req.frameworks.get_mut(f) {
                    let held = fw.allocated.entry(role.to_string()).or_default();
                    if add { held.add_all(r) } else { held.subtract_all(r) }
                }
            };
            match kind {
                // Decline an offer, maybe with a filter.
                0 | 1 if !offers.is_empty() => {
                    let (a, f, role, r) = offers.remove(x % offers.len());
                    free_mut(&mut req, a).add_all(&r);
                    hold(&mut req, f, &role, &r, false);
                    if kind == 1 && f < req.frameworks.len() {
                        let agent = req.agents[a].0.clone();
                        Arc::make_mut(&mut req.frameworks[f].filters)
                            .entry(agent)
                            .or_default()
                            .push(Arc::new(r));
                    }
                }
                // Launch a task of one cpu out of an offer, decline the rest.
                2 if !offers.is_empty() => {
                    let (a, f, role, mut r) = offers.remove(x % offers.len());
                    let task = Resources::parse("cpus:1;mem:128").unwrap();
                    hold(&mut req, f, &role, &r, false);
                    if r.contains(&task) {
                        r.subtract_all(&task);
                        hold(&mut req, f, &role, &task, true);
                        tasks.push((a, f, role, task));
                    }
                    free_mut(&mut req, a).add_all(&r);
                }
                // A task ends.
                3 if !tasks.is_empty() => {
                    let (a, f, role, r) = tasks.remove(x % tasks.len());
                    free_mut(&mut req, a).add_all(&r);
                    hold(&mut req, f, &role, &r, false);
                }
                // A filter expires.
                4 => {
                    let f = x % req.frameworks.len();
                    let filters = Arc::make_mut(&mut req.frameworks[f].filters);
                    let count: usize = filters.values().map(Vec::len).sum();
                    if count > 0 {
                        let mut i = y % count;
                        for refused in filters.values_mut() {
                            if i < refused.len() {
                                refused.remove(i);
                                break;
                            }
                            i -= refused.len();
                        }
                        filters.retain(|_, refused| !refused.is_empty());
                    }
                }
                // Suppress or revive a role.
                5 => {
                    let f = x % req.frameworks.len();
                    if req.frameworks[f].roles.is_empty() {
                        req.frameworks[f].roles = all_frameworks[f].roles.clone();
                    } else {
                        req.frameworks[f].roles.clear();
                    }
                }
                // A new agent.
                6 => {
                    // Named to sort before the first agents: requests need not be in order.
                    added += 1;
                    let id = AgentId::new(format!("{added:02}-new"));
                    let r = Resources::parse("cpus:2;mem:512").unwrap();
                    req.cluster_total.add_all(&r);
                    Arc::make_mut(&mut req.agents).push((id, Arc::new(r)));
                    req.agents_in_id_order = false;
                }
                // A quota (limit and maybe guarantee) or weight change.
                7 => {
                    let role = names[x % names.len()];
                    let guarantee = if y % 2 == 0 { format!("cpus:{}", y % 5) } else { String::new() };
                    req.quotas.insert(role.into(), quota(&guarantee, &format!("cpus:{}", 5 + y % 6)));
                }
                // An agent goes away with its offers and tasks.
                9 if req.agents.len() > 1 => {
                    let gone = x % req.agents.len();
                    let (_, free) = Arc::make_mut(&mut req.agents).remove(gone);
                    req.cluster_total.subtract_all(&free);
                    for held in [&mut offers, &mut tasks] {
                        for (a, f, role, r) in std::mem::take(held) {
                            match a.cmp(&gone) {
                                std::cmp::Ordering::Equal => {
                                    req.cluster_total.subtract_all(&r);
                                    hold(&mut req, f, &role, &r, false);
                                }
                                std::cmp::Ordering::Less => held.push((a, f, role, r)),
                                std::cmp::Ordering::Greater => held.push((a - 1, f, role, r)),
                            }
                        }
                    }
                }
                8 => {
                    req.weights.insert(names[x % names.len()].into(), 1.0 + (y % 4) as f64);
                    if y % 3 == 0 {
                        let f = in_roles(&format!("g{}", all_frameworks.len()), &[names[y % 4]], "");
                        all_frameworks.push(f.clone());
                        req.frameworks.push(f);
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn incremental_passes_look_at_changed_agents_only() {
    let mut req = request(50, vec![demand("f", "")]);
    let mut allocator = Allocator::new();
    let first = allocator.allocate(&req);
    assert_eq!(first.len(), 50);
    assert_eq!(allocator.last_pass_agents, 50);
    // The framework took every offer whole: nothing is free; one agent gets 1 cpu back.
    for d in &first {
        req.frameworks[0]
            .allocated
            .entry("*".into())
            .or_default()
            .add_all(&d.resources);
    }
    for agent in Arc::make_mut(&mut req.agents).iter_mut() {
        agent.1 = Arc::default();
    }
    Arc::make_mut(&mut req.agents)[7].1 = Arc::new(Resources::parse("cpus:1;mem:64").unwrap());
    req.role_allocated = AllocationRequest::sum_role_allocations(&req.frameworks);
    let second = allocator.allocate(&req);
    assert_eq!(allocator.last_pass_agents, 1);
    assert_eq!(second, allocate(&req));
    assert_eq!(second.len(), 1);
    // A framework revives (new one asking): every agent is looked at again.
    req.frameworks.push(demand("g", ""));
    allocator.allocate(&req);
    assert_eq!(allocator.last_pass_agents, 50);
}
