//! Errors of the worker pool: a task that could not be submitted comes back in the error.

use std::fmt;

/// A submit that did not queue its task. The task comes back inside, untouched, so the caller
/// can retry, run it elsewhere, or drop it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use millpond::exec::{SubmitError, WorkerPool};
///
/// let pool = WorkerPool::builder().workers(1).queue_capacity(1).build()?;
/// pool.shutdown().await;
/// match pool.try_submit(async { 7 }) {
///     Err(SubmitError::Closed(task)) => assert_eq!(task.await, 7),
///     other => panic!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
pub enum SubmitError<F> {
    /// The queue had no room and the submit was not allowed to wait (`try_submit`).
    Full(F),
    /// The pool was shut down (or is shutting down): it takes no new tasks.
    Closed(F),
    /// `submit_timeout` waited its whole timeout for room.
    Timeout(F),
    /// A task of this pool tried to wait for room in this same pool. Every worker could end up
    /// waiting on a queue that only workers drain, so the pool refuses instead of deadlocking.
    /// Submit with `try_submit` from inside the pool, or from a task of your own.
    WouldDeadlock(F),
    /// The pool's rate limit (overall, or the key's) has no token for it now.
    RateLimited(F),
    /// The pool's shared rate limit
    /// ([`shared_rate_limit_per_key`](super::WorkerPoolBuilder::shared_rate_limit_per_key))
    /// could not ask Redis and fails closed, so the task was refused without knowing whether
    /// its key was over the limit. Holds the cause, which is also the error's
    /// [`source`](std::error::Error::source). [`is_rate_limited`](Self::is_rate_limited) is
    /// `true` for it too.
    #[cfg(feature = "redis")]
    RateLimiterUnavailable(F, crate::redis::rate_limit::Unavailable),
    /// The pool is overloaded and refuses low-priority work until the load falls.
    Overloaded(F),
    /// The tokio runtime the pool's workers ran on has shut down, and the submit came from
    /// outside any tokio runtime, so there is nowhere to start new workers. A submit from inside
    /// a runtime moves the workers there instead (as across `#[tokio::test]`s sharing a `static`
    /// pool). Submit from a task of a live runtime, or build the pool on a runtime that outlives
    /// its use.
    RuntimeGone(F),
}

impl<F> SubmitError<F> {
    /// The task that was not submitted.
    pub fn into_inner(self) -> F {
        match self {
            Self::Full(task)
            | Self::Closed(task)
            | Self::Timeout(task)
            | Self::WouldDeadlock(task)
            | Self::RateLimited(task)
            | Self::Overloaded(task)
            | Self::RuntimeGone(task) => task,
            #[cfg(feature = "redis")]
            Self::RateLimiterUnavailable(task, _) => task,
        }
    }

    /// The task, and the same refusal without it.
    pub fn split(self) -> (F, SubmitError<()>) {
        match self {
            Self::Full(task) => (task, SubmitError::Full(())),
            Self::Closed(task) => (task, SubmitError::Closed(())),
            Self::Timeout(task) => (task, SubmitError::Timeout(())),
            Self::WouldDeadlock(task) => (task, SubmitError::WouldDeadlock(())),
            Self::RateLimited(task) => (task, SubmitError::RateLimited(())),
            Self::Overloaded(task) => (task, SubmitError::Overloaded(())),
            Self::RuntimeGone(task) => (task, SubmitError::RuntimeGone(())),
            #[cfg(feature = "redis")]
            Self::RateLimiterUnavailable(task, cause) => {
                (task, SubmitError::RateLimiterUnavailable((), cause))
            }
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the pool was shut down.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }

    /// Whether `submit_timeout` ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// Whether the submit came from inside the pool and would have waited on it.
    pub fn is_would_deadlock(&self) -> bool {
        matches!(self, Self::WouldDeadlock(_))
    }

    /// Whether a rate limit refused the task: it had no token, or (with the `redis` feature)
    /// the shared limiter could not answer and fails closed.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            Self::RateLimited(_) => true,
            #[cfg(feature = "redis")]
            Self::RateLimiterUnavailable(..) => true,
            _ => false,
        }
    }

    /// Why the shared rate limiter refused without an answer from Redis, when it did
    /// ([`SubmitError::RateLimiterUnavailable`]); `None` for every other refusal, a key over its
    /// limit included.
    #[cfg(feature = "redis")]
    pub fn limiter_unavailable(&self) -> Option<&crate::redis::rate_limit::Unavailable> {
        match self {
            Self::RateLimiterUnavailable(_, cause) => Some(cause),
            _ => None,
        }
    }

    /// Whether the task was refused as low-priority work under overload.
    pub fn is_overloaded(&self) -> bool {
        matches!(self, Self::Overloaded(_))
    }

    /// Whether the pool's runtime is gone and the submitter had none to move it to.
    pub fn is_runtime_gone(&self) -> bool {
        matches!(self, Self::RuntimeGone(_))
    }

    /// The `outcome` of the submit's span (`crate::trace`).
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::Full(_) => "full",
            Self::Closed(_) => "closed",
            Self::Timeout(_) => "timeout",
            Self::WouldDeadlock(_) => "would_deadlock",
            Self::RateLimited(_) => "rate_limited",
            #[cfg(feature = "redis")]
            Self::RateLimiterUnavailable(..) => "rate_limiter_unavailable",
            Self::Overloaded(_) => "overloaded",
            Self::RuntimeGone(_) => "runtime_gone",
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::Full(_) => "the worker pool's queue is full",
            Self::Closed(_) => "the worker pool is shut down",
            Self::Timeout(_) => "timed out waiting for room in the worker pool's queue",
            Self::WouldDeadlock(_) => {
                "a task of the worker pool would wait for room in its own pool, which could deadlock"
            }
            Self::RateLimited(_) => "the worker pool's rate limit refused the task",
            #[cfg(feature = "redis")]
            Self::RateLimiterUnavailable(..) => {
                "the worker pool's shared rate limiter could not ask Redis and refuses the task (it fails closed)"
            }
            Self::Overloaded(_) => "the worker pool is overloaded and refuses low-priority work",
            Self::RuntimeGone(_) => {
                "the worker pool's tokio runtime has shut down and the submit came from outside any \
                 runtime; submit from inside a runtime to restart the workers there"
            }
        }
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Full(_) => "Full",
            Self::Closed(_) => "Closed",
            Self::Timeout(_) => "Timeout",
            Self::WouldDeadlock(_) => "WouldDeadlock",
            Self::RateLimited(_) => "RateLimited",
            #[cfg(feature = "redis")]
            Self::RateLimiterUnavailable(..) => "RateLimiterUnavailable",
            Self::Overloaded(_) => "Overloaded",
            Self::RuntimeGone(_) => "RuntimeGone",
        };
        f.debug_tuple(name).finish_non_exhaustive()
    }
}

impl<F> fmt::Display for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The source is the shared rate limiter's cause for
/// `RateLimiterUnavailable` (with the `redis` feature); no other refusal has one.
impl<F> std::error::Error for SubmitError<F> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        #[cfg(feature = "redis")]
        if let Self::RateLimiterUnavailable(_, cause) = self {
            return Some(cause);
        }
        None
    }
}

/// Why a task's handle has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the worker caught it and carried on. Holds the panic message.
    Panicked(String),
    /// The task was aborted before it finished: by [`TaskHandle::abort`](super::TaskHandle::abort),
    /// or by a shutdown whose deadline passed (or a pool dropped) before it ran.
    Aborted,
    /// The task was dropped before it started: it waited in the queue past the pool's
    /// `max_queue_wait`, or it was low-priority work queued when the pool became overloaded.
    Shed,
}

impl TaskError {
    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked(_))
    }

    /// Whether the task was aborted.
    pub fn is_aborted(&self) -> bool {
        matches!(self, Self::Aborted)
    }

    /// Whether the task was shed before it started.
    pub fn is_shed(&self) -> bool {
        matches!(self, Self::Shed)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panicked(message) => write!(f, "the task panicked: {message}"),
            Self::Aborted => f.write_str("the task was aborted before it finished"),
            Self::Shed => f.write_str("the task was shed before it started, under load"),
        }
    }
}

impl std::error::Error for TaskError {}

/// Why [`WorkerPool::run_or_else`](super::WorkerPool::run_or_else) took its fallback.
#[derive(Debug)]
#[non_exhaustive]
pub enum Degraded {
    /// The pool refused the task (the task itself was dropped unrun).
    Refused(SubmitError<()>),
    /// The pool queued the task and then shed it before it started.
    Shed,
}
