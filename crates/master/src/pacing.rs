//! When the service loop runs an allocation pass after jobs (a pure decision, apart from
//! the clock the loop reads).
//!
//! Jobs that change what can be offered (a task ending, an offer declined, a framework
//! subscribing) ask for a pass. A pass asked for runs at once when the last one ended at
//! least `spacing` ago (and at least as long ago as that pass took); otherwise it waits
//! until then, and every job meanwhile is allocated by that one pass. So a lone change
//! is offered at once, while under a steady stream of changes (hundreds of tasks ending
//! each second) the resources they free go out in a few larger offers instead of an
//! offer, and often a decline, per task. Mesos allocates such resources only at its next
//! periodic pass (`--allocation_interval`, a second by default).

use std::time::{Duration, Instant};

/// The pacing of allocation passes that follow jobs.
#[derive(Debug)]
pub struct PassPacer {
    spacing: Duration,
    wanted: bool,
    next: Instant,
}

impl PassPacer {
    /// A pacer whose first pass may run at once.
    pub fn new(spacing: Duration, now: Instant) -> Self {
        PassPacer {
            spacing,
            wanted: false,
            next: now,
        }
    }

    /// A job changed what can be offered.
    pub fn want(&mut self) {
        self.wanted = true;
    }

    /// When the wanted pass may run, if one is wanted.
    pub fn wanted_at(&self) -> Option<Instant> {
        self.wanted.then_some(self.next)
    }

    /// Whether a pass should run now.
    pub fn due(&self, now: Instant) -> bool {
        self.wanted && now >= self.next
    }

    /// A pass ran from `started` to `ended`: the next waits at least as long as it took,
    /// and at least the spacing (a pass grows with the cluster: this leaves at least half
    /// of the loop to the jobs however large it is).
    pub fn ran(&mut self, started: Instant, ended: Instant) {
        self.wanted = false;
        self.next = ended + ended.saturating_duration_since(started).max(self.spacing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_is_due_until_a_pass_is_wanted() {
        let t0 = Instant::now();
        let mut pacer = PassPacer::new(20 * MS, t0);
        assert!(!pacer.due(t0 + 100 * MS));
        assert_eq!(pacer.wanted_at(), None);
        pacer.want();
        assert!(pacer.due(t0));
        assert_eq!(pacer.wanted_at(), Some(t0));
    }

    #[test]
    fn a_change_after_a_quiet_spell_is_allocated_at_once() {
        let t0 = Instant::now();
        let mut pacer = PassPacer::new(20 * MS, t0);
        pacer.want();
        pacer.ran(t0, t0 + MS);
        let later = t0 + 500 * MS;
        pacer.want();
        assert!(pacer.due(later));
    }

    #[test]
    fn changes_within_the_spacing_wait_for_one_pass() {
        let t0 = Instant::now();
        let mut pacer = PassPacer::new(20 * MS, t0);
        pacer.want();
        pacer.ran(t0, t0 + MS);
        for step in 2..21 {
            pacer.want();
            assert!(!pacer.due(t0 + step * MS), "due at {step} ms");
        }
        assert_eq!(pacer.wanted_at(), Some(t0 + 21 * MS));
        assert!(pacer.due(t0 + 21 * MS));
        pacer.ran(t0 + 21 * MS, t0 + 22 * MS);
        assert!(!pacer.due(t0 + 30 * MS), "a pass ran: nothing is wanted");
    }

    #[test]
    fn a_long_pass_is_followed_by_as_long_a_rest() {
        let t0 = Instant::now();
        let mut pacer = PassPacer::new(20 * MS, t0);
        pacer.want();
        pacer.ran(t0, t0 + 100 * MS);
        pacer.want();
        assert!(!pacer.due(t0 + 199 * MS));
        assert!(pacer.due(t0 + 200 * MS));
    }

    #[test]
    fn no_spacing_runs_a_pass_after_every_batch_of_short_passes() {
        let t0 = Instant::now();
        let mut pacer = PassPacer::new(Duration::ZERO, t0);
        pacer.want();
        pacer.ran(t0, t0);
        pacer.want();
        assert!(pacer.due(t0));
    }
}
