//! Why the limiter turned a call away.

use std::fmt;
use std::time::Duration;

/// Why an [`AdaptiveLimiter`](super::AdaptiveLimiter) did not admit a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// The limit was reached and the queue of waiting callers was full (or disabled).
    QueueFull {
        /// The limit at the time.
        limit: usize,
    },
    /// The caller waited its whole queue timeout without room coming free.
    TimedOut {
        /// How long it waited.
        waited: Duration,
    },
    /// The queue had been standing (every caller waited past the CoDel target for a whole
    /// interval) and this caller had waited more than twice the target: it was turned away
    /// so that callers who are still waiting for an answer are served first.
    Shed {
        /// How long it waited.
        waited: Duration,
    },
}

impl Rejected {
    /// How long the caller waited before it was turned away (zero for a full queue).
    pub fn waited(&self) -> Duration {
        match *self {
            Self::QueueFull { .. } => Duration::ZERO,
            Self::TimedOut { waited } | Self::Shed { waited } => waited,
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull { limit } => {
                write!(
                    f,
                    "concurrency limit reached ({limit} in flight) and the wait queue is full"
                )
            }
            Self::TimedOut { waited } => {
                write!(f, "waited {waited:?} for the concurrency limit and timed out")
            }
            Self::Shed { waited } => write!(
                f,
                "shed after waiting {waited:?}: the limiter's queue is standing and serves newer callers first"
            ),
        }
    }
}

impl std::error::Error for Rejected {}
