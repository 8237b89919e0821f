//! The allocator: pure functions from what is free and who wants it to offers.
//!
//! Like Mesos's hierarchical allocator: weighted DRF across roles, hierarchically
//! (`a/b/c`; siblings by the weighted share of their subtree, see [`sorter`]), then plain
//! DRF across the frameworks of a role; quota guarantees first and quota limits never
//! exceeded (see [`quota`] and [`pass`]). A framework with several roles (MULTI_ROLE) is
//! sorted in each of its roles by what it holds in that role. What a framework and role
//! may be offered: unreserved resources plus those reserved for the role or an ancestor,
//! without GPUs for frameworks lacking GPU_RESOURCES, nothing below the minimum
//! allocatable size, and nothing a refuse filter covers.
//!
//! [`allocate`] is one full pass over every agent; [`Allocator`] keeps what it saw between
//! passes and runs the same pass over only the agents whose free resources changed, or
//! over all of them when something changed that could make more of them offerable
//! (see [`incremental`]).

mod incremental;
mod min_allocatable;
mod pass;
pub mod quota;
pub mod sorter;
#[cfg(test)]
mod tests;

pub use incremental::Allocator;
pub use min_allocatable::{
    default_min_allocatable, format_min_allocatable, parse_min_allocatable, MinQuantities,
};
pub use quota::Quantities;

use meseta_api::{AgentId, FrameworkId, Resources};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A framework's active refuse filters: per agent, the resources refused there (shared
/// with the filters themselves).
pub type RefuseFilters = BTreeMap<AgentId, Vec<Arc<Resources>>>;

/// A framework asking for offers.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameworkDemand {
    pub framework_id: FrameworkId,
    /// Roles the framework wants offers for (suppressed roles already removed).
    pub roles: Vec<String>,
    /// What it holds now (tasks, executors and outstanding offers), per role it is
    /// allocated to. Only scalars count (the core hands over no others).
    pub allocated: BTreeMap<String, Resources>,
    pub gpu_capable: bool,
    /// Active refuse filters, shared with the caller's index of them: a request does not
    /// copy them, and the allocator tells an unchanged set by pointer.
    pub filters: Arc<RefuseFilters>,
}

/// A role's quota: scalar quantities it is guaranteed and may never exceed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleQuota {
    pub guarantees: Quantities,
    pub limits: Quantities,
}

/// Everything one allocation pass looks at.
#[derive(Debug, Clone)]
pub struct AllocationRequest {
    /// Each agent that may be offered, with its free resources (shared with the agent's
    /// holdings while they do not change). The list itself is shared too: the core keeps
    /// it between passes and changes only the entries of agents that changed.
    pub agents: Arc<Vec<(AgentId, Arc<Resources>)>>,
    /// Whether `agents` is in id order (the core's list always is), which spares the
    /// allocator a check that compares every id with the next each pass; it orders a
    /// list that is not. Checked in debug builds.
    pub agents_in_id_order: bool,
    pub frameworks: Vec<FrameworkDemand>,
    /// The connected agents' total; only scalars count, as in what is held below.
    pub cluster_total: Resources,
    /// What each role holds now across all frameworks, also those not asking for offers
    /// (inactive or disconnected ones still hold their tasks).
    pub role_allocated: BTreeMap<String, Resources>,
    /// Role weights; a role not listed weighs 1.
    pub weights: BTreeMap<String, f64>,
    /// `--min_allocatable_resources` alternatives; empty means no minimum.
    pub min_allocatable: Vec<MinQuantities>,
    /// Role quotas; a role not listed has none.
    pub quotas: BTreeMap<String, RoleQuota>,
}

impl AllocationRequest {
    /// `role_allocated` as the sum of the frameworks' allocations (when every framework
    /// holding resources is in `frameworks`).
    pub fn sum_role_allocations(frameworks: &[FrameworkDemand]) -> BTreeMap<String, Resources> {
        let mut roles: BTreeMap<String, Resources> = BTreeMap::new();
        for f in frameworks {
            for (role, resources) in &f.allocated {
                roles.entry(role.clone()).or_default().add_all(resources);
            }
        }
        roles
    }
}

/// One offer to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub role: String,
    pub resources: Resources,
}

/// The largest of allocated/total over the resources that count (cpus, mem, disk, gpus).
pub fn dominant_share(allocated: &Resources, total: &Resources) -> f64 {
    sorter::share_of(&sorter::usage(allocated), &sorter::usage(total))
}

/// One full allocation pass over every agent of the request.
pub fn allocate(request: &AllocationRequest) -> Vec<Decision> {
    let pool = if request.quotas.is_empty() {
        quota::Pool::default()
    } else {
        quota::Pool::of(request.agents.iter().map(|(_, free)| &**free))
    };
    let all: Vec<usize> = (0..request.agents.len()).collect();
    pass::run(request, &all, pass::quota_of(request, &pool)).0
}
