//! What can go wrong when taking a connection from a cluster.

use std::fmt;

use super::health::Cause;
use crate::pool;

/// The error of [`Cluster::get`](super::Cluster::get) and its variants.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// No backend that could serve the call is in rotation, or every one tried failed. Carries
    /// the last backend failure, whose `source()` chain holds the real cause ("connection
    /// refused").
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
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { route, last: Some((backend, cause)) } => write!(
                f,
                "no {route} backend available; backend `{backend}` failed last: {}",
                super::health::chain(cause.as_ref())
            ),
            Self::Unavailable { route, last: None } => write!(f, "no {route} backend available"),
            Self::Pool { backend, error } => write!(f, "backend `{backend}`: {error}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable { last, .. } => last.as_ref().map(|(_, cause)| cause.as_ref() as _),
            Self::Pool { error, .. } => Some(error),
        }
    }
}

impl<E> Error<E> {
    /// Whether no backend could serve the call.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
