//! The creation task: makes one resource for the pool, retrying with backoff while it is needed.
//!
//! Creation runs in a task of its own rather than in the `get()` that asked for it, so cancelling
//! a `get()` never cancels a connection handshake half-way: the resource goes to the oldest waiter
//! or into the idle set. The task owns one reserved slot from the moment it is spawned: the
//! reservation is made before the spawn and moves into the task's future, so even a future that a
//! shutting-down runtime drops unpolled gives its slot back.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::engine::{AfterFailure, Entry};
use super::error::CreateError;
use super::guard::Metadata;
use super::manager::Manager;
use super::shared::Shared;
use crate::sync::Arc;
use crate::trace::Outcome;
use crate::unwind::contain_async;

/// Told when a creation attempt starts and when the pool gives it up at its create timeout: how
/// a cluster's backend health hears of a timeout from the pool itself, rather than guessing it
/// from a creation future dropped, which a runtime shutting down does too.
pub(crate) trait CreateWatcher: Send + Sync + fmt::Debug {
    /// An attempt starts; the value goes back to [`timed_out`](Self::timed_out).
    fn attempt(&self) -> u64;
    /// The attempt that started with `attempt` ran past the create timeout, `after`.
    fn timed_out(&self, attempt: u64, after: Duration);
}

/// One reserved slot; dropped without [`SlotReservation::settle`], it gives the slot back.
pub(crate) struct SlotReservation<M: Manager> {
    shared: Arc<Shared<M>>,
    armed: bool,
}

impl<M: Manager> SlotReservation<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>) -> Self {
        Self { shared, armed: true }
    }

    /// The engine has accounted for the slot: nothing to give back.
    fn settle(&mut self) {
        self.armed = false;
    }
}

impl<M: Manager> Drop for SlotReservation<M> {
    fn drop(&mut self) {
        if self.armed {
            // Only reached when the task is dropped before it finished (runtime shutdown): free
            // the slot and let the next caller or maintenance tick plan anew, rather than spawn
            // onto a runtime that is going away.
            self.shared.engine.lock().end_creation();
            self.shared.notify_if_closed();
        }
    }
}

pub(crate) async fn run<M: Manager>(mut reservation: SlotReservation<M>) {
    let shared = Arc::clone(&reservation.shared);
    loop {
        let started = Instant::now();
        let timeout = shared.config.create_timeout;
        let watched =
            shared.config.create_watcher.as_ref().map(|watcher| (watcher, watcher.attempt()));
        let span = tracing::debug_span!(
            "pool.create",
            pool = %shared.config.name,
            outcome = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let traced = (!span.is_disabled()).then(|| Outcome::new(span));
        let attempt =
            contain_async("create", || tokio::time::timeout(timeout, shared.manager.create()));
        let attempt = match &traced {
            Some(traced) => attempt.instrument(traced.span().clone()).await,
            None => attempt.await,
        };
        if let Some(traced) = traced {
            let outcome = match &attempt {
                Some(Ok(Ok(_))) => "ok",
                Some(Ok(Err(err))) => {
                    traced.span().record("error", tracing::field::display(err));
                    "failed"
                }
                Some(Err(_)) => "timeout",
                None => "panicked",
            };
            traced.finish(outcome);
        }
        let error = match attempt {
            Some(Ok(Ok(resource))) => {
                let now = Instant::now();
                let entry = Entry { resource, meta: Metadata::new(now, shared.expiry_for(now)) };
                reservation.settle();
                let handoff = shared.engine.lock().created(entry, now - started, now);
                shared.finish(handoff);
                // Demand may remain (more waiters, `min_idle` not reached) now that this creation
                // no longer occupies one of the concurrent-creation places.
                shared.refill();
                return;
            }
            Some(Ok(Err(err))) => CreateError::Failed(err),
            Some(Err(_elapsed)) => {
                if let Some((watcher, attempt)) = watched {
                    watcher.timed_out(attempt, timeout);
                }
                CreateError::TimedOut(timeout)
            }
            None => CreateError::Panicked,
        };
        if let Some(err) = error.manager_error() {
            tracing::debug!(error = %err, "millpond: creating a resource failed");
        }
        let after = shared.engine.lock().create_failed(error, Instant::now());
        match after {
            AfterFailure::Stop(wakers) => {
                reservation.settle();
                wakers.into_iter().for_each(std::task::Waker::wake);
                shared.notify_if_closed();
                return;
            }
            AfterFailure::Retry(delay) => {
                tokio::time::sleep(delay).await;
                if !shared.engine.lock().retry_allowed(Instant::now()) {
                    reservation.settle();
                    shared.notify_if_closed();
                    return;
                }
            }
        }
    }
}
