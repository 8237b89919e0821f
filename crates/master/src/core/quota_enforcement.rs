//! Quota outside the allocator's passes: what a quota change does to outstanding offers,
//! and dynamic reservations against quota limits.
//!
//! - After UPDATE_QUOTA, outstanding offers that now break a limit (a role's consumption,
//!   offers included, above its limit) or the headroom (the unreserved free resources
//!   below the sum of unsatisfied guarantees) are rescinded, newest first, each only if
//!   taking it back lessens the breach ([`offers_breaking_quota`]); their resources go
//!   back to the allocator.
//! - As in Mesos 1.9+, reservations count against limits: a RESERVE (offer operation or
//!   RESERVE_RESOURCES) that would take a role's consumption beyond its limit is refused
//!   ([`check_reserve`]).

use super::*;
use crate::allocator::quota::{consumption, Pool, Quantities, QuotaPass};
use crate::allocator::sorter::is_ancestor_or_self;
use crate::allocator::RoleQuota;

/// An outstanding offer, as quota sees it.
#[derive(Debug, Clone, Copy)]
pub struct HeldOffer<'a> {
    pub id: &'a OfferId,
    pub role: &'a str,
    pub resources: &'a Resources,
}

/// The offers to rescind so that quota holds again, newest first: `offers` in the order
/// they were made, `used` what each role holds besides offers, `free` the unreserved and
/// reserved resources no one holds. An offer is taken back only when that lessens how far
/// quota is broken (see [`QuotaPass::excess`]); none when quota holds.
pub fn offers_breaking_quota(
    quotas: &BTreeMap<String, RoleQuota>,
    used: &BTreeMap<String, Resources>,
    offers: &[HeldOffer],
    free: &Pool,
) -> Vec<OfferId> {
    let excess = |kept: &[bool], pool: &Pool| {
        let mut held = used.clone();
        for (o, _) in offers.iter().zip(kept).filter(|(_, k)| **k) {
            held.entry(o.role.to_string())
                .or_default()
                .add_all(o.resources);
        }
        QuotaPass::new(
            quotas,
            held.iter().map(|(r, h)| (r.as_str(), h)),
            pool,
            std::iter::empty(),
        )
        .excess()
    };
    let mut kept = vec![true; offers.len()];
    let mut pool = free.clone();
    let mut now = excess(&kept, &pool);
    let mut rescinded = Vec::new();
    for i in (0..offers.len()).rev() {
        if now <= 0.0 {
            break;
        }
        kept[i] = false;
        let mut returned = pool.clone();
        returned.add(offers[i].resources, 1.0);
        let after = excess(&kept, &returned);
        if after < now {
            now = after;
            pool = returned;
            rescinded.push(offers[i].id.clone());
        } else {
            kept[i] = true;
        }
    }
    rescinded
}

/// Checks a RESERVE of `reserved` (the resources as they will be reserved) against the
/// limits: each configured role on the path from a reservation's role to the root may not
/// consume more than its limit. `consumed` is what each configured role consumes now;
/// `source` the resources the reservation is made from when they are counted there now
/// (free resources, reserved ones counting for their roles), `None` when they are not
/// (they were offered and the offer is being accepted).
pub fn check_reserve(
    quotas: &BTreeMap<String, RoleQuota>,
    consumed: &BTreeMap<String, Quantities>,
    reserved: &Resources,
    source: Option<&Resources>,
) -> Result<(), String> {
    let in_subtree = |role: &str, resources: &Resources, added: &mut Quantities, sign: f64| {
        for r in resources.iter() {
            if let Some(s) = r
                .scalar
                .filter(|_| is_ancestor_or_self(role, r.reservation_role()))
            {
                *added.entry(r.name.clone()).or_insert(0.0) += sign * s.value;
            }
        }
    };
    for (role, quota) in quotas.iter().filter(|(_, q)| !q.limits.is_empty()) {
        let mut added = Quantities::new();
        in_subtree(role, reserved, &mut added, 1.0);
        if let Some(source) = source {
            in_subtree(role, source, &mut added, -1.0);
        }
        for (name, more) in added.into_iter().filter(|(_, more)| *more > 1e-9) {
            let Some(limit) = quota.limits.get(&name) else {
                continue;
            };
            let now = consumed
                .get(role)
                .and_then(|c| c.get(&name))
                .copied()
                .unwrap_or(0.0);
            if now + more > limit + 1e-9 {
                return Err(format!(
                    "Invalid RESERVE operation: reserving {reserved} would take the consumption of '{name}' by role '{role}' to {}, beyond its quota limit of {limit}",
                    ((now + more) * 1000.0).round() / 1000.0
                ));
            }
        }
    }
    Ok(())
}

impl Core {
    /// What each role holds besides outstanding offers, and the offers oldest first.
    fn held_besides_offers(&self) -> (BTreeMap<String, Resources>, Vec<&OfferEntry>) {
        let mut used = self.role_allocations();
        let mut offers: Vec<&OfferEntry> = self.offers.values().map(|o| &**o).collect();
        offers.sort_by(|a, b| {
            a.created
                .total_cmp(&b.created)
                .then_with(|| a.offer.id.cmp(&b.offer.id))
        });
        for o in &offers {
            if let Some(held) = used.get_mut(&o.role) {
                held.subtract_all(&o.resources);
            }
        }
        (used, offers)
    }

    /// The free resources of the connected agents.
    pub(super) fn free_pool(&self) -> Pool {
        let free: Vec<Arc<Resources>> = self
            .agents
            .values()
            .filter(|a| a.link == AgentLink::Connected)
            .map(|a| a.available())
            .collect();
        Pool::of(free.iter().map(|f| &**f))
    }

    /// After a quota change: rescinds the offers that break the new limits or headroom.
    pub(super) fn rescind_offers_breaking_quota(&mut self) {
        let quotas = self.role_quotas();
        let (used, offers) = self.held_besides_offers();
        let held: Vec<HeldOffer> = offers
            .iter()
            .map(|o| HeldOffer {
                id: &o.offer.id,
                role: &o.role,
                resources: &o.resources,
            })
            .collect();
        let rescind = offers_breaking_quota(&quotas, &used, &held, &self.free_pool());
        for offer_id in rescind {
            tracing::info!(offer = %offer_id, "rescinding an offer that breaks the updated quota");
            self.rescind_offer(&offer_id);
        }
    }

    /// A RESERVE's check against quota limits, with the resources to reserve neither
    /// offered nor held (see [`check_reserve`]).
    pub(super) fn check_reserve_quota(
        &self,
        reserved: &Resources,
        source: Option<&Resources>,
    ) -> Result<(), String> {
        let quotas = self.role_quotas();
        let consumed = consumption(
            &quotas,
            self.role_allocations().iter().map(|(r, h)| (r.as_str(), h)),
            &self.free_pool().reserved,
        );
        check_reserve(&quotas, &consumed, reserved, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::resources::{ReservationInfo, Resource};

    fn quota(guarantees: &[(&str, f64)], limits: &[(&str, f64)]) -> RoleQuota {
        let q = |v: &[(&str, f64)]| v.iter().map(|(n, x)| (n.to_string(), *x)).collect();
        RoleQuota {
            guarantees: q(guarantees),
            limits: q(limits),
        }
    }

    fn res(text: &str) -> Resources {
        Resources::parse(text).unwrap()
    }

    fn ids(n: usize) -> Vec<OfferId> {
        (0..n)
            .map(|i| OfferId::from(format!("o{i}").as_str()))
            .collect()
    }

    #[test]
    fn a_lowered_limit_rescinds_the_newest_offers_until_it_holds() {
        let quotas = BTreeMap::from([("a".to_string(), quota(&[], &[("cpus", 3.0)]))]);
        let used = BTreeMap::from([("a".to_string(), res("cpus:1"))]);
        let (ids, r) = (ids(3), res("cpus:1"));
        let offers: Vec<HeldOffer> = ids
            .iter()
            .map(|id| HeldOffer {
                id,
                role: "a",
                resources: &r,
            })
            .collect();
        let out = offers_breaking_quota(&quotas, &used, &offers, &Pool::default());
        assert_eq!(out, vec![ids[2].clone()]);
    }

    #[test]
    fn a_limit_on_a_parent_rescinds_its_childrens_offers_but_not_others() {
        let quotas = BTreeMap::from([("a".to_string(), quota(&[], &[("cpus", 1.0)]))]);
        let (ids, r) = (ids(3), res("cpus:1"));
        let roles = ["a/x", "b", "a/y"];
        let offers: Vec<HeldOffer> = ids
            .iter()
            .zip(roles)
            .map(|(id, role)| HeldOffer {
                id,
                role,
                resources: &r,
            })
            .collect();
        let out = offers_breaking_quota(&quotas, &BTreeMap::new(), &offers, &Pool::default());
        assert_eq!(out, vec![ids[2].clone()]);
    }

    #[test]
    fn nothing_is_rescinded_while_quota_holds() {
        let quotas = BTreeMap::from([("a".to_string(), quota(&[("cpus", 1.0)], &[("cpus", 2.0)]))]);
        let (ids, r) = (ids(2), res("cpus:1"));
        let offers: Vec<HeldOffer> = ids
            .iter()
            .map(|id| HeldOffer {
                id,
                role: "a",
                resources: &r,
            })
            .collect();
        assert!(
            offers_breaking_quota(&quotas, &BTreeMap::new(), &offers, &Pool::default()).is_empty()
        );
    }

    #[test]
    fn a_raised_guarantee_takes_back_offers_of_other_roles_for_headroom() {
        // b guarantees 2 cpus and nothing is free: b's own offer stays (it counts toward
        // the guarantee), and one cpu offered to a must come back.
        let quotas = BTreeMap::from([("b".to_string(), quota(&[("cpus", 2.0)], &[]))]);
        let (ids, r) = (ids(4), res("cpus:1"));
        let roles = ["a", "a", "b", "a"];
        let offers: Vec<HeldOffer> = ids
            .iter()
            .zip(roles)
            .map(|(id, role)| HeldOffer {
                id,
                role,
                resources: &r,
            })
            .collect();
        let out = offers_breaking_quota(&quotas, &BTreeMap::new(), &offers, &Pool::default());
        assert_eq!(out, vec![ids[3].clone()]);
    }

    #[test]
    fn offers_of_reserved_resources_are_not_rescinded_for_a_limit() {
        // Reserved resources count for the role whether offered or not.
        let quotas = BTreeMap::from([("a".to_string(), quota(&[], &[("cpus", 1.0)]))]);
        let ids = ids(1);
        let r = res("cpus(a):2");
        let offers = [HeldOffer {
            id: &ids[0],
            role: "a",
            resources: &r,
        }];
        assert!(
            offers_breaking_quota(&quotas, &BTreeMap::new(), &offers, &Pool::default()).is_empty()
        );
    }

    #[test]
    fn a_reserve_beyond_a_limit_is_refused_with_the_role_and_the_limit() {
        let quotas = BTreeMap::from([("a".to_string(), quota(&[], &[("cpus", 2.0)]))]);
        let consumed = BTreeMap::from([(
            "a".to_string(),
            Quantities::from([("cpus".to_string(), 1.5)]),
        )]);
        let err = check_reserve(&quotas, &consumed, &res("cpus(a):1"), None).unwrap_err();
        assert!(err.contains("role 'a' to 2.5"), "{err}");
        assert!(err.contains("quota limit of 2"), "{err}");
        assert!(check_reserve(&quotas, &consumed, &res("cpus(a):0.5"), None).is_ok());
        assert!(check_reserve(&quotas, &consumed, &res("mem(a):512"), None).is_ok());
        assert!(check_reserve(&quotas, &consumed, &res("cpus(b):4"), None).is_ok());
    }

    #[test]
    fn a_reserve_for_a_child_counts_against_the_parents_limit() {
        let quotas = BTreeMap::from([("a".to_string(), quota(&[], &[("cpus", 1.0)]))]);
        let mut reserved = Resources::new();
        let mut r = Resource::scalar("cpus", 2.0);
        r.reservations = vec![ReservationInfo::dynamic("a/b", None)];
        reserved.add(&r);
        assert!(check_reserve(&quotas, &BTreeMap::new(), &reserved, None).is_err());
    }

    #[test]
    fn refining_a_counted_reservation_adds_nothing_to_the_roles_that_counted_it() {
        let quotas = BTreeMap::from([
            ("a".to_string(), quota(&[], &[("cpus", 2.0)])),
            ("a/b".to_string(), quota(&[], &[("cpus", 1.0)])),
        ]);
        let consumed = BTreeMap::from([
            (
                "a".to_string(),
                Quantities::from([("cpus".to_string(), 2.0)]),
            ),
            ("a/b".to_string(), Quantities::new()),
        ]);
        let mut r = Resource::scalar("cpus", 1.0);
        r.reservations = vec![
            ReservationInfo::dynamic("a", None),
            ReservationInfo::dynamic("a/b", None),
        ];
        let mut reserved = Resources::new();
        reserved.add(&r);
        let source = Resources::from_list(vec![r.popped_reservation()]).unwrap();
        // The free reservation of a is already counted for a; a/b gets 1 of its 1.
        assert!(check_reserve(&quotas, &consumed, &reserved, Some(&source)).is_ok());
        // From an offer it was not counted: a would go to 3.
        assert!(check_reserve(&quotas, &consumed, &reserved, None).is_err());
        // Moving a free reservation of a/b to a/c frees a/b and adds to a/c only.
        let mut quotas = quotas;
        quotas.insert("a/c".to_string(), quota(&[], &[("cpus", 0.5)]));
        let moved = |role: &str| {
            let mut r = Resource::scalar("cpus", 1.0);
            r.reservations = vec![ReservationInfo::dynamic(role, None)];
            Resources::from_list(vec![r]).unwrap()
        };
        let err =
            check_reserve(&quotas, &consumed, &moved("a/c"), Some(&moved("a/b"))).unwrap_err();
        assert!(err.contains("role 'a/c'"), "{err}");
        let consumed_b = BTreeMap::from([
            (
                "a".to_string(),
                Quantities::from([("cpus".to_string(), 2.0)]),
            ),
            (
                "a/b".to_string(),
                Quantities::from([("cpus".to_string(), 1.0)]),
            ),
        ]);
        assert!(check_reserve(&quotas, &consumed_b, &moved("a/b"), Some(&moved("a/b"))).is_ok());
    }
}
