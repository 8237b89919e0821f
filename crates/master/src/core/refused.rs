//! One copy of each distinct set of refused resources. A framework that declines many
//! agents' offers usually refuses the same resources on each (identical agents, all of
//! it free), so its refuse filters, and the allocator's index of them, hold one shared
//! copy instead of one per filter.
//!
//! Sets are found by a fingerprint of their serialized form and told apart exactly by
//! equality. The interner holds them weakly: a set is dropped with the last filter that
//! uses it, and its entry when the interner is next swept (the core sweeps on every
//! tick).

use meseta_api::Resources;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::Hasher;
use std::io;
use std::sync::{Arc, Weak};

/// The refused resource sets that filters use, by fingerprint.
#[derive(Debug, Default)]
pub(super) struct RefusedSets {
    sets: HashMap<u64, Vec<Weak<Resources>>>,
}

impl RefusedSets {
    /// The shared copy of `resources`: one a filter already uses, or a new one.
    pub(super) fn intern(&mut self, resources: Resources) -> Arc<Resources> {
        let same = self.sets.entry(fingerprint(&resources)).or_default();
        same.retain(|set| set.strong_count() > 0);
        if let Some(found) = same
            .iter()
            .filter_map(Weak::upgrade)
            .find(|set| **set == resources)
        {
            return found;
        }
        let shared = Arc::new(resources);
        same.push(Arc::downgrade(&shared));
        shared
    }

    /// Forgets the sets that no filter uses any more.
    pub(super) fn sweep(&mut self) {
        self.sets.retain(|_, same| {
            same.retain(|set| set.strong_count() > 0);
            !same.is_empty()
        });
    }

    /// How many sets are remembered (used or not yet swept).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.sets.values().map(Vec::len).sum()
    }
}

/// A hash of the serialized form: equal sets have equal fingerprints.
fn fingerprint(resources: &Resources) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_writer(HashingWriter(&mut hasher), resources)
        .expect("resources serialize to a writer that cannot fail");
    hasher.finish()
}

/// Feeds what is written to a hasher.
struct HashingWriter<'a>(&'a mut DefaultHasher);

impl io::Write for HashingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Resources {
        Resources::parse(text).unwrap()
    }

    #[test]
    fn equal_sets_share_one_copy() {
        let mut sets = RefusedSets::default();
        let a = sets.intern(parse("cpus:2;mem:512;ports:[31000-32000]"));
        let b = sets.intern(parse("cpus:2;mem:512;ports:[31000-32000]"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(sets.len(), 1);
    }

    #[test]
    fn different_sets_are_kept_apart() {
        let mut sets = RefusedSets::default();
        let texts = [
            "cpus:2;mem:512",
            "cpus:2;mem:513",
            "cpus(web):2;mem:512",
            "cpus:2;mem:512;ports:[31000-31001]",
            "",
        ];
        let interned: Vec<Arc<Resources>> = texts.iter().map(|t| sets.intern(parse(t))).collect();
        for (set, text) in interned.iter().zip(texts) {
            assert_eq!(**set, parse(text));
        }
        for (i, a) in interned.iter().enumerate() {
            for b in &interned[i + 1..] {
                assert!(!Arc::ptr_eq(a, b));
            }
        }
        assert_eq!(sets.len(), texts.len());
    }

    #[test]
    fn a_set_no_filter_uses_is_dropped_and_then_forgotten() {
        let mut sets = RefusedSets::default();
        let a = sets.intern(parse("cpus:1"));
        let weak = Arc::downgrade(&a);
        let kept = sets.intern(parse("mem:64"));
        drop(a);
        assert!(weak.upgrade().is_none(), "the set went with its last user");
        assert_eq!(sets.len(), 2, "its entry waits for a sweep");
        sets.sweep();
        assert_eq!(sets.len(), 1);
        assert!(Arc::ptr_eq(&kept, &sets.intern(parse("mem:64"))));
        let again = sets.intern(parse("cpus:1"));
        assert_eq!(*again, parse("cpus:1"));
    }

    #[test]
    fn a_set_interned_again_after_its_users_left_is_a_new_copy_in_the_same_entry() {
        let mut sets = RefusedSets::default();
        drop(sets.intern(parse("cpus:1")));
        let again = sets.intern(parse("cpus:1"));
        assert_eq!(*again, parse("cpus:1"));
        assert_eq!(sets.len(), 1, "the dead copy's entry was replaced");
    }

    #[test]
    fn a_set_with_the_same_fingerprint_is_told_apart_by_equality() {
        let mut sets = RefusedSets::default();
        let other = Arc::new(parse("mem:64"));
        let key = fingerprint(&parse("cpus:1"));
        sets.sets.insert(key, vec![Arc::downgrade(&other)]);
        let set = sets.intern(parse("cpus:1"));
        assert_eq!(*set, parse("cpus:1"));
        assert_eq!(sets.sets[&key].len(), 2, "both live sets are kept");
        assert!(Arc::ptr_eq(&set, &sets.intern(parse("cpus:1"))));
    }
}
