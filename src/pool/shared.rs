//! The state every handle, guard and background task of one pool shares, and the paths that give
//! resources back to it.
//!
//! The [`Engine`] decides under the lock; this file carries out its decisions outside it: waking
//! waiters, closing resources through the manager, spawning creations.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::config::Config;
use super::engine::{Engine, Entry, Handoff, Wake};
use super::leak::LeakTracker;
use super::manager::{CloseReason, Manager};
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};

pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: M,
    pub(crate) config: Config,
    pub(crate) engine: Mutex<Engine<M::Resource, M::Error>>,
    pub(crate) runtime: Handle,
    /// Live `Pool` handles; the last one to go closes the pool.
    pub(crate) handles: AtomicUsize,
    /// Wakes the maintenance task early: the pool closed.
    pub(crate) maintenance: Notify,
    /// Wakes the waiter-expiry task: an earlier deadline was queued, or the pool closed.
    pub(crate) expiry: Notify,
    /// Signalled when a closed pool frees a slot, for `drain`.
    pub(crate) slot_freed: Notify,
    pub(crate) leaks: Option<LeakTracker>,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, config: Config, runtime: Handle) -> Self {
        Self {
            engine: Mutex::new(Engine::new(&config)),
            leaks: config.leak_threshold.map(LeakTracker::new),
            manager,
            config,
            runtime,
            handles: AtomicUsize::new(1),
            maintenance: Notify::new(),
            expiry: Notify::new(),
            slot_freed: Notify::new(),
        }
    }

    /// The lifetime deadline of a resource created at `now`: `max_lifetime` shortened by a random
    /// fraction of up to `lifetime_jitter`, so resources created together do not expire together.
    pub(crate) fn expiry_for(&self, now: Instant) -> Option<Instant> {
        self.config.max_lifetime.map(|lifetime| {
            let jitter = lifetime.mul_f64(self.config.lifetime_jitter * fastrand::f64());
            now + (lifetime - jitter)
        })
    }

    /// Whether `get()` must run `check` on this idle resource before handing it out.
    pub(crate) fn needs_check(&self, entry: &Entry<M::Resource>, now: Instant) -> bool {
        self.config.check_on_get
            && now.saturating_duration_since(entry.meta.last_active()) >= self.config.check_window
    }

    /// Gives back a resource a caller held since `acquired_at` (the `Pooled` drop path).
    pub(crate) fn give_back(
        self: &Arc<Self>,
        mut entry: Entry<M::Resource>,
        acquired_at: Instant,
        leak_id: Option<u64>,
    ) {
        let now = Instant::now();
        if let (Some(leaks), Some(id)) = (&self.leaks, leak_id) {
            leaks.unregister(id, now);
        }
        let reusable = catch_unwind(AssertUnwindSafe(|| {
            self.manager.is_reusable(&mut entry.resource)
        }));
        let reason = match reusable {
            Ok(true) if entry.meta.is_expired(now) => Some(CloseReason::Lifetime),
            Ok(true) => None,
            Ok(false) => Some(CloseReason::Broken),
            Err(_) => {
                tracing::error!("millpond: Manager::is_reusable panicked; closing the resource");
                Some(CloseReason::Broken)
            }
        };
        if let Some(reason) = reason {
            self.discard(entry, reason);
            return;
        }
        entry.meta.mark_used(now);
        let held = now.saturating_duration_since(acquired_at);
        let handoff = self.engine.lock().release(entry, held);
        self.finish(handoff);
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
        let creations = {
            let mut engine = self.engine.lock();
            engine.discard(reason);
            engine.plan_creations(Instant::now())
        };
        self.spawn_creations(creations);
        self.close_resource(entry, reason);
        self.notify_if_closed();
    }

    /// Starts a replacement after the engine already freed a slot (an expired idle resource).
    pub(crate) fn refill(self: &Arc<Self>) {
        let creations = self.engine.lock().plan_creations(Instant::now());
        self.spawn_creations(creations);
    }

    /// Frees the slot of a resource the caller took out of the pool with `Pooled::take`.
    pub(crate) fn detach(self: &Arc<Self>, leak_id: Option<u64>) {
        if let (Some(leaks), Some(id)) = (&self.leaks, leak_id) {
            leaks.unregister(id, Instant::now());
        }
        let creations = {
            let mut engine = self.engine.lock();
            engine.detach();
            engine.plan_creations(Instant::now())
        };
        self.spawn_creations(creations);
        self.notify_if_closed();
    }

    pub(crate) fn close_resource(&self, entry: Entry<M::Resource>, reason: CloseReason) {
        self.manager.on_close(entry.resource, reason);
    }

    /// Starts the background work a `get()` poll asked for.
    pub(crate) fn start(self: &Arc<Self>, wake: Wake) {
        self.spawn_creations(wake.creations);
        if wake.expiry {
            self.expiry.notify_one();
        }
    }

    pub(crate) fn spawn_creations(self: &Arc<Self>, count: usize) {
        for _ in 0..count {
            self.runtime.spawn(super::create::run(Arc::clone(self)));
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
        let (idle, wakers) = self.engine.lock().close();
        wakers.into_iter().for_each(std::task::Waker::wake);
        for entry in idle {
            self.close_resource(entry, CloseReason::PoolClosed);
        }
        self.maintenance.notify_one();
        self.expiry.notify_one();
        self.slot_freed.notify_waiters();
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
