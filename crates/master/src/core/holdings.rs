//! What holds an agent's resources: its total, what each framework's tasks and executors
//! use, what outstanding offers hold, and so what is left to offer. Changed only through
//! this module, which keeps what is left computed between changes: an allocation pass
//! asks every agent for it, and at ten thousand agents computing it afresh each time was
//! most of the pass.

use meseta_api::{FrameworkId, Resources};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// An agent's resources and who holds them.
#[derive(Debug, Clone)]
pub struct Holdings {
    total: Resources,
    /// Used by tasks and executors, per framework.
    used: BTreeMap<FrameworkId, Resources>,
    offered: Resources,
    /// [`Holdings::available`], from when it was last asked for until the next change.
    available: OnceLock<Arc<Resources>>,
}

impl Holdings {
    /// An agent's holdings before anything uses or is offered any of `total`.
    pub fn new(total: Resources) -> Holdings {
        Holdings {
            total,
            used: BTreeMap::new(),
            offered: Resources::new(),
            available: OnceLock::new(),
        }
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

    fn changed(&mut self) {
        self.available.take();
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

    /// An offer now holds `resources`.
    pub fn offer(&mut self, resources: &Resources) {
        self.changed();
        self.offered.add_all(resources);
    }

    /// An offer no longer holds `resources`.
    pub fn unoffer(&mut self, resources: &Resources) {
        self.changed();
        self.offered.subtract_all(resources);
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
        h.offer(&parse("cpus:2"));
        assert_holds(&h.available(), "cpus:1;mem:896");
        h.unoffer(&parse("cpus:2"));
        h.release(&f, &parse("mem:128"));
        assert_holds(&h.available(), "cpus:3;mem:1024");
        h.convert(&parse("cpus:1"), &parse("cpus(r):1"));
        assert_holds(&h.available(), "cpus:2;cpus(r):1;mem:1024");
        h.forget_framework(&f);
        assert_holds(&h.available(), "cpus:3;cpus(r):1;mem:1024");
        assert_eq!(h.used_total(), Resources::new());
    }

    #[test]
    fn unchanged_holdings_share_one_computation() {
        let h = Holdings::new(parse("cpus:4"));
        assert!(Arc::ptr_eq(&h.available(), &h.available()));
        let copy = h.clone();
        assert!(Arc::ptr_eq(&h.available(), &copy.available()));
    }
}
