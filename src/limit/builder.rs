//! Configuration of an [`AdaptiveLimiter`], validated by [`AdaptiveLimiterBuilder::build`].

use std::time::Duration;

use super::algorithm::LimitAlgorithm;
use super::engine::{Engine, Order};
use super::limiter::AdaptiveLimiter;
use crate::BuildError;

/// Netflix's `LifoBlockingLimiter` backlog.
const DEFAULT_MAX_QUEUE: usize = 100;
const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// folly's CoDel defaults.
pub(crate) const DEFAULT_CODEL_TARGET: Duration = Duration::from_millis(5);
pub(crate) const DEFAULT_CODEL_INTERVAL: Duration = Duration::from_millis(100);

/// Settings of an [`AdaptiveLimiter`], from [`AdaptiveLimiter::builder`].
///
/// By default up to 100 callers wait for room, each for at most a second, first in first
/// out; when the queue stands (even the luckiest caller of a 100 ms interval waited more than
/// 5 ms), the newest are served first, those that waited more than 10 ms are turned away, and a
/// newcomer to a full queue turns the oldest waiter away instead of being refused.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct AdaptiveLimiterBuilder {
    algorithm: Box<dyn LimitAlgorithm>,
    max_queue: usize,
    queue_timeout: Duration,
    order: Order,
}

impl AdaptiveLimiterBuilder {
    pub(crate) fn new(algorithm: Box<dyn LimitAlgorithm>) -> Self {
        Self {
            algorithm,
            max_queue: DEFAULT_MAX_QUEUE,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            order: Order::Adaptive {
                target: DEFAULT_CODEL_TARGET,
                interval: DEFAULT_CODEL_INTERVAL,
            },
        }
    }

    /// How many callers may wait for room (100); 0 turns away every caller the limit does not
    /// admit at once.
    pub fn max_queue(mut self, callers: usize) -> Self {
        self.max_queue = callers;
        self
    }

    /// How long a caller waits for room before it gives up (1 s); `Duration::MAX` for no limit.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }

    /// Serve waiters strictly first in, first out, and never turn them away for staleness.
    pub fn fifo(mut self) -> Self {
        self.order = Order::Fifo;
        self
    }

    /// First in, first out until the queue stands: even the luckiest caller of an `interval`
    /// waited more than `target`. Then the newest callers are served first and those that have
    /// waited more than twice `target` are turned away (the default, with folly's 5 ms and
    /// 100 ms).
    pub fn adaptive_lifo(mut self, target: Duration, interval: Duration) -> Self {
        self.order = Order::Adaptive { target, interval };
        self
    }

    /// Checks the settings and makes the limiter.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting: the algorithm's own (limits out of order, a ratio
    /// out of range), a zero `queue_timeout`, or a zero CoDel `target` or `interval`.
    pub fn build(self) -> Result<AdaptiveLimiter, BuildError> {
        self.algorithm.validate()?;
        if self.queue_timeout.is_zero() {
            return Err(BuildError::invalid(
                "queue_timeout",
                self.queue_timeout,
                "must be above zero (use max_queue(0) for no waiting)",
            ));
        }
        if let Order::Adaptive { target, interval } = self.order {
            if target.is_zero() {
                return Err(BuildError::invalid("target", target, "must be above zero"));
            }
            if interval.is_zero() {
                return Err(BuildError::invalid("interval", interval, "must be above zero"));
            }
        }
        let engine = Engine::new(self.algorithm, self.max_queue, self.order);
        Ok(AdaptiveLimiter::from_parts(engine, self.queue_timeout))
    }
}
