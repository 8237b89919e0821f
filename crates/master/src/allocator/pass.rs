//! One allocation pass over some agents, in two stages as in Mesos: stage 1 offers the
//! roles whose own guarantee is unsatisfied (those with the smallest weighted share
//! first) what their guarantees still need; stage 2 offers everyone by hierarchical
//! weighted DRF, within quota limits and the headroom kept for guarantees. Within a
//! role, the framework with the smallest share of what it holds there goes first.

use super::min_allocatable::allocatable;
use super::quota::{Pool, QuotaPass, Stage};
use super::sorter::{is_ancestor_or_self, share_key, share_of, usage, RoleTree, Usage};
use super::{AllocationRequest, Decision};
use meseta_api::{AgentId, FrameworkId, Resources};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;

/// The part of `free` a framework in `role` may be offered: unreserved resources and
/// those reserved for the role or an ancestor, without GPUs unless it takes them.
fn offerable(free: &Resources, role: &str, gpu_capable: bool) -> Resources {
    let mut out = Resources::new();
    for r in free.iter() {
        let reservation = r.reservation_role();
        let role_ok = reservation == "*" || is_ancestor_or_self(reservation, role);
        if role_ok && (gpu_capable || r.name != "gpus") {
            out.add(r);
        }
    }
    out
}

/// The running state of a pass.
struct Pass<'a> {
    request: &'a AllocationRequest,
    total: Usage,
    tree: RoleTree,
    /// Per framework index: what it holds in each of its roles (by tree node).
    framework_usage: Vec<BTreeMap<usize, Usage>>,
    /// Each client role's frameworks by share in the role, then id.
    members: BTreeMap<usize, BTreeSet<(u64, &'a FrameworkId, usize)>>,
    quota: Option<QuotaPass>,
    /// Stage 1: clients with an unsatisfied guarantee, by weighted share, then name.
    unsatisfied: BTreeSet<(u64, &'a str, usize)>,
}

/// A chosen offer: framework index, client role node, resources.
type Pick = (usize, usize, Resources);

impl<'a> Pass<'a> {
    fn new(request: &'a AllocationRequest, quota: Option<QuotaPass>) -> Pass<'a> {
        let total = usage(&request.cluster_total);
        let clients: BTreeSet<&str> = request
            .frameworks
            .iter()
            .flat_map(|f| f.roles.iter().map(String::as_str))
            .collect();
        let tree = RoleTree::new(
            request
                .role_allocated
                .iter()
                .map(|(role, held)| (role.as_str(), usage(held))),
            &clients,
            &request.weights,
            total,
        );
        let mut members: BTreeMap<usize, BTreeSet<(u64, &FrameworkId, usize)>> = BTreeMap::new();
        let mut framework_usage = Vec::with_capacity(request.frameworks.len());
        for (i, f) in request.frameworks.iter().enumerate() {
            let mut held_by_role = BTreeMap::new();
            for role in &f.roles {
                let node = tree.index_of(role).expect("clients are in the tree");
                let held = f.allocated.get(role).map(usage).unwrap_or_default();
                members.entry(node).or_default().insert((
                    share_key(share_of(&held, &total)),
                    &f.framework_id,
                    i,
                ));
                held_by_role.insert(node, held);
            }
            framework_usage.push(held_by_role);
        }
        let mut pass = Pass {
            request,
            total,
            tree,
            framework_usage,
            members,
            quota,
            unsatisfied: BTreeSet::new(),
        };
        for role in clients {
            pass.requeue_unsatisfied(role);
        }
        pass
    }

    /// Puts a client into the stage 1 order (at its current share) if its guarantee is
    /// still unsatisfied.
    fn requeue_unsatisfied(&mut self, role: &'a str) {
        let Some(quota) = &self.quota else { return };
        if quota.has_unsatisfied_guarantee(role) {
            let node = self.tree.index_of(role).expect("a client");
            self.unsatisfied
                .insert((self.tree.own_key(node), role, node));
        }
    }

    /// The first framework of client `node` that may be offered something of `free`.
    fn pick_in_role(
        &self,
        agent_id: &AgentId,
        free: &Resources,
        node: usize,
        stage: Stage,
        done: &BTreeSet<(usize, usize)>,
    ) -> Option<Pick> {
        let role = self.tree.name(node);
        let caps = self.quota.as_ref().map(|q| q.caps(role, stage));
        // The offer for frameworks without and with GPU_RESOURCES, made when needed.
        let mut shaped: [Option<Resources>; 2] = [None, None];
        for &(_, _, index) in self.members.get(&node)? {
            if done.contains(&(index, node)) {
                continue;
            }
            let framework = &self.request.frameworks[index];
            let offer = shaped[usize::from(framework.gpu_capable)].get_or_insert_with(|| {
                let base = offerable(free, role, framework.gpu_capable);
                match (&self.quota, &caps) {
                    (Some(q), Some(caps)) => q.cut(role, base, caps, stage),
                    _ => base,
                }
            });
            if offer.is_empty() || !allocatable(offer, &self.request.min_allocatable) {
                continue;
            }
            let filtered = framework
                .filters
                .get(agent_id)
                .is_some_and(|refused| refused.iter().any(|r| r.contains(offer)));
            if filtered {
                continue;
            }
            return Some((index, node, offer.clone()));
        }
        None
    }

    /// The next offer on `agent_id` out of `free` in `stage`, skipping framework/role
    /// pairs in `done`. Clients found unable to take anything more are taken out of the
    /// stage 2 order.
    fn next_offer(
        &mut self,
        agent_id: &AgentId,
        free: &Resources,
        stage: Stage,
        done: &BTreeSet<(usize, usize)>,
    ) -> Option<Pick> {
        if stage == Stage::Guarantees {
            return self
                .unsatisfied
                .iter()
                .find_map(|&(_, _, node)| self.pick_in_role(agent_id, free, node, stage, done));
        }
        let mut blocked = Vec::new();
        let pick = self.tree.walk(|node| {
            if let Some(q) = &self.quota {
                if q.blocked(self.tree.name(node), &self.request.min_allocatable) {
                    blocked.push(node);
                    return ControlFlow::Continue(());
                }
            }
            match self.pick_in_role(agent_id, free, node, stage, done) {
                Some(pick) => ControlFlow::Break(pick),
                None => ControlFlow::Continue(()),
            }
        });
        for node in blocked {
            self.tree.deactivate(node);
        }
        pick
    }

    fn record(&mut self, index: usize, node: usize, offer: &Resources) {
        let used = usage(offer);
        let framework_id = &self.request.frameworks[index].framework_id;
        if let Some(held) = self.framework_usage[index].get_mut(&node) {
            let members = self.members.get_mut(&node).expect("a member's role");
            members.remove(&(share_key(share_of(held, &self.total)), framework_id, index));
            for (h, u) in held.iter_mut().zip(&used) {
                *h += u;
            }
            members.insert((share_key(share_of(held, &self.total)), framework_id, index));
        }
        let role: &'a str = self.request.frameworks[index]
            .roles
            .iter()
            .find(|r| r.as_str() == self.tree.name(node))
            .expect("the framework's role");
        let queued = self
            .quota
            .is_some()
            .then(|| (self.tree.own_key(node), role, node));
        self.tree.allocate(node, &used);
        if let Some(quota) = &mut self.quota {
            quota.record(role, offer);
        }
        if let Some(entry) = queued {
            if self.unsatisfied.remove(&entry) {
                self.requeue_unsatisfied(role);
            }
        }
    }
}

/// The quota accounting a pass over `request` starts from (none without quotas); `pool`
/// is the quota pool of all of the request's agents.
pub fn quota_of(request: &AllocationRequest, pool: &Pool) -> Option<QuotaPass> {
    (!request.quotas.is_empty()).then(|| {
        QuotaPass::new(
            &request.quotas,
            request
                .role_allocated
                .iter()
                .map(|(role, held)| (role.as_str(), held)),
            pool,
            request
                .frameworks
                .iter()
                .flat_map(|f| f.roles.iter().map(String::as_str)),
        )
    })
}

/// Runs a pass over the agents at `agents` (indices into `request.agents`, in order),
/// starting from `quota` (see [`quota_of`]). Returns the offers and the quota accounting
/// as the pass left it.
pub fn run(
    request: &AllocationRequest,
    agents: &[usize],
    quota: Option<QuotaPass>,
) -> (Vec<Decision>, Option<QuotaPass>) {
    let mut pass = Pass::new(request, quota);
    let mut decisions: Vec<Decision> = Vec::new();
    let mut left: HashMap<usize, Resources> = HashMap::new();
    // Stage 1 decisions by (agent, framework, role node), which stage 2 may add to.
    let mut guaranteed: HashMap<(usize, usize, usize), usize> = HashMap::new();
    let stages: &[Stage] = if pass.quota.is_some() {
        &[Stage::Guarantees, Stage::Fair]
    } else {
        &[Stage::Fair]
    };
    for &stage in stages {
        for &a in agents {
            if stage == Stage::Guarantees && pass.unsatisfied.is_empty() {
                break;
            }
            let (agent_id, free) = &request.agents[a];
            let mut free = left.remove(&a).unwrap_or_else(|| (**free).clone());
            let mut done: BTreeSet<(usize, usize)> = BTreeSet::new();
            while !free.is_empty() {
                let Some((index, node, offer)) = pass.next_offer(agent_id, &free, stage, &done)
                else {
                    break;
                };
                done.insert((index, node));
                free.subtract_all(&offer);
                pass.record(index, node, &offer);
                if let Some(&d) = guaranteed.get(&(a, index, node)) {
                    decisions[d].resources.add_all(&offer);
                    continue;
                }
                if stage == Stage::Guarantees {
                    guaranteed.insert((a, index, node), decisions.len());
                }
                decisions.push(Decision {
                    framework_id: request.frameworks[index].framework_id.clone(),
                    agent_id: agent_id.clone(),
                    role: pass.tree.name(node).to_string(),
                    resources: offer,
                });
            }
            if stage == Stage::Guarantees {
                left.insert(a, free);
            }
        }
    }
    (decisions, pass.quota)
}
