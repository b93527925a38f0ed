//! [`Pool`]: the handle users hold.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::pin;
use std::time::Duration;

use tokio::time::Instant;

use super::acquire::{Checkout, Patience, acquire, acquire_now};
use super::builder::Builder;
use super::error::{DrainError, Error};
use super::guard::{Metadata, Pooled};
use super::manager::{CloseReason, Manager};
use super::metrics::{Metrics, Status};
use super::shared::Shared;
use crate::build_error::BuildError;
use crate::limit::{AdaptiveLimiter, Permit, Rejected};
use crate::sync::Arc;

/// A pool of resources made by a [`Manager`].
///
/// `Pool` is a cheap handle: clone it to share the pool between tasks. When the last handle is
/// dropped the pool closes: idle resources are closed, the background task ends, and resources
/// still out are closed when they come back.
///
/// # Examples
///
/// ```
/// use millpond::pool::{Manager, Pool};
///
/// struct Greeter;
///
/// impl Manager for Greeter {
///     type Resource = String;
///     type Error = std::io::Error;
///
///     async fn create(&self) -> Result<String, std::io::Error> {
///         Ok(String::from("hello"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder(Greeter).max_size(4).build()?;
/// let greeting = pool.get().await?;
/// assert_eq!(*greeting, "hello");
/// assert_eq!(pool.status().in_use, 1);
/// # Ok(())
/// # }
/// ```
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Pool<M> {
    /// Starts configuring a pool around `manager`.
    pub fn builder(manager: M) -> Builder<M> {
        Builder::new(manager)
    }

    pub(crate) fn from_shared(shared: Arc<Shared<M>>) -> Self {
        Self { shared }
    }

    /// The acquire timeout `get()` uses.
    pub(crate) fn acquire_timeout(&self) -> Duration {
        self.shared.config.acquire_timeout
    }

    /// Takes a resource, waiting up to the pool's acquire timeout.
    ///
    /// An idle resource is handed out at once (after [`Manager::check`] if it sat idle longer
    /// than the check window). Otherwise the caller queues: waiters are served strictly first
    /// come, first served, by resources coming back or newly created.
    ///
    /// # Errors
    ///
    /// * [`Error::Timeout`] when the acquire timeout passes, naming the phase and carrying the
    ///   last creation error if creations were failing;
    /// * [`Error::Unavailable`] at once while the circuit breaker is open (the backend is down)
    ///   and no resource in use could serve this call when it comes back;
    /// * [`Error::Closed`] when the pool is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropping the future gives up the caller's place in the queue; a resource
    /// already handed to it goes to the next waiter, and a creation it started still completes
    /// and serves someone else. Nothing leaks.
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        self.get_with_location(self.shared.config.acquire_timeout, Location::caller())
    }

    /// Like [`get`](Self::get), for a caller identified by `key` (a user, a tenant, a source
    /// address, hashed to a number): with [`Builder::rate_limit_per_key`], a key over its limit
    /// is refused at once, before it waits or takes anything.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`Error::RateLimited`] for a key over its limit.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`get`](Self::get). A token taken from the key's bucket is spent even
    /// if the call is then cancelled or fails.
    #[track_caller]
    pub fn get_keyed(
        &self,
        key: u64,
    ) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        let location = Location::caller();
        let admitted = self.admit_key(key);
        async move {
            admitted?;
            self.get_with_location(self.shared.config.acquire_timeout, location).await
        }
    }

    /// Takes a token from `key`'s bucket, if the pool limits keys.
    fn admit_key(&self, key: u64) -> Result<(), Error<M::Error>> {
        match &self.shared.config.per_key {
            Some(buckets) => {
                buckets.try_take(key).map_err(|retry_in| Error::RateLimited { retry_in })
            }
            None => Ok(()),
        }
    }

    /// Like [`get`](Self::get), with this call's own acquire timeout.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`get`](Self::get).
    #[track_caller]
    pub fn get_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        self.get_with_location(timeout, Location::caller())
    }

    async fn get_with_location(
        &self,
        timeout: Duration,
        location: &'static Location<'static>,
    ) -> Result<Pooled<M>, Error<M::Error>> {
        let started = Instant::now();
        let deadline = crate::time::after(started, timeout);
        if let Some(limiter) = &self.shared.config.limiter {
            // Boxed, and on a path of its own: in the `get()` future, the wait for room (a timer,
            // the limiter's queue entry) and the permit would be carried by every checkout,
            // limited or not (8.5 → 6.5 M/s in the pool bench's scenario (d) when they were).
            return Box::pin(self.get_limited(limiter, started, deadline, location)).await;
        }
        let checkout = acquire(&self.shared, started, Patience::Until(deadline)).await?;
        Ok(self.hand_out(checkout, location))
    }

    /// `get()` under the pool's adaptive limit: room first, then a resource.
    async fn get_limited(
        &self,
        limiter: &AdaptiveLimiter,
        started: Instant,
        deadline: Instant,
        location: &'static Location<'static>,
    ) -> Result<Pooled<M>, Error<M::Error>> {
        let permit = admit(limiter, started, deadline).await?;
        // A failed acquire drops the permit: no sample, the room passes on.
        let checkout = acquire(&self.shared, started, Patience::Until(deadline)).await?;
        Ok(self.hand_out(checkout, location).with_permit(Some(permit)))
    }

    fn hand_out(&self, checkout: Checkout<M>, location: &'static Location<'static>) -> Pooled<M> {
        let Checkout { mut entry, acquired_at, waited, pool } = checkout;
        entry.meta.mark_handed_out();
        let leak_id = self.shared.leaks.as_ref().map(|leaks| leaks.register(acquired_at, location));
        Pooled::new(entry, pool, acquired_at, waited, leak_id)
    }

    /// Takes an idle resource if there is one, without waiting or creating one for this call.
    ///
    /// It keeps the same rules as [`get`](Self::get): an expired idle resource is closed and
    /// replaced in the background, and one that needs [`Manager::check`] (it sat idle past the
    /// check window, or [`Manager::needs_check`] flags it) is never handed out unchecked. As
    /// `try_get` cannot await the check, it leaves such a resource to be checked in the
    /// background (it returns to the pool if it passes) and looks for another. So on a pool that
    /// sat idle longer than the check window, the first `try_get` may find nothing ready while
    /// those checks run; [`get`](Self::get) would wait for one.
    ///
    /// # Errors
    ///
    /// [`Error::Exhausted`] when nothing is idle and ready, [`Error::Closed`] when the pool is
    /// closed.
    #[track_caller]
    pub fn try_get(&self) -> Result<Pooled<M>, Error<M::Error>> {
        let location = Location::caller();
        let permit = match &self.shared.config.limiter {
            None => None,
            Some(limiter) => Some(Box::new(limiter.try_acquire().ok_or_else(|| {
                Error::Limited(Rejected::QueueFull { limit: limiter.status().limit })
            })?)),
        };
        let checkout = acquire_now(&self.shared, Instant::now())?;
        Ok(self.hand_out(checkout, location).with_permit(permit))
    }

    /// A consistent snapshot of the pool's occupancy.
    ///
    /// A pure read: resources cached on callers' threads are counted as idle where they are, not
    /// moved, so polling it for monitoring leaves checkouts on their fast path.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// The pool's cumulative counters and time histograms.
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics()
    }

    /// The pool's name, set with [`Builder::name`] (`"millpond"` by default).
    ///
    /// # Examples
    ///
    /// ```
    /// # use millpond::pool::{Manager, Pool};
    /// # struct Conns;
    /// # impl Manager for Conns {
    /// #     type Resource = ();
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(Conns).name("orders-db").build()?;
    /// assert_eq!(pool.name(), "orders-db");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// Sends the pool's figures to the installed [`metrics`] recorder, under the OpenTelemetry
    /// database-client names (the `metrics` feature).
    ///
    /// Every figure carries the attribute `db.client.connection.pool.name` set to
    /// [`name`](Self::name):
    ///
    /// | name | kind | unit | from |
    /// |---|---|---|---|
    /// | `db.client.connection.count` | gauge, with `db.client.connection.state` = `idle` / `used` | connections | [`Status::idle`], [`Status::in_use`] |
    /// | `db.client.connection.idle.max` | gauge | connections | `max_idle` (follows [`resize`](Self::resize)) |
    /// | `db.client.connection.idle.min` | gauge | connections | `min_idle` |
    /// | `db.client.connection.max` | gauge | connections | [`Status::max_size`] |
    /// | `db.client.connection.pending_requests` | gauge | requests | [`Status::waiters`] |
    /// | `db.client.connection.timeouts` | counter | timeouts | [`Metrics::gets_timed_out`] |
    /// | `db.client.connection.create_time` | histogram | seconds | [`Metrics::create_time`] |
    /// | `db.client.connection.wait_time` | histogram | seconds | [`Metrics::wait_time`] |
    /// | `db.client.connection.use_time` | histogram | seconds | [`Metrics::hold_time`] |
    ///
    /// Nothing is recorded on a checkout: a publish reads [`status`](Self::status) and
    /// [`metrics`](Self::metrics), sets the gauges, and adds to the counter and the histograms
    /// only what changed since the previous publish, so publishing twice with nothing in between
    /// adds nothing. Figures reach the recorder only when this runs: call it before each scrape,
    /// or let the pool call it every `maintenance_interval` with
    /// [`Builder::publish_metrics`](super::Builder::publish_metrics).
    ///
    /// The histograms hold counts per bucket rather than values, so each value a publish records
    /// is its bucket's middle, within 25% of the real durations. Checkouts and waits are counted
    /// when they end, and `use_time` inherits [`Metrics::hold_time`]'s sampling.
    ///
    /// [`Status::idle`]: super::Status::idle
    /// [`Status::in_use`]: super::Status::in_use
    /// [`Status::max_size`]: super::Status::max_size
    /// [`Status::waiters`]: super::Status::waiters
    /// [`Metrics::gets_timed_out`]: super::Metrics::gets_timed_out
    /// [`Metrics::create_time`]: super::Metrics::create_time
    /// [`Metrics::wait_time`]: super::Metrics::wait_time
    /// [`Metrics::hold_time`]: super::Metrics::hold_time
    ///
    /// # Examples
    ///
    /// ```
    /// # use millpond::pool::{Manager, Pool};
    /// # struct Conns;
    /// # impl Manager for Conns {
    /// #     type Resource = ();
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(Conns).name("orders-db").build()?;
    /// drop(pool.get().await?);
    /// // With no recorder installed the figures go nowhere; an application installs one
    /// // (`metrics-exporter-prometheus`, for one) at start-up.
    /// pool.publish_metrics();
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        super::publish::publish(&self.shared);
    }

    /// The manager the pool was built with.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// Changes `max_size` at run time.
    ///
    /// Growing lets queued callers be served by new creations at once. Shrinking closes idle
    /// resources above the new bound now and resources in use as they come back; `max_idle` and
    /// `min_idle` are lowered to fit.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming `max_size` when it is zero.
    pub fn resize(&self, max_size: usize) -> Result<(), BuildError> {
        if max_size == 0 {
            return Err(BuildError::invalid("max_size", max_size, "must be greater than zero"));
        }
        let excess = self.shared.engine.lock().resize(max_size, self.shared.local_idle());
        for entry in excess {
            self.shared.close_resource(entry, CloseReason::Excess);
        }
        self.shared.refill();
        Ok(())
    }

    /// Closes every idle resource for which `keep` returns `false`; returns how many it closed.
    ///
    /// Only idle resources are examined: those in use are out of the pool's hands. `keep` runs
    /// under the pool lock, so it must be quick and must not use the pool.
    pub fn retain(&self, keep: impl FnMut(&mut M::Resource, &Metadata) -> bool) -> usize {
        let evicted = {
            let mut engine = self.shared.engine.lock();
            if let Some(cache) = self.shared.local_idle() {
                engine.absorb(cache);
            }
            engine.retain(keep)
        };
        let count = evicted.len();
        for entry in evicted {
            self.shared.close_resource(entry, CloseReason::Evicted);
        }
        self.shared.refill();
        count
    }

    /// Closes the pool.
    ///
    /// Queued callers fail with [`Error::Closed`] at once, as do later `get()` calls; idle
    /// resources are closed now, and resources in use when they come back. Idempotent.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.engine.lock().is_closed()
    }

    /// Closes the pool and waits, up to `timeout`, for every resource out with callers to come
    /// back (and every creation in flight to end).
    ///
    /// # Errors
    ///
    /// [`DrainError`] with the number of slots still taken when `timeout` passes first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the pool is closed at the first poll either way; dropping the future only
    /// stops the waiting.
    pub async fn drain(&self, timeout: Duration) -> Result<(), DrainError> {
        self.close();
        let deadline = crate::time::after(Instant::now(), timeout);
        loop {
            let mut freed = pin!(self.shared.slot_freed.notified());
            freed.as_mut().enable();
            let remaining = self.status().size;
            if remaining == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                let remaining = self.status().size;
                return if remaining == 0 { Ok(()) } else { Err(DrainError { remaining }) };
            }
        }
    }
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        self.shared.add_handle();
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<M: Manager> Drop for Pool<M> {
    fn drop(&mut self) {
        self.shared.remove_handle();
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("status", &self.status()).finish_non_exhaustive()
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    struct Numbers;

    impl Manager for Numbers {
        type Resource = u32;
        type Error = std::io::Error;

        async fn create(&self) -> Result<u32, std::io::Error> {
            Ok(7)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn status_is_a_pure_read_that_leaves_thread_caches_in_place() {
        let pool = Pool::builder(Numbers).max_size(2).build().unwrap();
        let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        drop(a); // into this thread's cache slot
        drop(b); // the slot is taken: into the shared idle set
        let cache = pool.shared.local_idle().expect("a LIFO pool caches");
        assert_eq!(cache.count(), 1);

        let status = pool.status();
        assert_eq!((status.size, status.idle, status.in_use), (2, 2, 0), "cached counts as idle");
        assert_eq!(cache.count(), 1, "still cached: a status poll keeps the fast path");
        assert_eq!(pool.shared.engine.lock().status(0).idle, 1, "nothing moved into the idle set");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_count_above_what_is_in_use_is_capped() {
        // The shards are counted without the pool lock: a resource moving from one shard to
        // another during the count is seen twice.
        let pool = Pool::builder(Numbers).max_size(2).build().unwrap();
        let held = pool.get().await.unwrap();
        let status = pool.shared.engine.lock().status(2);
        assert_eq!((status.size, status.idle, status.in_use), (1, 1, 0));
        drop(held);
    }
}

/// Takes room under the pool's adaptive limit, by `deadline` at the latest.
async fn admit<E>(
    limiter: &AdaptiveLimiter,
    started: Instant,
    deadline: Instant,
) -> Result<Box<Permit>, Error<E>> {
    match tokio::time::timeout_at(deadline, limiter.acquire()).await {
        Ok(admitted) => admitted.map(Box::new).map_err(Error::Limited),
        Err(_) => Err(Error::Limited(Rejected::TimedOut { waited: started.elapsed() })),
    }
}
