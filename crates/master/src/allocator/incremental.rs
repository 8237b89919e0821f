//! Incremental allocation: the same pass as [`super::allocate`], over only the agents
//! where it can offer something.
//!
//! Within a pass, nothing ever becomes more offerable: offers only add to what roles and
//! frameworks hold, quota room and headroom surplus only shrink. So an agent whose free
//! resources a pass left unoffered stays unofferable until either its free resources
//! change (a task ended, an offer was declined, the agent re-registered) or something
//! *loosens*: a framework or role starts asking (new, revived, reconnected), a refuse
//! filter goes away, GPU_RESOURCES appears, the quota or the minimum allocatable size
//! changes, a role with quota consumes less, or the headroom surplus grows while a
//! guarantee is unsatisfied. [`Allocator`] remembers what each agent had left after the
//! last pass that looked at it, and what the frameworks and quotas were; a pass then runs
//! over the agents whose free resources differ from that (in the request's order), or
//! over all agents after a loosening. The offers are exactly those of a full pass over the
//! same request (a property test checks this), at a cost proportional to the agents that
//! changed plus a comparison per agent and per framework. The comparison is by pointer
//! first: an agent's free resources come shared, and while the caller hands over the very
//! set a pass saw and left unoffered, nothing on the agent changed.

use super::pass;
use super::quota::{Pool, QuotaSnapshot};
use super::{
    AllocationRequest, Decision, FrameworkDemand, MinQuantities, RefuseFilters, RoleQuota,
};
use crate::ordered_walk::advance_to;
use meseta_api::{AgentId, FrameworkId, Resources};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What makes a framework offerable, as last seen.
#[derive(Debug, Clone, PartialEq)]
struct Asking {
    roles: Vec<String>,
    gpu_capable: bool,
    filters: Arc<RefuseFilters>,
}

impl Asking {
    fn of(f: &FrameworkDemand) -> Asking {
        Asking {
            roles: f.roles.clone(),
            gpu_capable: f.gpu_capable,
            filters: f.filters.clone(),
        }
    }

    /// Whether `now` may take something `self` could not.
    fn loosened_to(&self, now: &FrameworkDemand) -> bool {
        now.roles.iter().any(|r| !self.roles.contains(r))
            || (now.gpu_capable && !self.gpu_capable)
            || (!Arc::ptr_eq(&self.filters, &now.filters) && lifted(&self.filters, &now.filters))
    }
}

/// Whether some filter of `before` is not in `now`.
fn lifted(before: &RefuseFilters, now: &RefuseFilters) -> bool {
    before.iter().any(|(agent, refused)| {
        let kept = now.get(agent);
        refused
            .iter()
            .any(|r| !kept.is_some_and(|kept| kept.contains(r)))
    })
}

/// What the last pass over an agent left there.
#[derive(Debug)]
struct Settled {
    /// Its free resources less what that pass offered.
    left: Resources,
    /// The free resources that pass was given, when it offered nothing of them (so that
    /// `left` is all of them).
    untouched: Option<Arc<Resources>>,
}

impl Settled {
    fn is(&self, free: &Arc<Resources>) -> bool {
        self.untouched
            .as_ref()
            .is_some_and(|seen| Arc::ptr_eq(seen, free))
            || self.left == **free
    }
}

/// The allocator's memory between passes.
#[derive(Debug, Default)]
pub struct Allocator {
    /// Per agent, in id order.
    settled: Vec<(AgentId, Settled)>,
    /// The quota pool of `settled`.
    pool: Pool,
    asking: BTreeMap<FrameworkId, Asking>,
    quotas: BTreeMap<String, RoleQuota>,
    min_allocatable: Vec<MinQuantities>,
    /// The quota accounting as the last pass left it.
    quota_after: Option<QuotaSnapshot>,
    /// How many agents the last pass looked at (for tests and metrics).
    pub last_pass_agents: usize,
}

impl Allocator {
    pub fn new() -> Allocator {
        Allocator::default()
    }

    /// Brings `settled` and the pool up to date with the request's agents, walking both
    /// in id order (the core's requests come in that order; others are sorted first), so
    /// that an unchanged agent costs a comparison or two and no lookup. Returns the
    /// indices, in the request's order, of the agents whose free resources differ from
    /// what the last pass over them left.
    fn settle(&mut self, request: &AllocationRequest) -> Vec<usize> {
        let agents = &request.agents;
        let sorted = request.agents_in_id_order;
        debug_assert!(
            !sorted || agents.is_sorted_by(|a, b| a.0 <= b.0),
            "agents said to be in id order are not"
        );
        let mut by_id: Vec<usize> = Vec::new();
        if !sorted {
            by_id.extend(0..agents.len());
            by_id.sort_by(|&a, &b| agents[a].0.cmp(&agents[b].0));
        }
        let order: &mut dyn Iterator<Item = usize> = match sorted {
            true => &mut (0..agents.len()),
            false => &mut by_id.into_iter(),
        };
        let settled = Vec::with_capacity(agents.len());
        let mut before = std::mem::replace(&mut self.settled, settled)
            .into_iter()
            .peekable();
        let mut dirty = Vec::new();
        for i in order {
            let (agent_id, free) = &agents[i];
            let pool = &mut self.pool;
            let this = advance_to(&mut before, agent_id, |_, gone| pool.add(&gone.left, -1.0));
            let entry = match this {
                Some((id, mut settled)) => {
                    if !settled.is(free) {
                        self.pool.add(&settled.left, -1.0);
                        self.pool.add(free, 1.0);
                        settled.left.clone_from(free);
                        dirty.push(i);
                    }
                    settled.untouched = Some(Arc::clone(free));
                    (id, settled)
                }
                None => {
                    self.pool.add(free, 1.0);
                    dirty.push(i);
                    let settled = Settled {
                        left: (**free).clone(),
                        untouched: Some(Arc::clone(free)),
                    };
                    (agent_id.clone(), settled)
                }
            };
            self.settled.push(entry);
        }
        for (_, gone) in before {
            self.pool.add(&gone.left, -1.0);
        }
        if !sorted {
            dirty.sort_unstable();
        }
        dirty
    }

    /// One pass, over the agents where it can offer something; the same offers as
    /// [`super::allocate`] on `request`.
    pub fn allocate(&mut self, request: &AllocationRequest) -> Vec<Decision> {
        let mut loosened = request.quotas != self.quotas
            || request.min_allocatable != self.min_allocatable
            || request.frameworks.iter().any(|f| {
                self.asking
                    .get(&f.framework_id)
                    .is_none_or(|seen| seen.loosened_to(f))
            });
        let dirty = self.settle(request);
        let quota = pass::quota_of(request, &self.pool);
        if let (Some(before), Some(now)) = (&self.quota_after, &quota) {
            loosened |= before.loosened_to(&now.snapshot());
        }
        let agents: Vec<usize> = if loosened {
            (0..request.agents.len()).collect()
        } else {
            dirty
        };
        self.last_pass_agents = agents.len();
        let (decisions, quota_after) = pass::run(request, &agents, quota);
        for d in &decisions {
            let at = self.settled.binary_search_by(|(id, _)| id.cmp(&d.agent_id));
            if let Ok(at) = at {
                let settled = &mut self.settled[at].1;
                settled.left.subtract_all(&d.resources);
                settled.untouched = None;
                self.pool.add(&d.resources, -1.0);
            }
        }
        self.quota_after = quota_after.map(|q| q.snapshot());
        self.asking = request
            .frameworks
            .iter()
            .map(|f| (f.framework_id.clone(), Asking::of(f)))
            .collect();
        self.quotas.clone_from(&request.quotas);
        self.min_allocatable.clone_from(&request.min_allocatable);
        decisions
    }
}
