//! The circuit breaker state machine: closed, open for a cool-down, then half-open for one probe.
//!
//! It is a plain value driven under its owner's lock, with time passed in. The resource pool
//! drives it with its creations, a cluster with each backend's, and [`CircuitBreaker`] with any
//! call a user wraps.
//!
//! [`CircuitBreaker`]: super::CircuitBreaker

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls flow; `failures` counts consecutive failures.
    Closed,
    /// Calls are refused until `until`; the first call after it becomes the probe.
    Open { until: Instant },
    /// One probe is in flight; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// What the breaker allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Closed: as many attempts as the caller wants.
    Any,
    /// Half-open: exactly one probe attempt.
    Probe,
    /// Open, or half-open with the probe already out: no attempt.
    Refused,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    /// Consecutive failures that open the breaker; `None` disables it.
    threshold: Option<u32>,
    cooldown: Duration,
    failures: u32,
    state: State,
}

impl Breaker {
    pub(crate) fn new(threshold: Option<u32>, cooldown: Duration) -> Self {
        Self { threshold, cooldown, failures: 0, state: State::Closed }
    }

    /// Consecutive failures since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether the breaker is open (refusing, or waiting for its probe) rather than closed.
    pub(crate) fn is_tripped(&self) -> bool {
        !matches!(self.state, State::Closed)
    }

    /// When an open breaker lets its probe through, or `None` when it is not open.
    pub(crate) fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            State::Closed | State::HalfOpen => None,
        }
    }

    /// Whether callers should be refused outright at `now`.
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        matches!(self.state, State::Open { until } if now < until)
    }

    /// Asks to start an attempt; `in_flight` attempts are already running.
    ///
    /// An elapsed open state turns half-open here, and the caller that sees [`Permit::Probe`] owns
    /// the single probe.
    pub(crate) fn permit(&mut self, now: Instant, in_flight: usize) -> Permit {
        match self.state {
            State::Closed => Permit::Any,
            State::Open { until } if now < until => Permit::Refused,
            State::Open { .. } | State::HalfOpen if in_flight == 0 => {
                self.state = State::HalfOpen;
                Permit::Probe
            }
            State::Open { .. } | State::HalfOpen => Permit::Refused,
        }
    }

    /// Opens the breaker at once, whatever the count: for a failure that says the backend is gone
    /// (a timeout), not merely flaky.
    pub(crate) fn trip(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.state = State::Open { until: crate::time::after(now, self.cooldown) };
    }

    pub(crate) fn on_success(&mut self) {
        self.failures = 0;
        self.state = State::Closed;
    }

    /// Records a failure; returns `true` when it opened the breaker.
    pub(crate) fn on_failure(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        let trips = match self.state {
            State::HalfOpen => true,
            State::Closed => self.threshold.is_some_and(|threshold| self.failures >= threshold),
            // A late failure after the cool-down is as telling as a failed probe.
            State::Open { until } => now >= until,
        };
        if trips {
            self.state = State::Open { until: crate::time::after(now, self.cooldown) };
        }
        trips
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once_after_cooldown() {
        let start = Instant::now();
        let mut breaker = Breaker::new(Some(3), Duration::from_secs(5));
        assert!(!breaker.on_failure(start));
        assert!(!breaker.on_failure(start));
        assert_eq!(breaker.permit(start, 0), Permit::Any);
        assert!(breaker.on_failure(start));
        assert!(breaker.is_open(start));
        assert_eq!(breaker.permit(start + Duration::from_secs(4), 0), Permit::Refused);
        let later = start + Duration::from_secs(5);
        assert!(!breaker.is_open(later));
        assert_eq!(breaker.permit(later, 0), Permit::Probe);
        assert_eq!(breaker.permit(later, 1), Permit::Refused);
        breaker.on_success();
        assert_eq!(breaker.permit(later, 1), Permit::Any);
        assert_eq!(breaker.failures(), 0);
    }

    #[test]
    fn a_failed_probe_reopens_at_once() {
        let start = Instant::now();
        let mut breaker = Breaker::new(Some(1), Duration::from_secs(1));
        assert!(breaker.on_failure(start));
        let later = start + Duration::from_secs(1);
        assert_eq!(breaker.permit(later, 0), Permit::Probe);
        assert!(breaker.on_failure(later));
        assert!(breaker.is_open(later));
    }

    #[test]
    fn a_late_failure_after_the_cooldown_reopens() {
        let start = Instant::now();
        let mut breaker = Breaker::new(Some(1), Duration::from_secs(1));
        assert!(breaker.on_failure(start));
        // A creation started before the trip fails after the cool-down, before any probe.
        let later = start + Duration::from_secs(2);
        assert!(breaker.on_failure(later), "it must not leave the breaker half-dead");
        assert!(breaker.is_open(later));
        assert!(breaker.is_tripped());
    }

    #[test]
    fn disabled_breaker_never_opens() {
        let now = Instant::now();
        let mut breaker = Breaker::new(None, Duration::from_secs(1));
        for _ in 0..1000 {
            assert!(!breaker.on_failure(now));
        }
        assert_eq!(breaker.permit(now, 10), Permit::Any);
    }
}
