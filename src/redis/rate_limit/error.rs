//! Why a check could not ask the server, and the errors a check returns.

use std::fmt;
use std::time::Duration;

use crate::pool;
use crate::redis::Error as RedisError;

/// Why the limiter could not get an answer from Redis.
///
/// With [`FailurePolicy::Closed`](super::FailurePolicy::Closed) it comes back inside
/// [`Error::Unavailable`]; with [`FailurePolicy::Open`](super::FailurePolicy::Open) inside
/// [`Decision::AllowedUnchecked`](super::Decision::AllowedUnchecked), so that admissions nobody
/// counted can be counted.
#[derive(Debug)]
#[non_exhaustive]
pub enum Unavailable {
    /// No connection could be had from the pool: the server refuses connections, the pool's
    /// breaker is open, or its acquire timeout passed.
    Checkout(pool::Error<RedisError>),
    /// The script failed on its way or on the server: the connection broke, the server
    /// answered with an error (a script error, `OOM`, `READONLY`, ...), or the connection's own
    /// response timeout passed.
    Command(RedisError),
    /// The check's own timeout ([`RateLimiterBuilder::timeout`](super::RateLimiterBuilder::timeout))
    /// passed: the server, or the pool, did not answer in time.
    Timeout(Duration),
    /// The script answered something it never sends (another script under the same name on a
    /// proxy, say); the reply as the redis crate prints it.
    UnexpectedReply(String),
}

impl Unavailable {
    /// Whether the cause was a timeout: the check's own, the pool's acquire timeout, or the
    /// connection's response timeout.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Checkout(err) => err.is_timeout(),
            Self::Command(err) => err.is_timeout(),
            Self::UnexpectedReply(_) => false,
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Checkout(err) => write!(f, "no Redis connection for the rate limiter: {err}"),
            Self::Command(err) => write!(f, "the rate limiter's script failed: {err}"),
            Self::Timeout(after) => {
                write!(f, "the rate limiter got no answer from Redis within {after:?}")
            }
            Self::UnexpectedReply(reply) => {
                write!(f, "the rate limiter's script gave an unexpected reply: {reply}")
            }
        }
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Checkout(err) => Some(err),
            Self::Command(err) => Some(err),
            Self::Timeout(_) | Self::UnexpectedReply(_) => None,
        }
    }
}

/// Why a check has no [`Decision`](super::Decision).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Redis could not be asked and the limiter fails closed: the request is refused, and this
    /// is why.
    Unavailable(Unavailable),
    /// The request asks for more admissions at once than the burst: it would never fit, so it
    /// is refused without asking the server.
    ExceedsBurst {
        /// Admissions asked for.
        n: u32,
        /// The limiter's burst.
        burst: u32,
    },
}

impl Error {
    /// The cause, for [`Unavailable`](Self::Unavailable).
    pub fn unavailable(&self) -> Option<&Unavailable> {
        match self {
            Self::Unavailable(cause) => Some(cause),
            Self::ExceedsBurst { .. } => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(cause) => write!(f, "refused (the limiter fails closed): {cause}"),
            Self::ExceedsBurst { n, burst } => {
                write!(f, "{n} admissions at once can never fit a burst of {burst}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(cause) => Some(cause),
            Self::ExceedsBurst { .. } => None,
        }
    }
}
