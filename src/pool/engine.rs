//! The pool's state machine: slot accounting, the idle set, FIFO hand-off to waiters and the
//! planning of creations.
//!
//! An [`Engine`] lives inside the pool's one mutex and never awaits or spawns, and calls no user
//! code (except `retain`'s predicate, under `catch_unwind`): every method runs in a few
//! instructions under that lock and returns the work that must happen outside it (wake this
//! waiter, close that resource, start `n` creations). That keeps the lock hold times tiny and
//! lets the loom models and unit tests drive the engine directly.
//!
//! # Invariants
//!
//! * `size` counts every slot taken: idle resources, resources out with callers (or being checked
//!   by the pool, or cached on a thread: see `cache.rs`), and creations in flight.
//!   `size == idle.len() + in_use + creating`. `size` only grows in [`Engine::plan_creations`],
//!   which never takes it past `max_size`; it shrinks exactly once per resource or creation that
//!   leaves the pool (`discard`, `detach`, `end_creation`, and the methods that close idle
//!   resources: `take_idle` on an expired one, `close`, `resize`, `reap`, `retain`).
//! * A resource is in exactly one place: the idle set, one waiter's hand-off cell, a thread cache
//!   slot, or the hands of a caller (a `Pooled` guard or a `get()` future).
//! * While a waiter is queued the idle set is empty: a returned resource goes straight to the
//!   oldest waiter, so a newcomer can never overtake a queued caller.
//! * A served waiter leaves the queue at once; what it was handed waits in its ticket until its
//!   future collects it. A future dropped before that takes it back out under the lock and hands
//!   it on ([`Engine::cancel_waiter`]), so cancellation cannot leak a slot.

use std::collections::VecDeque;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use super::cache::{DEMAND_CLOSED, DEMAND_SHRINK, DEMAND_WAITERS, LocalIdle};
use super::config::{Config, IdleOrder};
use super::error::{CreateError, Error, TimeoutPhase};
use super::guard::Metadata;
use super::manager::CloseReason;
use super::metrics::{Metrics, Status};
use super::ticket::Ticket;
use crate::backoff::Backoff;
use crate::breaker::{Breaker, Permit, RateRules, Window};
use crate::sync::Arc;
use crate::time::elapsed;
use crate::unwind::contain;
use crate::wait_list::{WaitList, WaiterKey};

/// A live resource with its bookkeeping.
#[derive(Debug)]
pub(crate) struct Entry<R> {
    pub(crate) resource: R,
    pub(crate) meta: Metadata,
}

type StepResult<R, E> = Result<Step<R>, Error<E>>;

/// A queued caller's place: its key in the queue and its hand-off cell.
pub(crate) type Place<R, E> = (WaiterKey, Arc<Ticket<R, E>>);

/// A queued caller: its hand-off cell (shared with its `get()` future), when it arrived, and
/// when it gives up. Served callers leave the queue at once; their ticket carries the result.
struct Waiter<R, E> {
    ticket: Arc<Ticket<R, E>>,
    since: Instant,
    deadline: Instant,
}

/// The outcome of taking from the idle set.
pub(crate) enum Take<R, E> {
    /// A resource for the caller.
    Ready(Entry<R>),
    /// The next idle resource was past its lifetime; its slot is freed, close it and try again.
    Expired(Entry<R>),
    /// Nothing idle: queue up.
    Empty,
    /// The pool cannot serve at all.
    Failed(Error<E>),
}

/// What one look at the pool gave a caller.
pub(crate) enum Step<R> {
    /// An idle resource, to check if it sat idle.
    Fresh(Entry<R>),
    /// A resource handed over by another caller or a creation, with when the caller queued and
    /// when it was handed over: it was in use or new a moment ago, so it skips the check.
    Handed(Entry<R>, Instant, Instant),
    /// An idle resource past its lifetime, already discarded: close it and look again.
    Expired(Entry<R>),
}

/// Where a caller goes in the queue.
enum Spot {
    /// At the back: everyone queued arrived before it.
    Back,
    /// Just ahead of `key`, whose deadline is `next`; the caller ahead of it, if any, has the
    /// deadline `previous`.
    Before { key: WaiterKey, previous: Option<Instant>, next: Instant },
}

/// Background work a poll of `get()` calls for, to start once the lock is released.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct Wake {
    /// Creations to spawn.
    pub(crate) creations: usize,
    /// The new waiter's deadline is the earliest: the expiry task must re-arm.
    pub(crate) expiry: bool,
}

/// Where a resource given back to the engine went.
#[must_use]
pub(crate) enum Handoff<R> {
    /// To a waiter, who must be woken once the lock is released.
    Waiter(Option<Waker>),
    /// Into the idle set (or nowhere, when there was nothing to hand on).
    Kept,
    /// Nowhere: its slot is freed and the caller must close it for this reason.
    Close(Entry<R>, CloseReason),
}

/// What a creation task does after a failure.
#[must_use]
pub(crate) enum AfterFailure {
    /// Keep the slot and try again after this delay.
    Retry(Duration),
    /// The slot is freed; wake these waiters (failed because the breaker opened).
    Stop(Vec<Waker>),
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_size: usize,
    min_idle: usize,
    max_idle: usize,
    /// `max_idle` was never set and follows `max_size` through resizes.
    max_idle_follows_size: bool,
    max_creates: usize,
    order: IdleOrder,
}

pub(crate) struct Engine<R, E> {
    limits: Limits,
    backoff: Backoff,
    idle: VecDeque<Entry<R>>,
    waiters: WaitList<Waiter<R, E>>,
    size: usize,
    creating: usize,
    closed: bool,
    breaker: Breaker,
    /// The breaker's rate rules over creations, and their window.
    rates: Option<(RateRules, Window)>,
    /// The last creation failure since the last success.
    last_error: Option<Arc<CreateError<E>>>,
    /// The deadline the waiter-expiry task is sleeping until, if any; a waiter with an earlier
    /// deadline must wake it. One task with one timer serves every waiter, so queueing costs no
    /// timer registration.
    expiry_armed: Option<Instant>,
    /// The demand flags last published to the thread-local cache (see `cache.rs`).
    published_demand: usize,
    /// Whether the queued deadlines are in queue order (true with one acquire timeout), which
    /// lets expiry stop at the first caller still in time; and the last deadline queued.
    deadlines_sorted: bool,
    last_deadline: Instant,
    pub(crate) metrics: Metrics,
}

impl<R, E> Engine<R, E> {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            limits: Limits {
                max_size: config.max_size,
                min_idle: config.min_idle,
                max_idle: config.max_idle(),
                max_idle_follows_size: config.max_idle.is_none(),
                max_creates: config.max_concurrent_creates,
                order: config.idle_order,
            },
            backoff: config.backoff,
            idle: VecDeque::with_capacity(config.max_idle()),
            waiters: WaitList::default(),
            size: 0,
            creating: 0,
            closed: false,
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            rates: config
                .breaker_rates
                .clone()
                .map(|rules| (rules, Window::new(config.breaker_window, Instant::now()))),
            last_error: None,
            expiry_armed: None,
            published_demand: 0,
            deadlines_sorted: true,
            last_deadline: Instant::now(),
            metrics: Metrics::default(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The occupancy, with `cached` resources sitting in thread caches (which the engine counts
    /// as in use) reported as idle; a count above what is in use (it was taken without the pool
    /// lock) is capped.
    pub(crate) fn status(&self, cached: usize) -> Status {
        let cached = cached.min(self.in_use());
        Status {
            max_size: self.limits.max_size,
            size: self.size,
            idle: self.idle.len() + cached,
            in_use: self.in_use() - cached,
            creating: self.creating,
            waiters: self.waiters.len(),
        }
    }

    /// The current `(min_idle, max_idle)`, which follow resizes.
    #[cfg(feature = "metrics")]
    pub(crate) fn idle_limits(&self) -> (usize, usize) {
        (self.limits.min_idle, self.limits.max_idle)
    }

    pub(crate) fn last_error(&self) -> Option<Arc<CreateError<E>>> {
        self.last_error.clone()
    }

    /// Whether a caller who times out while queued was waiting on creation rather than on a
    /// return: the pool had room, or creations were running or failing.
    pub(crate) fn waiting_on_creation(&self) -> bool {
        self.creating > 0 || self.size < self.limits.max_size || self.last_error.is_some()
    }

    /// Takes an idle resource for a caller.
    pub(crate) fn take_idle(&mut self, now: Instant) -> Take<R, E> {
        if self.closed {
            return Take::Failed(Error::Closed);
        }
        let entry = match self.limits.order {
            IdleOrder::Lifo => self.idle.pop_back(),
            IdleOrder::Fifo => self.idle.pop_front(),
        };
        match entry {
            None => Take::Empty,
            Some(entry) if entry.meta.is_expired(now) => {
                self.size -= 1;
                self.metrics.closed.lifetime += 1;
                Take::Expired(entry)
            }
            Some(entry) => Take::Ready(entry),
        }
    }

    /// The first look of a `get()`: take an idle resource, or queue. Taking and queueing happen
    /// under the same lock, so a resource returned in between cannot sit idle while the caller
    /// waits. Returns the background work to start for the new waiter.
    pub(crate) fn poll_acquire(
        &mut self,
        queued: &mut Option<Place<R, E>>,
        ticket: impl FnOnce() -> Arc<Ticket<R, E>>,
        now: Instant,
        deadline: Instant,
        rejoin: Option<Instant>,
        cache: Option<&dyn LocalIdle<R>>,
    ) -> (Poll<StepResult<R, E>>, Wake) {
        let mut taken = self.take_idle(now);
        if matches!(taken, Take::Empty) && self.raise_demand(cache) {
            // Resources cached on other threads are idle too: bring them in before queueing.
            taken = self.take_idle(now);
        }
        let step = match taken {
            Take::Ready(entry) => Ok(Step::Fresh(entry)),
            Take::Expired(entry) => Ok(Step::Expired(entry)),
            Take::Failed(err) => Err(err),
            Take::Empty => match self.enqueue(ticket, now, deadline, rejoin) {
                Ok(place) => {
                    *queued = Some(place);
                    let expiry = self.expiry_armed.is_none_or(|armed| deadline < armed);
                    if expiry {
                        self.expiry_armed = Some(deadline);
                    }
                    let creations = self.plan_creations(now);
                    return (Poll::Pending, Wake { creations, expiry });
                }
                Err(err) => Err(err),
            },
        };
        self.relax_demand(cache);
        (Poll::Ready(step), Wake::default())
    }

    /// Raises the waiters flag before this caller queues and spills the cache into the idle set;
    /// returns whether it did (while the flag is up the cache is known to be empty).
    fn raise_demand(&mut self, cache: Option<&dyn LocalIdle<R>>) -> bool {
        let Some(cache) = cache else { return false };
        if self.published_demand & DEMAND_WAITERS != 0 {
            return false;
        }
        self.published_demand |= DEMAND_WAITERS;
        cache.set_demand(self.published_demand);
        self.absorb(cache);
        true
    }

    /// Lowers the flags whose reason has passed (nobody queued, no longer above `max_size`), so
    /// returns may be cached again. Flags are only raised together with a spill.
    pub(crate) fn relax_demand(&mut self, cache: Option<&dyn LocalIdle<R>>) {
        let Some(cache) = cache else { return };
        let mut still = DEMAND_CLOSED;
        if self.waiters.len() > 0 {
            still |= DEMAND_WAITERS;
        }
        if self.size > self.limits.max_size {
            still |= DEMAND_SHRINK;
        }
        let lowered = self.published_demand & still;
        if lowered != self.published_demand {
            self.published_demand = lowered;
            cache.set_demand(lowered);
        }
    }

    /// Moves every resource cached on threads into the shared idle set, so that reaping,
    /// retaining, resizing and status see them.
    pub(crate) fn absorb(&mut self, cache: &dyn LocalIdle<R>) {
        let idle = &mut self.idle;
        cache.spill(&mut |entry| idle.push_back(entry));
    }

    /// Fails every queued caller whose deadline has passed with [`Error::Timeout`], and re-arms
    /// the expiry task for the earliest deadline left. Returns the callers to wake and that
    /// deadline.
    pub(crate) fn expire_waiters(&mut self, now: Instant) -> (Vec<Waker>, Option<Instant>) {
        let mut wakers = Vec::new();
        let mut next: Option<Instant> = None;
        let mut cursor = self.waiters.front();
        while let Some(key) = cursor {
            cursor = self.waiters.next(key);
            let Some(deadline) = self.waiters.get(key).map(|waiter| waiter.deadline) else {
                continue;
            };
            if deadline > now {
                next = Some(next.map_or(deadline, |next| next.min(deadline)));
                if self.deadlines_sorted {
                    // Queued in deadline order: everyone behind is later still.
                    break;
                }
                continue;
            }
            let phase =
                if self.waiting_on_creation() { TimeoutPhase::Create } else { TimeoutPhase::Wait };
            let err = Error::Timeout { phase, last_create_error: self.last_error.clone() };
            if let Some(waiter) = self.waiters.remove(key) {
                self.metrics.gets_timed_out += 1;
                wakers.extend(waiter.ticket.serve(Err(err), waiter.since, now));
            }
        }
        self.expiry_armed = next;
        (wakers, next)
    }

    /// The wakers of every queued caller, to wake them without serving them: the pool's runtime
    /// went with no other to move to, and each must look again from its own.
    pub(crate) fn waiter_wakers(&self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        let mut cursor = self.waiters.front();
        while let Some(key) = cursor {
            cursor = self.waiters.next(key);
            wakers.extend(self.waiters.get(key).and_then(|waiter| waiter.ticket.waker()));
        }
        wakers
    }

    /// Queues a caller that found nothing idle. While the breaker is open, fails at once a caller
    /// that no returning resource could serve.
    ///
    /// A caller that `rejoin`s queued (or arrived) before, and lost the resource it was given to
    /// a failed check: it goes back ahead of everyone who queued after that time, so a broken
    /// resource costs it its resource but not its place.
    fn enqueue(
        &mut self,
        ticket: impl FnOnce() -> Arc<Ticket<R, E>>,
        now: Instant,
        deadline: Instant,
        rejoin: Option<Instant>,
    ) -> Result<Place<R, E>, Error<E>> {
        if self.closed {
            return Err(Error::Closed);
        }
        // While the breaker is open only a returning resource can serve a caller: queue those
        // that one could serve, refuse the rest at once.
        if self.breaker.is_open(now) && self.waiters.len() >= self.in_use() {
            if let Some(err) = &self.last_error {
                self.metrics.gets_unavailable += 1;
                return Err(Error::Unavailable(Arc::clone(err)));
            }
        }
        let ticket = ticket();
        let waiter = Waiter { ticket: Arc::clone(&ticket), since: rejoin.unwrap_or(now), deadline };
        let spot = match rejoin {
            Some(since) => self.spot_after(since),
            None => Spot::Back,
        };
        let key = match spot {
            Spot::Before { key, previous, next } => {
                // Rare (a failed check). With one acquire timeout an earlier arrival also has the
                // earlier deadline, so the queue usually stays in deadline order.
                if previous.is_some_and(|previous| previous > deadline) || next < deadline {
                    self.deadlines_sorted = false;
                }
                self.waiters.insert_before(key, waiter)
            }
            Spot::Back => {
                if self.waiters.len() == 0 {
                    self.deadlines_sorted = true;
                } else if deadline < self.last_deadline {
                    self.deadlines_sorted = false;
                }
                self.last_deadline = deadline;
                self.waiters.push_back(waiter)
            }
        };
        Ok((key, ticket))
    }

    /// Where a caller that first arrived at `since` belongs in the queue: before the first caller
    /// that queued after it (with the deadlines on either side), or at the back.
    fn spot_after(&self, since: Instant) -> Spot {
        let mut previous = None;
        let mut cursor = self.waiters.front();
        while let Some(key) = cursor {
            let Some(waiter) = self.waiters.get(key) else { break };
            if waiter.since > since {
                return Spot::Before { key, previous, next: waiter.deadline };
            }
            previous = Some(waiter.deadline);
            cursor = self.waiters.next(key);
        }
        Spot::Back
    }

    /// Removes a caller that gave up; a resource already handed to it moves on to the next waiter.
    pub(crate) fn cancel_waiter(
        &mut self,
        key: WaiterKey,
        ticket: &Arc<Ticket<R, E>>,
        now: Instant,
    ) -> Handoff<R> {
        // Still queued under this key? (A served caller's key may already name someone else.)
        let queued =
            self.waiters.get(key).is_some_and(|waiter| Arc::ptr_eq(&waiter.ticket, ticket));
        if queued {
            self.waiters.remove(key);
            self.metrics.gets_cancelled += 1;
            return Handoff::Kept;
        }
        // Served already (always under this lock): take back what it was handed.
        match ticket.reclaim() {
            Some(Ok(entry)) => {
                self.metrics.gets_cancelled += 1;
                self.put_back(entry, now)
            }
            // Already failed (and counted as such), or collected: nothing to hand on.
            Some(Err(_)) | None => Handoff::Kept,
        }
    }

    /// Takes back, at `now`, a resource the pool itself held (a keepalive check, a grant whose
    /// waiter left).
    pub(crate) fn put_back(&mut self, entry: Entry<R>, now: Instant) -> Handoff<R> {
        if self.closed {
            return self.close_entry(entry, CloseReason::PoolClosed);
        }
        if self.size > self.limits.max_size {
            return self.close_entry(entry, CloseReason::Excess);
        }
        if let Some(waiter) = self.waiters.pop_front() {
            return Handoff::Waiter(waiter.ticket.serve(Ok(entry), waiter.since, now));
        }
        if self.idle.len() >= self.limits.max_idle {
            return self.close_entry(entry, CloseReason::Excess);
        }
        self.idle.push_back(entry);
        Handoff::Kept
    }

    fn close_entry(&mut self, entry: Entry<R>, reason: CloseReason) -> Handoff<R> {
        self.discard(reason);
        Handoff::Close(entry, reason)
    }

    /// Frees the slot of a resource that is being closed, counting why.
    pub(crate) fn discard(&mut self, reason: CloseReason) {
        self.size -= 1;
        let closed = &mut self.metrics.closed;
        match reason {
            CloseReason::Broken => closed.broken += 1,
            CloseReason::IdleTimeout => closed.idle_timeout += 1,
            CloseReason::Lifetime => closed.lifetime += 1,
            CloseReason::Excess => closed.excess += 1,
            CloseReason::Evicted => closed.evicted += 1,
            CloseReason::PoolClosed => closed.pool_closed += 1,
        }
    }

    /// Frees the slot of a resource the caller took out of the pool for good.
    pub(crate) fn detach(&mut self) {
        self.size -= 1;
    }

    /// How many creations to start now; their slots are reserved before this returns.
    ///
    /// Demand is the larger of the queued callers and the `min_idle` shortfall; creations already
    /// in flight count against it, so a burst of callers that the in-flight creations and the
    /// resources coming back will serve does not start a creation each (HikariCP's elision). At
    /// most `max_concurrent_creates` run at once, and the breaker may allow only a probe, or none.
    pub(crate) fn plan_creations(&mut self, now: Instant) -> usize {
        if self.closed {
            return 0;
        }
        let demand = self.waiters.len().max(self.limits.min_idle.saturating_sub(self.idle.len()));
        let wanted = demand.saturating_sub(self.creating);
        let room = self.limits.max_size.saturating_sub(self.size);
        let parallel = self.limits.max_creates.saturating_sub(self.creating);
        let mut count = wanted.min(room).min(parallel);
        if count > 0 {
            match self.breaker.permit(now, self.creating) {
                Permit::Any => {}
                Permit::Probe => count = 1,
                Permit::Refused => count = 0,
            }
        }
        self.size += count;
        self.creating += count;
        count
    }

    /// Whether a creation still has a reason to exist (callers queued or `min_idle` short).
    fn creation_needed(&self) -> bool {
        let demand = self.waiters.len().max(self.limits.min_idle.saturating_sub(self.idle.len()));
        demand >= self.creating
    }

    /// Gives back the slot of a creation that ends without a resource (it failed for good, is no
    /// longer needed, or its task was dropped).
    pub(crate) fn end_creation(&mut self) {
        self.creating -= 1;
        self.size -= 1;
    }

    /// Takes in a freshly created resource: it goes to the oldest waiter, or idle.
    pub(crate) fn created(&mut self, entry: Entry<R>, took: Duration, now: Instant) -> Handoff<R> {
        self.creating -= 1;
        self.breaker.on_success();
        self.last_error = None;
        if self.rates_trip(now, false, took) {
            // Too many slow creations: the next creations wait for the cool-down and a probe,
            // and callers that only a creation could serve hear why.
            self.breaker.trip(now);
            let threshold = self.rates.as_ref().and_then(|(rules, _)| rules.slow).map(|(t, _)| t);
            self.last_error = Some(Arc::new(CreateError::TooSlow(threshold.unwrap_or(took))));
        }
        self.metrics.created += 1;
        self.metrics.create_time.record(took);
        self.put_back(entry, now)
    }

    /// Records a failed creation and decides whether its task retries.
    pub(crate) fn create_failed(&mut self, err: CreateError<E>, now: Instant) -> AfterFailure {
        self.metrics.create_failures += 1;
        let err = Arc::new(err);
        self.last_error = Some(Arc::clone(&err));
        let closed_before = !self.breaker.is_tripped();
        let by_run = self.breaker.on_failure(now);
        let by_rate = closed_before && !by_run && self.rates_trip(now, true, Duration::ZERO);
        if by_rate {
            self.breaker.trip(now);
        }
        if by_run || by_rate {
            self.end_creation();
            // Callers that a returning resource can serve keep waiting; the rest learn now.
            let keep = self.in_use();
            return AfterFailure::Stop(self.fail_waiters(keep, &Error::Unavailable(err)));
        }
        // A failure while the breaker is already tripped (another creation outlived the trip)
        // stops too: only the probe may try while it is open.
        if self.closed || self.breaker.is_tripped() || !self.creation_needed() {
            self.end_creation();
            return AfterFailure::Stop(Vec::new());
        }
        AfterFailure::Retry(self.backoff.delay(self.breaker.failures()))
    }

    /// Records a creation's outcome in the rate rules' window; whether a rule now trips. Only a
    /// closed breaker judges rates: a probe's outcome is decided by the state machine.
    fn rates_trip(&mut self, now: Instant, failed: bool, took: Duration) -> bool {
        let Some((rules, window)) = &mut self.rates else { return false };
        window.record(now, failed, rules.is_slow(took));
        let trips = rules.trip(window);
        if trips {
            window.clear(now);
        }
        trips
    }

    /// Asks, after the backoff delay, whether the retry should still happen; frees the slot if not.
    pub(crate) fn retry_allowed(&mut self, now: Instant) -> bool {
        let allowed = !self.closed && !self.breaker.is_open(now) && self.creation_needed();
        if !allowed {
            self.end_creation();
        }
        allowed
    }

    /// Fails every queued caller after the first `keep` with `err`.
    fn fail_waiters(&mut self, keep: usize, err: &Error<E>) -> Vec<Waker> {
        let mut wakers = Vec::new();
        let mut cursor = self.waiters.front();
        for _ in 0..keep {
            cursor = cursor.and_then(|key| self.waiters.next(key));
        }
        while let Some(key) = cursor {
            cursor = self.waiters.next(key);
            let Some(waiter) = self.waiters.remove(key) else { continue };
            if matches!(err, Error::Unavailable(_)) {
                self.metrics.gets_unavailable += 1;
            }
            wakers.extend(waiter.ticket.serve(Err(err.clone()), waiter.since, waiter.since));
        }
        wakers
    }

    /// While the breaker is open, fails the queued callers beyond those that the resources out
    /// with callers can serve: after a slot was freed for good (a resource closed or detached),
    /// some queued caller may be waiting for a return that will never come.
    pub(crate) fn shed_unservable(&mut self, now: Instant) -> Vec<Waker> {
        if !self.breaker.is_open(now) || self.waiters.len() <= self.in_use() {
            return Vec::new();
        }
        let Some(err) = self.last_error.clone() else { return Vec::new() };
        let keep = self.in_use();
        self.fail_waiters(keep, &Error::Unavailable(err))
    }

    /// Resources out with callers (or being checked by the pool).
    fn in_use(&self) -> usize {
        self.size - self.idle.len() - self.creating
    }

    /// Closes the pool: idle resources (cached ones too) come back for closing, every waiter fails
    /// with `Closed`.
    pub(crate) fn close(
        &mut self,
        cache: Option<&dyn LocalIdle<R>>,
    ) -> (Vec<Entry<R>>, Vec<Waker>) {
        self.closed = true;
        if let Some(cache) = cache {
            self.published_demand |= DEMAND_CLOSED;
            cache.set_demand(self.published_demand);
            self.absorb(cache);
        }
        let idle: Vec<_> = self.idle.drain(..).collect();
        self.size -= idle.len();
        self.metrics.closed.pool_closed += idle.len() as u64;
        (idle, self.fail_waiters(0, &Error::Closed))
    }

    /// Changes `max_size`; returns idle resources above the new bound, already discarded. While
    /// more than `max_size` remain, returns bypass the cache so they can be closed.
    pub(crate) fn resize(
        &mut self,
        max_size: usize,
        cache: Option<&dyn LocalIdle<R>>,
    ) -> Vec<Entry<R>> {
        if let Some(cache) = cache {
            if self.size > max_size {
                self.published_demand |= DEMAND_SHRINK;
                cache.set_demand(self.published_demand);
            }
            self.absorb(cache);
        }
        let limits = &mut self.limits;
        limits.max_size = max_size;
        if limits.max_idle_follows_size || limits.max_idle > max_size {
            limits.max_idle = max_size;
        }
        limits.min_idle = limits.min_idle.min(limits.max_idle);
        let mut excess = Vec::new();
        while self.size > self.limits.max_size {
            let Some(entry) = self.idle.pop_front() else {
                break;
            };
            self.discard(CloseReason::Excess);
            excess.push(entry);
        }
        excess
    }

    /// Removes idle resources for which `keep` returns `false`; their slots are freed.
    ///
    /// The one place user code runs under the pool lock. A panic in `keep` is contained (the
    /// resource is kept), so no resource is dropped, and no panic unwinds, while the lock is held.
    pub(crate) fn retain(
        &mut self,
        mut keep: impl FnMut(&mut R, &Metadata) -> bool,
    ) -> Vec<Entry<R>> {
        let mut evicted = Vec::new();
        let mut index = 0;
        while index < self.idle.len() {
            let entry = &mut self.idle[index];
            let kept = contain("retain", || keep(&mut entry.resource, &entry.meta));
            if kept.unwrap_or(true) {
                index += 1;
            } else if let Some(entry) = self.idle.remove(index) {
                self.discard(CloseReason::Evicted);
                evicted.push(entry);
            }
        }
        evicted
    }

    /// Removes idle resources past their lifetime, those above `max_idle` (possible after a resize
    /// with resources cached on threads), and those idle longer than `idle_timeout` while more
    /// than `min_idle` are idle, oldest first. Their slots are freed.
    pub(crate) fn reap(
        &mut self,
        now: Instant,
        idle_timeout: Option<Duration>,
    ) -> Vec<(Entry<R>, CloseReason)> {
        let mut reaped = Vec::new();
        let mut index = 0;
        while index < self.idle.len() {
            let meta = &self.idle[index].meta;
            let reason = if meta.is_expired(now) {
                Some(CloseReason::Lifetime)
            } else if self.idle.len() > self.limits.max_idle {
                Some(CloseReason::Excess)
            } else if self.idle.len() > self.limits.min_idle
                && idle_timeout.is_some_and(|timeout| elapsed(meta.last_used(), timeout, now))
            {
                Some(CloseReason::IdleTimeout)
            } else {
                None
            };
            match reason.and_then(|reason| Some((self.idle.remove(index)?, reason))) {
                Some((entry, reason)) => {
                    self.discard(reason);
                    reaped.push((entry, reason));
                }
                None => index += 1,
            }
        }
        reaped
    }

    /// Takes out one idle resource unused (and unchecked) for `interval`, so the pool can check
    /// it; it counts as in use until [`Engine::put_back`] or [`Engine::discard`].
    pub(crate) fn take_for_keepalive(
        &mut self,
        now: Instant,
        interval: Duration,
    ) -> Option<Entry<R>> {
        let due =
            self.idle.iter().position(|entry| elapsed(entry.meta.last_active(), interval, now))?;
        self.idle.remove(due)
    }
}
