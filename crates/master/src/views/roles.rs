//! The roles views: GET_ROLES and v0 `/roles`, in Mesos's shapes. The roles listed are
//! Mesos's known roles: those with frameworks or allocations, reservations, a weight or a
//! quota, and their ancestors. A role's figures are its subtree's (the role and its
//! descendants), as resource quantities by name.
//!
//! v1 `Role` (mesos.proto) has only `name`, `weight`, `frameworks` (`FrameworkID`s) and
//! `resources`: what the subtree holds and is offered, as scalar resources, cpus, mem,
//! disk and gpus only. v0 `/roles` (what the Mesos web UI reads) adds `allocated`,
//! `offered`, `reserved`, the deprecated `resources` (allocated plus offered) and `quota`
//! (`role`, `guarantee`, `limit`, `consumed`), each a `{"cpus": 1.0}` map; its `frameworks`
//! are id strings. Quota consumption is the master's figure: what the subtree holds in
//! tasks and executors plus its reservations they do not hold (offered resources count
//! only when reserved).

use crate::allocator::quota::fixed;
use crate::allocator::sorter::parent_role;
use crate::allocator::Quantities;
use crate::core::Core;
use meseta_api::resources::ValueType;
use meseta_api::{FrameworkId, Resource};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The quantities of resources by name, as Mesos's `ResourceQuantities::fromResources`:
/// a scalar counts its value, a range set its number of values, a set its items.
fn quantities<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Quantities {
    let mut out = Quantities::new();
    for r in resources {
        let amount = match r.kind {
            ValueType::Scalar => r.scalar.map_or(0.0, |s| s.value),
            ValueType::Ranges => r.ranges.as_ref().map_or(0.0, |rs| {
                rs.range.iter().map(|x| (x.end - x.begin + 1) as f64).sum()
            }),
            ValueType::Set => r.set.as_ref().map_or(0.0, |s| s.item.len() as f64),
            ValueType::Text => 0.0,
        };
        let v = out.entry(r.name.clone()).or_insert(0.0);
        *v = fixed(*v + amount);
    }
    out
}

/// `into += sign * from`, name by name.
fn add(into: &mut Quantities, from: &Quantities, sign: f64) {
    for (name, value) in from {
        let v = into.entry(name.clone()).or_insert(0.0);
        *v = fixed(*v + sign * value);
    }
}

/// Whether `role` is `root` or one of its descendants.
fn in_subtree(role: &str, root: &str) -> bool {
    role.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The sum of the quantities of the roles in `root`'s subtree.
fn subtree(by_role: &BTreeMap<String, Quantities>, root: &str) -> Quantities {
    let mut out = Quantities::new();
    for (_, q) in by_role.iter().filter(|(role, _)| in_subtree(role, root)) {
        add(&mut out, q, 1.0);
    }
    out
}

/// What the core holds, per role exactly (not per subtree): allocated (tasks and executors)
/// and offered by allocation role; reserved (agents' totals) and reserved-and-allocated by
/// reservation role.
#[derive(Default)]
struct Ledger {
    frameworks: BTreeMap<String, Vec<FrameworkId>>,
    allocated: BTreeMap<String, Quantities>,
    offered: BTreeMap<String, Quantities>,
    reserved: BTreeMap<String, Quantities>,
    reserved_allocated: BTreeMap<String, Quantities>,
}

/// The reserved ones of `resources`, as quantities by reservation role.
fn by_reservation_role<'a>(
    resources: impl IntoIterator<Item = &'a Resource>,
    into: &mut BTreeMap<String, Quantities>,
) {
    for r in resources.into_iter().filter(|r| !r.is_unreserved()) {
        let q = into.entry(r.reservation_role().to_string()).or_default();
        add(q, &quantities([r]), 1.0);
    }
}

fn ledger(core: &Core) -> Ledger {
    let mut ledger = Ledger::default();
    for f in core.frameworks.values() {
        for role in f.roles() {
            ledger
                .frameworks
                .entry(role)
                .or_default()
                .push(f.id().clone());
        }
    }
    let mut used = core.role_allocations();
    for offer in core.offers.values() {
        if let Some(held) = used.get_mut(&offer.role) {
            held.subtract_all(&offer.resources);
        }
        let offered = ledger.offered.entry(offer.role.clone()).or_default();
        add(offered, &quantities(offer.resources.iter()), 1.0);
    }
    for (role, held) in &used {
        by_reservation_role(held.iter(), &mut ledger.reserved_allocated);
        ledger
            .allocated
            .insert(role.clone(), quantities(held.iter()));
    }
    for agent in core.agents.values() {
        by_reservation_role(agent.total().iter(), &mut ledger.reserved);
    }
    ledger
}

/// Mesos's known roles: every role with frameworks, allocations, offers, reservations, a
/// weight or a quota, and their ancestors.
fn known_roles(core: &Core, ledger: &Ledger) -> BTreeSet<String> {
    let direct = ledger
        .frameworks
        .keys()
        .chain(ledger.allocated.keys())
        .chain(ledger.offered.keys())
        .chain(ledger.reserved.keys())
        .chain(core.weights.keys())
        .chain(core.quotas.keys());
    let mut roles = BTreeSet::new();
    for role in direct {
        let mut at = Some(role.as_str());
        while let Some(r) = at {
            if !roles.insert(r.to_string()) {
                break;
            }
            at = parent_role(r);
        }
    }
    roles
}

/// One role's figures, over its subtree.
struct RoleFigures {
    name: String,
    weight: f64,
    frameworks: Vec<FrameworkId>,
    allocated: Quantities,
    offered: Quantities,
    reserved: Quantities,
    /// Allocated plus the reservations not allocated.
    consumed: Quantities,
}

impl RoleFigures {
    /// Allocated plus offered (the deprecated `resources`).
    fn held(&self) -> Quantities {
        let mut held = self.allocated.clone();
        add(&mut held, &self.offered, 1.0);
        held
    }
}

fn figures(core: &Core) -> Vec<RoleFigures> {
    let ledger = ledger(core);
    known_roles(core, &ledger)
        .into_iter()
        .map(|name| {
            let allocated = subtree(&ledger.allocated, &name);
            let reserved = subtree(&ledger.reserved, &name);
            let mut consumed = allocated.clone();
            add(&mut consumed, &reserved, 1.0);
            add(
                &mut consumed,
                &subtree(&ledger.reserved_allocated, &name),
                -1.0,
            );
            RoleFigures {
                weight: core.weight(&name),
                frameworks: ledger.frameworks.get(&name).cloned().unwrap_or_default(),
                offered: subtree(&ledger.offered, &name),
                allocated,
                reserved,
                consumed,
                name,
            }
        })
        .collect()
}

/// GET_ROLES: `{"roles": [Role]}` with exactly the fields of mesos.proto's `Role`.
pub fn get_roles(core: &Core) -> Value {
    let list: Vec<Value> = figures(core)
        .into_iter()
        .map(|role| {
            let resources: Vec<Resource> = role
                .held()
                .into_iter()
                .filter(|(name, _)| matches!(name.as_str(), "cpus" | "mem" | "disk" | "gpus"))
                .map(|(name, value)| Resource::scalar(&name, value))
                .collect();
            json!({
                "name": role.name,
                "weight": role.weight,
                "frameworks": role.frameworks,
                "resources": resources,
            })
        })
        .collect();
    json!({"roles": list})
}

/// v0 `/roles`: Mesos's `/roles` document.
pub fn v0_roles(core: &Core) -> Value {
    let quotas = core.role_quotas();
    let list: Vec<Value> = figures(core)
        .into_iter()
        .map(|role| {
            let quota = quotas.get(&role.name).cloned().unwrap_or_default();
            let frameworks: Vec<&str> = role.frameworks.iter().map(|f| f.as_str()).collect();
            json!({
                "name": role.name,
                "weight": role.weight,
                "quota": {
                    "role": role.name,
                    "guarantee": quota.guarantees,
                    "limit": quota.limits,
                    "consumed": role.consumed,
                },
                "resources": role.held(),
                "allocated": role.allocated,
                "offered": role.offered,
                "reserved": role.reserved,
                "frameworks": frameworks,
            })
        })
        .collect();
    json!({"roles": list})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(name: &str, value: f64) -> Resource {
        Resource::scalar(name, value)
    }

    #[test]
    fn quantities_count_scalars_ranges_and_sets() {
        let ports: Resource = serde_json::from_value(json!({
            "name": "ports", "type": "RANGES",
            "ranges": {"range": [{"begin": 31000, "end": 31009}, {"begin": 32000, "end": 32000}]}
        }))
        .unwrap();
        let set: Resource = serde_json::from_value(
            json!({"name": "zones", "type": "SET", "set": {"item": ["a", "b"]}}),
        )
        .unwrap();
        let cpus = [scalar("cpus", 0.1), scalar("cpus", 0.2)];
        let q = quantities(cpus.iter().chain([&ports, &set]));
        let expected: Quantities = [("cpus", 0.3), ("ports", 11.0), ("zones", 2.0)]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        assert_eq!(q, expected);
    }

    #[test]
    fn subtrees_take_descendants_but_not_siblings_with_a_common_prefix() {
        assert!(in_subtree("a", "a"));
        assert!(in_subtree("a/b/c", "a"));
        assert!(!in_subtree("ab", "a"));
        assert!(!in_subtree("a", "a/b"));
        let by_role: BTreeMap<String, Quantities> = [("a", 1.0), ("a/b", 2.0), ("ab", 4.0)]
            .into_iter()
            .map(|(r, v)| (r.to_string(), Quantities::from([("cpus".to_string(), v)])))
            .collect();
        assert_eq!(subtree(&by_role, "a")["cpus"], 3.0);
        assert_eq!(subtree(&by_role, "a/b")["cpus"], 2.0);
        assert!(subtree(&by_role, "c").is_empty());
    }

    use crate::core::tests::{core, framework_info, launch, offers, register_with, task, T0};
    use crate::core::WeightInfo;

    fn entry<'a>(view: &'a Value, name: &str) -> Option<&'a Value> {
        view["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
    }

    fn names(view: &Value) -> Vec<&str> {
        let roles = view["roles"].as_array().unwrap();
        roles.iter().map(|r| r["name"].as_str().unwrap()).collect()
    }

    /// An agent with cpus reserved for dev/a, a framework in dev/b holding one offer, and
    /// a weight for ops/x.
    fn cluster() -> (Core, meseta_api::Offer, FrameworkId) {
        let mut c = core();
        register_with(
            &mut c,
            "L1",
            None,
            vec![],
            "cpus:4;mem:1024;ports:[31000-31010];cpus(dev/a):1",
        );
        let weight = WeightInfo {
            role: "ops/x".into(),
            weight: 2.0,
        };
        c.update_weights(&[weight]).unwrap();
        let info = framework_info(json!({"role": "dev/b"}));
        let fid = c.subscribe(T0, "S1".into(), info, vec![]).unwrap();
        c.drain_effects();
        c.allocate(T0);
        let offer = offers(&c.drain_effects(), "S1").pop().expect("one offer");
        (c, offer, fid)
    }

    #[test]
    fn known_roles_are_those_in_use_and_their_ancestors_without_a_default_star() {
        let (c, _, _) = cluster();
        let expected = ["dev", "dev/a", "dev/b", "ops", "ops/x"];
        assert_eq!(names(&get_roles(&c)), expected);
        assert_eq!(names(&v0_roles(&c)), expected);
    }

    #[test]
    fn get_roles_has_exactly_the_fields_of_the_role_message() {
        let (c, _, fid) = cluster();
        let view = get_roles(&c);
        for role in view["roles"].as_array().unwrap() {
            let mut keys: Vec<&str> = role
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            keys.sort();
            assert_eq!(
                keys,
                ["frameworks", "name", "resources", "weight"],
                "{role}"
            );
        }
        let dev = entry(&view, "dev").unwrap();
        assert_eq!(dev["weight"], json!(1.0));
        assert_eq!(dev["frameworks"], json!([]));
        // The subtree's offer, scalars among cpus/mem/disk/gpus only (no ports).
        assert_eq!(
            dev["resources"],
            json!([
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 1024.0}},
            ])
        );
        assert_eq!(
            entry(&view, "dev/b").unwrap()["frameworks"],
            json!([{"value": fid.as_str()}])
        );
        assert_eq!(entry(&view, "ops/x").unwrap()["weight"], json!(2.0));
    }

    #[test]
    fn v0_roles_sum_subtrees_and_consume_what_is_held_and_reserved_not_what_is_offered() {
        let (mut c, offer, fid) = cluster();
        let view = v0_roles(&c);
        let dev = entry(&view, "dev").unwrap();
        let mut keys: Vec<&str> = dev
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        let expected = [
            "allocated",
            "frameworks",
            "name",
            "offered",
            "quota",
            "reserved",
            "resources",
            "weight",
        ];
        assert_eq!(keys, expected);
        assert_eq!(
            dev["offered"],
            json!({"cpus": 4.0, "mem": 1024.0, "ports": 11.0})
        );
        assert_eq!(dev["resources"], dev["offered"]);
        assert_eq!(dev["allocated"], json!({}));
        assert_eq!(dev["reserved"], json!({"cpus": 1.0}));
        let quota = json!({"role": "dev", "guarantee": {}, "limit": {}, "consumed": {"cpus": 1.0}});
        assert_eq!(dev["quota"], quota);
        assert_eq!(
            entry(&view, "dev/b").unwrap()["frameworks"],
            json!([fid.as_str()])
        );

        c.accept(
            T0,
            &fid,
            launch(&offer, vec![task("t", &offer.agent_id, 1.5)]),
        );
        let view = v0_roles(&c);
        let dev = entry(&view, "dev").unwrap();
        assert_eq!(dev["allocated"], json!({"cpus": 1.5, "mem": 32.0}));
        assert_eq!(dev["offered"], json!({}));
        assert_eq!(dev["quota"]["consumed"], json!({"cpus": 2.5, "mem": 32.0}));
        let dev_a = entry(&view, "dev/a").unwrap();
        assert_eq!(dev_a["quota"]["consumed"], json!({"cpus": 1.0}));
        assert_eq!(dev_a["allocated"], json!({}));
    }
}
