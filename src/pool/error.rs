//! What can go wrong when taking a resource from a pool.
//!
//! How the errors print their causes is described on [`Error`]: the error a call returns is the
//! whole story on one line; the errors inside it say only their own part.

use std::fmt;
use std::time::Duration;

use crate::sync::Arc;

/// The part of `get()` that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Waiting for a resource to be returned: the pool was full and no creation was running or
    /// failing.
    Wait,
    /// Waiting while creation was slow or failing (the pool had room, a creation was running, or
    /// the last one failed; see [`Error::last_create_error`]).
    Create,
    /// Running [`Manager::check`](super::Manager::check) on an idle resource.
    Check,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wait => "waiting for a resource to be returned",
            Self::Create => "waiting for a resource to be created",
            Self::Check => "checking a resource",
        })
    }
}

/// Why the pool failed to create a resource.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError<E> {
    /// [`Manager::create`](super::Manager::create) returned this error.
    Failed(E),
    /// `create()` did not finish within the pool's create timeout.
    TimedOut(Duration),
    /// `create()` panicked; the panic was contained and counted as a failed creation.
    Panicked,
    /// Creations succeed, but too many of them took longer than this
    /// ([`Builder::breaker_slow_creations`](super::Builder::breaker_slow_creations)), so the
    /// breaker opened.
    TooSlow(Duration),
}

impl<E> CreateError<E> {
    /// The manager's own error, when there is one.
    pub fn manager_error(&self) -> Option<&E> {
        match self {
            Self::Failed(err) => Some(err),
            Self::TimedOut(_) | Self::Panicked | Self::TooSlow(_) => None,
        }
    }
}

/// Says only what the pool adds ("creating a resource failed"); the manager's error is the
/// `source()`, so chain printers show each message once.
impl<E> fmt::Display for CreateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(_) => f.write_str("creating a resource failed"),
            Self::TimedOut(after) => write!(f, "creating a resource timed out after {after:?}"),
            Self::Panicked => f.write_str("creating a resource panicked"),
            Self::TooSlow(threshold) => {
                write!(f, "creating resources is too slow: too many took longer than {threshold:?}")
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CreateError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.manager_error().map(|err| err as _)
    }
}

/// The error of [`Pool::get`](super::Pool::get) and its variants.
///
/// A failure to reach the backend is never reported as a bare timeout: [`Error::Timeout`] and
/// [`Error::Unavailable`] carry the last real creation error, typed, through
/// [`Error::last_create_error`] and [`Error::manager_error`].
///
/// # How it prints its cause
///
/// This is the error a call hands back, and the one that gets logged, most often with `{}`
/// (`tracing::error!(error = %err)`). So its `Display` is the whole story on one line: what
/// the pool was doing, then the cause and the cause's own sources, each said once:
///
/// ```text
/// backend unavailable (circuit open): creating a resource failed: FATAL 28P01: password authentication failed for user "app"
/// ```
///
/// Since it prints its cause, it does not also return it from
/// [`source()`](std::error::Error::source) (the Rust API guideline: print the inner error or
/// return it, never both), so chain printers (anyhow's `{:#}`, eyre, `tracing` error fields)
/// show that same line, not the cause a second time. The errors inside it follow the other half
/// of the guideline: [`CreateError`] says only "creating a resource failed" and returns the
/// manager's error from `source()`; the PostgreSQL adapter's error says the server's severity,
/// SQLSTATE and message. Code that inspects the cause takes it typed from the accessors.
///
/// ```
/// use millpond::pool::{CreateError, Error};
/// use std::error::Error as _;
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let err: Error<std::io::Error> =
///     Error::Unavailable(std::sync::Arc::new(CreateError::Failed(refused)));
/// assert_eq!(
///     err.to_string(),
///     "backend unavailable (circuit open): creating a resource failed: connection refused"
/// );
/// assert!(err.source().is_none());
/// let cause = err.last_create_error().unwrap();
/// assert_eq!(cause.to_string(), "creating a resource failed");
/// assert_eq!(cause.source().unwrap().to_string(), "connection refused");
/// assert_eq!(err.manager_error().unwrap().kind(), std::io::ErrorKind::ConnectionRefused);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The acquire timeout passed before a resource could be handed out.
    Timeout {
        /// What `get()` was doing when time ran out.
        phase: TimeoutPhase,
        /// The last creation failure since the last success, if creations were failing.
        last_create_error: Option<Arc<CreateError<E>>>,
    },
    /// The backend looks down: creation failed repeatedly and the pool's circuit breaker is open,
    /// so a `get()` that only a new resource could serve fails at once instead of waiting out its
    /// timeout.
    Unavailable(Arc<CreateError<E>>),
    /// The pool was closed.
    Closed,
    /// [`Pool::try_get`](super::Pool::try_get) found no idle resource.
    Exhausted,
    /// The pool's [adaptive limit](super::Builder::adaptive_limit) turned the checkout away:
    /// the backend is at the concurrency it can take, and the wait for room failed as the
    /// limiter's error says.
    Limited(crate::limit::Rejected),
    /// [`Pool::get_keyed`](super::Pool::get_keyed)'s key is over its limit
    /// ([`Builder::rate_limit_per_key`](super::Builder::rate_limit_per_key)).
    RateLimited {
        /// How long until the key may check out again.
        retry_in: Duration,
    },
}

impl<E> Error<E> {
    /// Whether this is [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// The phase that timed out, for [`Error::Timeout`].
    pub fn timeout_phase(&self) -> Option<TimeoutPhase> {
        match self {
            Self::Timeout { phase, .. } => Some(*phase),
            _ => None,
        }
    }

    /// The creation failure behind this error, if there was one.
    pub fn last_create_error(&self) -> Option<&CreateError<E>> {
        match self {
            Self::Timeout { last_create_error, .. } => last_create_error.as_deref(),
            Self::Unavailable(err) => Some(err),
            Self::Closed | Self::Exhausted | Self::Limited(_) | Self::RateLimited { .. } => None,
        }
    }

    /// The manager's own error behind this one (the last failed creation's), if there was one:
    /// for PostgreSQL, the server's refusal with its SQLSTATE.
    pub fn manager_error(&self) -> Option<&E> {
        self.last_create_error().and_then(CreateError::manager_error)
    }
}

/// The whole story on one line, the cause included: see [how it prints its
/// cause](Error#how-it-prints-its-cause).
impl<E: std::error::Error + 'static> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { phase, last_create_error: None } => {
                write!(f, "timed out {phase}")
            }
            Self::Timeout { phase, last_create_error: Some(err) } => {
                write!(f, "timed out {phase}; last error: {}", crate::report::chain(&**err))
            }
            Self::Unavailable(err) => {
                write!(f, "backend unavailable (circuit open): {}", crate::report::chain(&**err))
            }
            Self::Closed => f.write_str("the pool is closed"),
            Self::Exhausted => f.write_str("no idle resource in the pool"),
            Self::Limited(rejected) => write!(f, "the pool's adaptive limit refused: {rejected}"),
            Self::RateLimited { retry_in } => {
                write!(f, "this key is over its rate limit (retry in {retry_in:?})")
            }
        }
    }
}

/// No source: the `Display` already says the cause (see [how it prints its
/// cause](Error#how-it-prints-its-cause)); [`Error::last_create_error`] gives it typed.
impl<E: std::error::Error + 'static> std::error::Error for Error<E> {}

impl<E> Clone for Error<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Timeout { phase, last_create_error } => {
                Self::Timeout { phase: *phase, last_create_error: last_create_error.clone() }
            }
            Self::Unavailable(err) => Self::Unavailable(Arc::clone(err)),
            Self::Closed => Self::Closed,
            Self::Exhausted => Self::Exhausted,
            Self::Limited(rejected) => Self::Limited(*rejected),
            Self::RateLimited { retry_in } => Self::RateLimited { retry_in: *retry_in },
        }
    }
}

/// [`Pool::drain`](super::Pool::drain) ran out of time with resources still out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainError {
    /// Slots still taken (resources out with callers, or creations in flight) at the deadline.
    pub remaining: usize,
}

impl fmt::Display for DrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drain timed out with {} resource(s) still out", self.remaining)
    }
}

impl std::error::Error for DrainError {}
