//! What a limit algorithm sees of each call, and the trait every algorithm implements.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::BuildError;

/// How a call that held a permit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call did its work; its latency is a measurement of the backend.
    Success,
    /// The call failed for a reason that says nothing about load (a bad request, a missing
    /// row): counted, but it neither raises nor lowers the limit, and its latency is not a
    /// sample.
    Failure,
    /// The call was lost to overload: it timed out, the backend refused or shed it, or its
    /// caller gave up waiting for it. Every algorithm treats this as loss and lowers the limit.
    Dropped,
}

/// One finished call, as a [`LimitAlgorithm`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Sample {
    /// How the call ended.
    pub outcome: Outcome,
    /// From admission (not from the start of its wait) to the outcome.
    pub latency: Duration,
    /// Calls in flight when this one was admitted, itself included. An algorithm compares it
    /// with the limit to tell a saturated limit from an idle one.
    pub in_flight: usize,
    /// The limit in force when the outcome was recorded.
    pub limit: usize,
    /// When the outcome was recorded.
    pub now: Instant,
}

impl Sample {
    /// A sample, for testing an algorithm (the limiter makes them itself).
    pub fn new(
        outcome: Outcome,
        latency: Duration,
        in_flight: usize,
        limit: usize,
        now: Instant,
    ) -> Self {
        Self { outcome, latency, in_flight, limit, now }
    }

    /// Whether the caller was using less than half the limit when this call began, so that
    /// the call says nothing about whether more concurrency would fit. Growing the limit on
    /// such samples is how a limiter creeps up to its ceiling while the caller is idle and
    /// then lets a burst through all at once (Netflix's limits skip them the same way).
    pub fn app_limited(&self) -> bool {
        self.in_flight.saturating_mul(2) < self.limit
    }
}

/// A rule that moves a concurrency limit from the outcome of each call.
///
/// millpond ships [`Aimd`](super::Aimd) (loss-based) and [`Gradient2`](super::Gradient2)
/// (delay-based). An algorithm is a plain state machine: the limiter calls it under its lock,
/// one sample at a time, so it needs no synchronisation of its own and must not block.
///
/// Losses arrive de-duplicated: after a [`Dropped`](Outcome::Dropped) sample lowered the
/// limit, further drops of calls admitted before that cut are not passed on, so one burst of
/// timeouts cuts the limit once (as TCP cuts its window once per round trip), not once per
/// call.
pub trait LimitAlgorithm: fmt::Debug + Send + 'static {
    /// The limit before the first sample.
    fn initial(&self) -> usize;

    /// Takes one sample and returns the new limit. The limiter clamps the answer to at least 1.
    fn update(&mut self, sample: &Sample) -> usize;

    /// Checks the settings, for [`AdaptiveLimiterBuilder::build`](super::AdaptiveLimiterBuilder::build).
    /// The default accepts anything.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting that is out of range.
    fn validate(&self) -> Result<(), BuildError> {
        Ok(())
    }
}

/// Checks the bounds every shipped algorithm has.
pub(crate) fn validate_bounds(initial: usize, min: usize, max: usize) -> Result<(), BuildError> {
    if min == 0 {
        return Err(BuildError::invalid("min_limit", min, "must be at least 1"));
    }
    if max < min {
        return Err(BuildError::invalid(
            "max_limit",
            max,
            format!("must be at least min_limit ({min})"),
        ));
    }
    if initial < min || initial > max {
        return Err(BuildError::invalid(
            "initial_limit",
            initial,
            format!("must lie between min_limit ({min}) and max_limit ({max})"),
        ));
    }
    Ok(())
}

/// Checks a ratio that must lie in `[low, high)` or `(low, high]`.
pub(crate) fn validate_ratio(
    field: &'static str,
    value: f64,
    low: f64,
    high: f64,
    high_inclusive: bool,
) -> Result<(), BuildError> {
    let in_range =
        value.is_finite() && value >= low && (value < high || (high_inclusive && value == high));
    if in_range {
        Ok(())
    } else {
        let closing = if high_inclusive { ']' } else { ')' };
        Err(BuildError::invalid(field, value, format!("must lie in [{low}, {high}{closing}")))
    }
}
