//! The state every handle, guard and background task of one pool shares, and the paths that give
//! resources back to it.
//!
//! The [`Engine`] decides under the lock; this file carries out its decisions outside it: waking
//! waiters, closing resources through the manager, spawning creations.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::cache::{IdleCache, LocalIdle, Put, default_shards};
use super::check::{Checked, Checking};
use super::config::{Config, IdleOrder};
use super::create::SlotReservation;
use super::engine::{Engine, Entry, Handoff, Wake};
use super::leak::LeakTracker;
use super::manager::{CloseReason, Manager};
use crate::home::{Home, Rehome};
use crate::sync::{Arc, AtomicUsize, CachePadded, Mutex, Ordering};
use crate::unwind::contain;

pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: M,
    pub(crate) config: Config,
    /// The state machine, on cache lines of its own: it is written on every slow-path call, and
    /// must not slow down reads of the configuration beside it.
    pub(crate) engine: CachePadded<Mutex<Engine<M::Resource, M::Error>>>,
    /// The runtime the background tasks run on; the pool moves to a caller's runtime when it
    /// shuts down (`home.rs`).
    pub(crate) home: Arc<Home>,
    /// Live `Pool` handles; the last one to go closes the pool.
    pub(crate) handles: AtomicUsize,
    /// Wakes the maintenance task early: the pool closed.
    pub(crate) maintenance: Notify,
    /// Wakes the waiter-expiry task: an earlier deadline was queued, or the pool closed.
    pub(crate) expiry: Notify,
    /// Signalled when a closed pool frees a slot, for `drain`.
    pub(crate) slot_freed: Notify,
    pub(crate) leaks: Option<LeakTracker>,
    /// Per-thread idle slots in front of the engine, and the per-shard pool handles the guards
    /// hold (`cache.rs`). Values are not cached for FIFO order or a `max_idle` below `max_size`,
    /// which need every idle resource in one queue.
    pub(crate) cache: ThreadCache<M>,
    /// What the last metrics publish saw, so the next one sends only what changed since.
    #[cfg(feature = "metrics")]
    pub(crate) published: Mutex<super::metrics::Metrics>,
}

/// What a resource needs before it is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vet {
    /// Nothing: hand it out.
    Clean,
    /// Run [`Manager::check`] on it first.
    Check,
    /// It is past its lifetime: close it.
    Expired,
}

/// What a freed slot calls for, to carry out once the lock is released.
struct Replan {
    creations: usize,
    unservable: Vec<std::task::Waker>,
    /// The pool is closed: `drain` wants to hear about the freed slot.
    closed: bool,
}

/// A handle to the pool in an allocation of its own: each cache shard owns one, so guards count
/// references on their shard's cache line rather than all on the pool's.
///
/// Aligned so that two shards' handles (allocated one after the other) never share a cache line.
#[repr(align(128))]
pub(crate) struct PoolRef<M: Manager>(pub(crate) Arc<Shared<M>>);

pub(crate) type ThreadCache<M> = IdleCache<Entry<<M as Manager>::Resource>, Arc<PoolRef<M>>>;

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, config: Config, runtime: Handle) -> Self {
        Self {
            engine: CachePadded(Mutex::new(Engine::new(&config))),
            leaks: config.leak_threshold.map(LeakTracker::new),
            cache: IdleCache::new(
                default_shards(),
                config.idle_order == IdleOrder::Lifo && config.max_idle() == config.max_size,
            ),
            manager,
            config,
            home: Home::new(runtime),
            handles: AtomicUsize::new(1),
            maintenance: Notify::new(),
            expiry: Notify::new(),
            slot_freed: Notify::new(),
            #[cfg(feature = "metrics")]
            published: Mutex::new(super::metrics::Metrics::default()),
        }
    }

    /// The lifetime deadline of a resource created at `now`: `max_lifetime` shortened by a random
    /// fraction of up to `lifetime_jitter`, so resources created together do not expire together.
    pub(crate) fn expiry_for(&self, now: Instant) -> Option<Instant> {
        self.config.max_lifetime.map(|lifetime| {
            let jitter = lifetime.mul_f64(self.config.lifetime_jitter * fastrand::f64());
            crate::time::after(now, lifetime - jitter)
        })
    }

    /// What a resource needs before a caller may have it. `sat_idle` is whether it was idle in
    /// the pool (rather than handed straight over by a returning caller or a creation), which
    /// subjects it to the check window. Every hand-out path asks this (`acquire.rs`).
    pub(crate) fn vet(&self, entry: &Entry<M::Resource>, now: Instant, sat_idle: bool) -> Vet {
        if entry.meta.is_expired(now) {
            return Vet::Expired;
        }
        let stale = sat_idle
            && self.config.check_on_get
            && now.saturating_duration_since(entry.meta.last_active()) >= self.config.check_window;
        // A panicking `needs_check` counts as "needs a check".
        if stale
            || contain("needs_check", || self.manager.needs_check(&entry.resource)).unwrap_or(true)
        {
            Vet::Check
        } else {
            Vet::Clean
        }
    }

    /// Checks a resource in a task of its own, for a caller that could not wait for the check
    /// (`try_get`): it goes back to the pool (to a waiter first) if it passes, and is closed, its
    /// slot freed and refilled, if it fails. Until then it counts as in use.
    pub(crate) fn check_in_background(self: &Arc<Self>, entry: Entry<M::Resource>) {
        self.stay_alive();
        let shared = Arc::clone(self);
        self.home.spawn(async move {
            let mut checking = Checking::new(&shared, entry);
            let never = crate::time::after(Instant::now(), Duration::MAX);
            if matches!(checking.run(never).await, Checked::Passed) {
                let checked_at = Instant::now();
                if let Some(entry) = checking.keep(checked_at) {
                    let handoff = shared.engine.lock().put_back(entry, checked_at);
                    shared.finish(handoff);
                }
            }
        });
    }

    /// The cache as the engine sees it, when it caches values.
    pub(crate) fn local_idle(&self) -> Option<&dyn LocalIdle<M::Resource>> {
        self.cache.as_local_idle()
    }

    /// A handle for a guard when the pool closed and the shards gave theirs up.
    pub(crate) fn fallback_ref(self: &Arc<Self>) -> Arc<PoolRef<M>> {
        Arc::new(PoolRef(Arc::clone(self)))
    }

    /// Gives back a resource a caller held since `acquired_at` (the `Pooled` drop path).
    ///
    /// A resource that goes back to this thread's cache is stamped with the shard's clock (see
    /// [`IdleCache::put`]): the return reads no clock of its own, as every decision about handing
    /// it out again is taken with the next caller's fresh reading (`vet`). Every other way back
    /// (to the pool's idle set or a waiter, or closed) reads the clock.
    pub(crate) fn give_back(
        self: &Arc<Self>,
        mut entry: Entry<M::Resource>,
        acquired_at: Instant,
        waited: Option<Duration>,
        leak_id: Option<u64>,
    ) {
        // A panicking `is_reusable` counts as "not reusable".
        let reusable = contain("is_reusable", || self.manager.is_reusable(&mut entry.resource));
        if reusable != Some(true) || leak_id.is_some() {
            self.give_back_timed(entry, acquired_at, waited, leak_id, reusable == Some(true));
            return;
        }
        if self.cache.in_demand() {
            // Someone waits for it (or the pool closed): straight to the pool, past the cache.
            self.give_back_to_pool(entry, acquired_at, waited);
            return;
        }
        let settle = |entry: &mut Entry<M::Resource>, now: Instant| {
            entry.meta.mark_used(now);
            !entry.meta.is_expired(now)
        };
        let entry = match self.cache.put(entry, acquired_at, waited, settle) {
            Put::Cached => return,
            Put::Declined(entry) => entry,
        };
        // Already recorded by `put`; the resource goes on with a fresh reading.
        let now = Instant::now();
        entry_returned(self, entry, now);
    }

    /// The return of a resource while callers queue: one clock reading, and no detour through
    /// the cache.
    fn give_back_to_pool(
        self: &Arc<Self>,
        entry: Entry<M::Resource>,
        acquired_at: Instant,
        waited: Option<Duration>,
    ) {
        let now = Instant::now();
        entry_returned(self, entry, now);
        // After the hand-off, so the waiter is on its way first; on this thread's shard, as the
        // pool's own histograms are a cache line both threads would fight over.
        self.cache.checkout_ended(now.saturating_duration_since(acquired_at), waited);
    }

    /// The return of a resource that is closed, or that a leak tracker follows: both read the
    /// clock, as neither is the cached fast path.
    #[cold]
    fn give_back_timed(
        self: &Arc<Self>,
        entry: Entry<M::Resource>,
        acquired_at: Instant,
        waited: Option<Duration>,
        leak_id: Option<u64>,
        reusable: bool,
    ) {
        let now = Instant::now();
        if let (Some(leaks), Some(id)) = (&self.leaks, leak_id) {
            leaks.unregister(id, now);
        }
        if !reusable {
            self.cache.checkout_ended(now.saturating_duration_since(acquired_at), waited);
            self.discard(entry, CloseReason::Broken);
            return;
        }
        let settle = |entry: &mut Entry<M::Resource>, _: Instant| {
            entry.meta.mark_used(now);
            !entry.meta.is_expired(now)
        };
        if let Put::Declined(entry) = self.cache.put(entry, acquired_at, waited, settle) {
            entry_returned(self, entry, now);
        }
    }

    /// A snapshot of the pool's occupancy, with thread-cached resources counted as idle.
    ///
    /// A pure read: the cached resources are counted where they are, not moved, so a poller
    /// does not push callers off their thread's fast path. The shards are counted before the
    /// pool lock is taken, so the lock is not held across them. Resources move between a shard
    /// and a caller's hands without the pool lock, and the engine counts both as in use, so the
    /// count is a moment's view: the engine caps it at what it counts as in use (a resource that
    /// moved from one shard to another during the count is seen twice), which keeps
    /// `size == idle + in_use + creating`.
    pub(crate) fn status(&self) -> super::metrics::Status {
        let cached = self.local_idle().map_or(0, |cache| cache.count());
        self.engine.lock().status(cached)
    }

    /// The pool's metrics, with the counters kept by the thread cache folded in.
    pub(crate) fn metrics(&self) -> super::metrics::Metrics {
        let mut metrics = self.engine.lock().metrics.clone();
        self.cache.merge_stats(&mut metrics);
        metrics
    }

    /// Carries out a [`Handoff`] after the lock is released.
    pub(crate) fn finish(self: &Arc<Self>, handoff: Handoff<M::Resource>) {
        match handoff {
            Handoff::Waiter(waker) => waker.into_iter().for_each(std::task::Waker::wake),
            Handoff::Kept => {}
            Handoff::Close(entry, reason) => {
                self.close_resource(entry, reason);
                self.notify_if_closed();
            }
        }
    }

    /// Frees the slot of a resource that cannot be reused, closes it, and starts a replacement if
    /// waiters or `min_idle` need one.
    pub(crate) fn discard(self: &Arc<Self>, entry: Entry<M::Resource>, reason: CloseReason) {
        let replan = {
            let mut engine = self.engine.lock();
            engine.discard(reason);
            self.replan(&mut engine)
        };
        // Closed before `carry_out` tells `drain`, so a drained pool has no `on_close` running.
        self.close_resource(entry, reason);
        self.carry_out(replan);
    }

    /// Starts a replacement after the engine already freed a slot (an expired idle resource).
    pub(crate) fn refill(self: &Arc<Self>) {
        let replan = self.replan(&mut self.engine.lock());
        self.carry_out(replan);
    }

    /// Frees the slot of a resource the caller took out of the pool with `Pooled::take`.
    pub(crate) fn detach(
        self: &Arc<Self>,
        acquired_at: Instant,
        waited: Option<Duration>,
        leak_id: Option<u64>,
    ) {
        let now = Instant::now();
        self.cache.checkout_ended(now.saturating_duration_since(acquired_at), waited);
        if let (Some(leaks), Some(id)) = (&self.leaks, leak_id) {
            leaks.unregister(id, now);
        }
        let replan = {
            let mut engine = self.engine.lock();
            engine.detach();
            self.replan(&mut engine)
        };
        self.carry_out(replan);
    }

    /// Decides what a freed slot calls for: creations (with an accurate idle count: resources
    /// cached on threads count toward `min_idle` only once absorbed), and, while the breaker is
    /// open, failing the queued callers that no returning resource can serve any more.
    fn replan(&self, engine: &mut Engine<M::Resource, M::Error>) -> Replan {
        if self.config.min_idle > 0 {
            if let Some(cache) = self.local_idle() {
                engine.absorb(cache);
            }
        }
        let now = Instant::now();
        Replan {
            creations: engine.plan_creations(now),
            unservable: engine.shed_unservable(now),
            closed: engine.is_closed(),
        }
    }

    fn carry_out(self: &Arc<Self>, replan: Replan) {
        self.spawn_creations(replan.creations);
        replan.unservable.into_iter().for_each(std::task::Waker::wake);
        if replan.closed {
            self.slot_freed.notify_waiters();
        }
    }

    /// Hands a resource whose slot is already freed to `Manager::on_close`; a panic there is
    /// contained, so a failing hook cannot stop a close half-way or kill a background task.
    pub(crate) fn close_resource(&self, entry: Entry<M::Resource>, reason: CloseReason) {
        contain("on_close", || self.manager.on_close(entry.resource, reason));
    }

    /// Starts the background work a `get()` poll asked for.
    ///
    /// A caller that queues relies on the expiry task for its deadline, so every call checks that
    /// the pool's runtime is still there, whatever it asks for.
    pub(crate) fn start(self: &Arc<Self>, wake: Wake) {
        self.stay_alive();
        if wake.creations > 0 || wake.expiry {
            // This caller waits on background work (a creation, or the expiry task armed for its
            // deadline): should the pool's runtime go meanwhile, the work moves to this caller's
            // at once. A caller queued behind an earlier armed deadline with no creation to wait
            // for records nothing (this path stays cheap): if the runtime goes with no live one
            // in reserve, every queued caller is woken to move the pool itself (`launch`).
            self.home.stand_by();
        }
        self.spawn_creations(wake.creations);
        if wake.expiry {
            self.expiry.notify_one();
        }
    }

    pub(crate) fn spawn_creations(self: &Arc<Self>, count: usize) {
        if count == 0 {
            return;
        }
        self.stay_alive();
        for _ in 0..count {
            let reservation = SlotReservation::new(Arc::clone(self));
            self.home.spawn(super::create::run(reservation));
        }
    }

    /// Starts the maintenance and waiter-expiry tasks, and has them start again wherever the
    /// pool moves when its runtime shuts down.
    pub(crate) fn launch(self: &Arc<Self>) {
        let shared = Arc::downgrade(self);
        self.home.on_move(move || {
            // The restarted maintenance task plans the creations that queued callers still
            // need, in place of those the old runtime dropped; its first tick runs at once.
            if let Some(shared) = shared.upgrade() {
                if !shared.engine.lock().is_closed() {
                    shared.start_background();
                }
            }
        });
        let shared = Arc::downgrade(self);
        self.home.on_stranded(move || {
            // Nowhere to move to: the queued callers' deadlines and creations have no task left.
            // Woken, each looks at the home as it polls and moves the pool to its own runtime
            // (`Queue::poll`); a caller woken on a runtime that is gone too changes nothing.
            if let Some(shared) = shared.upgrade() {
                let wakers = shared.engine.lock().waiter_wakers();
                wakers.into_iter().for_each(std::task::Waker::wake);
            }
        });
        self.start_background();
    }

    fn start_background(self: &Arc<Self>) {
        self.home.spawn(super::maintenance::run(Arc::clone(self)));
        self.home.spawn(super::expiry::run(Arc::clone(self)));
    }

    /// Moves the background work to the caller's runtime if the pool's own has shut down.
    #[inline]
    pub(crate) fn stay_alive(self: &Arc<Self>) {
        if self.home.is_gone() {
            self.rehome();
        }
    }

    #[cold]
    fn rehome(self: &Arc<Self>) {
        // A closed pool has no background task left to run.
        if self.engine.lock().is_closed() {
            return;
        }
        if self.home.rehome() == Rehome::Moved {
            tracing::debug!(
                "millpond: the pool's runtime shut down; its background work moved to the \
                 caller's runtime"
            );
        }
    }

    /// Tells `drain` that a closed pool freed a slot.
    pub(crate) fn notify_if_closed(&self) {
        if self.engine.lock().is_closed() {
            self.slot_freed.notify_waiters();
        }
    }

    /// Closes the pool: waiters fail with `Closed`, idle resources are closed now, resources out
    /// with callers are closed when they come back, and the maintenance task stops.
    pub(crate) fn close(self: &Arc<Self>) {
        let (idle, wakers) = self.engine.lock().close(self.local_idle());
        // The shard handles point back at the pool: drop them so it can be freed.
        self.cache.remove_handles();
        wakers.into_iter().for_each(std::task::Waker::wake);
        self.maintenance.notify_one();
        self.expiry.notify_one();
        self.slot_freed.notify_waiters();
        // User hooks last: everything the pool owes others is done whatever they do.
        for entry in idle {
            self.close_resource(entry, CloseReason::PoolClosed);
        }
    }

    pub(crate) fn add_handle(&self) {
        // Handle counting only decides who closes the pool; the pool state itself is published
        // through the engine mutex.
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops one handle; the last one closes the pool so no task or resource outlives it.
    pub(crate) fn remove_handle(self: &Arc<Self>) {
        // AcqRel: the handle that sees 1 must observe every other handle's prior use as done.
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }
}

/// Takes a returned resource that the thread cache declined to the pool's idle set or a waiter,
/// or closes it when it is past its lifetime at `now` (a fresh reading).
fn entry_returned<M: Manager>(
    shared: &Arc<Shared<M>>,
    mut entry: Entry<M::Resource>,
    now: Instant,
) {
    if entry.meta.is_expired(now) {
        shared.discard(entry, CloseReason::Lifetime);
        return;
    }
    entry.meta.mark_used(now);
    let handoff = {
        let mut engine = shared.engine.lock();
        let handoff = engine.put_back(entry, now);
        engine.relax_demand(shared.local_idle());
        handoff
    };
    shared.finish(handoff);
}
