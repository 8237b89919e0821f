//! The roles views: GET_ROLES and v0 `/roles`. Per role: its weight, the frameworks
//! subscribed to it, what it holds (allocated to tasks and executors, and offered), what
//! agents reserve for it, and its quota (guarantees, limits and what it consumes).

use super::resources_json;
use crate::allocator::Quantities;
use crate::core::Core;
use meseta_api::{FrameworkId, Resources};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// One role's figures.
#[derive(Default)]
struct RoleView {
    frameworks: Vec<FrameworkId>,
    allocated: Resources,
    offered: Resources,
    reserved: Resources,
}

fn role_views(core: &Core) -> BTreeMap<String, RoleView> {
    let mut roles: BTreeMap<String, RoleView> = BTreeMap::new();
    roles.entry("*".to_string()).or_default();
    for role in core.weights.keys().chain(core.quotas.keys()) {
        roles.entry(role.clone()).or_default();
    }
    for f in core.frameworks.values() {
        for role in f.roles() {
            roles
                .entry(role)
                .or_default()
                .frameworks
                .push(f.id().clone());
        }
    }
    for (role, held) in core.role_allocations() {
        roles.entry(role).or_default().allocated = held;
    }
    for offer in core.offers.values() {
        let view = roles.entry(offer.role.clone()).or_default();
        view.allocated.subtract_all(&offer.resources);
        view.offered.add_all(&offer.resources);
    }
    for agent in core.agents.values() {
        for r in agent.total.iter().filter(|r| !r.is_unreserved()) {
            roles
                .entry(r.reservation_role().to_string())
                .or_default()
                .reserved
                .add(r);
        }
    }
    roles
}

fn scalars_v1(quantities: &Quantities) -> Value {
    let map: Map<String, Value> = quantities
        .iter()
        .map(|(n, v)| (n.clone(), json!({"value": v})))
        .collect();
    Value::Object(map)
}

fn scalars_v0(quantities: &Quantities) -> Value {
    json!(quantities)
}

/// GET_ROLES.
pub fn get_roles(core: &Core) -> Value {
    let quotas = core.role_quotas();
    let consumed = core.quota_consumption();
    let list: Vec<Value> = role_views(core)
        .into_iter()
        .map(|(name, view)| {
            let mut total = view.allocated.clone();
            total.add_all(&view.offered);
            let quota = quotas.get(&name).cloned().unwrap_or_default();
            let guarantee: Vec<meseta_api::Resource> = quota
                .guarantees
                .iter()
                .map(|(n, v)| meseta_api::Resource::scalar(n, *v))
                .collect();
            json!({
                "name": name,
                "weight": core.weight(&name),
                "frameworks": view.frameworks,
                "resources": resources_json(&total),
                "allocated": resources_json(&view.allocated),
                "offered": resources_json(&view.offered),
                "reserved": resources_json(&view.reserved),
                "quota": {
                    "role": name,
                    "guarantee": guarantee,
                    "limit": scalars_v1(&quota.limits),
                    "consumed": scalars_v1(consumed.get(&name).unwrap_or(&Quantities::new())),
                },
            })
        })
        .collect();
    json!({"roles": list})
}

/// v0 `/roles`: the same figures in the v0 model (resources as `{"cpus":1.0}` maps).
pub fn v0_roles(core: &Core) -> Value {
    let quotas = core.role_quotas();
    let consumed = core.quota_consumption();
    let list: Vec<Value> = role_views(core)
        .into_iter()
        .map(|(name, view)| {
            let mut total = view.allocated.clone();
            total.add_all(&view.offered);
            let quota = quotas.get(&name).cloned().unwrap_or_default();
            let frameworks: Vec<&str> = view.frameworks.iter().map(|f| f.as_str()).collect();
            json!({
                "name": name,
                "weight": core.weight(&name),
                "frameworks": frameworks,
                "resources": total.to_v0_map(),
                "allocated": view.allocated.to_v0_map(),
                "offered": view.offered.to_v0_map(),
                "reserved": view.reserved.to_v0_map(),
                "quota": {
                    "role": name,
                    "guarantee": scalars_v0(&quota.guarantees),
                    "limit": scalars_v0(&quota.limits),
                    "consumed": scalars_v0(consumed.get(&name).unwrap_or(&Quantities::new())),
                },
            })
        })
        .collect();
    json!({"roles": list})
}
