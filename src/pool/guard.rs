//! [`Pooled`], the guard a caller holds while using a resource, and the [`Metadata`] it carries.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use tokio::time::Instant;

use super::engine::Entry;
use super::manager::Manager;
use super::shared::PoolRef;
use crate::limit::{Outcome, Permit};
use crate::sync::Arc;

/// What the pool knows about one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    created_at: Instant,
    last_used: Instant,
    last_checked: Option<Instant>,
    expires_at: Option<Instant>,
    uses: u64,
}

impl Metadata {
    pub(crate) fn new(now: Instant, expires_at: Option<Instant>) -> Self {
        Self { created_at: now, last_used: now, last_checked: None, expires_at, uses: 0 }
    }

    /// When the resource was created.
    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// When a caller last gave it back (its creation time if it was never used), as the pool's
    /// clock saw it.
    ///
    /// A return to the returning thread's cache reads no clock of its own: it takes the latest
    /// reading made on that thread (by a `get()` there, a measured return, or the maintenance
    /// tick). So this may be earlier than the true return, by at most about one
    /// [`maintenance_interval`](super::Builder::maintenance_interval), and is never later;
    /// the idle check and the idle timeout that it feeds can only come early, never late.
    pub fn last_used(&self) -> Instant {
        self.last_used
    }

    /// When the pool last ran [`Manager::check`] on it successfully, if ever.
    pub fn last_checked(&self) -> Option<Instant> {
        self.last_checked
    }

    /// When it reaches its maximum lifetime (with jitter applied), if the pool has one.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// How many times it was handed out.
    pub fn uses(&self) -> u64 {
        self.uses
    }

    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|expires_at| now >= expires_at)
    }

    /// The last time the resource was known to work: used by a caller or checked by the pool.
    pub(crate) fn last_active(&self) -> Instant {
        self.last_checked.map_or(self.last_used, |checked| checked.max(self.last_used))
    }

    pub(crate) fn mark_checked(&mut self, now: Instant) {
        self.last_checked = Some(now);
    }

    pub(crate) fn mark_used(&mut self, now: Instant) {
        self.last_used = now;
    }

    pub(crate) fn mark_handed_out(&mut self) {
        self.uses += 1;
    }
}

/// A resource checked out of a [`Pool`](super::Pool); it goes back when dropped.
///
/// `Pooled` dereferences to the resource. It keeps the pool's state in memory (it is `'static`;
/// the pool still closes when its last [`Pool`](super::Pool) handle is dropped, and the resource
/// is then closed when it comes back), and is `Send` whenever the resource is. Dropping it gives the resource back synchronously, without spawning
/// a task: [`Manager::is_reusable`] decides whether it is kept, then it goes to the oldest waiter
/// or into the idle set.
///
/// # Examples
///
/// ```
/// # use millpond::pool::{Manager, Pool};
/// # struct Numbers;
/// # impl Manager for Numbers {
/// #     type Resource = Vec<u32>;
/// #     type Error = std::io::Error;
/// #     async fn create(&self) -> Result<Vec<u32>, std::io::Error> { Ok(Vec::new()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder(Numbers).max_size(1).build()?;
/// {
///     let mut numbers = pool.get().await?;
///     numbers.push(7);
/// } // back in the pool here
/// assert_eq!(*pool.get().await?, vec![7]);
/// # Ok(())
/// # }
/// ```
pub struct Pooled<M: Manager> {
    entry: Option<Entry<M::Resource>>,
    pool: Arc<PoolRef<M>>,
    acquired_at: Instant,
    /// How long the `get()` queued, recorded with the hold time when the resource comes back.
    waited: Option<Duration>,
    leak_id: Option<u64>,
    /// Room under the pool's adaptive limit (`Builder::adaptive_limit`), ended with the
    /// checkout. Boxed, so that unlimited pools' guards stay small.
    permit: Option<Box<Permit>>,
}

impl<M: Manager> Pooled<M> {
    pub(crate) fn new(
        entry: Entry<M::Resource>,
        pool: Arc<PoolRef<M>>,
        acquired_at: Instant,
        waited: Option<Duration>,
        leak_id: Option<u64>,
    ) -> Self {
        Self { entry: Some(entry), pool, acquired_at, waited, leak_id, permit: None }
    }

    pub(crate) fn with_permit(mut self, permit: Option<Box<Permit>>) -> Self {
        self.permit = permit;
        self
    }

    /// Tells the pool's [adaptive limit](super::Builder::adaptive_limit) how the work done with
    /// this checkout went, with its latency from the checkout until now. Without a report, a
    /// checkout given back counts as a [success](Outcome::Success) with its hold time (one
    /// dropped while its thread panics, as nothing). Report [`Outcome::Dropped`] for a query
    /// that timed out or that the server refused for load, [`Outcome::Failure`] for an error
    /// that says nothing about load. A pool without an adaptive limit ignores it; a second
    /// report is ignored.
    pub fn report(&mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            permit.record(outcome);
        }
    }

    fn entry(&self) -> &Entry<M::Resource> {
        // The entry is only taken by `take` and `drop`, which consume the guard.
        self.entry.as_ref().unwrap_or_else(|| unreachable!("a live guard holds its resource"))
    }

    /// What the pool knows about this resource.
    pub fn metadata(&self) -> Metadata {
        self.entry().meta
    }

    /// Detaches the resource from the pool, freeing its slot.
    ///
    /// The pool forgets the resource: it is not closed through [`Manager::on_close`], and the pool
    /// may create a replacement for it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use millpond::pool::{Manager, Pool};
    /// # struct Strings;
    /// # impl Manager for Strings {
    /// #     type Resource = String;
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<String, std::io::Error> { Ok("hello".into()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(Strings).max_size(1).build()?;
    /// let owned: String = pool.get().await?.take();
    /// assert_eq!(owned, "hello");
    /// assert_eq!(pool.status().size, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn take(mut self) -> M::Resource {
        // A detached resource says nothing more about the backend's load.
        drop(self.permit.take());
        let entry =
            self.entry.take().unwrap_or_else(|| unreachable!("a live guard holds its resource"));
        self.pool.0.detach(self.acquired_at, self.waited, self.leak_id.take());
        entry.resource
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Resource;

    fn deref(&self) -> &M::Resource {
        &self.entry().resource
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Resource {
        &mut self
            .entry
            .as_mut()
            .unwrap_or_else(|| unreachable!("a live guard holds its resource"))
            .resource
    }
}

impl<M: Manager> AsRef<M::Resource> for Pooled<M> {
    fn as_ref(&self) -> &M::Resource {
        self
    }
}

impl<M: Manager> AsMut<M::Resource> for Pooled<M> {
    fn as_mut(&mut self) -> &mut M::Resource {
        self
    }
}

impl<M: Manager> fmt::Debug for Pooled<M>
where
    M::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("resource", &self.entry().resource)
            .field("metadata", &self.entry().meta)
            .finish()
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.pool.0.give_back(entry, self.acquired_at, self.waited, self.leak_id.take());
        }
        // After the resource is back, so that the caller this admits finds it.
        if let Some(permit) = self.permit.take() {
            if std::thread::panicking() {
                drop(permit);
            } else {
                permit.success();
            }
        }
    }
}
