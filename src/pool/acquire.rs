//! The one path by which a resource leaves the pool for a caller: `get()`, `get_timeout()`,
//! `try_get()`, and through them the multiplexed view and cluster gets.
//!
//! Every resource a caller could receive, whether cached on its thread, idle in the pool, or
//! handed over by a returning caller or a creation, passes [`Shared::vet`] before it is handed
//! out: an expired one is closed, one that sat idle past the check window or that the manager
//! flags ([`Manager::needs_check`]) is checked first. A caller that may wait awaits the check
//! itself; `try_get()` may not, so it leaves a flagged resource to a background check (which puts
//! it back in the pool when it passes) and looks on. No entry point can skip these rules, because
//! there is no other way out of the pool.
//!
//! The fast path takes the pool lock once and touches no timer. A caller that has to queue does
//! not arm a timer either: its deadline is stored with its place in the queue, and the pool's
//! expiry task (`expiry.rs`) fails it with a timeout when the deadline passes. Only the rare
//! check of an idle resource runs under a timer of its own.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;
use tracing::Span;

use super::check::{Checked, Checking};
use super::engine::{Entry, Place, Step, Take};
use super::error::{Error, TimeoutPhase};
use super::manager::{CloseReason, Manager};
use super::shared::{PoolRef, Shared, Vet};
use super::ticket::Ticket;
use crate::sync::Arc;

/// What a successful acquire hands to its guard.
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

/// How long a caller is prepared to wait for a resource.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    /// Queue, create and check until this deadline.
    Until(Instant),
    /// Take only what is idle now: no queueing, no creation for this call, no awaited check.
    None,
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
    /// When the caller first queued, if it did before: it lost a resource to a failed check and
    /// keeps its place at the head of the queue.
    rejoin: Option<Instant>,
    /// The resource that failed that check. Its slot is freed in the same engine step that puts
    /// the caller back in line, so a replacement created for the freed slot cannot go to a
    /// caller behind it first.
    broken: Option<Entry<M::Resource>>,
}

impl<M: Manager> Future for Queue<'_, M> {
    type Output = StepResult<M>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some((_, ticket)) = &this.queued {
            // Queued: only the ticket is touched, not the pool lock; and one load of the home,
            // for a caller woken because the pool's runtime went with nowhere to move (it moves
            // the pool to its own runtime, whose restarted tasks keep its deadline).
            this.shared.stay_alive();
            let poll = ticket.poll(cx.waker());
            if poll.is_ready() {
                this.queued = None;
            }
            return poll;
        }
        let now = this.first_poll_at.take().unwrap_or_else(Instant::now);
        let waker = cx.waker();
        let broken = this.broken.take();
        let (poll, wake) = {
            let mut engine = this.shared.engine.lock();
            if broken.is_some() {
                engine.discard(CloseReason::Broken);
            }
            engine.poll_acquire(
                &mut this.queued,
                || Arc::new(Ticket::new(waker)),
                now,
                this.deadline,
                this.rejoin,
                this.shared.local_idle(),
            )
        };
        this.shared.start(wake);
        if let Some(entry) = broken {
            this.shared.close_resource(entry, CloseReason::Broken);
            // What else the freed slot calls for (`min_idle`, the breaker, `drain`).
            this.shared.refill();
        }
        poll
    }
}

// No field is pinned: the broken resource is only moved out, never borrowed across a poll.
impl<M: Manager> Unpin for Queue<'_, M> {}

impl<M: Manager> Drop for Queue<'_, M> {
    fn drop(&mut self) {
        if let Some(entry) = self.broken.take() {
            self.shared.discard(entry, CloseReason::Broken);
        }
        if let Some((key, ticket)) = self.queued.take() {
            let handoff = self.shared.engine.lock().cancel_waiter(key, &ticket, Instant::now());
            self.shared.finish(handoff);
        }
    }
}

/// A look at the pool that never waits: an idle resource, spilling other threads' caches into
/// the idle set before giving up.
fn take_now<M: Manager>(shared: &Arc<Shared<M>>, now: Instant) -> StepResult<M> {
    let mut engine = shared.engine.lock();
    let mut taken = engine.take_idle(now);
    if let (Take::Empty, Some(cache)) = (&taken, shared.local_idle()) {
        engine.absorb(cache);
        taken = engine.take_idle(now);
    }
    match taken {
        Take::Ready(entry) => Ok(Step::Fresh(entry)),
        Take::Expired(entry) => Ok(Step::Expired(entry)),
        Take::Empty => Err(Error::Exhausted),
        Take::Failed(err) => Err(err),
    }
}

/// Takes a resource for a caller that arrived at `started`, as patient as `patience` allows,
/// in a `pool.get` span when a subscriber wants one (`crate::trace`).
pub(crate) async fn acquire<M: Manager>(
    shared: &Arc<Shared<M>>,
    started: Instant,
    patience: Patience,
) -> Acquired<M> {
    // The fast path: a resource cached on this thread. The shard's pool handle serves the guard
    // either way.
    let (cached, pool) = shared.cache.take(started);
    let pool = pool.unwrap_or_else(|| shared.fallback_ref());
    let span = get_span(shared, matches!(patience, Patience::Until(_)));
    // The common case, kept apart so it stays a straight line: a clean resource cached on this
    // thread goes out at once, its span (if any) closed at once. Anything else it needs takes
    // the general path.
    let cached = match cached {
        Some(entry) if shared.vet(&entry, started, true) == Vet::Clean => {
            if !span.is_disabled() {
                span.record("outcome", "ok");
            }
            return Ok(Checkout { entry, acquired_at: started, waited: None, pool });
        }
        other => other,
    };
    if span.is_disabled() {
        acquire_slow(shared, started, patience, cached, pool).await
    } else {
        // Boxed, so that the traced path adds nothing to the untraced one's future.
        let acquired = acquire_slow(shared, started, patience, cached, pool);
        Box::pin(crate::trace::traced(span, acquired, outcome::<M>)).await
    }
}

/// The general path of [`acquire`]: queueing, checks, hand-overs; `cached` is what the thread
/// cache gave, not clean enough for the fast path.
async fn acquire_slow<M: Manager>(
    shared: &Arc<Shared<M>>,
    started: Instant,
    patience: Patience,
    cached: Option<Entry<M::Resource>>,
    pool: Arc<PoolRef<M>>,
) -> Acquired<M> {
    // The time of each look at the pool: the caller's arrival first, then a fresh reading after
    // anything that may have taken time (a check), so no round reads the clock twice.
    let mut now = started;
    // When the caller first queued, kept across a failed check so it keeps its place.
    let mut queued_since: Option<Instant> = None;
    // A resource that just failed its check, whose slot the next look at the pool frees.
    let mut broken: Option<Entry<M::Resource>> = None;
    let mut step = cached.map(Step::Fresh);
    loop {
        let step = match step.take() {
            Some(step) => step,
            None => match patience {
                Patience::Until(deadline) => {
                    let queue = Queue {
                        shared,
                        queued: None,
                        deadline,
                        first_poll_at: Some(now),
                        rejoin: queued_since,
                        broken: broken.take(),
                    };
                    queue.await?
                }
                Patience::None => take_now(shared, now)?,
            },
        };
        let (entry, vet) = match step {
            Step::Fresh(entry) => {
                let vet = shared.vet(&entry, now, true);
                (entry, vet)
            }
            Step::Handed(entry, queued_at, granted_at) => {
                let since = *queued_since.get_or_insert(queued_at);
                let vet = shared.vet(&entry, granted_at, false);
                if vet == Vet::Clean {
                    let waited = Some(granted_at.saturating_duration_since(since));
                    return Ok(Checkout { entry, acquired_at: granted_at, waited, pool });
                }
                now = granted_at;
                (entry, vet)
            }
            Step::Expired(entry) => {
                // The engine already freed its slot.
                shared.close_resource(entry, CloseReason::Lifetime);
                shared.refill();
                now = Instant::now();
                continue;
            }
        };
        let waited = queued_since.map(|since| now.saturating_duration_since(since));
        match (vet, patience) {
            (Vet::Clean, _) => return Ok(Checkout { entry, acquired_at: now, waited, pool }),
            (Vet::Expired, _) => shared.discard(entry, CloseReason::Lifetime),
            (Vet::Check, Patience::None) => shared.check_in_background(entry),
            (Vet::Check, Patience::Until(deadline)) => {
                match check_idle(shared, entry, deadline).await? {
                    Ok((entry, checked_at)) => {
                        let waited =
                            queued_since.map(|since| checked_at.saturating_duration_since(since));
                        return Ok(Checkout { entry, acquired_at: checked_at, waited, pool });
                    }
                    // The check failed: this caller looks again, ahead of everyone who queued
                    // after it arrived, and that look frees the broken resource's slot.
                    Err(failed) => {
                        broken = failed;
                        queued_since.get_or_insert(started);
                    }
                }
            }
        }
        now = Instant::now();
        if let Patience::Until(deadline) = patience {
            if now >= deadline {
                if let Some(entry) = broken.take() {
                    shared.discard(entry, CloseReason::Broken);
                }
                return Err(timed_out(shared, None));
            }
        }
    }
}

/// The `pool.get` span of one checkout (`crate::trace`): [`Span::none`] unless a subscriber
/// wants it. `wait` is `false` for `try_get`.
#[inline(always)]
pub(crate) fn get_span<M: Manager>(shared: &Shared<M>, wait: bool) -> Span {
    tracing::trace_span!(
        "pool.get",
        pool = %shared.config.name,
        wait,
        outcome = tracing::field::Empty,
    )
}

/// The `outcome` of a checkout's span.
pub(crate) fn outcome<M: Manager>(acquired: &Acquired<M>) -> &'static str {
    match acquired {
        Ok(_) => "ok",
        Err(Error::Timeout { .. }) => "timeout",
        Err(Error::Unavailable(_)) => "unavailable",
        Err(Error::Closed) => "closed",
        Err(Error::Exhausted) => "exhausted",
        Err(Error::Limited(_)) => "limited",
        Err(Error::RateLimited { .. }) => "rate_limited",
    }
}

/// Runs [`acquire`] for a caller that cannot wait. With [`Patience::None`] it never awaits
/// anything, so one poll finishes it.
pub(crate) fn acquire_now<M: Manager>(shared: &Arc<Shared<M>>, now: Instant) -> Acquired<M> {
    let acquire = pin!(acquire(shared, now, Patience::None));
    match acquire.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(acquired) => acquired,
        // Unreachable: without patience nothing is awaited. Dropping the future is cancel safe,
        // so even then nothing would leak.
        Poll::Pending => Err(Error::Exhausted),
    }
}

/// What a check before hand-out gave: the resource and when it passed, or, when it failed, the
/// resource to close (its slot still taken).
type CheckResult<R> = Result<(Entry<R>, Instant), Option<Entry<R>>>;

/// Runs `check` on a resource before handing it out. An error when the acquire deadline passed
/// during the check (the resource is closed).
async fn check_idle<M: Manager>(
    shared: &Arc<Shared<M>>,
    entry: Entry<M::Resource>,
    deadline: Instant,
) -> Result<CheckResult<M::Resource>, Error<M::Error>> {
    let mut checking = Checking::new(shared, entry);
    match checking.run(deadline).await {
        Checked::Passed => {
            let checked_at = Instant::now();
            Ok(checking.keep(checked_at).map(|entry| (entry, checked_at)).ok_or(None))
        }
        Checked::Failed => Ok(Err(checking.into_failed())),
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
