//! What holds an agent's resources: its total, what each framework's tasks and executors
//! use, what outstanding offers hold (and for whom), and so what is left to offer.
//! Changed only through this module, which keeps what is left computed between changes
//! (an allocation pass asks every agent for it, and at ten thousand agents computing it
//! afresh each time was most of the pass) and stamps every change with a new
//! [`Holdings::generation`], so that sums over many agents can tell which ones changed.

use meseta_api::{FrameworkId, Resource, Resources};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// What frameworks hold, per framework and role.
pub type HeldByRole = BTreeMap<FrameworkId, BTreeMap<String, Resources>>;

/// An agent's resources and who holds them.
#[derive(Debug, Clone)]
pub struct Holdings {
    total: Resources,
    /// Used by tasks and executors, per framework.
    used: BTreeMap<FrameworkId, Resources>,
    offered: Resources,
    /// What outstanding offers hold, per framework and the role they were made for.
    offered_to: HeldByRole,
    /// [`Holdings::available`], from when it was last asked for until the next change.
    available: OnceLock<Arc<Resources>>,
    generation: u64,
}

/// Generations are unique across all holdings, so that an agent removed and admitted
/// again never repeats the generation its old holdings had.
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Holdings {
    /// An agent's holdings before anything uses or is offered any of `total`.
    pub fn new(total: Resources) -> Holdings {
        Holdings {
            total,
            used: BTreeMap::new(),
            offered: Resources::new(),
            offered_to: HeldByRole::new(),
            available: OnceLock::new(),
            generation: next_generation(),
        }
    }

    /// Changes with every change to these holdings (and differs from every other
    /// holdings' generation).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn total(&self) -> &Resources {
        &self.total
    }

    /// What each framework's tasks and executors use.
    pub fn used(&self) -> &BTreeMap<FrameworkId, Resources> {
        &self.used
    }

    pub fn offered(&self) -> &Resources {
        &self.offered
    }

    /// Everything that tasks and executors use.
    pub fn used_total(&self) -> Resources {
        let mut all = Resources::new();
        for used in self.used.values() {
            all.add_all(used);
        }
        all
    }

    /// What may be offered: the total less what tasks use and what is offered; a shared
    /// volume stays available while tasks use it (one copy, while no offer holds it).
    pub fn available(&self) -> Arc<Resources> {
        self.available
            .get_or_init(|| Arc::new(self.compute_available()))
            .clone()
    }

    fn compute_available(&self) -> Resources {
        let mut free = self.total.clone();
        for used in self.used.values() {
            free.subtract_all(used);
        }
        free.subtract_all(&self.offered);
        for shared in self.total.iter().filter(|r| r.is_shared()) {
            let offered = self.offered.iter().any(|o| o == shared);
            if !offered && !free.iter().any(|f| f == shared) {
                free.add(shared);
            }
        }
        free
    }

    /// What each framework holds here, per role: what its tasks and executors use, by
    /// the role of their `allocation_info` (`default_role` of the framework for resources
    /// without one; a shared volume once however many tasks use it), and what its offers
    /// hold, by the role they were made for. Frameworks `default_role` does not know are
    /// left out.
    pub fn held_by_role<'a>(
        &self,
        default_role: impl Fn(&FrameworkId) -> Option<&'a str>,
    ) -> HeldByRole {
        let mut out = HeldByRole::new();
        for (framework_id, used) in &self.used {
            let Some(default_role) = default_role(framework_id) else {
                continue;
            };
            let by_role = out.entry(framework_id.clone()).or_default();
            let mut shared_seen: Vec<&Resource> = Vec::new();
            for r in used.iter() {
                if r.is_shared() {
                    if shared_seen.contains(&r) {
                        continue;
                    }
                    shared_seen.push(r);
                }
                let role = r.allocation_info.as_ref().and_then(|a| a.role.as_deref());
                by_role
                    .entry(role.unwrap_or(default_role).to_string())
                    .or_default()
                    .add(r);
            }
        }
        for (framework_id, by_role) in &self.offered_to {
            let held = out.entry(framework_id.clone()).or_default();
            for (role, resources) in by_role {
                held.entry(role.clone()).or_default().add_all(resources);
            }
        }
        out
    }

    fn changed(&mut self) {
        self.available.take();
        self.generation = next_generation();
    }

    /// A framework's task or executor starts using `resources`.
    pub fn use_resources(&mut self, framework_id: &FrameworkId, resources: &Resources) {
        self.changed();
        self.used
            .entry(framework_id.clone())
            .or_default()
            .add_all(resources);
    }

    /// A framework's task or executor stops using `resources`.
    pub fn release(&mut self, framework_id: &FrameworkId, resources: &Resources) {
        self.changed();
        if let Some(used) = self.used.get_mut(framework_id) {
            used.subtract_all(resources);
        }
    }

    /// A framework is gone from the agent with everything it used.
    pub fn forget_framework(&mut self, framework_id: &FrameworkId) {
        self.changed();
        self.used.remove(framework_id);
    }

    /// An offer to `framework_id` for `role` now holds `resources`.
    pub fn offer(&mut self, framework_id: &FrameworkId, role: &str, resources: &Resources) {
        self.changed();
        self.offered.add_all(resources);
        self.offered_to
            .entry(framework_id.clone())
            .or_default()
            .entry(role.to_string())
            .or_default()
            .add_all(resources);
    }

    /// An offer to `framework_id` for `role` no longer holds `resources`.
    pub fn unoffer(&mut self, framework_id: &FrameworkId, role: &str, resources: &Resources) {
        self.changed();
        self.offered.subtract_all(resources);
        if let Some(by_role) = self.offered_to.get_mut(framework_id) {
            if let Some(held) = by_role.get_mut(role) {
                held.subtract_all(resources);
                if held.is_empty() {
                    by_role.remove(role);
                }
            }
            if by_role.is_empty() {
                self.offered_to.remove(framework_id);
            }
        }
    }

    /// An operation turned `consumed` of the total into `converted` (a reservation, a
    /// volume).
    pub fn convert(&mut self, consumed: &Resources, converted: &Resources) {
        self.changed();
        self.total.subtract_all(consumed);
        self.total.add_all(converted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Resources {
        Resources::parse(text).unwrap()
    }

    /// Asserts that `got` holds what `text` says, in any order.
    fn assert_holds(got: &Resources, text: &str) {
        let want = parse(text);
        assert!(got.contains(&want) && want.contains(got), "{got} != {want}");
    }

    #[test]
    fn what_is_available_follows_every_change() {
        let f = FrameworkId::new("f");
        let mut h = Holdings::new(parse("cpus:4;mem:1024"));
        assert_holds(&h.available(), "cpus:4;mem:1024");
        h.use_resources(&f, &parse("cpus:1;mem:128"));
        assert_holds(&h.available(), "cpus:3;mem:896");
        h.offer(&f, "r", &parse("cpus:2"));
        assert_holds(&h.available(), "cpus:1;mem:896");
        h.unoffer(&f, "r", &parse("cpus:2"));
        h.release(&f, &parse("mem:128"));
        assert_holds(&h.available(), "cpus:3;mem:1024");
        h.convert(&parse("cpus:1"), &parse("cpus(r):1"));
        assert_holds(&h.available(), "cpus:2;cpus(r):1;mem:1024");
        h.forget_framework(&f);
        assert_holds(&h.available(), "cpus:3;cpus(r):1;mem:1024");
        assert_eq!(h.used_total(), Resources::new());
    }

    #[test]
    fn every_change_is_a_new_generation() {
        let f = FrameworkId::new("f");
        let mut h = Holdings::new(parse("cpus:4"));
        let other = Holdings::new(parse("cpus:4"));
        assert_ne!(h.generation(), other.generation());
        let mut seen = vec![h.generation(), other.generation()];
        let mut expect_new = |h: &Holdings| {
            assert!(!seen.contains(&h.generation()));
            seen.push(h.generation());
        };
        h.use_resources(&f, &parse("cpus:1"));
        expect_new(&h);
        h.offer(&f, "r", &parse("cpus:1"));
        expect_new(&h);
        h.unoffer(&f, "r", &parse("cpus:1"));
        expect_new(&h);
        h.release(&f, &parse("cpus:1"));
        expect_new(&h);
        h.convert(&parse("cpus:1"), &parse("cpus(r):1"));
        expect_new(&h);
        h.forget_framework(&f);
        expect_new(&h);
        let before = h.generation();
        let _ = h.available();
        assert_eq!(h.generation(), before, "reading changes nothing");
    }

    #[test]
    fn held_by_role_counts_use_by_allocation_role_and_offers_by_offer_role() {
        let (f, g, unknown) = (
            FrameworkId::new("f"),
            FrameworkId::new("g"),
            FrameworkId::new("u"),
        );
        let mut h = Holdings::new(parse("cpus:8;mem:1024;disk:100"));
        h.use_resources(&f, &parse("cpus:1").allocated_to(Some("a")));
        h.use_resources(&f, &parse("mem:64"));
        h.use_resources(&unknown, &parse("cpus:1"));
        h.offer(&f, "b", &parse("cpus:2"));
        h.offer(&g, "c", &parse("disk:10"));
        let held = h.held_by_role(|id| (*id != unknown).then_some("dflt"));
        let text = |id: &FrameworkId, role: &str| held[id][role].to_string();
        assert_eq!(held.len(), 2, "no one knows {unknown}: {held:?}");
        assert_eq!(held[&f].len(), 3);
        assert!(text(&f, "a").contains("cpus:1"), "{held:?}");
        assert_eq!(text(&f, "dflt"), "mem:64");
        assert_eq!(text(&f, "b"), "cpus:2");
        assert_eq!(text(&g, "c"), "disk:10");
        h.unoffer(&f, "b", &parse("cpus:2"));
        let held = h.held_by_role(|_| Some("dflt"));
        assert!(!held[&f].contains_key("b"), "{held:?}");
    }

    #[test]
    fn unchanged_holdings_share_one_computation() {
        let h = Holdings::new(parse("cpus:4"));
        assert!(Arc::ptr_eq(&h.available(), &h.available()));
        let copy = h.clone();
        assert!(Arc::ptr_eq(&h.available(), &copy.available()));
    }
}
