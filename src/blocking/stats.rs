//! The pool's figures: per-thread shards for what every job updates (so threads on different
//! cores do not write one cache line per job), plain atomics for the rare events.
//!
//! Timing is sampled when jobs are tiny. Two clock readings per job (queue wait from the submit,
//! run time) were a sixth of the CPU a no-op job costs, so while the jobs measured last ran
//! under `TINY` the submitters stamp only about one job in `SAMPLE_PERIOD` (a jittered countdown
//! per submitting thread, so a workload that alternates in step with the period is still seen
//! in both kinds). A measured job is recorded with a weight covering the unmeasured jobs its
//! shard ran since the one before, and a snapshot counts the unmeasured ones since with the
//! last measured values, so the histograms' counts are exact and their values are measured
//! ones. Jobs that run `TINY` or longer are all measured: a reading is nothing beside them.

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

/// Jobs shorter than this are timed one in `SAMPLE_PERIOD` on average.
const TINY: Duration = Duration::from_micros(50);
const SAMPLE_PERIOD: u32 = 16;

#[derive(Default)]
struct Shard {
    queue_wait: DurationHistogram,
    run_time: DurationHistogram,
    /// The latest measured job's figures, standing for the unmeasured ones since.
    last_wait: Duration,
    last_run: Duration,
    panicked: u64,
}

#[derive(Default)]
struct Slot {
    running: AtomicUsize,
    /// Jobs finished on this shard (panicked ones included).
    completed: AtomicU64,
    /// Jobs finished on this shard without timing since the last measured one.
    unmeasured: AtomicU64,
    shard: Mutex<Shard>,
}

thread_local! {
    /// Submits left before this thread stamps a job while jobs are tiny.
    static COUNTDOWN: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

pub(crate) struct Recorder {
    slots: Box<[CachePadded<Slot>]>,
    /// Whether the jobs measured last ran under `TINY`: then submits stamp only a sample.
    tiny: crate::sync::process::AtomicBool,
    pub(crate) rejected: AtomicU64,
    pub(crate) ran_on_caller: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) cancelled: AtomicU64,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        let count =
            std::thread::available_parallelism().map_or(4, |n| n.get() * 2).next_power_of_two();
        Self {
            slots: (0..count).map(|_| CachePadded(Slot::default())).collect(),
            tiny: crate::sync::process::AtomicBool::new(false),
            rejected: AtomicU64::new(0),
            ran_on_caller: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        }
    }

    /// Whether a submit should stamp its job with the time (and so have it measured).
    #[inline]
    pub(crate) fn should_measure(&self) -> bool {
        // Relaxed: a hint; a stale value only measures one job more or less.
        if !self.tiny.load(Relaxed) {
            return true;
        }
        COUNTDOWN.with(|countdown| match countdown.get() {
            0 => {
                countdown.set(fastrand::u32(SAMPLE_PERIOD / 2..SAMPLE_PERIOD * 3 / 2));
                true
            }
            left => {
                countdown.set(left - 1);
                false
            }
        })
    }

    /// Counts a job as running on the calling thread.
    #[inline]
    pub(crate) fn start(&self) -> Running<'_> {
        let slot = &self.slots[crate::sync::thread_index() & (self.slots.len() - 1)];
        // Relaxed: a figure for reports; nothing is published through it.
        slot.running.fetch_add(1, Relaxed);
        Running { recorder: self, slot }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut queue_wait = DurationHistogram::default();
        let mut run_time = DurationHistogram::default();
        let (mut running, mut completed, mut panicked) = (0, 0, 0);
        for slot in &*self.slots {
            running += slot.running.load(Relaxed);
            completed += slot.completed.load(Relaxed);
            let shard = slot.shard.lock();
            queue_wait.merge(&shard.queue_wait);
            run_time.merge(&shard.run_time);
            let unmeasured = slot.unmeasured.load(Relaxed);
            queue_wait.record_n(shard.last_wait, unmeasured);
            run_time.record_n(shard.last_run, unmeasured);
            panicked += shard.panicked;
        }
        Snapshot { running, completed, panicked, queue_wait, run_time }
    }
}

/// A job started on the calling thread; `finish` records it.
pub(crate) struct Running<'a> {
    recorder: &'a Recorder,
    slot: &'a Slot,
}

impl Running<'_> {
    /// Records the job as finished. `timing` is `None` for a job that was not measured (a
    /// sample stands for it), else how long it waited in the queue (`None` for a job run by its
    /// submitter) and how long it ran.
    #[inline]
    pub(crate) fn finish(self, timing: Option<(Option<Duration>, Duration)>, panicked: bool) {
        let slot = self.slot;
        slot.running.fetch_sub(1, Relaxed);
        slot.completed.fetch_add(1, Relaxed);
        let Some((queue_wait, run_time)) = timing else {
            slot.unmeasured.fetch_add(1, Relaxed);
            if panicked {
                slot.shard.lock().panicked += 1;
            }
            return;
        };
        let tiny = run_time < TINY;
        if self.recorder.tiny.load(Relaxed) != tiny {
            self.recorder.tiny.store(tiny, Relaxed);
        }
        let mut shard = slot.shard.lock();
        shard.panicked += u64::from(panicked);
        shard.run_time.record(run_time);
        if let Some(wait) = queue_wait {
            // This job stands for itself and the unmeasured ones before it.
            let weight = 1 + slot.unmeasured.swap(0, Relaxed);
            shard.queue_wait.record_n(wait, weight);
            shard.run_time.record_n(run_time, weight - 1);
            shard.last_wait = wait;
            shard.last_run = run_time;
        }
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
