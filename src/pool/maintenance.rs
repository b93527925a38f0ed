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

use super::check::{Checked, Checking};
use super::manager::Manager;
use super::shared::Shared;
use crate::sync::Arc;

pub(crate) async fn run<M: Manager>(shared: Arc<Shared<M>>) {
    loop {
        if shared.engine.lock().is_closed() {
            return;
        }
        tick(&shared).await;
        #[cfg(feature = "metrics")]
        if shared.config.publish_metrics {
            super::publish::publish(&shared);
        }
        let interval = shared.config.maintenance_interval;
        // A close between the check above and here leaves a permit in `notify_one`, so the wait
        // below returns at once instead of missing it.
        let _ = tokio::time::timeout(interval, shared.maintenance.notified()).await;
    }
}

async fn tick<M: Manager>(shared: &Arc<Shared<M>>) {
    let now = Instant::now();
    // Returns to the thread cache stamp resources with their shard's latest reading.
    shared.cache.refresh(now);
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
            // Only the check timeout bounds a keepalive check.
            let mut checking = Checking::new(shared, entry);
            let never = crate::time::after(now, std::time::Duration::MAX);
            if matches!(checking.run(never).await, Checked::Passed) {
                let checked_at = Instant::now();
                if let Some(entry) = checking.keep(checked_at) {
                    let handoff = shared.engine.lock().put_back(entry, checked_at);
                    shared.finish(handoff);
                }
            }
        }
    }
}
