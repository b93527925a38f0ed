//! Additive increase, multiplicative decrease: the loss-based algorithm.

use std::time::Duration;

use super::algorithm::{LimitAlgorithm, Outcome, Sample, validate_bounds, validate_ratio};
use crate::BuildError;

/// A loss-based limit: one more for each success while the limit is in use, and a cut by
/// `backoff` for each loss (a [`Dropped`](Outcome::Dropped) call, or a success slower than
/// `timeout`).
///
/// It reacts only to loss, so it suits a client calling a backend that sheds or times out
/// when overloaded; it does not see latency rise before that. The defaults are those of
/// Netflix's `AIMDLimit`: initial 20, between 20 and 200, backoff 0.9, timeout 5 s.
///
/// ```
/// use millpond::limit::Aimd;
/// use std::time::Duration;
///
/// let aimd = Aimd::new().min_limit(4).max_limit(64).initial_limit(8).timeout(Duration::from_secs(2));
/// # let _ = aimd;
/// ```
#[derive(Debug, Clone)]
pub struct Aimd {
    initial: usize,
    min: usize,
    max: usize,
    backoff: f64,
    timeout: Duration,
    limit: usize,
}

impl Default for Aimd {
    fn default() -> Self {
        Self::new()
    }
}

impl Aimd {
    /// AIMD with Netflix's defaults.
    pub fn new() -> Self {
        Self {
            initial: 20,
            min: 20,
            max: 200,
            backoff: 0.9,
            timeout: Duration::from_secs(5),
            limit: 20,
        }
    }

    /// The limit before the first sample (20).
    #[must_use]
    pub fn initial_limit(mut self, limit: usize) -> Self {
        self.initial = limit;
        self.limit = limit;
        self
    }

    /// The floor (20): losses never cut below it.
    #[must_use]
    pub fn min_limit(mut self, limit: usize) -> Self {
        self.min = limit;
        self
    }

    /// The ceiling (200).
    #[must_use]
    pub fn max_limit(mut self, limit: usize) -> Self {
        self.max = limit;
        self
    }

    /// The factor a loss multiplies the limit by (0.9), in `[0.5, 1)`.
    #[must_use]
    pub fn backoff(mut self, ratio: f64) -> Self {
        self.backoff = ratio;
        self
    }

    /// A success slower than this counts as a loss (5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn cut(&mut self) {
        // Truncation, so a limit of 1 can still only fall to the floor, never stick above it.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let cut = (self.limit as f64 * self.backoff) as usize;
        self.limit = cut.max(self.min);
    }
}

impl LimitAlgorithm for Aimd {
    fn initial(&self) -> usize {
        self.initial
    }

    fn update(&mut self, sample: &Sample) -> usize {
        match sample.outcome {
            Outcome::Dropped => self.cut(),
            Outcome::Success if sample.latency > self.timeout => self.cut(),
            Outcome::Success if !sample.app_limited() => {
                self.limit = (self.limit + 1).min(self.max);
            }
            Outcome::Success | Outcome::Failure => {}
        }
        self.limit
    }

    fn validate(&self) -> Result<(), BuildError> {
        validate_bounds(self.initial, self.min, self.max)?;
        validate_ratio("backoff", self.backoff, 0.5, 1.0, false)?;
        if self.timeout.is_zero() {
            return Err(BuildError::invalid("timeout", self.timeout, "must be above zero"));
        }
        Ok(())
    }
}
