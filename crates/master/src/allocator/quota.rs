//! Quota in the allocator: what each role with a quota consumes, how much more of each
//! resource an offer to a role may carry, and the headroom kept for unsatisfied
//! guarantees.
//!
//! A role's consumption (Mesos 1.9+) is what its subtree holds (tasks, executors and
//! offers, reserved or not) plus the reservations of its subtree that nobody holds. An
//! offer's unreserved scalars are cut so that no role on the path from the offer's role
//! to the root goes over its limit. Guarantees: the *required headroom* of a resource is
//! the sum of the unsatisfied guarantees (guarantee less consumption) of the topmost roles
//! guaranteeing it; the *available headroom* is the unreserved free quantity of all agents.
//! Outside what counts toward the role's own topmost guarantee, an offer may take only
//! the surplus of available over required headroom. Quota covers scalar resources only.

use super::sorter::{is_ancestor_or_self, parent_role};
use super::RoleQuota;
use meseta_api::Resources;
use std::collections::BTreeMap;

/// Scalar quantities by resource name.
pub type Quantities = BTreeMap<String, f64>;

/// Rounds to the three decimals resources are kept to, so that sums stay exact.
pub(crate) fn fixed(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0 + 0.0
}

/// The free resources of a set of agents that quota accounting needs: unreserved scalars
/// (the available headroom) and reserved scalars by reservation role. Additive over
/// agents, so that it can be kept up to date as agents change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pool {
    pub unreserved: Quantities,
    pub reserved: BTreeMap<String, Quantities>,
}

impl Pool {
    /// The pool of these free resources.
    pub fn of<'a>(free: impl IntoIterator<Item = &'a Resources>) -> Pool {
        let mut pool = Pool::default();
        for f in free {
            pool.add(f, 1.0);
        }
        pool
    }

    /// Adds (`sign` 1) or removes (`sign` -1) one agent's free resources.
    pub fn add(&mut self, free: &Resources, sign: f64) {
        for r in free.iter() {
            let Some(s) = r.scalar else { continue };
            let into = if r.is_unreserved() {
                &mut self.unreserved
            } else {
                self.reserved
                    .entry(r.reservation_role().to_string())
                    .or_default()
            };
            let v = into.entry(r.name.clone()).or_insert(0.0);
            *v = fixed(*v + sign * s.value);
        }
    }
}

/// What each configured role consumes: the scalars its subtree holds plus its subtree's
/// unheld reservations. `allocated` is what each role holds; `reserved` the unheld
/// reservations by role.
pub fn consumption<'a>(
    quotas: &BTreeMap<String, RoleQuota>,
    allocated: impl IntoIterator<Item = (&'a str, &'a Resources)>,
    reserved: &BTreeMap<String, Quantities>,
) -> BTreeMap<String, Quantities> {
    let mut out: BTreeMap<String, Quantities> = quotas
        .keys()
        .map(|r| (r.clone(), Quantities::new()))
        .collect();
    let mut charge = |role: &str, name: &str, value: f64| {
        let mut at = Some(role);
        while let Some(r) = at {
            if let Some(q) = out.get_mut(r) {
                let v = q.entry(name.to_string()).or_insert(0.0);
                *v = fixed(*v + value);
            }
            at = parent_role(r);
        }
    };
    for (role, held) in allocated {
        for r in held.iter() {
            if let Some(s) = r.scalar {
                charge(role, &r.name, s.value);
            }
        }
    }
    for (role, quantities) in reserved {
        for (name, value) in quantities {
            charge(role, name, *value);
        }
    }
    out
}

/// One role with a quota, during a pass.
struct Configured {
    role: String,
    guarantees: Vec<Option<f64>>,
    limits: Vec<Option<f64>>,
    consumed: Vec<f64>,
    /// Per name: no ancestor guarantees it (its unsatisfied part counts in the required
    /// headroom).
    topmost: Vec<bool>,
}

impl Configured {
    fn unsatisfied(&self, n: usize) -> f64 {
        self.guarantees[n].map_or(0.0, |g| (g - self.consumed[n]).max(0.0))
    }
}

/// Quota accounting of one pass.
pub struct QuotaPass {
    /// The resource names any quota mentions.
    names: Vec<String>,
    roles: Vec<Configured>,
    /// Per client role: its configured ancestors (and itself), nearest first.
    chains: BTreeMap<String, Vec<usize>>,
    available: Vec<f64>,
    required: Vec<f64>,
}

/// How an offer to a role is cut.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Stage 1: only roles with unsatisfied guarantees, guaranteed resources up to what
    /// is unsatisfied.
    Guarantees,
    /// Stage 2: everyone, within limits and headroom.
    Fair,
}

impl QuotaPass {
    /// The quota state at the start of a pass, for offers to `clients`.
    pub fn new<'a>(
        quotas: &BTreeMap<String, RoleQuota>,
        allocated: impl IntoIterator<Item = (&'a str, &'a Resources)>,
        pool: &Pool,
        clients: impl IntoIterator<Item = &'a str>,
    ) -> QuotaPass {
        let mut names: Vec<String> = quotas
            .values()
            .flat_map(|q| q.guarantees.keys().chain(q.limits.keys()))
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        let consumed = consumption(quotas, allocated, &pool.reserved);
        let pick = |q: &Quantities| -> Vec<Option<f64>> {
            names.iter().map(|n| q.get(n).copied()).collect()
        };
        let mut roles: Vec<Configured> = quotas
            .iter()
            .map(|(role, q)| Configured {
                role: role.clone(),
                guarantees: pick(&q.guarantees),
                limits: pick(&q.limits),
                consumed: names
                    .iter()
                    .map(|n| consumed[role].get(n).copied().unwrap_or(0.0))
                    .collect(),
                topmost: vec![true; names.len()],
            })
            .collect();
        for role in roles.iter_mut() {
            for (n, name) in names.iter().enumerate() {
                let mut ancestors =
                    std::iter::successors(parent_role(&role.role), |r| parent_role(r));
                role.topmost[n] = role.guarantees[n].is_some()
                    && !ancestors.any(|a| {
                        quotas
                            .get(a)
                            .is_some_and(|q| q.guarantees.contains_key(name))
                    });
            }
        }
        let mut required = vec![0.0; names.len()];
        for role in &roles {
            for (n, req) in required.iter_mut().enumerate() {
                if role.topmost[n] {
                    *req += role.unsatisfied(n);
                }
            }
        }
        let available = names
            .iter()
            .map(|n| pool.unreserved.get(n).copied().unwrap_or(0.0))
            .collect();
        let index: BTreeMap<&str, usize> = roles
            .iter()
            .enumerate()
            .map(|(i, r)| (r.role.as_str(), i))
            .collect();
        let chains = clients
            .into_iter()
            .map(|client| {
                let mut chain = Vec::new();
                let mut at = Some(client);
                while let Some(r) = at {
                    if let Some(i) = index.get(r) {
                        chain.push(*i);
                    }
                    at = parent_role(r);
                }
                (client.to_string(), chain)
            })
            .collect();
        QuotaPass {
            names,
            roles,
            chains,
            available,
            required,
        }
    }

    /// How far the state breaks quota: the sum over configured roles of what they consume
    /// beyond their limits, plus the sum of the required headroom beyond the available.
    /// Zero when every limit and the headroom hold.
    pub fn excess(&self) -> f64 {
        let over_limits: f64 = self
            .roles
            .iter()
            .flat_map(|c| {
                c.limits
                    .iter()
                    .zip(&c.consumed)
                    .map(|(l, used)| l.map_or(0.0, |l| (used - l).max(0.0)))
            })
            .sum();
        let short: f64 = self
            .required
            .iter()
            .zip(&self.available)
            .map(|(req, avail)| (req - avail).max(0.0))
            .sum();
        fixed(over_limits + short)
    }

    fn chain(&self, role: &str) -> &[usize] {
        self.chains.get(role).map_or(&[], Vec::as_slice)
    }

    /// Whether `role` itself has a guarantee not yet satisfied.
    pub fn has_unsatisfied_guarantee(&self, role: &str) -> bool {
        self.own(role)
            .is_some_and(|c| (0..self.names.len()).any(|n| c.unsatisfied(n) > 0.0))
    }

    fn own(&self, role: &str) -> Option<&Configured> {
        self.chain(role)
            .first()
            .map(|i| &self.roles[*i])
            .filter(|c| c.role == role)
    }

    /// The most of name `n` an offer to `role` may carry unreserved in `stage`.
    fn cap(&self, role: &str, n: usize, stage: Stage) -> f64 {
        let mut cap = f64::INFINITY;
        let mut topmost_unsatisfied = 0.0;
        for i in self.chain(role) {
            let c = &self.roles[*i];
            if let Some(limit) = c.limits[n] {
                cap = cap.min((limit - c.consumed[n]).max(0.0));
            }
            if c.topmost[n] {
                topmost_unsatisfied = c.unsatisfied(n);
            }
        }
        let surplus = (self.available[n] - self.required[n]).max(0.0);
        cap = cap.min(topmost_unsatisfied + surplus);
        if stage == Stage::Guarantees {
            if let Some(own) = self.own(role).filter(|c| c.guarantees[n].is_some()) {
                cap = cap.min(own.unsatisfied(n));
            }
        }
        cap
    }

    /// The caps on every quota name for an offer to `role` (what [`QuotaPass::cut`] uses).
    pub fn caps(&self, role: &str, stage: Stage) -> Vec<f64> {
        (0..self.names.len())
            .map(|n| self.cap(role, n, stage))
            .collect()
    }

    /// Cuts the unreserved scalars of `offer` to `caps`. In stage 1 the result is empty
    /// unless it carries some resource the role's own guarantee still needs.
    pub fn cut(&self, role: &str, offer: Resources, caps: &[f64], stage: Stage) -> Resources {
        let mut left = caps.to_vec();
        let mut out = Resources::new();
        let mut guaranteed = false;
        let own = self.own(role);
        for r in offer.iter() {
            let n = match (r.scalar, r.is_unreserved()) {
                (Some(_), true) => self.names.iter().position(|x| *x == r.name),
                _ => None,
            };
            let Some(n) = n else {
                out.add(r);
                continue;
            };
            let value = r.scalar.map_or(0.0, |s| s.value);
            let take = fixed(value.min(left[n]));
            if take <= 0.0 {
                continue;
            }
            left[n] -= take;
            if own.is_some_and(|c| c.unsatisfied(n) > 0.0) {
                guaranteed = true;
            }
            let mut cut = r.clone();
            cut.scalar = Some(meseta_api::resources::Scalar { value: take });
            out.add(&cut);
        }
        if stage == Stage::Guarantees && !guaranteed {
            return Resources::new();
        }
        out
    }

    /// Records an offer of `resources` to `role`.
    pub fn record(&mut self, role: &str, resources: &Resources) {
        for r in resources.iter() {
            let (Some(s), Some(n)) = (r.scalar, self.names.iter().position(|x| *x == r.name))
            else {
                continue;
            };
            let reservation = (!r.is_unreserved()).then(|| r.reservation_role());
            if reservation.is_none() {
                self.available[n] = fixed(self.available[n] - s.value);
            }
            let chain = self.chains.get(role).cloned().unwrap_or_default();
            for i in chain {
                let c = &mut self.roles[i];
                // A reservation of role X held by a descendant of X was already counted
                // for X and its ancestors.
                if reservation.is_some_and(|x| is_ancestor_or_self(&c.role, x)) {
                    continue;
                }
                let before = c.unsatisfied(n);
                c.consumed[n] = fixed(c.consumed[n] + s.value);
                if c.topmost[n] {
                    self.required[n] = fixed(self.required[n] - (before - c.unsatisfied(n)));
                }
            }
        }
    }

    /// Whether no offer to `role` can reach any alternative of the minimum allocatable
    /// size any more (its caps only shrink during a pass).
    pub fn blocked(&self, role: &str, min: &[super::MinQuantities]) -> bool {
        !min.is_empty()
            && min.iter().all(|alternative| {
                alternative.iter().any(|(name, quantity)| {
                    self.names
                        .iter()
                        .position(|x| x == name)
                        .is_some_and(|n| self.cap(role, n, Stage::Fair) < *quantity)
                })
            })
    }

    /// What decides whether more can be offered: each role's consumption and, per
    /// resource, the headroom surplus while some guarantee is unsatisfied.
    pub fn snapshot(&self) -> QuotaSnapshot {
        QuotaSnapshot {
            names: self.names.clone(),
            roles: self
                .roles
                .iter()
                .map(|c| {
                    let limited = (0..self.names.len())
                        .map(|n| c.limits[n].map(|_| c.consumed[n]))
                        .collect();
                    let unsatisfied = (0..self.names.len()).map(|n| c.unsatisfied(n)).collect();
                    (c.role.clone(), (limited, unsatisfied))
                })
                .collect(),
            surplus: self
                .available
                .iter()
                .zip(&self.required)
                .map(|(a, r)| (*r > 0.0).then_some(a - r))
                .collect(),
        }
    }
}

/// See [`QuotaPass::snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaSnapshot {
    names: Vec<String>,
    /// Per role: what it consumes of each limited resource, and its unsatisfied
    /// guarantees.
    roles: BTreeMap<String, (Vec<Option<f64>>, Vec<f64>)>,
    /// Available less required headroom, where some headroom is required.
    surplus: Vec<Option<f64>>,
}

impl QuotaSnapshot {
    /// Whether going from `self` to `now` may let some role be offered more: a role
    /// consumes less of a limited resource, a guarantee is less satisfied, or the
    /// headroom surplus grew where headroom is required.
    pub fn loosened_to(&self, now: &QuotaSnapshot) -> bool {
        if self.names != now.names || self.roles.len() != now.roles.len() {
            return true;
        }
        let less = self
            .roles
            .iter()
            .zip(&now.roles)
            .any(|((r0, c0), (r1, c1))| {
                let room = c0.0.iter().zip(&c1.0).any(|(before, after)| after < before);
                let unsatisfied = c0.1.iter().zip(&c1.1).any(|(before, after)| after > before);
                r0 != r1 || room || unsatisfied
            });
        let surplus_grew = self
            .surplus
            .iter()
            .zip(&now.surplus)
            .any(|(before, after)| {
                match (before, after) {
                    (Some(b), Some(a)) => a > b,
                    // Headroom stopped being required: caps may have grown.
                    (Some(_), None) => true,
                    _ => false,
                }
            });
        less || surplus_grew
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(guarantees: &[(&str, f64)], limits: &[(&str, f64)]) -> RoleQuota {
        let q = |v: &[(&str, f64)]| v.iter().map(|(n, x)| (n.to_string(), *x)).collect();
        RoleQuota {
            guarantees: q(guarantees),
            limits: q(limits),
        }
    }

    #[test]
    fn consumption_is_hierarchical_and_counts_unheld_reservations() {
        let quotas = [
            ("a".to_string(), quota(&[], &[("cpus", 10.0)])),
            ("a/b".to_string(), quota(&[], &[("cpus", 4.0)])),
        ]
        .into();
        let held = Resources::parse("cpus:2;mem:10").unwrap();
        let other = Resources::parse("cpus:1").unwrap();
        let pool = Pool::of([&Resources::parse("cpus(a/b):3;cpus:7").unwrap()]);
        let consumed = consumption(
            &quotas,
            [("a/b/c", &held), ("a", &other), ("ab", &other)],
            &pool.reserved,
        );
        assert_eq!(consumed["a"]["cpus"], 6.0);
        assert_eq!(consumed["a/b"]["cpus"], 5.0);
        assert_eq!(pool.unreserved["cpus"], 7.0);
    }

    #[test]
    fn caps_follow_limits_guarantees_and_headroom() {
        let quotas: BTreeMap<String, RoleQuota> = [
            ("q".to_string(), quota(&[("cpus", 6.0)], &[("cpus", 8.0)])),
            ("lim".to_string(), quota(&[], &[("cpus", 3.0)])),
        ]
        .into();
        let held = Resources::parse("cpus:1").unwrap();
        let pool = Pool::of([&Resources::parse("cpus:10").unwrap()]);
        let mut pass = QuotaPass::new(&quotas, [("lim", &held)], &pool, ["q", "lim", "other"]);
        // q is guaranteed 6 and holds nothing: 6 of the 10 free are held back for it.
        assert_eq!(pass.caps("other", Stage::Fair), vec![4.0]);
        assert_eq!(pass.caps("lim", Stage::Fair), vec![2.0]);
        assert_eq!(pass.caps("q", Stage::Guarantees), vec![6.0]);
        assert_eq!(pass.caps("q", Stage::Fair), vec![8.0]);
        assert!(pass.has_unsatisfied_guarantee("q"));
        pass.record("q", &Resources::parse("cpus:6").unwrap());
        assert!(!pass.has_unsatisfied_guarantee("q"));
        assert_eq!(pass.caps("other", Stage::Fair), vec![4.0]);
        assert_eq!(pass.caps("q", Stage::Fair), vec![2.0]);
        let offer = Resources::parse("cpus:5;mem:100;ports:[1-2]").unwrap();
        let cut = pass.cut("q", offer.clone(), &[2.0], Stage::Fair);
        assert_eq!(cut, Resources::parse("cpus:2;mem:100;ports:[1-2]").unwrap());
        // Stage 1 offers nothing to a role whose guarantee is met.
        assert!(pass.cut("q", offer, &[2.0], Stage::Guarantees).is_empty());
        let min = crate::allocator::default_min_allocatable();
        assert!(!pass.blocked("lim", &min));
        pass.record("lim", &Resources::parse("cpus:2").unwrap());
        // mem is not limited: lim could still take mem-only offers.
        assert!(!pass.blocked("lim", &min));
        let cpus_only = crate::allocator::parse_min_allocatable("cpus:0.01").unwrap();
        assert!(pass.blocked("lim", &cpus_only));
    }
}
