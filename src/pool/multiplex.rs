//! Lending one resource to several callers at once, for resources that serve concurrent requests
//! themselves: a tokio-postgres client pipelines the queries of every task that shares it, an
//! HTTP/2 connection multiplexes streams.
//!
//! A [`Multiplexed`] view of a pool checks resources out of it and lends each to up to
//! `per_resource` callers at a time, through shared (`&`) access only. It spreads callers over
//! its resources: an unused one first, then an idle one from the pool, then the least busy (while
//! one more is checked out in the background if the pool has room). Only when every lent
//! resource is full does a caller wait in the pool's own queue. Callers beyond
//! `max_size × per_resource` queue first come, first served. A resource goes back to the pool
//! when its last borrower is done.

use std::fmt;
use std::ops::Deref;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::api::Pool;
use super::error::{Error, TimeoutPhase};
use super::guard::Pooled;
use super::manager::Manager;
use crate::build_error::BuildError;
use crate::sync::{Arc, Mutex};

/// A view of a [`Pool`] that lends each resource to several callers at once; from
/// [`Pool::multiplexed`]. Its bound, `max_size × per_resource` borrowers, is fixed when it is
/// made: a later [`Pool::resize`] does not change it.
///
/// Cloning is cheap and shares the view.
pub struct Multiplexed<M: Manager> {
    lender: Arc<Lender<M>>,
}

impl<M: Manager> Clone for Multiplexed<M> {
    fn clone(&self) -> Self {
        Self { lender: Arc::clone(&self.lender) }
    }
}

impl<M: Manager> fmt::Debug for Multiplexed<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lender.state.lock();
        f.debug_struct("Multiplexed")
            .field("per_resource", &self.lender.per_resource)
            .field("lent", &state.slots.iter().map(|slot| slot.users).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct Lender<M: Manager> {
    pool: Pool<M>,
    per_resource: usize,
    /// One permit per borrower the view can serve at once: the FIFO queue for callers.
    admission: Arc<Semaphore>,
    state: Mutex<LendState<M>>,
    /// The pool's `max_size` when the view was made: with this many lent, the pool has none
    /// idle to give.
    max_size: usize,
}

struct LendState<M: Manager> {
    slots: Vec<Slot<M>>,
    /// A background checkout of one more resource is running.
    opening: bool,
    next_id: u64,
}

struct Slot<M: Manager> {
    id: u64,
    resource: Arc<Pooled<M>>,
    users: usize,
}

/// A resource lent by a [`Multiplexed`] view: derefs to `&M::Resource`, shared with other
/// borrowers. The resource goes back to the pool when its last borrower drops the handle.
pub struct Borrowed<M: Manager> {
    resource: Arc<Pooled<M>>,
    slot: u64,
    lender: Arc<Lender<M>>,
    _permit: OwnedSemaphorePermit,
}

impl<M: Manager> Pool<M>
where
    M::Resource: Sync,
{
    /// A view of this pool that lends each resource to up to `per_resource` callers at once.
    ///
    /// For resources built to serve concurrent requests: a tokio-postgres client pipelines the
    /// queries of every task that shares it, so 64 tasks over 8 connections keep each
    /// connection's socket full instead of waiting in turn. Borrowers get shared access only; a
    /// typed PostgreSQL transaction needs `&mut` and so an exclusive [`get`](Self::get), which the
    /// type system enforces; a `BEGIN` sent as text through a shared borrow would take the other
    /// borrowers' statements into its transaction, so send transactions through `get` too.
    ///
    /// Every resource the view lends was checked out under the pool's rules: one that
    /// [`Manager::needs_check`](super::Manager::needs_check) flags (a connection left inside a
    /// transaction) is checked before the view lends it. While the view keeps it, it lends it on
    /// to later borrowers without another check: they share one session, and what one borrower
    /// changes in it (a `SET`) the others see until it goes back to the pool.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming `per_resource` if it is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// # use millpond::pool::{Manager, Pool};
    /// # struct Clients;
    /// # impl Manager for Clients {
    /// #     type Resource = String;
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<String, std::io::Error> { Ok("client".into()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(Clients).max_size(1).build()?;
    /// let shared = pool.multiplexed(8)?;
    /// let first = shared.get().await?;
    /// let second = shared.get().await?;
    /// assert_eq!(shared.borrowers(), [2], "one client, two borrowers");
    /// assert_eq!(pool.status().in_use, 1);
    /// drop((first, second));
    /// assert_eq!(pool.status().idle, 1, "back in the pool with its last borrower");
    /// # Ok(())
    /// # }
    /// ```
    pub fn multiplexed(&self, per_resource: usize) -> Result<Multiplexed<M>, BuildError> {
        if per_resource == 0 {
            return Err(BuildError::invalid("per_resource", per_resource, "must be at least 1"));
        }
        let max_size = self.status().max_size;
        let permits = max_size.saturating_mul(per_resource).min(Semaphore::MAX_PERMITS);
        Ok(Multiplexed {
            lender: Arc::new(Lender {
                pool: self.clone(),
                per_resource,
                admission: Arc::new(Semaphore::new(permits)),
                state: Mutex::new(LendState { slots: Vec::new(), opening: false, next_id: 0 }),
                max_size,
            }),
        })
    }
}

/// What a look at the lent resources found.
enum Pick<M: Manager> {
    Lent(u64, Arc<Pooled<M>>),
    /// Nothing lent has room and the pool has nothing idle: the caller checks one out itself.
    CheckOut,
}

impl<M: Manager> Multiplexed<M>
where
    M::Resource: Sync,
{
    /// Borrows a resource, shared with other borrowers, waiting up to the pool's acquire timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the acquire timeout passes; what [`Pool::get`] reports when the
    /// view needs a resource from the pool and the pool fails (closed, or its backend down).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future gives up its place in the queue and lends nothing.
    pub async fn get(&self) -> Result<Borrowed<M>, Error<M::Error>> {
        let lender = &self.lender;
        let deadline = crate::time::after(Instant::now(), lender.pool.acquire_timeout());
        let admitted =
            tokio::time::timeout_at(deadline, Arc::clone(&lender.admission).acquire_owned());
        let permit = match admitted.await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => {
                return Err(Error::Timeout { phase: TimeoutPhase::Wait, last_create_error: None });
            }
        };
        let (slot, resource) = match lender.pick()? {
            Pick::Lent(slot, resource) => (slot, resource),
            Pick::CheckOut => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let pooled = lender.pool.get_timeout(remaining).await?;
                let mut state = lender.state.lock();
                let index = state.add(pooled);
                state.lend(index)
            }
        };
        Ok(Borrowed { resource, slot, lender: Arc::clone(lender), _permit: permit })
    }

    /// How many borrowers each lent resource has now.
    pub fn borrowers(&self) -> Vec<usize> {
        self.lender.state.lock().slots.iter().map(|slot| slot.users).collect()
    }
}

impl<M: Manager> Lender<M>
where
    M::Resource: Sync,
{
    fn pick(self: &Arc<Self>) -> Result<Pick<M>, Error<M::Error>> {
        let mut state = self.state.lock();
        let least = (0..state.slots.len()).min_by_key(|&index| state.slots[index].users);
        if let Some(index) = least.filter(|&index| state.slots[index].users == 0) {
            let (slot, resource) = state.lend(index);
            return Ok(Pick::Lent(slot, resource));
        }
        // Every lent resource has a borrower: spread onto an idle one if the pool may have it.
        // (With all of the pool's resources lent, the busy steady state, the pool is not asked.)
        let pool_may_have_more = state.slots.len() < self.max_size;
        if pool_may_have_more {
            match self.pool.try_get() {
                Ok(pooled) => {
                    let index = state.add(pooled);
                    let (slot, resource) = state.lend(index);
                    return Ok(Pick::Lent(slot, resource));
                }
                Err(Error::Exhausted) => {}
                Err(err) => return Err(err),
            }
        }
        match least.filter(|&index| state.slots[index].users < self.per_resource) {
            Some(index) => {
                // Share the least busy now rather than wait for a creation, and have one more
                // resource checked out in the background if the pool has room for it.
                if pool_may_have_more && !state.opening {
                    let status = self.pool.status();
                    if status.size < status.max_size {
                        state.opening = true;
                        self.open_one();
                    }
                }
                let (slot, resource) = state.lend(index);
                Ok(Pick::Lent(slot, resource))
            }
            None => Ok(Pick::CheckOut),
        }
    }

    /// Checks out one more resource in a task of its own, for the callers that come next. A
    /// failure only means the view goes on sharing what it has.
    fn open_one(self: &Arc<Self>) {
        let lender = Arc::clone(self);
        tokio::spawn(async move {
            let got = lender.pool.get().await;
            let mut state = lender.state.lock();
            state.opening = false;
            if let Ok(pooled) = got {
                // Kept only if still wanted; otherwise it goes straight back to the pool.
                if state.slots.iter().all(|slot| slot.users > 0) {
                    state.add(pooled);
                }
            }
        });
    }
}

impl<M: Manager> Lender<M> {
    fn release(&self, slot: u64) {
        let returned = {
            let mut state = self.state.lock();
            let index = state.slots.iter().position(|candidate| candidate.id == slot);
            index.and_then(|index| {
                let entry = &mut state.slots[index];
                entry.users -= 1;
                (entry.users == 0).then(|| state.slots.swap_remove(index))
            })
        };
        // The resource goes back to the pool once the borrower's own handle is dropped too.
        drop(returned);
    }
}

impl<M: Manager> LendState<M> {
    fn add(&mut self, pooled: Pooled<M>) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.slots.push(Slot { id, resource: Arc::new(pooled), users: 0 });
        self.slots.len() - 1
    }

    fn lend(&mut self, index: usize) -> (u64, Arc<Pooled<M>>) {
        let slot = &mut self.slots[index];
        slot.users += 1;
        (slot.id, Arc::clone(&slot.resource))
    }
}

impl<M: Manager> Deref for Borrowed<M> {
    type Target = M::Resource;

    fn deref(&self) -> &M::Resource {
        &self.resource
    }
}

impl<M: Manager> fmt::Debug for Borrowed<M>
where
    M::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Borrowed").field(&**self).finish()
    }
}

impl<M: Manager> Drop for Borrowed<M> {
    fn drop(&mut self) {
        self.lender.release(self.slot);
    }
}
