//! [`Shared`]: a value behind an `Arc` that is copied on write, so that a snapshot of the
//! core's maps copies pointers, and the core still changes its entities in place through
//! `&mut` as if it owned them (a change of one that a snapshot also holds copies that one).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A copy-on-write shared value: `clone` shares it, `&mut` access unshares it first.
#[derive(Debug, Default)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        Shared(Arc::new(value))
    }
}

impl<T> Shared<T> {
    /// Whether both share one value.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<T: Clone> Shared<T> {
    /// The value, copied only when something else still shares it.
    pub fn into_inner(self) -> T {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Self {
        Shared::new(value)
    }
}

impl<T: serde::Serialize> serde::Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::Shared;

    #[test]
    fn a_change_copies_only_a_shared_value() {
        let mut mine = Shared::new(vec![1]);
        let snapshot = mine.clone();
        mine.push(2);
        assert_eq!(*snapshot, vec![1]);
        assert_eq!(*mine, vec![1, 2]);
        let alone = mine.clone();
        assert!(Shared::ptr_eq(&alone, &mine));
        drop(alone);
        let before = std::sync::Arc::as_ptr(&mine.0);
        mine.push(3);
        assert_eq!(std::sync::Arc::as_ptr(&mine.0), before, "not copied again");
        assert_eq!(mine.into_inner(), vec![1, 2, 3]);
        assert_eq!(snapshot.into_inner(), vec![1]);
    }
}
