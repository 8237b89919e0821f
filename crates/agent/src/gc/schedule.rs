//! What sandbox garbage collection removes and when, as Mesos's agent decides it: a
//! finished run's directory is due `--gc_delay` after it was last modified; every
//! `--disk_watch_interval` the age a directory may reach shrinks with the disk's usage,
//! `gc_delay * max(0, 1 - gc_disk_headroom - usage)`, and directories older than that are
//! due at once. Pure: times and usage are passed in.
//!
//! An agent keeps a week of finished runs by default, so the schedule is indexed both by
//! path and by due time: scheduling, the next due time and taking what is due cost
//! O(log n) each, not a walk over every waiting directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The flags that decide removal times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// `--gc_delay`: how long a finished run's sandbox is kept.
    pub delay: Duration,
    /// `--gc_disk_headroom` (0 to 1): the share of the disk to keep free.
    pub disk_headroom: f64,
}

impl Policy {
    /// The age a sandbox may reach while the disk is `usage` full (0 to 1).
    pub fn max_age(&self, usage: f64) -> Duration {
        let share = (1.0 - self.disk_headroom - usage).clamp(0.0, 1.0);
        self.delay.mul_f64(share)
    }

    /// How far ahead of now removals are due at `usage`: a directory scheduled at its
    /// modification time plus the delay is due when it is older than [`Self::max_age`].
    pub fn lookahead(&self, usage: f64) -> Duration {
        self.delay.saturating_sub(self.max_age(usage))
    }
}

/// The directories waiting for removal, each with the time it is due.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    due: BTreeMap<PathBuf, SystemTime>,
    /// The same entries ordered by due time.
    by_time: BTreeSet<(SystemTime, PathBuf)>,
}

impl Schedule {
    /// Schedules `path`, last modified at `modified`, for removal `delay` later. A path
    /// scheduled twice keeps the later time.
    pub fn schedule(&mut self, path: PathBuf, modified: SystemTime, delay: Duration) {
        let at = modified.checked_add(delay).unwrap_or(modified);
        match self.due.get_mut(&path) {
            Some(old) if *old >= at => {}
            Some(old) => {
                self.by_time.remove(&(*old, path.clone()));
                *old = at;
                self.by_time.insert((at, path));
            }
            None => {
                self.due.insert(path.clone(), at);
                self.by_time.insert((at, path));
            }
        }
    }

    /// Takes the paths due by `now + lookahead`, in path order.
    pub fn take_due(&mut self, now: SystemTime, lookahead: Duration) -> Vec<PathBuf> {
        let horizon = now.checked_add(lookahead).unwrap_or(now);
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first() {
            if *at > horizon {
                break;
            }
            let (_, path) = self.by_time.pop_first().expect("just seen");
            self.due.remove(&path);
            due.push(path);
        }
        due.sort();
        due
    }

    /// When the next removal is due.
    pub fn next_due(&self) -> Option<SystemTime> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// How many paths wait.
    pub fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn max_age_shrinks_with_disk_usage() {
        let p = Policy {
            delay: WEEK,
            disk_headroom: 0.1,
        };
        assert_eq!(p.max_age(0.0), WEEK.mul_f64(0.9));
        assert_eq!(p.max_age(0.5), WEEK.mul_f64(0.4));
        assert_eq!(p.max_age(0.9), Duration::ZERO);
        assert_eq!(p.max_age(0.95), Duration::ZERO, "never negative");
        assert_eq!(p.lookahead(0.5), WEEK - WEEK.mul_f64(0.4));
        let no_headroom = Policy {
            delay: WEEK,
            disk_headroom: 0.0,
        };
        assert_eq!(no_headroom.max_age(0.0), WEEK);
        assert_eq!(no_headroom.lookahead(0.0), Duration::ZERO);
    }

    #[test]
    fn paths_come_due_after_the_delay() {
        let delay = Duration::from_secs(10);
        let mut s = Schedule::default();
        s.schedule("/a".into(), at(100), delay);
        s.schedule("/b".into(), at(105), delay);
        assert_eq!(s.next_due(), Some(at(110)));
        assert!(s.take_due(at(109), Duration::ZERO).is_empty());
        assert_eq!(
            s.take_due(at(110), Duration::ZERO),
            vec![PathBuf::from("/a")]
        );
        assert_eq!((s.len(), s.next_due()), (1, Some(at(115))));
        assert_eq!(
            s.take_due(at(200), Duration::ZERO),
            vec![PathBuf::from("/b")]
        );
        assert_eq!((s.len(), s.next_due()), (0, None));
    }

    #[test]
    fn a_full_disk_makes_older_paths_due_early() {
        let p = Policy {
            delay: Duration::from_secs(100),
            disk_headroom: 0.1,
        };
        let mut s = Schedule::default();
        s.schedule("/old".into(), at(0), p.delay);
        s.schedule("/new".into(), at(55), p.delay);
        // At 60 s, 50% used: the max age is 40 s, so only the 60 s old one goes.
        assert_eq!(
            s.take_due(at(60), p.lookahead(0.5)),
            vec![PathBuf::from("/old")]
        );
        // Full past the headroom: everything goes.
        assert_eq!(
            s.take_due(at(60), p.lookahead(0.95)),
            vec![PathBuf::from("/new")]
        );
    }

    #[test]
    fn rescheduling_keeps_the_later_time() {
        let delay = Duration::from_secs(10);
        let mut s = Schedule::default();
        s.schedule("/a".into(), at(100), delay);
        s.schedule("/a".into(), at(50), delay);
        assert_eq!((s.len(), s.next_due()), (1, Some(at(110))));
        s.schedule("/a".into(), at(200), delay);
        assert_eq!(s.next_due(), Some(at(210)));
        assert!(
            s.take_due(at(209), Duration::ZERO).is_empty(),
            "the old time is gone"
        );
        assert_eq!(
            s.take_due(at(210), Duration::ZERO),
            vec![PathBuf::from("/a")]
        );
        assert_eq!((s.len(), s.next_due()), (0, None));
    }

    /// Against a plain list of (path, time): the same due paths, in path order, and the
    /// same next due time, whatever the order of scheduling and taking.
    #[test]
    fn agrees_with_a_walk_over_every_entry() {
        use proptest::prelude::*;
        let step = (0u8..2, 0u64..6, 0u64..40);
        proptest!(|(steps in proptest::collection::vec(step, 1..60))| {
            let delay = Duration::from_secs(5);
            let mut s = Schedule::default();
            let mut plain: BTreeMap<PathBuf, SystemTime> = BTreeMap::new();
            for (kind, name, secs) in steps {
                if kind == 0 {
                    let path = PathBuf::from(format!("/run/{name}"));
                    s.schedule(path.clone(), at(secs), delay);
                    let when = at(secs + 5);
                    let old = plain.entry(path).or_insert(when);
                    *old = (*old).max(when);
                } else {
                    let taken = s.take_due(at(secs), Duration::ZERO);
                    let expected: Vec<PathBuf> = plain
                        .iter()
                        .filter(|(_, t)| **t <= at(secs))
                        .map(|(p, _)| p.clone())
                        .collect();
                    plain.retain(|_, t| *t > at(secs));
                    prop_assert_eq!(taken, expected);
                }
                prop_assert_eq!(s.next_due(), plain.values().min().copied());
                prop_assert_eq!(s.len(), plain.len());
            }
        });
    }
}
