//! The trait a user implements to teach a pool how to make and look after its resources.

use std::future::Future;
use std::time::Duration;

/// Creates, checks and retires the resources of a [`Pool`](super::Pool).
///
/// Only [`create`](Manager::create) is required. The pool calls the hooks as follows:
///
/// | hook | when | on failure |
/// |---|---|---|
/// | [`create`](Manager::create) | in a background task, when the pool needs a resource | retried with backoff; repeated failures open the circuit breaker |
/// | [`check`](Manager::check) | before handing out a resource that sat idle longer than the check window, or that [`needs_check`](Manager::needs_check) flags | the resource is closed and `get()` moves on |
/// | [`is_reusable`](Manager::is_reusable) | synchronously, when a resource comes back | `false` closes it and frees its slot |
/// | [`on_close`](Manager::on_close) | whenever the pool closes a resource, with the reason | — |
///
/// Creation runs in a task of its own, so a caller who cancels `get()` does not cancel a creation
/// in flight: the new resource goes to the next waiter, or into the idle set.
///
/// # Examples
///
/// ```
/// use millpond::pool::Manager;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Hands out numbered sessions.
/// struct Sessions {
///     next_id: AtomicU64,
/// }
///
/// struct Session {
///     id: u64,
///     broken: bool,
/// }
///
/// impl Manager for Sessions {
///     type Resource = Session;
///     type Error = std::io::Error;
///
///     async fn create(&self) -> Result<Session, std::io::Error> {
///         let id = self.next_id.fetch_add(1, Ordering::Relaxed);
///         Ok(Session { id, broken: false })
///     }
///
///     fn is_reusable(&self, session: &mut Session) -> bool {
///         !session.broken
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The pooled resource: a connection, a client, a session.
    type Resource: Send + 'static;
    /// The error `create` and `check` report; it reaches callers inside pool errors, printed in
    /// their message and typed through [`Error::manager_error`](super::Error::manager_error).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Creates a new resource.
    ///
    /// Runs in a background task under the pool's create timeout. A panic is contained: it counts
    /// as a failed creation, retried with backoff like any other.
    fn create(&self) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// Validates an idle resource before it is handed out.
    ///
    /// Skipped for resources that were used within the pool's check window (500 ms by default), so
    /// a busy pool pays no round trip on its hot path. Runs under the check timeout; an error or a
    /// timeout closes the resource and `get()` goes on to the next one. The default accepts every
    /// resource.
    fn check(
        &self,
        resource: &mut Self::Resource,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = resource;
        async { Ok(()) }
    }

    /// Whether `get()` must run [`check`](Manager::check) on this resource before handing it out,
    /// however recently it was used.
    ///
    /// For a resource that came back in a state `check` can repair: a database connection left
    /// inside a transaction, say, which `check` rolls back. Called on every checkout, including a
    /// hand-off from a returning caller to a waiter, so it must be cheap (no I/O). It applies even
    /// with [`check_on_get`](super::Builder::check_on_get) off, which only turns off the checks
    /// of resources that sat idle. A panic counts as `true`. The default is `false`.
    fn needs_check(&self, resource: &Self::Resource) -> bool {
        let _ = resource;
        false
    }

    /// Decides, synchronously and cheaply, whether a returned resource may be used again.
    ///
    /// Return `false` for a resource that is broken or left in a dirty state; the pool closes it
    /// and frees its slot. The default reuses every resource.
    fn is_reusable(&self, resource: &mut Self::Resource) -> bool {
        let _ = resource;
        true
    }

    /// Called with every resource the pool closes, and why. The default drops it.
    fn on_close(&self, resource: Self::Resource, reason: CloseReason) {
        let _ = reason;
        drop(resource);
    }

    /// How the calls made on `resource` went since the last time this was asked, if the manager
    /// can tell without being asked (the PostgreSQL manager reads it off the protocol): what a
    /// cluster's outlier ejection counts each time a connection comes back. Each call hands
    /// over what the last did not, so nothing is counted twice or lost. Must be cheap (no I/O).
    /// The default knows nothing.
    fn take_traffic(&self, resource: &Self::Resource) -> Option<Traffic> {
        let _ = resource;
        None
    }
}

/// The calls made on one resource since the last [`Manager::take_traffic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Traffic {
    /// Calls answered.
    pub calls: u64,
    /// Of those, the ones the backend failed for a reason of its own (not the caller's).
    pub failures: u64,
    /// Successful calls whose latency is in [`time`](Self::time): those the manager timed.
    pub timed: u64,
    /// The total latency of the `timed` calls, from request to answer.
    pub time: Duration,
}

impl Traffic {
    /// Totals of `calls` answered, `failures` among them, none timed.
    pub fn new(calls: u64, failures: u64) -> Self {
        Self { calls, failures, timed: 0, time: Duration::ZERO }
    }

    /// The same, with `timed` successful calls that took `time` in all: what lets a cluster
    /// eject a backend whose latency is far above the others'
    /// ([`OutlierDetection::latency_factor`](crate::cluster::OutlierDetection::latency_factor)).
    #[must_use]
    pub fn with_time(self, timed: u64, time: Duration) -> Self {
        Self { timed, time, ..self }
    }
}

/// Why the pool closed a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`Manager::is_reusable`] returned `false`, or [`Manager::check`] failed or timed out.
    Broken,
    /// It sat idle longer than the idle timeout, above `min_idle`.
    IdleTimeout,
    /// It outlived its maximum lifetime.
    Lifetime,
    /// It came back while the pool already kept `max_idle` idle resources, or after a shrink.
    Excess,
    /// [`Pool::retain`](super::Pool::retain) evicted it.
    Evicted,
    /// The pool was closed or dropped.
    PoolClosed,
}
