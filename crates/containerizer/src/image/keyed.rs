//! Locks made on demand per key (an image name, a blob digest) and dropped once nobody
//! holds or awaits them, so that concurrent work on one key runs once: the first holder
//! does it, and those that waited find it done.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

type Lock = Arc<tokio::sync::Mutex<()>>;

/// One asynchronous lock per key.
pub(crate) struct KeyedLocks<K> {
    locks: Mutex<HashMap<K, Lock>>,
}

/// Held while the key is locked; unlocks (and forgets an unused lock) when dropped.
pub(crate) struct KeyGuard<'a, K: Eq + Hash> {
    locks: &'a KeyedLocks<K>,
    key: K,
    lock: Option<Lock>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    pub fn new() -> Self {
        KeyedLocks {
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until nobody else holds `key`, and holds it.
    pub async fn lock(&self, key: K) -> KeyGuard<'_, K> {
        let lock = self.map().entry(key.clone()).or_default().clone();
        // Made before the wait, so that a cancelled wait forgets the lock too.
        let mut held = KeyGuard {
            locks: self,
            key,
            lock: Some(lock.clone()),
            guard: None,
        };
        held.guard = Some(lock.lock_owned().await);
        held
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, Lock>> {
        self.locks.lock().expect("keyed locks poisoned")
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl<K: Eq + Hash> Drop for KeyGuard<'_, K> {
    fn drop(&mut self) {
        self.guard.take();
        self.lock.take();
        let mut locks = self.locks.locks.lock().expect("keyed locks poisoned");
        // Only the map's own reference left: nobody holds or awaits it.
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_holder_per_key_and_unused_locks_are_forgotten() {
        let locks = Arc::new(KeyedLocks::new());
        let first = locks.lock("a").await;
        // Another key is free.
        drop(locks.lock("b").await);
        assert_eq!(locks.len(), 1, "b is forgotten once unlocked");
        // The same key waits for the holder.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move {
                let _held = locks.lock("a").await;
                tx.send(()).unwrap();
            }
        });
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "a is held");
        drop(first);
        rx.recv().await.unwrap();
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
        // A wait given up on forgets the lock too.
        let held = locks.lock("c").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), locks.lock("c")).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(locks.len(), 0);
    }
}
