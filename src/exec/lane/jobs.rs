//! Where a lane keeps its queued jobs: async-channel's queue, used without its async half.
//!
//! A shared lane keeps every job in one [`Jobs`]; a per-worker lane keeps two, one for the jobs
//! only its worker may take (keyed) and one for those idle workers may steal. A bounded
//! channel is a lock-free ring of `capacity` slots, allocated once; above
//! [`PREALLOCATED_UP_TO`] it grows in segments as jobs arrive instead, since the lane bounds
//! the room anyway.
//!
//! The lane counts room itself (`Lane::occupied`), before a job exists, so a push here never
//! finds the queue full, and nothing here waits: parking is the lane's `Signal`s.
//!
//! # Why not crossbeam-deque for the stealable jobs
//!
//! A `crossbeam_deque::Injector` per lane was the first design: lock-free, with a batch steal
//! in one operation. But an injector allocates its first 63-slot block when it is created, and
//! a thief's `crossbeam_deque::Worker` 64 slots on its first steal: in the sleep workload of
//! `benches/exec.rs` (1,000 workers) the per-worker pools peaked at 6.9–8.5 MiB of heap against
//! 1.1 MiB for the shared queue, which has one channel. A channel per lane sized to the lane's
//! share of the capacity costs a slot per queued job, and a thief takes its batch with a few
//! pops into a stash of at most `STEAL_BATCH - 1` jobs.
//!
//! Under `--cfg millpond_loom` a [`Jobs`] is a mutexed `VecDeque` with the same methods, since
//! loom cannot see inside the package (which brings its own verification); the models check
//! the protocols the lane builds on top of it.

use std::collections::VecDeque;

/// Above this capacity a queue grows in segments as jobs arrive instead of allocating every
/// slot up front: a generous `queue_capacity` should not cost its full size in memory while
/// the queue is short.
#[cfg(not(millpond_loom))]
const PREALLOCATED_UP_TO: usize = 4096;

/// Jobs a thief took beyond the one it runs at once: it runs them before its own lane's.
pub(crate) type Stash<J> = VecDeque<J>;

#[cfg(not(millpond_loom))]
pub(crate) struct Jobs<J> {
    sender: async_channel::Sender<J>,
    receiver: async_channel::Receiver<J>,
}

#[cfg(not(millpond_loom))]
impl<J> Jobs<J> {
    pub(crate) fn new(capacity: usize) -> Self {
        let (sender, receiver) = if capacity <= PREALLOCATED_UP_TO {
            async_channel::bounded(capacity.max(1))
        } else {
            async_channel::unbounded()
        };
        Self { sender, receiver }
    }

    /// Queues a job into room the lane reserved for it. The job comes back only if the room
    /// was not there, which the lane's accounting rules out.
    pub(crate) fn push(&self, job: J) -> Result<(), J> {
        self.sender.try_send(job).map_err(async_channel::TrySendError::into_inner)
    }

    pub(crate) fn pop(&self) -> Option<J> {
        self.receiver.try_recv().ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.receiver.len()
    }
}

#[cfg(millpond_loom)]
pub(crate) struct Jobs<J>(crate::sync::Mutex<VecDeque<J>>);

#[cfg(millpond_loom)]
impl<J> Jobs<J> {
    pub(crate) fn new(_capacity: usize) -> Self {
        Self(crate::sync::Mutex::new(VecDeque::new()))
    }

    pub(crate) fn push(&self, job: J) -> Result<(), J> {
        self.0.lock().push_back(job);
        Ok(())
    }

    pub(crate) fn pop(&self) -> Option<J> {
        self.0.lock().pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().len()
    }
}

impl<J> Jobs<J> {
    /// Takes the oldest job to run now, and up to `limit - 1` more (at most half of what is
    /// left, so the victim keeps work of its own) into `stash`.
    pub(crate) fn steal_batch(&self, stash: &mut Stash<J>, limit: usize) -> Option<J> {
        let first = self.pop()?;
        let more = (self.len() / 2).min(limit.saturating_sub(1));
        stash.extend(std::iter::from_fn(|| self.pop()).take(more));
        Some(first)
    }
}
