//! The pool's figures: per-thread shards for what every job updates (so threads on different
//! cores do not write one cache line per job), plain atomics for the rare events.

use std::time::Duration;

use crate::histogram::DurationHistogram;
use crate::sync::{AtomicU64, AtomicUsize, CachePadded, Mutex, Ordering::Relaxed};

/// A snapshot of a blocking pool, from [`BlockingPool::stats`](super::BlockingPool::stats).
///
/// The figures are read one after another while the pool works, so they need not add up
/// exactly at any one instant.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stats {
    /// Threads alive (started and not yet exited).
    pub threads: usize,
    /// Threads waiting for a job.
    pub idle: usize,
    /// Jobs running now (on the pool's threads, or on a submitter's under `CallerRuns`).
    pub running: usize,
    /// Jobs queued and not yet started.
    pub queued: usize,
    /// Jobs that ran to the end, panicked ones included (those run on a submitter's thread
    /// under `CallerRuns` too).
    pub completed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Submits that found the queue full or the pool shut down, whatever the rejection policy
    /// then did with them.
    pub rejected: u64,
    /// Of those, jobs run on the submitter's thread
    /// ([`RejectionPolicy::CallerRuns`](super::RejectionPolicy::CallerRuns)).
    pub ran_on_caller: u64,
    /// Queued jobs dropped for newer ones
    /// ([`RejectionPolicy::DropOldest`](super::RejectionPolicy::DropOldest)).
    pub evicted: u64,
    /// Queued jobs dropped unrun at a [`shutdown_timeout`](super::BlockingPool::shutdown_timeout)
    /// deadline.
    pub cancelled: u64,
    /// How long jobs waited in the queue before a thread started them.
    pub queue_wait: DurationHistogram,
    /// How long jobs ran.
    pub run_time: DurationHistogram,
}

#[derive(Default)]
struct Shard {
    queue_wait: DurationHistogram,
    run_time: DurationHistogram,
    completed: u64,
    panicked: u64,
}

#[derive(Default)]
struct Slot {
    running: AtomicUsize,
    shard: Mutex<Shard>,
}

pub(crate) struct Recorder {
    slots: Box<[CachePadded<Slot>]>,
    pub(crate) rejected: AtomicU64,
    pub(crate) ran_on_caller: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) cancelled: AtomicU64,
}

/// A job started on the calling thread; `finish` records it.
pub(crate) struct Running<'a> {
    slot: &'a Slot,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        let count =
            std::thread::available_parallelism().map_or(4, |n| n.get() * 2).next_power_of_two();
        Self {
            slots: (0..count).map(|_| CachePadded(Slot::default())).collect(),
            rejected: AtomicU64::new(0),
            ran_on_caller: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        }
    }

    /// Counts a job as running on the calling thread.
    #[inline]
    pub(crate) fn start(&self) -> Running<'_> {
        let slot = &self.slots[crate::sync::thread_index() & (self.slots.len() - 1)];
        // Relaxed: a figure for reports; nothing is published through it.
        slot.running.fetch_add(1, Relaxed);
        Running { slot }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut total = Shard::default();
        let mut running = 0;
        for slot in &*self.slots {
            running += slot.running.load(Relaxed);
            let shard = slot.shard.lock();
            total.queue_wait.merge(&shard.queue_wait);
            total.run_time.merge(&shard.run_time);
            total.completed += shard.completed;
            total.panicked += shard.panicked;
        }
        Snapshot {
            running,
            completed: total.completed,
            panicked: total.panicked,
            queue_wait: total.queue_wait,
            run_time: total.run_time,
        }
    }
}

impl Running<'_> {
    /// Records the job as finished: how long it waited (none for a job run by its submitter),
    /// how long it ran, and whether it panicked.
    #[inline]
    pub(crate) fn finish(self, queue_wait: Option<Duration>, run_time: Duration, panicked: bool) {
        self.slot.running.fetch_sub(1, Relaxed);
        let mut shard = self.slot.shard.lock();
        if let Some(wait) = queue_wait {
            shard.queue_wait.record(wait);
        }
        shard.run_time.record(run_time);
        shard.completed += 1;
        shard.panicked += u64::from(panicked);
    }
}

/// The sharded part of [`Stats`], merged.
pub(crate) struct Snapshot {
    pub(crate) running: usize,
    pub(crate) completed: u64,
    pub(crate) panicked: u64,
    pub(crate) queue_wait: DurationHistogram,
    pub(crate) run_time: DurationHistogram,
}
