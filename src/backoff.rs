//! Exponential backoff with jitter, for retrying work against a backend that is failing.

use std::time::Duration;

/// Delays that double from `initial` up to `max`, each drawn from the upper half of its step.
///
/// Drawing from `[d/2, d]` ("equal jitter") keeps the growth of plain exponential backoff while
/// spreading retries of callers that failed together, so they do not hit the backend in lock-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first retry).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let step = self.initial.saturating_mul(1u32 << doublings.min(31)).min(self.max);
        let half = step / 2;
        let spread = crate::time::nanos(step.saturating_sub(half));
        half + Duration::from_nanos(fastrand::u64(0..=spread))
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) };
        for attempt in 1..50 {
            let step = (Duration::from_millis(100) * 2u32.saturating_pow(attempt - 1))
                .min(Duration::from_secs(2));
            let delay = backoff.delay(attempt);
            assert!(delay >= step / 2 && delay <= step, "attempt {attempt}: {delay:?}");
        }
    }

    #[test]
    fn delays_are_jittered() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) };
        let step = Duration::from_millis(400);
        let mut delays: Vec<Duration> = (0..200).map(|_| backoff.delay(3)).collect();
        delays.sort_unstable();
        delays.dedup();
        assert!(delays.len() >= 20, "{} distinct delays of 200", delays.len());
        let spread = delays[delays.len() - 1] - delays[0];
        // Uniform over a 200 ms range: 200 draws span less than 100 ms with odds of about 2^-190.
        assert!(spread >= step / 4, "spread {spread:?}");
    }
}
