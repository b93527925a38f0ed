//! Counters and the queue-wait and run-time histograms, kept in per-thread shards so that workers on different
//! cores do not write one cache line per task.

use crate::histogram::DurationHistogram;
use crate::sync::{CachePadded, Mutex};

/// A snapshot of a worker pool, from [`WorkerPool::stats`](super::WorkerPool::stats).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stats {
    /// Workers alive.
    pub workers: usize,
    /// How far past its overload limits the pool is now: 0 within them, 1 when it refuses and
    /// sheds [`Priority::Low`](super::Priority::Low) work, 2 when it refuses
    /// [`Priority::Normal`](super::Priority::Normal) work too (see [`Priority`](super::Priority)).
    pub degradation: u8,
    /// Workers running a task.
    pub busy: usize,
    /// Workers waiting for a task.
    pub idle: usize,
    /// Tasks queued, not yet started.
    pub queued: usize,
    /// Tasks queued per worker, for the per-worker scheduler; empty for the shared queue.
    pub queued_per_worker: Vec<usize>,
    /// Tasks that ran to the end (panicked ones included).
    pub completed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Submits refused: full, closed, timed out, from inside the pool, rate-limited, or
    /// low-priority under overload.
    pub rejected: u64,
    /// Tasks dropped before they started: past `max_queue_wait`, or low-priority under overload.
    pub shed: u64,
    /// How long tasks waited in the queue before a worker started them.
    pub queue_wait: DurationHistogram,
    /// How long tasks ran, from their start to their end (panicked ones included; shed ones,
    /// which never ran, not).
    pub run_time: DurationHistogram,
}

#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) queue_wait: DurationHistogram,
    pub(crate) run_time: DurationHistogram,
    pub(crate) completed: u64,
    pub(crate) panicked: u64,
}

pub(crate) struct Shards(Box<[CachePadded<Mutex<Shard>>]>);

impl Shards {
    pub(crate) fn new() -> Self {
        let count =
            std::thread::available_parallelism().map_or(4, |n| n.get() * 2).next_power_of_two();
        Self((0..count).map(|_| CachePadded(Mutex::new(Shard::default()))).collect())
    }

    /// The calling thread's shard.
    #[inline]
    pub(crate) fn local(&self) -> &Mutex<Shard> {
        &self.0[crate::sync::thread_index() & (self.0.len() - 1)]
    }

    /// Every shard's counts, merged.
    pub(crate) fn merged(&self) -> Shard {
        let mut total = Shard::default();
        for shard in &*self.0 {
            let shard = shard.lock();
            total.queue_wait.merge(&shard.queue_wait);
            total.run_time.merge(&shard.run_time);
            total.completed += shard.completed;
            total.panicked += shard.panicked;
        }
        total
    }
}
