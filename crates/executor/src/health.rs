//! Health-check counting, as Mesos's `HealthChecker` does it: failures inside the grace
//! period are ignored until the first success; every counted failure is reported, with a
//! kill once `consecutive_failures` is reached; a success is reported only when it is the
//! first one or follows failures.

use meseta_api::HealthCheck;
use std::time::{Duration, Instant};

/// What one probe result means for the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// The health to report in a TASK_RUNNING update.
    pub healthy: bool,
    /// Whether the task must now be killed.
    pub kill: bool,
}

/// The health of one task, fed with probe results.
#[derive(Clone, Debug)]
pub struct HealthTracker {
    limit: u32,
    grace: Duration,
    started: Instant,
    failures: u32,
    initializing: bool,
}

impl HealthTracker {
    /// Starts tracking `check` for a task launched at `started`.
    pub fn new(check: &HealthCheck, started: Instant) -> HealthTracker {
        HealthTracker {
            limit: check.consecutive_failures,
            grace: Duration::try_from_secs_f64(check.grace_period_seconds).unwrap_or_default(),
            started,
            failures: 0,
            initializing: true,
        }
    }

    /// Records one probe result; returns the update to send, if any.
    pub fn record(&mut self, healthy: bool, now: Instant) -> Option<HealthReport> {
        if healthy {
            let report = (self.initializing || self.failures > 0).then_some(HealthReport {
                healthy: true,
                kill: false,
            });
            self.initializing = false;
            self.failures = 0;
            return report;
        }
        if self.initializing
            && !self.grace.is_zero()
            && now.saturating_duration_since(self.started) <= self.grace
        {
            return None;
        }
        self.failures += 1;
        Some(HealthReport {
            healthy: false,
            kill: self.failures >= self.limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(failures: u32, grace: f64) -> HealthCheck {
        serde_json::from_value(serde_json::json!({
            "type": "TCP", "tcp": {"port": 1},
            "consecutive_failures": failures, "grace_period_seconds": grace
        }))
        .unwrap()
    }

    #[test]
    fn grace_period_hides_early_failures_until_first_success() {
        let t0 = Instant::now();
        let mut t = HealthTracker::new(&check(2, 10.0), t0);
        assert_eq!(t.record(false, t0 + Duration::from_secs(5)), None);
        assert_eq!(
            t.record(false, t0 + Duration::from_secs(11)),
            Some(HealthReport {
                healthy: false,
                kill: false
            })
        );
        assert_eq!(
            t.record(false, t0 + Duration::from_secs(12)),
            Some(HealthReport {
                healthy: false,
                kill: true
            })
        );
    }

    #[test]
    fn success_reported_first_and_after_failures_only() {
        let t0 = Instant::now();
        let mut t = HealthTracker::new(&check(3, 10.0), t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            t.record(true, at(1)),
            Some(HealthReport {
                healthy: true,
                kill: false
            })
        );
        assert_eq!(t.record(true, at(2)), None);
        // After the first success the grace period no longer applies.
        assert_eq!(
            t.record(false, at(3)),
            Some(HealthReport {
                healthy: false,
                kill: false
            })
        );
        assert_eq!(
            t.record(true, at(4)),
            Some(HealthReport {
                healthy: true,
                kill: false
            })
        );
        assert!(!t.record(false, at(5)).unwrap().kill);
        assert!(!t.record(false, at(6)).unwrap().kill);
        assert!(t.record(false, at(7)).unwrap().kill);
    }

    #[test]
    fn zero_grace_counts_from_the_start() {
        let t0 = Instant::now();
        let mut t = HealthTracker::new(&check(1, 0.0), t0);
        assert_eq!(
            t.record(false, t0),
            Some(HealthReport {
                healthy: false,
                kill: true
            })
        );
    }
}
