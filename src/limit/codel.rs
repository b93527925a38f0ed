//! Telling a standing queue from a passing burst, CoDel-style.
//!
//! A queue that empties now and then is doing its job: it absorbs bursts. A queue that never
//! empties only adds delay. CoDel tells them apart by the *minimum* wait over an interval: if
//! even the luckiest caller of the last interval waited longer than the target, the queue is
//! standing. This is folly's variant (target 5 ms, interval 100 ms): while the queue stands,
//! callers who have waited more than twice the target are turned away instead of served
//! (their callers have most likely given up), and the limiter serves the newest waiter first,
//! whose caller is still there.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Codel {
    target: Duration,
    interval: Duration,
    /// The lowest wait seen since `interval_ends - interval`.
    lowest: Duration,
    interval_ends: Option<Instant>,
    standing: bool,
}

impl Codel {
    pub(crate) fn new(target: Duration, interval: Duration) -> Self {
        Self { target, interval, lowest: Duration::MAX, interval_ends: None, standing: false }
    }

    /// Records the wait of a caller leaving the queue first in, first out, or zero for a caller
    /// admitted without waiting or a standing queue served empty.
    pub(crate) fn record(&mut self, waited: Duration, now: Instant) {
        match self.interval_ends {
            Some(ends) if now < ends => self.lowest = self.lowest.min(waited),
            Some(_) => {
                // An interval in which nobody passed at all says nothing new.
                if self.lowest != Duration::MAX {
                    self.standing = self.lowest > self.target;
                }
                self.lowest = waited;
                self.interval_ends = Some(crate::time::after(now, self.interval));
            }
            None => {
                self.lowest = waited;
                self.interval_ends = Some(crate::time::after(now, self.interval));
            }
        }
    }

    /// Whether the queue counted as standing over the last full interval.
    pub(crate) fn standing(&self) -> bool {
        self.standing
    }

    /// Whether a caller who has waited `waited` should be turned away rather than served.
    pub(crate) fn stale(&self, waited: Duration) -> bool {
        self.standing && waited > self.target.saturating_mul(2)
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_queue_whose_luckiest_caller_waited_past_the_target_is_standing() {
        let start = Instant::now();
        let mut codel = Codel::new(5 * MS, 100 * MS);
        codel.record(8 * MS, start);
        codel.record(20 * MS, start + 50 * MS);
        assert!(!codel.standing(), "judged only once an interval is over");
        codel.record(30 * MS, start + 100 * MS);
        assert!(codel.standing(), "the lowest wait of the interval was 8 ms");
        assert!(codel.stale(11 * MS) && !codel.stale(10 * MS));
    }

    #[test]
    fn one_caller_served_at_once_clears_it() {
        let start = Instant::now();
        let mut codel = Codel::new(5 * MS, 100 * MS);
        codel.record(30 * MS, start);
        codel.record(30 * MS, start + 100 * MS);
        assert!(codel.standing());
        codel.record(Duration::ZERO, start + 150 * MS);
        codel.record(30 * MS, start + 200 * MS);
        assert!(!codel.standing(), "the queue emptied once in that interval");
        assert!(!codel.stale(Duration::from_secs(1)));
    }
}
