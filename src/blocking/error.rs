//! Errors of the blocking pool: a job the pool would not take comes back in the error, and a
//! handle says why it has no value.

use std::fmt;

/// A submit the pool did not take. The closure comes back inside, untouched (never boxed), so
/// the caller can retry, run it elsewhere, or drop it.
///
/// # Examples
///
/// ```
/// use millpond::blocking::{BlockingPool, SubmitError};
///
/// let pool = BlockingPool::builder().max_threads(1).build()?;
/// pool.shutdown();
/// match pool.spawn(|| 7) {
///     Err(SubmitError::Shutdown(job)) => assert_eq!(job(), 7),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), millpond::BuildError>(())
/// ```
#[non_exhaustive]
pub enum SubmitError<F> {
    /// The queue was full and the pool's [`RejectionPolicy`](super::RejectionPolicy) is
    /// `Reject` (the default).
    Full(F),
    /// The pool was shut down (or dropped): it takes no new jobs, whatever its policy.
    Shutdown(F),
    /// The pool had no thread and the operating system refused to start one.
    Spawn(F, std::io::Error),
}

impl<F> SubmitError<F> {
    /// The closure that was not submitted.
    pub fn into_inner(self) -> F {
        match self {
            Self::Full(job) | Self::Shutdown(job) | Self::Spawn(job, _) => job,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the pool was shut down.
    pub fn is_shutdown(&self) -> bool {
        matches!(self, Self::Shutdown(_))
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Full(_) => "Full",
            Self::Shutdown(_) => "Shutdown",
            Self::Spawn(..) => "Spawn",
        }
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tuple = f.debug_tuple(self.name());
        if let Self::Spawn(_, error) = self {
            tuple.field(error);
        }
        tuple.finish_non_exhaustive()
    }
}

impl<F> fmt::Display for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the blocking pool's queue is full"),
            Self::Shutdown(_) => f.write_str("the blocking pool is shut down"),
            Self::Spawn(_, error) => {
                write!(f, "the blocking pool has no thread and could not start one: {error}")
            }
        }
    }
}

impl<F> std::error::Error for SubmitError<F> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn(_, error) => Some(error),
            Self::Full(_) | Self::Shutdown(_) => None,
        }
    }
}

/// Why a [`BlockingHandle`](super::BlockingHandle) has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The job panicked; its thread caught the panic and carried on. Holds the panic message.
    Panicked(String),
    /// The job was dropped from the queue before it started, to make room for a newer one
    /// ([`RejectionPolicy::DropOldest`](super::RejectionPolicy::DropOldest)).
    Evicted,
    /// The job never ran: it was still queued when
    /// [`shutdown_timeout`](super::BlockingPool::shutdown_timeout) reached its deadline. Also
    /// what a handle returns once its value has been taken.
    Cancelled,
}

impl TaskError {
    /// Whether the job panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked(_))
    }

    /// The panic message, if the job panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            Self::Panicked(message) => Some(message),
            Self::Evicted | Self::Cancelled => None,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panicked(message) => write!(f, "the blocking job panicked: {message}"),
            Self::Evicted => f.write_str(
                "the blocking job was dropped from the full queue to make room for a newer one",
            ),
            Self::Cancelled => {
                f.write_str("the blocking job never ran: the pool shut down before it started")
            }
        }
    }
}

impl std::error::Error for TaskError {}
