//! The hierarchical weighted DRF role sorter of one pass.
//!
//! Roles form a tree by their path (`a/b/c` is a child of `a/b`). Each node knows what its
//! subtree holds; siblings are ordered by the weighted dominant share of their subtrees
//! (share divided by the node's weight), then by name. A role that frameworks ask offers
//! for (a client) and that also has child roles takes part among its children as a
//! virtual leaf holding the role's own allocation, as in Mesos's hierarchical sorter. The
//! order of clients is the depth-first walk through the sorted siblings. Only subtrees
//! with an active client are walked; a client is deactivated (for the rest of the pass)
//! once it can take nothing more.

use meseta_api::Resources;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

/// Resources that count toward a dominant share.
pub const SHARE_RESOURCES: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

/// Quantities of the share resources, in [`SHARE_RESOURCES`] order.
pub type Usage = [f64; 4];

/// The share resources of `resources`.
pub fn usage(resources: &Resources) -> Usage {
    let mut out = [0.0; 4];
    for r in resources.iter() {
        if let (Some(i), Some(s)) = (SHARE_RESOURCES.iter().position(|n| *n == r.name), r.scalar) {
            out[i] += s.value;
        }
    }
    out
}

/// The largest of used/total over the share resources.
pub fn share_of(used: &Usage, total: &Usage) -> f64 {
    used.iter()
        .zip(total)
        .map(|(u, t)| if *t > 0.0 { u / t } else { 0.0 })
        .fold(0.0, f64::max)
}

/// A non-negative share as a key that sorts like the number (the bit patterns of
/// non-negative floats order as their values).
pub fn share_key(share: f64) -> u64 {
    share.max(0.0).to_bits()
}

/// An entry among a node's sorted children: (share key, name rank, node, is the node's
/// own virtual leaf).
type Entry = (u64, u32, usize, bool);

struct Node {
    /// The role's full path (empty for the root).
    name: String,
    parent: Option<usize>,
    weight: f64,
    /// What the whole subtree holds.
    subtree: Usage,
    /// What the role itself holds (its virtual leaf).
    own: Usage,
    /// Rank of the name in lexicographic order (tie-break).
    rank: u32,
    /// Active children and the own leaf, by share.
    children: BTreeSet<Entry>,
    /// The entry of this node in its parent's set, while active.
    entry: Option<Entry>,
    /// The own leaf's entry in `children`, while the client is active.
    own_entry: Option<Entry>,
}

/// The role tree of one pass.
pub struct RoleTree {
    nodes: Vec<Node>,
    index: BTreeMap<String, usize>,
    total: Usage,
}

/// The parent path of a role (`a/b` for `a/b/c`), if it has one.
pub fn parent_role(role: &str) -> Option<&str> {
    role.rfind('/').map(|i| &role[..i])
}

/// Whether `ancestor` is `role` or one of its ancestors.
pub fn is_ancestor_or_self(ancestor: &str, role: &str) -> bool {
    role == ancestor
        || (role.len() > ancestor.len()
            && role.starts_with(ancestor)
            && role.as_bytes()[ancestor.len()] == b'/')
}

impl RoleTree {
    /// A tree holding `allocated` (what each role holds), with `clients` active.
    pub fn new<'r>(
        allocated: impl IntoIterator<Item = (&'r str, Usage)>,
        clients: &BTreeSet<&str>,
        weights: &BTreeMap<String, f64>,
        total: Usage,
    ) -> RoleTree {
        let mut tree = RoleTree {
            nodes: vec![Node {
                name: String::new(),
                parent: None,
                weight: 1.0,
                subtree: [0.0; 4],
                own: [0.0; 4],
                rank: 0,
                children: BTreeSet::new(),
                entry: None,
                own_entry: None,
            }],
            index: BTreeMap::new(),
            total,
        };
        let allocated: Vec<(&str, Usage)> = allocated.into_iter().collect();
        for role in clients
            .iter()
            .copied()
            .chain(allocated.iter().map(|(r, _)| *r))
        {
            tree.node(role, weights);
        }
        let names: Vec<usize> = tree.index.values().copied().collect();
        for (rank, node) in names.into_iter().enumerate() {
            tree.nodes[node].rank = rank as u32 + 1;
        }
        for (role, used) in allocated {
            let mut node = tree.index[role];
            add(&mut tree.nodes[node].own, &used);
            loop {
                add(&mut tree.nodes[node].subtree, &used);
                match tree.nodes[node].parent {
                    Some(p) => node = p,
                    None => break,
                }
            }
        }
        for role in clients {
            let node = tree.index[*role];
            tree.activate(node);
        }
        tree
    }

    /// The node of `role`, created with its ancestors if new.
    fn node(&mut self, role: &str, weights: &BTreeMap<String, f64>) -> usize {
        if let Some(i) = self.index.get(role) {
            return *i;
        }
        let parent = match parent_role(role) {
            Some(p) if !p.is_empty() => self.node(p, weights),
            _ => 0,
        };
        let weight = match weights.get(role) {
            Some(w) if *w > 0.0 => *w,
            _ => 1.0,
        };
        self.nodes.push(Node {
            name: role.to_string(),
            parent: Some(parent),
            weight,
            subtree: [0.0; 4],
            own: [0.0; 4],
            rank: 0,
            children: BTreeSet::new(),
            entry: None,
            own_entry: None,
        });
        let i = self.nodes.len() - 1;
        self.index.insert(role.to_string(), i);
        i
    }

    /// The node index of a role in the tree.
    pub fn index_of(&self, role: &str) -> Option<usize> {
        self.index.get(role).copied()
    }

    /// The role of a node.
    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// The sort key of a client's own allocation (its weighted share).
    pub fn own_key(&self, node: usize) -> u64 {
        self.own_entry(node).0
    }

    fn own_entry(&self, node: usize) -> Entry {
        let n = &self.nodes[node];
        (
            share_key(share_of(&n.own, &self.total) / n.weight),
            n.rank,
            node,
            true,
        )
    }

    fn subtree_entry(&self, node: usize) -> Entry {
        let n = &self.nodes[node];
        (
            share_key(share_of(&n.subtree, &self.total) / n.weight),
            n.rank,
            node,
            false,
        )
    }

    fn activate(&mut self, node: usize) {
        let own = self.own_entry(node);
        self.nodes[node].children.insert(own);
        self.nodes[node].own_entry = Some(own);
        let mut child = node;
        while let Some(parent) = self.nodes[child].parent {
            if self.nodes[child].entry.is_some() {
                break;
            }
            let entry = self.subtree_entry(child);
            self.nodes[parent].children.insert(entry);
            self.nodes[child].entry = Some(entry);
            child = parent;
        }
    }

    /// Takes a client out of the walk (for the rest of the pass).
    pub fn deactivate(&mut self, node: usize) {
        if let Some(own) = self.nodes[node].own_entry.take() {
            self.nodes[node].children.remove(&own);
        }
        let mut child = node;
        while self.nodes[child].children.is_empty() {
            let Some(parent) = self.nodes[child].parent else {
                break;
            };
            if let Some(entry) = self.nodes[child].entry.take() {
                self.nodes[parent].children.remove(&entry);
            }
            child = parent;
        }
    }

    /// Records `used` more held by the client `node` and re-sorts its ancestors.
    pub fn allocate(&mut self, node: usize, used: &Usage) {
        add(&mut self.nodes[node].own, used);
        if let Some(old) = self.nodes[node].own_entry {
            self.nodes[node].children.remove(&old);
            let new = self.own_entry(node);
            self.nodes[node].children.insert(new);
            self.nodes[node].own_entry = Some(new);
        }
        let mut child = node;
        loop {
            add(&mut self.nodes[child].subtree, used);
            let Some(parent) = self.nodes[child].parent else {
                break;
            };
            if let Some(old) = self.nodes[child].entry {
                self.nodes[parent].children.remove(&old);
                let new = self.subtree_entry(child);
                self.nodes[parent].children.insert(new);
                self.nodes[child].entry = Some(new);
            }
            child = parent;
        }
    }

    /// Walks the active clients in hierarchical DRF order until `visit` breaks.
    pub fn walk<B>(&self, mut visit: impl FnMut(usize) -> ControlFlow<B>) -> Option<B> {
        let mut stack = vec![self.nodes[0].children.iter()];
        while let Some(top) = stack.last_mut() {
            match top.next() {
                None => {
                    stack.pop();
                }
                Some(&(_, _, node, true)) => {
                    if let ControlFlow::Break(b) = visit(node) {
                        return Some(b);
                    }
                }
                Some(&(_, _, node, false)) => stack.push(self.nodes[node].children.iter()),
            }
        }
        None
    }
}

fn add(to: &mut Usage, more: &Usage) {
    for (t, m) in to.iter_mut().zip(more) {
        *t += m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(tree: &RoleTree) -> Vec<String> {
        let mut out = Vec::new();
        tree.walk::<()>(|n| {
            out.push(tree.name(n).to_string());
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn siblings_sort_by_subtree_share() {
        // a holds 1 cpu directly in a/x and a/y (2 in all); b holds 1.5 in b. Flat DRF
        // would put a/x and a/y first; hierarchical compares a (2) with b (1.5).
        let clients: BTreeSet<&str> = ["a/x", "a/y", "b"].into();
        let tree = RoleTree::new(
            [
                ("a/x", [1.0, 0.0, 0.0, 0.0]),
                ("a/y", [1.0, 0.0, 0.0, 0.0]),
                ("b", [1.5, 0.0, 0.0, 0.0]),
            ],
            &clients,
            &BTreeMap::new(),
            [10.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(order(&tree), ["b", "a/x", "a/y"]);
        // Weight 2 on a halves its subtree share (1 < 1.5).
        let weights = [("a".to_string(), 2.0)].into();
        let mut tree = RoleTree::new(
            [
                ("a/x", [1.0, 0.0, 0.0, 0.0]),
                ("a/y", [1.0, 0.0, 0.0, 0.0]),
                ("b", [1.5, 0.0, 0.0, 0.0]),
            ],
            &clients,
            &weights,
            [10.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(order(&tree), ["a/x", "a/y", "b"]);
        tree.allocate(tree.index_of("a/x").unwrap(), &[1.5, 0.0, 0.0, 0.0]);
        assert_eq!(order(&tree), ["b", "a/y", "a/x"]);
        tree.deactivate(tree.index_of("b").unwrap());
        assert_eq!(order(&tree), ["a/y", "a/x"]);
    }

    #[test]
    fn a_client_with_children_competes_as_a_leaf() {
        let clients: BTreeSet<&str> = ["a", "a/b"].into();
        let tree = RoleTree::new(
            [("a", [2.0, 0.0, 0.0, 0.0]), ("a/b", [1.0, 0.0, 0.0, 0.0])],
            &clients,
            &BTreeMap::new(),
            [10.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(order(&tree), ["a/b", "a"]);
        // Allocations of roles nobody asks for still count for their ancestors.
        let clients: BTreeSet<&str> = ["a/x", "b"].into();
        let tree = RoleTree::new(
            [
                ("a/idle", [5.0, 0.0, 0.0, 0.0]),
                ("b", [1.0, 0.0, 0.0, 0.0]),
            ],
            &clients,
            &BTreeMap::new(),
            [10.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(order(&tree), ["b", "a/x"]);
    }

    #[test]
    fn ancestry() {
        assert!(is_ancestor_or_self("a", "a/b"));
        assert!(is_ancestor_or_self("a/b", "a/b"));
        assert!(!is_ancestor_or_self("a", "ab"));
        assert!(!is_ancestor_or_self("a/b", "a"));
        assert_eq!(parent_role("a/b/c"), Some("a/b"));
        assert_eq!(parent_role("a"), None);
    }
}
