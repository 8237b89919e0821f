//! One copy of each framework and agent id text that task records name: a master holds
//! hundreds of thousands of tasks on a few thousand agents of a few hundred frameworks,
//! and each record would otherwise keep its own copy of both ids.

use meseta_api::{AgentId, FrameworkId};
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// The shared id texts, handed out by value.
#[derive(Debug, Default)]
pub struct SharedIds {
    frameworks: Interned<FrameworkId>,
    agents: Interned<AgentId>,
}

impl SharedIds {
    pub fn framework(&mut self, id: &FrameworkId) -> Arc<FrameworkId> {
        self.frameworks.get(id)
    }

    pub fn agent(&mut self, id: &AgentId) -> Arc<AgentId> {
        self.agents.get(id)
    }
}

/// Texts no record names any more are let go when the set has doubled since it was last
/// swept, so it stays within twice the ids in use (plus this many).
const LEAST_SWEEP: usize = 64;

/// One kind of id, each value once.
#[derive(Debug)]
struct Interned<T> {
    values: HashSet<Arc<T>>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Interned {
            values: HashSet::new(),
            sweep_at: LEAST_SWEEP,
        }
    }
}

impl<T: Eq + Hash + Clone> Interned<T> {
    fn get(&mut self, value: &T) -> Arc<T> {
        if let Some(shared) = self.values.get(value) {
            return Arc::clone(shared);
        }
        if self.values.len() >= self.sweep_at {
            self.values.retain(|v| Arc::strong_count(v) > 1);
            self.sweep_at = (2 * self.values.len()).max(LEAST_SWEEP);
        }
        let shared = Arc::new(value.clone());
        self.values.insert(Arc::clone(&shared));
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_kept_once_and_let_go_when_no_one_names_it() {
        let mut ids = SharedIds::default();
        let first = ids.agent(&AgentId::new("a"));
        assert!(Arc::ptr_eq(&first, &ids.agent(&AgentId::new("a"))));
        assert!(!Arc::ptr_eq(&first, &ids.agent(&AgentId::new("b"))));
        let framework = ids.framework(&FrameworkId::new("a"));
        assert_eq!(framework.as_str(), "a");
        // Many ids named once and dropped: the set is swept, and "a" (still named) stays.
        for i in 0..10 * LEAST_SWEEP {
            ids.agent(&AgentId::new(format!("gone-{i}")));
        }
        assert!(ids.agents.values.len() < 2 * LEAST_SWEEP);
        assert!(Arc::ptr_eq(&first, &ids.agent(&AgentId::new("a"))));
    }
}
