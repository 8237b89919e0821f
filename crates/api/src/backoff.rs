//! Exponential backoff between connection attempts (executors and schedulers
//! resubscribing), capped and jittered.

use std::time::Duration;

/// The first pause, unless the cap is smaller.
const INITIAL: Duration = Duration::from_millis(100);

/// Doubling pauses from 100 ms up to a cap.
#[derive(Clone, Debug)]
pub struct Backoff {
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            max,
            next: INITIAL.min(max),
        }
    }

    /// The next pause: between half and all of the current step (`jitter` in `[0, 1)`
    /// picks where); the step then doubles.
    pub fn next(&mut self, jitter: f64) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// Starts again from the first pause.
    pub fn reset(&mut self) {
        self.next = INITIAL.min(self.max);
    }
}

/// A jitter value in `[0, 1)` from the system's randomness.
pub fn jitter() -> f64 {
    uuid::Uuid::new_v4().as_u128() as f64 / u128::MAX as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(300));
        let steps: Vec<_> = (0..4).map(|_| b.next(1.0)).collect();
        assert_eq!(
            steps,
            [100, 200, 300, 300].map(Duration::from_millis).to_vec()
        );
        b.reset();
        assert_eq!(b.next(0.0), Duration::from_millis(50));
        assert!((0.0..1.0).contains(&jitter()));
    }
}
