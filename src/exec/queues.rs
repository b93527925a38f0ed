//! The two schedulers' queues behind one interface: reserve room, commit a job, take a job.
//!
//! * **Shared queue**: one [`Lane`] that every worker pulls from. Any idle worker takes the next
//!   job, so no job waits behind a slow one while a worker is free; the cost is that every
//!   submit and every take meet on one lock.
//! * **Per-worker queues**: one lane per worker. A [`Balancer`] picks the lane of each unkeyed
//!   job (falling back to any lane with room when the picked one is full); a keyed job always
//!   goes to its key's lane, so jobs with one key run in order. With stealing on, a worker whose
//!   lane is empty takes the oldest unkeyed job of another lane.
//!
//! # Load counters
//!
//! Strategies that read loads (least-loaded, power of two) see, per worker, the jobs queued on
//! its lane plus the one it runs. The counter is raised before a job is committed and lowered
//! when the job is done; a steal moves one unit from the victim to the thief before the thief
//! runs it. Every raise is matched by exactly one lower, so the counters return to zero when the
//! pool is idle (a loom model checks it): a counter that drifted upward would starve its worker
//! forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::job::Job;
use super::lane::{Lane, NoRoom};
use super::waiters::{Slot, Waiters};
use crate::balance::{Balancer, KeyHash, Loads};
use crate::sync::{Arc, AtomicUsize, CachePadded, Mutex, Ordering};

pub(crate) enum Queues {
    Shared(Lane<Job>),
    PerWorker(PerWorker),
}

pub(crate) struct PerWorker {
    lanes: Box<[Lane<Job>]>,
    loads: Box<[CachePadded<AtomicUsize>]>,
    balancer: Arc<dyn Balancer>,
    /// Whether the balancer reads loads; the counters are kept only then.
    tracks_loads: bool,
    stealing: bool,
    /// Workers with an empty lane, waiting to steal.
    thieves: Mutex<Waiters>,
}

struct LaneLoads<'a>(&'a [CachePadded<AtomicUsize>]);

impl Loads for LaneLoads<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn load(&self, index: usize) -> usize {
        // Relaxed: a load is a hint for the pick; a stale one costs balance, not correctness.
        self.0[index].load(Ordering::Relaxed)
    }
}

impl Queues {
    pub(crate) fn shared(capacity: usize) -> Self {
        Self::Shared(Lane::new(capacity))
    }

    /// Per-worker lanes splitting `capacity` between `workers` (each at least 1).
    pub(crate) fn per_worker(
        workers: usize,
        capacity: usize,
        balancer: Arc<dyn Balancer>,
        tracks_loads: bool,
        stealing: bool,
    ) -> Self {
        let lanes = (0..workers)
            .map(|index| Lane::new(capacity / workers + usize::from(index < capacity % workers)))
            .collect();
        let loads = (0..workers).map(|_| CachePadded(AtomicUsize::new(0))).collect();
        Self::PerWorker(PerWorker {
            lanes,
            loads,
            balancer,
            tracks_loads,
            stealing,
            thieves: Mutex::new(Waiters::default()),
        })
    }

    pub(crate) fn lane(&self, index: usize) -> &Lane<Job> {
        match self {
            Self::Shared(lane) => lane,
            Self::PerWorker(per_worker) => &per_worker.lanes[index],
        }
    }

    pub(crate) fn lane_count(&self) -> usize {
        match self {
            Self::Shared(_) => 1,
            Self::PerWorker(per_worker) => per_worker.lanes.len(),
        }
    }

    /// The lane a job should go to first.
    fn pick(&self, key: Option<u64>) -> usize {
        match self {
            Self::Shared(_) => 0,
            Self::PerWorker(per_worker) => match key {
                Some(key) => KeyHash::target(key, per_worker.lanes.len()),
                None => per_worker.balancer.pick(&LaneLoads(&per_worker.loads), None),
            },
        }
    }

    /// Reserves room without waiting: in the picked lane, else (unkeyed, per-worker) in the
    /// first other lane with room. `Err((lane, why))` names the lane to wait on.
    pub(crate) fn try_reserve(&self, key: Option<u64>) -> Result<usize, (usize, NoRoom)> {
        let first = self.pick(key);
        match self.lane(first).try_reserve() {
            Ok(()) => return Ok(first),
            Err(NoRoom::Closed) => return Err((first, NoRoom::Closed)),
            Err(NoRoom::Full) => {}
        }
        if key.is_none() {
            let count = self.lane_count();
            for step in 1..count {
                let index = (first + step) % count;
                if self.lane(index).try_reserve().is_ok() {
                    return Ok(index);
                }
            }
        }
        Err((first, NoRoom::Full))
    }

    /// Waits for room in `lane`.
    pub(crate) fn reserve(&self, lane: usize) -> Reserve<'_> {
        Reserve { lane: self.lane(lane), slot: None }
    }

    /// Queues a job into room reserved in `lane`. Returns whether an idle worker took notice.
    pub(crate) fn commit(&self, lane: usize, job: Job) -> bool {
        match self {
            Self::Shared(shared) => shared.commit(job),
            Self::PerWorker(per_worker) => {
                let stealable = !job.keyed;
                if per_worker.tracks_loads {
                    // Raised before the job is visible, so its worker's lower can never come
                    // first and wrap the counter.
                    per_worker.loads[lane].fetch_add(1, Ordering::AcqRel);
                }
                let noticed = per_worker.lanes[lane].commit(job);
                if !noticed && stealable && per_worker.stealing {
                    // The lane's worker is busy: let an idle worker come and steal it.
                    let thief = per_worker.thieves.lock().notify_one();
                    if let Some(thief) = thief {
                        thief.wake();
                        return true;
                    }
                }
                noticed
            }
        }
    }

    /// Marks the job a worker of `lane` took as done, for the load counters.
    pub(crate) fn done(&self, lane: usize) {
        if let Self::PerWorker(per_worker) = self {
            if per_worker.tracks_loads {
                per_worker.loads[lane].fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Waits for the next job for the worker of `lane`.
    pub(crate) fn next_job(&self, lane: usize) -> NextJob<'_> {
        let interrupts = self.lane(lane).interrupts();
        NextJob { queues: self, lane, interrupts, own: None, thief: None }
    }

    /// Whether the queues take no more jobs.
    pub(crate) fn is_closed(&self) -> bool {
        self.lane(0).is_closed()
    }

    pub(crate) fn close(&self) {
        (0..self.lane_count()).for_each(|lane| self.lane(lane).close());
        if let Self::PerWorker(per_worker) = self {
            let thieves = per_worker.thieves.lock().notify_all();
            thieves.into_iter().for_each(Waker::wake);
        }
    }

    /// Wakes every waiting submitter and every task awaiting a queued job's handle.
    pub(crate) fn wake_stranded(&self) {
        for lane in 0..self.lane_count() {
            self.lane(lane).wake_stranded(|job| job.future.handle_waker());
        }
    }

    /// Closes every lane for good and returns the jobs still queued.
    pub(crate) fn kill(&self) -> Vec<Job> {
        let jobs = (0..self.lane_count()).flat_map(|lane| self.lane(lane).kill()).collect();
        if let Self::PerWorker(per_worker) = self {
            let thieves = per_worker.thieves.lock().notify_all();
            thieves.into_iter().for_each(Waker::wake);
        }
        jobs
    }

    /// Tasks queued (or about to be) over every lane, read without locks.
    pub(crate) fn queued(&self) -> usize {
        (0..self.lane_count()).map(|lane| self.lane(lane).occupied()).sum()
    }

    /// The load counters, for the loom model of their balance.
    #[cfg(all(test, millpond_loom))]
    pub(crate) fn loads(&self) -> Vec<usize> {
        match self {
            Self::Shared(_) => Vec::new(),
            Self::PerWorker(per_worker) => {
                per_worker.loads.iter().map(|load| load.load(Ordering::Acquire)).collect()
            }
        }
    }

    fn steal_for(per_worker: &PerWorker, thief: usize) -> Option<Job> {
        let count = per_worker.lanes.len();
        for step in 1..count {
            let victim = (thief + step) % count;
            if let Some(job) = per_worker.lanes[victim].steal() {
                if per_worker.tracks_loads {
                    // The unit moves with the job: raise the thief before lowering the victim,
                    // so the pair never reads as less work than there is.
                    per_worker.loads[thief].fetch_add(1, Ordering::AcqRel);
                    per_worker.loads[victim].fetch_sub(1, Ordering::AcqRel);
                }
                return Some(job);
            }
        }
        None
    }
}

/// Waits for room in one lane; cancellation safe.
pub(crate) struct Reserve<'a> {
    lane: &'a Lane<Job>,
    slot: Slot,
}

impl Future for Reserve<'_> {
    type Output = Result<(), NoRoom>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.lane.poll_reserve(cx, &mut this.slot)
    }
}

impl Drop for Reserve<'_> {
    fn drop(&mut self) {
        self.lane.cancel_reserve(&mut self.slot);
    }
}

/// A worker waiting for its next job: from its lane, else (stealing) from another lane.
/// Cancellation safe: an idle worker that times out drops it and loses nothing.
pub(crate) struct NextJob<'a> {
    queues: &'a Queues,
    lane: usize,
    interrupts: u64,
    own: Slot,
    thief: Slot,
}

/// What a waiting worker gets.
pub(crate) enum Next {
    Job(Job),
    /// Closed and drained: the worker stops.
    Closed,
    /// The pool was resized: the worker checks whether it should retire.
    Interrupted,
}

impl Future for NextJob<'_> {
    type Output = Next;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Next> {
        let this = &mut *self;
        let lane = this.queues.lane(this.lane);
        match lane.poll_pop(cx, &mut this.own) {
            Poll::Ready(Some(job)) => return Poll::Ready(Next::Job(job)),
            Poll::Ready(None) => return Poll::Ready(Next::Closed),
            Poll::Pending => {}
        }
        if lane.interrupts() != this.interrupts {
            return Poll::Ready(Next::Interrupted);
        }
        let Queues::PerWorker(per_worker) = this.queues else {
            return Poll::Pending;
        };
        if !per_worker.stealing {
            return Poll::Pending;
        }
        // Register as a thief before looking, so a job committed after the look wakes us.
        per_worker.thieves.lock().register(&mut this.thief, cx.waker());
        match Queues::steal_for(per_worker, this.lane) {
            // Our own pop registration is withdrawn by `drop`.
            Some(job) => Poll::Ready(Next::Job(job)),
            None => Poll::Pending,
        }
    }
}

impl Drop for NextJob<'_> {
    fn drop(&mut self) {
        self.queues.lane(self.lane).cancel_pop(&mut self.own);
        if let Queues::PerWorker(per_worker) = self.queues {
            if self.thief.is_some() {
                let passed_on = {
                    let mut thieves = per_worker.thieves.lock();
                    if thieves.remove(&mut self.thief) { thieves.notify_one() } else { None }
                };
                if let Some(thief) = passed_on {
                    thief.wake();
                }
            }
        }
    }
}
