//! The creation task: makes one resource for the pool, retrying with backoff while it is needed.
//!
//! Creation runs in a task of its own rather than in the `get()` that asked for it, so cancelling
//! a `get()` never cancels a connection handshake half-way: the resource goes to the oldest waiter
//! or into the idle set. The task owns one reserved slot from start to end; a guard gives the slot
//! back if the task is dropped early (runtime shutdown) or `create()` panics.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;

use super::engine::{AfterFailure, Entry};
use super::error::CreateError;
use super::guard::Metadata;
use super::manager::Manager;
use super::shared::Shared;
use crate::sync::Arc;

/// Gives the reserved slot back unless the task finished its bookkeeping itself.
struct SlotReservation<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    armed: bool,
}

impl<M: Manager> Drop for SlotReservation<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            let creations = {
                let mut engine = self.shared.engine.lock();
                engine.abandon_creation();
                engine.plan_creations(Instant::now())
            };
            self.shared.spawn_creations(creations);
            self.shared.notify_if_closed();
        }
    }
}

/// Polls a future, turning a panic inside it into `Err(())`.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

pub(crate) async fn run<M: Manager>(shared: Arc<Shared<M>>) {
    let mut reservation = SlotReservation { shared: &shared, armed: true };
    loop {
        let started = Instant::now();
        let timeout = shared.config.create_timeout;
        let attempt = Box::pin(tokio::time::timeout(timeout, shared.manager.create()));
        let error = match CatchUnwind(attempt).await {
            Ok(Ok(Ok(resource))) => {
                let now = Instant::now();
                let entry = Entry { resource, meta: Metadata::new(now, shared.expiry_for(now)) };
                reservation.armed = false;
                let handoff = shared.engine.lock().created(entry, now - started, now);
                shared.finish(handoff);
                // Demand may remain (more waiters, `min_idle` not reached) now that this creation
                // no longer occupies one of the concurrent-creation places.
                shared.refill();
                return;
            }
            Ok(Ok(Err(err))) => CreateError::Failed(err),
            Ok(Err(_elapsed)) => CreateError::TimedOut(timeout),
            Err(()) => {
                tracing::error!("millpond: Manager::create panicked; counted as a failed creation");
                CreateError::Panicked
            }
        };
        if let Some(err) = error.manager_error() {
            tracing::debug!(error = %err, "millpond: creating a resource failed");
        }
        let after = shared.engine.lock().create_failed(error, Instant::now());
        match after {
            AfterFailure::Stop(wakers) => {
                reservation.armed = false;
                wakers.into_iter().for_each(std::task::Waker::wake);
                shared.notify_if_closed();
                return;
            }
            AfterFailure::Retry(delay) => {
                tokio::time::sleep(delay).await;
                if !shared.engine.lock().retry_allowed(Instant::now()) {
                    reservation.armed = false;
                    shared.notify_if_closed();
                    return;
                }
            }
        }
    }
}
