//! Admission control: rate limits at submit, and overload protection that sheds low-priority
//! and stale work so the rest keeps its latency.
//!
//! - **Rate limits** (token buckets, `crate::rate`): one for the whole pool and one per key,
//!   checked before a submit takes queue room; a refused task comes back in
//!   `SubmitError::RateLimited`.
//! - **Stale work.** A task that waited in the queue longer than `max_queue_wait` is dropped
//!   when a worker reaches it, before it runs; its handle says `TaskError::Shed`. During a spike
//!   that work is usually no longer wanted, and running it only lengthens the spike.
//! - **Priorities.** While the pool is overloaded (more than `overload_queue_len` tasks queued,
//!   or the last task a worker started had waited longer than `overload_queue_wait`: a standing
//!   queue), low-priority submits are refused with `SubmitError::Overloaded` and low-priority
//!   tasks already queued are shed when reached. High-priority work is never refused for load.
//!   The queue stays first in, first out, so under normal load a low-priority task waits no
//!   longer than a high-priority one: it is never starved, only shed when the pool is over its
//!   limits, and admitted again as soon as it is back under them.

use std::time::Duration;

use super::inner::Refused;
use super::job::Job;
use crate::rate::{KeyedBuckets, TokenBucket};
use crate::sync::{AtomicU64, Ordering};

/// How much a task matters when the pool is overloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// Core work: never refused or shed for load (the default).
    #[default]
    High,
    /// Work that can wait for a quieter moment or be dropped: refused and shed first.
    Low,
}

/// When the pool counts as overloaded.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overload {
    pub(crate) queue_len: Option<usize>,
    pub(crate) queue_wait: Option<Duration>,
}

impl Overload {
    fn is_set(self) -> bool {
        self.queue_len.is_some() || self.queue_wait.is_some()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub(crate) rate: Option<TokenBucket>,
    pub(crate) per_key: Option<KeyedBuckets>,
    pub(crate) overload: Overload,
    pub(crate) max_queue_wait: Option<Duration>,
    /// How long the last task a worker started had waited, in nanoseconds.
    last_wait_ns: AtomicU64,
    shed: AtomicU64,
}

impl Admission {
    pub(crate) fn new(
        rate: Option<TokenBucket>,
        per_key: Option<KeyedBuckets>,
        overload: Overload,
        max_queue_wait: Option<Duration>,
    ) -> Self {
        Self { rate, per_key, overload, max_queue_wait, ..Self::default() }
    }

    /// Whether queued jobs may be shed, so that they need a way to tell their handle.
    pub(crate) fn may_shed(&self) -> bool {
        self.max_queue_wait.is_some() || self.overload.is_set()
    }

    /// Lets a submit in, or says why not; `queued` counts the tasks waiting now.
    pub(crate) fn admit(
        &self,
        key: Option<u64>,
        priority: Priority,
        queued: impl FnOnce() -> usize,
    ) -> Result<(), Refused> {
        if priority == Priority::Low && self.is_overloaded(queued) {
            return Err(Refused::Overloaded);
        }
        if let (Some(buckets), Some(key)) = (&self.per_key, key) {
            buckets.try_take(key).map_err(|_| Refused::RateLimited)?;
        }
        if let Some(bucket) = &self.rate {
            bucket.try_take().map_err(|_| Refused::RateLimited)?;
        }
        Ok(())
    }

    fn is_overloaded(&self, queued: impl FnOnce() -> usize) -> bool {
        let waiting_too_long = self.overload.queue_wait.is_some_and(|limit| {
            self.last_wait_ns.load(Ordering::Relaxed)
                > u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX)
        });
        waiting_too_long || self.overload.queue_len.is_some_and(|limit| queued() > limit)
    }

    /// Decides, as a worker reaches `job` after it waited `waited`, whether to drop it unrun.
    pub(crate) fn should_shed(
        &self,
        job: &Job,
        waited: Duration,
        queued: impl FnOnce() -> usize,
    ) -> bool {
        if self.overload.queue_wait.is_some() {
            let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.last_wait_ns.store(nanos, Ordering::Relaxed);
        }
        let stale = self.max_queue_wait.is_some_and(|limit| waited > limit);
        let shed = stale || (job.priority == Priority::Low && self.is_overloaded(queued));
        if shed {
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
        shed
    }

    pub(crate) fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}
