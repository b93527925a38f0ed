//! The background task that keeps a pool in shape between calls.
//!
//! Every `maintenance_interval` it closes idle resources past their lifetime or idle timeout
//! (never going below `min_idle` for the idle timeout), runs `check` on resources idle longer than
//! the keepalive interval, tops the idle set back up to `min_idle`, and reports leaked checkouts.
//! Replacements are planned through the engine like any other creation, so refilling respects
//! `max_size`, the concurrency bound and the circuit breaker.
//!
//! The task holds the pool's shared state and ends as soon as the pool is closed, which happens
//! when the last `Pool` handle is dropped, so no task outlives the pool.

use tokio::time::Instant;

use super::engine::Entry;
use super::manager::{CloseReason, Manager};
use super::shared::Shared;
use super::unwind::contain_async;
use crate::sync::Arc;

pub(crate) async fn run<M: Manager>(shared: Arc<Shared<M>>) {
    loop {
        if shared.engine.lock().is_closed() {
            return;
        }
        tick(&shared).await;
        let interval = shared.config.maintenance_interval;
        // A close between the check above and here leaves a permit in `notify_one`, so the wait
        // below returns at once instead of missing it.
        let _ = tokio::time::timeout(interval, shared.maintenance.notified()).await;
    }
}

async fn tick<M: Manager>(shared: &Arc<Shared<M>>) {
    let now = Instant::now();
    let reaped = {
        let mut engine = shared.engine.lock();
        // Resources cached on threads are idle too: bring them where reaping can see them.
        if let Some(cache) = shared.local_idle() {
            engine.absorb(cache);
        }
        engine.reap(now, shared.config.idle_timeout)
    };
    for (entry, reason) in reaped {
        shared.close_resource(entry, reason);
    }
    shared.refill();
    if let Some(leaks) = &shared.leaks {
        leaks.scan(now);
    }
    // Keepalive last: its checks may take a while, and must not hold up the rest of the tick.
    if let Some(interval) = shared.config.keepalive {
        // One at a time, so the others stay available to callers while a check runs; a resource
        // just checked is not due again, so this ends. A refill follows any closed ones.
        loop {
            let due = shared.engine.lock().take_for_keepalive(now, interval);
            let Some(entry) = due else { break };
            KeptAlive { shared, entry: Some(entry) }.check().await;
        }
    }
}

/// One idle resource out of the pool for a keepalive check. Dropped mid-check (runtime
/// shutdown), it is closed, so no slot leaks.
struct KeptAlive<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    entry: Option<Entry<M::Resource>>,
}

impl<M: Manager> KeptAlive<'_, M> {
    async fn check(mut self) {
        let Some(entry) = self.entry.as_mut() else { return };
        let timeout = self.shared.config.check_timeout;
        let manager = &self.shared.manager;
        let check = contain_async("check", || {
            tokio::time::timeout(timeout, manager.check(&mut entry.resource))
        });
        let passed = matches!(check.await, Some(Ok(Ok(()))));
        let Some(mut entry) = self.entry.take() else { return };
        if passed {
            let now = Instant::now();
            entry.meta.mark_checked(now);
            let handoff = self.shared.engine.lock().put_back(entry, now);
            self.shared.finish(handoff);
        } else {
            tracing::debug!("millpond: keepalive check failed; closing the resource");
            self.shared.discard(entry, CloseReason::Broken);
        }
    }
}

impl<M: Manager> Drop for KeptAlive<'_, M> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.shared.discard(entry, CloseReason::Broken);
        }
    }
}
