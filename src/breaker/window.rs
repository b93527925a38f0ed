//! The outcomes of the recent calls, in time buckets, for the rate rules of a
//! [`CircuitBreaker`](super::CircuitBreaker).

use std::time::Duration;

use tokio::time::Instant;

/// Buckets a window is split into: the window slides a bucket at a time.
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    calls: u32,
    failures: u32,
    slow: u32,
}

/// Counts of the calls that ended in the last `window`, to a tenth of the window.
#[derive(Debug)]
pub(crate) struct Window {
    buckets: [Bucket; BUCKETS],
    span: Duration,
    /// The start of the newest bucket.
    newest_start: Instant,
    newest: usize,
}

/// The window's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

impl Window {
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        Self {
            buckets: [Bucket::default(); BUCKETS],
            span: (window / BUCKETS as u32).max(Duration::from_nanos(1)),
            newest_start: now,
            newest: 0,
        }
    }

    /// Moves the window to `now`, emptying the buckets that fell out of it.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.newest_start);
        let steps = (elapsed.as_nanos() / self.span.as_nanos()).min(BUCKETS as u128) as usize;
        for _ in 0..steps {
            self.newest = (self.newest + 1) % BUCKETS;
            self.buckets[self.newest] = Bucket::default();
        }
        if steps == BUCKETS {
            self.newest_start = now;
        } else {
            self.newest_start += self.span * steps as u32;
        }
    }

    /// Records a call that ended at `now`.
    pub(crate) fn record(&mut self, now: Instant, failed: bool, slow: bool) {
        self.advance(now);
        let bucket = &mut self.buckets[self.newest];
        bucket.calls = bucket.calls.saturating_add(1);
        bucket.failures = bucket.failures.saturating_add(u32::from(failed));
        bucket.slow = bucket.slow.saturating_add(u32::from(slow));
    }

    pub(crate) fn totals(&self) -> Totals {
        self.buckets.iter().fold(Totals { calls: 0, failures: 0, slow: 0 }, |sum, bucket| Totals {
            calls: sum.calls.saturating_add(bucket.calls),
            failures: sum.failures.saturating_add(bucket.failures),
            slow: sum.slow.saturating_add(bucket.slow),
        })
    }

    /// Forgets every call: after a trip, the next verdict is on fresh calls only.
    pub(crate) fn clear(&mut self, now: Instant) {
        *self = Self::new(self.span * BUCKETS as u32, now);
    }
}

/// The rate rules that trip a breaker over a [`Window`]: a failure rate, a slow-call rate, and
/// the calls the window must hold before either judges. Shared by [`CircuitBreaker`] and the
/// pool's own breaker.
///
/// [`CircuitBreaker`]: super::CircuitBreaker
#[derive(Debug, Clone)]
pub(crate) struct RateRules {
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow: Option<(Duration, f64)>,
    pub(crate) minimum_calls: u32,
}

impl RateRules {
    /// Whether a call that took `took` counts as slow.
    pub(crate) fn is_slow(&self, took: Duration) -> bool {
        self.slow.is_some_and(|(threshold, _)| took > threshold)
    }

    /// Whether the window's calls break a rule.
    pub(crate) fn trip(&self, window: &Window) -> bool {
        let totals = window.totals();
        if totals.calls < self.minimum_calls {
            return false;
        }
        let calls = f64::from(totals.calls);
        let failing =
            self.failure_rate.is_some_and(|rate| f64::from(totals.failures) / calls >= rate);
        let slow = self.slow.is_some_and(|(_, rate)| f64::from(totals.slow) / calls >= rate);
        failing || slow
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn calls_fall_out_of_the_window_a_bucket_at_a_time() {
        let start = Instant::now();
        let mut window = Window::new(Duration::from_secs(10), start);
        window.record(start, true, false);
        window.record(start + Duration::from_secs(5), false, true);
        assert_eq!(window.totals(), Totals { calls: 2, failures: 1, slow: 1 });
        window.record(start + Duration::from_millis(10_500), false, false);
        assert_eq!(
            window.totals(),
            Totals { calls: 2, failures: 0, slow: 1 },
            "the first fell out"
        );
        window.record(start + Duration::from_secs(60), false, false);
        assert_eq!(window.totals(), Totals { calls: 1, failures: 0, slow: 0 });
    }
}
