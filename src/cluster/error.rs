//! What can go wrong when taking a connection from a cluster.

use std::fmt;

use super::health::Cause;
use crate::pool;

/// The error of [`Cluster::get`](super::Cluster::get) and its variants.
///
/// Like the pool's error ([how it prints its
/// cause](crate::pool::Error#how-it-prints-its-cause)), its `Display` is the whole story on one
/// line, the backend's real cause included, and so it returns nothing from `source()`: a chain
/// printer shows each message once. [`Error::backend_error`] gives the cause typed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// No backend that could serve the call is in rotation, or every one tried failed. Carries
    /// the last backend failure: the backend pool's [`pool::Error`], which holds the real cause
    /// ("connection refused"), or the creation failure its health recorded.
    Unavailable {
        /// Which backends the call could use: "any", "primary" or "replica".
        route: &'static str,
        /// The backend that failed last and why, if one was tried or had failed before.
        last: Option<(String, Cause)>,
    },
    /// A healthy backend's pool failed the call for a reason of its own (its acquire timeout
    /// passed while every connection was busy, or it was closed); trying another would not help.
    Pool {
        /// The backend's name.
        backend: String,
        /// The pool's error.
        error: pool::Error<E>,
    },
    /// [`Cluster::get_keyed`](super::Cluster::get_keyed)'s key is over its limit
    /// ([`ClusterBuilder::rate_limit_per_key`](super::ClusterBuilder::rate_limit_per_key)).
    RateLimited {
        /// How long until the key may check out again.
        retry_in: std::time::Duration,
    },
}

impl<E: std::error::Error + 'static> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { route, last: Some((backend, cause)) } => write!(
                f,
                "no {route} backend available; backend `{backend}` failed last: {}",
                crate::report::chain(cause.as_ref())
            ),
            Self::Unavailable { route, last: None } => write!(f, "no {route} backend available"),
            Self::Pool { backend, error } => write!(f, "backend `{backend}`: {error}"),
            Self::RateLimited { retry_in } => {
                write!(f, "this key is over its rate limit (retry in {retry_in:?})")
            }
        }
    }
}

/// No source: the `Display` already says the cause; [`Error::backend_error`] gives it typed.
impl<E: std::error::Error + 'static> std::error::Error for Error<E> {}

impl<E> Error<E> {
    /// Whether no backend could serve the call.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

impl<E: std::error::Error + Send + Sync + 'static> Error<E> {
    /// What went wrong underneath, typed: the failing backend's pool error (downcast it to
    /// [`pool::Error<E>`] to reach the manager's error), or the creation failure the backend's
    /// health recorded.
    pub fn backend_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Self::Unavailable { last, .. } => last.as_ref().map(|(_, cause)| cause.as_ref()),
            Self::Pool { error, .. } => Some(error),
            Self::RateLimited { .. } => None,
        }
    }
}
