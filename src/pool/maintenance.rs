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
    if let Some(interval) = shared.config.keepalive {
        let due = shared.engine.lock().take_for_keepalive(now, interval);
        KeepaliveBatch { shared, due, current: None }.run().await;
    }
    shared.refill();
    if let Some(leaks) = &shared.leaks {
        leaks.scan(now);
    }
}

/// Idle resources taken out for a keepalive check. If the task is dropped part-way (runtime
/// shutdown), the one under check is closed and the unchecked ones go back, so no slot leaks.
struct KeepaliveBatch<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    due: Vec<Entry<M::Resource>>,
    current: Option<Entry<M::Resource>>,
}

impl<M: Manager> KeepaliveBatch<'_, M> {
    async fn run(mut self) {
        while let Some(entry) = self.due.pop() {
            let entry = self.current.insert(entry);
            let timeout = self.shared.config.check_timeout;
            let check = self.shared.manager.check(&mut entry.resource);
            let passed = matches!(tokio::time::timeout(timeout, check).await, Ok(Ok(())));
            let Some(mut entry) = self.current.take() else {
                continue;
            };
            if passed {
                entry.meta.mark_checked(Instant::now());
                let handoff = self.shared.engine.lock().put_back(entry, Instant::now());
                self.shared.finish(handoff);
            } else {
                tracing::debug!("millpond: keepalive check failed; closing the resource");
                self.shared.discard(entry, CloseReason::Broken);
            }
        }
    }
}

impl<M: Manager> Drop for KeepaliveBatch<'_, M> {
    fn drop(&mut self) {
        if let Some(entry) = self.current.take() {
            self.shared.discard(entry, CloseReason::Broken);
        }
        for entry in self.due.drain(..) {
            let handoff = self.shared.engine.lock().put_back(entry, Instant::now());
            self.shared.finish(handoff);
        }
    }
}
