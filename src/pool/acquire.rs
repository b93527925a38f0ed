//! The `get()` path: take an idle resource, check it if it sat idle, or queue for the next one.
//!
//! The fast path takes the pool lock once and touches no timer. Only a caller that has to queue
//! arms the acquire deadline, and it does so around a [`Queue`] it still owns, so that when time
//! runs out it can tell a timeout from a cancellation and collect a resource that arrived at the
//! last moment instead of dropping it.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use super::engine::{Entry, Step};
use super::error::{Error, TimeoutPhase};
use super::manager::{CloseReason, Manager};
use super::shared::Shared;
use super::wait_list::WaiterKey;
use crate::sync::Arc;

/// A resource and the moment it reached its caller.
type Acquired<M> = Result<(Entry<<M as Manager>::Resource>, Instant), Error<<M as Manager>::Error>>;

type StepResult<M> = Result<Step<<M as Manager>::Resource>, Error<<M as Manager>::Error>>;

/// A caller's place in the pool: before the first poll, nothing; then possibly a queued waiter.
struct Queue<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    key: Option<WaiterKey>,
}

impl<M: Manager> Queue<'_, M> {
    fn poll_step(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<StepResult<M>> {
        let (poll, creations) =
            self.shared
                .engine
                .lock()
                .poll_acquire(&mut self.key, cx.waker(), now);
        self.shared.spawn_creations(creations);
        poll
    }

    /// Ends the wait at the deadline: a grant that already arrived is still taken, otherwise the
    /// caller leaves the queue and learns what it was waiting for.
    fn time_out(&mut self) -> StepResult<M> {
        let Some(key) = self.key.take() else {
            return Err(Error::Timeout {
                phase: TimeoutPhase::Wait,
                last_create_error: None,
            });
        };
        let mut engine = self.shared.engine.lock();
        if let Poll::Ready(grant) = engine.poll_waiter(key, Waker::noop(), Instant::now()) {
            return grant.map(Step::Handed);
        }
        let handoff = engine.cancel_waiter(key, true);
        let phase = if engine.waiting_on_creation() {
            TimeoutPhase::Create
        } else {
            TimeoutPhase::Wait
        };
        let last_create_error = engine.last_error();
        drop(engine);
        self.shared.finish(handoff);
        Err(Error::Timeout {
            phase,
            last_create_error,
        })
    }
}

impl<M: Manager> Future for Queue<'_, M> {
    type Output = StepResult<M>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_step(cx, Instant::now())
    }
}

impl<M: Manager> Drop for Queue<'_, M> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let handoff = self.shared.engine.lock().cancel_waiter(key, false);
            self.shared.finish(handoff);
        }
    }
}

/// Holds a resource while the pool checks it; closes it if the check is abandoned or panics.
struct Checking<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    entry: Option<Entry<M::Resource>>,
}

impl<M: Manager> Checking<'_, M> {
    async fn run(&mut self, deadline: Instant) -> Result<(), CheckFailed> {
        let Some(entry) = self.entry.as_mut() else {
            return Err(CheckFailed::Error);
        };
        let check_deadline = Instant::now() + self.shared.config.check_timeout;
        let check = self.shared.manager.check(&mut entry.resource);
        match tokio::time::timeout_at(check_deadline.min(deadline), check).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "millpond: check failed; closing the resource");
                Err(CheckFailed::Error)
            }
            Err(_) if Instant::now() >= deadline => Err(CheckFailed::AcquireDeadline),
            Err(_) => Err(CheckFailed::Error),
        }
    }

    fn keep(mut self, now: Instant) -> Option<Entry<M::Resource>> {
        let mut entry = self.entry.take()?;
        entry.meta.mark_checked(now);
        Some(entry)
    }
}

impl<M: Manager> Drop for Checking<'_, M> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.shared.discard(entry, CloseReason::Broken);
        }
    }
}

enum CheckFailed {
    /// The check failed or hit the check timeout: try another resource.
    Error,
    /// The acquire deadline passed during the check.
    AcquireDeadline,
}

/// Takes a resource for a caller that arrived at `started`, waiting until `deadline` at most.
pub(crate) async fn acquire<M: Manager>(
    shared: &Arc<Shared<M>>,
    started: Instant,
    deadline: Instant,
) -> Acquired<M> {
    let mut now = started;
    loop {
        let mut queue = Queue { shared, key: None };
        // One poll without a timer: the fast path never registers one.
        let step = match poll_fn(|cx| Poll::Ready(queue.poll_step(cx, now))).await {
            Poll::Ready(step) => step,
            Poll::Pending => match tokio::time::timeout_at(deadline, &mut queue).await {
                Ok(step) => step,
                Err(_elapsed) => queue.time_out(),
            },
        }?;
        match step {
            Step::Handed(entry) => return Ok((entry, Instant::now())),
            Step::Expired(entry) => {
                shared.close_resource(entry, CloseReason::Lifetime);
                shared.refill();
            }
            Step::Fresh(entry) if !shared.needs_check(&entry, now) => return Ok((entry, now)),
            Step::Fresh(entry) => {
                let mut checking = Checking {
                    shared,
                    entry: Some(entry),
                };
                match checking.run(deadline).await {
                    Ok(()) => {
                        let checked_at = Instant::now();
                        if let Some(entry) = checking.keep(checked_at) {
                            return Ok((entry, checked_at));
                        }
                    }
                    Err(CheckFailed::Error) => drop(checking),
                    Err(CheckFailed::AcquireDeadline) => {
                        drop(checking);
                        return Err(timed_out(shared, Some(TimeoutPhase::Check)));
                    }
                }
            }
        }
        now = Instant::now();
        if now >= deadline {
            return Err(timed_out(shared, None));
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
    Error::Timeout {
        phase,
        last_create_error: engine.last_error(),
    }
}
