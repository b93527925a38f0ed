//! Running [`Manager::check`] on a resource the pool holds: under the check timeout, with panics
//! contained, and with the resource closed as broken if the check fails or is abandoned half-way.
//! Used by `get()` for resources that sat idle and by the keepalive of the maintenance task.

use tokio::time::Instant;
use tracing::Instrument;

use super::engine::Entry;
use super::manager::{CloseReason, Manager};
use super::shared::Shared;
use crate::sync::Arc;
use crate::trace::Outcome;
use crate::unwind::contain_async;

/// How a check ended.
pub(crate) enum Checked {
    /// The resource works.
    Passed,
    /// The check failed, panicked, or hit the check timeout.
    Failed,
    /// The caller's own deadline passed first.
    OutOfTime,
}

/// Holds a resource while the pool checks it. Dropped without [`Checking::keep`] (the check
/// failed, or the future running it was dropped, or it panicked), it closes the resource as
/// broken and frees its slot.
pub(crate) struct Checking<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    entry: Option<Entry<M::Resource>>,
}

impl<'a, M: Manager> Checking<'a, M> {
    pub(crate) fn new(shared: &'a Arc<Shared<M>>, entry: Entry<M::Resource>) -> Self {
        Self { shared, entry: Some(entry) }
    }

    /// Runs the check until the check timeout, or `deadline` if that comes first.
    pub(crate) async fn run(&mut self, deadline: Instant) -> Checked {
        let Some(entry) = self.entry.as_mut() else { return Checked::Failed };
        let check_deadline = crate::time::after(Instant::now(), self.shared.config.check_timeout);
        let manager = &self.shared.manager;
        let span = tracing::debug_span!(
            "pool.check",
            pool = %self.shared.config.name,
            outcome = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let traced = (!span.is_disabled()).then(|| Outcome::new(span));
        let check = contain_async("check", || {
            tokio::time::timeout_at(
                check_deadline.min(deadline),
                manager.check(&mut entry.resource),
            )
        });
        let checked = match &traced {
            Some(traced) => check.instrument(traced.span().clone()).await,
            None => check.await,
        };
        let (checked, outcome) = match checked {
            Some(Ok(Ok(()))) => (Checked::Passed, "ok"),
            Some(Ok(Err(err))) => {
                tracing::debug!(error = %err, "millpond: check failed; closing the resource");
                if let Some(traced) = &traced {
                    traced.span().record("error", tracing::field::display(&err));
                }
                (Checked::Failed, "failed")
            }
            Some(Err(_)) if Instant::now() >= deadline => (Checked::OutOfTime, "deadline"),
            Some(Err(_)) => (Checked::Failed, "timeout"),
            None => (Checked::Failed, "panicked"),
        };
        if let Some(traced) = traced {
            traced.finish(outcome);
        }
        checked
    }

    /// Takes the resource back after a passed check, stamped as checked at `now`.
    pub(crate) fn keep(mut self, now: Instant) -> Option<Entry<M::Resource>> {
        let mut entry = self.entry.take()?;
        entry.meta.mark_checked(now);
        Some(entry)
    }
}

impl<M: Manager> Checking<'_, M> {
    /// Takes back a resource that failed its check, for the caller to free its slot in the same
    /// engine step as it queues again (`acquire.rs`); it must then be closed as broken.
    pub(crate) fn into_failed(mut self) -> Option<Entry<M::Resource>> {
        self.entry.take()
    }
}

impl<M: Manager> Drop for Checking<'_, M> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.shared.discard(entry, CloseReason::Broken);
        }
    }
}
