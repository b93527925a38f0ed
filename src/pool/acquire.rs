//! The `get()` path: take an idle resource, check it if it sat idle, or queue for the next one.
//!
//! The fast path takes the pool lock once and touches no timer. A caller that has to queue does
//! not arm a timer either: its deadline is stored with its place in the queue, and the pool's
//! expiry task (`expiry.rs`) fails it with a timeout when the deadline passes. Only the rare
//! check of an idle resource runs under a timer of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::check::{Checked, Checking};
use super::engine::{Entry, Place, Step};
use super::error::{Error, TimeoutPhase};
use super::manager::{CloseReason, Manager};
use super::shared::{PoolRef, Shared};
use super::ticket::Ticket;
use crate::sync::Arc;

/// What a successful `get()` hands to its guard.
pub(crate) struct Checkout<M: Manager> {
    pub(crate) entry: Entry<M::Resource>,
    /// When the resource reached the caller.
    pub(crate) acquired_at: Instant,
    /// How long the caller queued, if it had to.
    pub(crate) waited: Option<Duration>,
    /// The pool handle the guard keeps.
    pub(crate) pool: Arc<PoolRef<M>>,
}

type Acquired<M> = Result<Checkout<M>, Error<<M as Manager>::Error>>;

fn checkout<M: Manager>(
    entry: Entry<M::Resource>,
    acquired_at: Instant,
    pool: Arc<PoolRef<M>>,
) -> Acquired<M> {
    Ok(Checkout { entry, acquired_at, waited: None, pool })
}

type StepResult<M> = Result<Step<<M as Manager>::Resource>, Error<<M as Manager>::Error>>;

/// One look at the pool, and, if the caller has to queue, its place in the queue.
///
/// Dropping it while queued gives up the place; a resource already handed to it moves on.
struct Queue<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    /// The caller's place and hand-off cell, once it queued.
    queued: Option<Place<M::Resource, M::Error>>,
    deadline: Instant,
    /// The caller's arrival, used for the first poll so the fast path reads the clock once.
    first_poll_at: Option<Instant>,
}

impl<M: Manager> Future for Queue<'_, M> {
    type Output = StepResult<M>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some((_, ticket)) = &this.queued {
            // Queued: only the ticket is touched, not the pool lock.
            let poll = ticket.poll(cx.waker());
            if poll.is_ready() {
                this.queued = None;
            }
            return poll;
        }
        let now = this.first_poll_at.take().unwrap_or_else(Instant::now);
        let waker = cx.waker();
        let (poll, wake) = this.shared.engine.lock().poll_acquire(
            &mut this.queued,
            || Arc::new(Ticket::new(waker)),
            now,
            this.deadline,
            this.shared.local_idle(),
        );
        this.shared.start(wake);
        poll
    }
}

impl<M: Manager> Drop for Queue<'_, M> {
    fn drop(&mut self) {
        if let Some((key, ticket)) = self.queued.take() {
            let handoff = self.shared.engine.lock().cancel_waiter(key, &ticket, Instant::now());
            self.shared.finish(handoff);
        }
    }
}

/// Takes a resource for a caller that arrived at `started`, waiting until `deadline` at most.
pub(crate) async fn acquire<M: Manager>(
    shared: &Arc<Shared<M>>,
    started: Instant,
    deadline: Instant,
) -> Acquired<M> {
    // The fast path: a resource cached on this thread. The shard's pool handle serves the guard
    // either way.
    let (cached_entry, pool) = shared.cache.take();
    let pool = pool.unwrap_or_else(|| shared.fallback_ref());
    // The time of each look at the pool: the caller's arrival first, then a fresh reading after
    // anything that may have taken time (a check), so no round reads the clock twice.
    let mut now = started;
    if let Some(entry) = cached_entry {
        if entry.meta.is_expired(now) {
            shared.discard(entry, CloseReason::Lifetime);
        } else if !shared.needs_check(&entry, now) {
            return checkout(entry, now, pool);
        } else if let Some((entry, checked_at)) = check_idle(shared, entry, deadline).await? {
            return checkout(entry, checked_at, pool);
        } else {
            now = Instant::now();
        }
    }
    loop {
        let queue = Queue { shared, queued: None, deadline, first_poll_at: Some(now) };
        let step = queue.await?;
        match step {
            Step::Handed(entry, queued_at, granted_at) => {
                let waited = Some(granted_at.saturating_duration_since(queued_at));
                if !shared.manager_needs_check(&entry) {
                    return Ok(Checkout { entry, acquired_at: granted_at, waited, pool });
                }
                if let Some((entry, checked_at)) = check_idle(shared, entry, deadline).await? {
                    return Ok(Checkout { entry, acquired_at: checked_at, waited, pool });
                }
            }
            Step::Expired(entry) => {
                shared.close_resource(entry, CloseReason::Lifetime);
                shared.refill();
            }
            Step::Fresh(entry) if !shared.needs_check(&entry, now) => {
                return checkout(entry, now, pool);
            }
            Step::Fresh(entry) => {
                if let Some((entry, checked_at)) = check_idle(shared, entry, deadline).await? {
                    return checkout(entry, checked_at, pool);
                }
            }
        }
        now = Instant::now();
        if now >= deadline {
            return Err(timed_out(shared, None));
        }
    }
}

/// Runs `check` on a resource that sat idle. `Ok(None)` when it failed (the resource is closed
/// and the caller looks again); an error when the acquire deadline passed during the check.
async fn check_idle<M: Manager>(
    shared: &Arc<Shared<M>>,
    entry: Entry<M::Resource>,
    deadline: Instant,
) -> Result<Option<(Entry<M::Resource>, Instant)>, Error<M::Error>> {
    let mut checking = Checking::new(shared, entry);
    match checking.run(deadline).await {
        Checked::Passed => {
            let checked_at = Instant::now();
            Ok(checking.keep(checked_at).map(|entry| (entry, checked_at)))
        }
        Checked::Failed => Ok(None),
        Checked::OutOfTime => {
            drop(checking);
            Err(timed_out(shared, Some(TimeoutPhase::Check)))
        }
    }
}

/// The timeout error for a caller that ran out of time outside the queue, counted in the metrics.
fn timed_out<M: Manager>(shared: &Arc<Shared<M>>, phase: Option<TimeoutPhase>) -> Error<M::Error> {
    let mut engine = shared.engine.lock();
    engine.metrics.gets_timed_out += 1;
    let phase = phase.unwrap_or(if engine.waiting_on_creation() {
        TimeoutPhase::Create
    } else {
        TimeoutPhase::Wait
    });
    Error::Timeout { phase, last_create_error: engine.last_error() }
}
