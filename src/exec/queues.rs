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
//! # Stealing
//!
//! Unkeyed jobs of a per-worker lane sit in a queue of their own, which a thief takes a batch
//! of up to [`STEAL_BATCH`] from (at most half of what is there): the first to run at once, the
//! rest into the thief's stash, which it runs before its own lane. A thief looks at a few lanes, not
//! all: the lane a commit last found busy (the commit that woke it), and [`STEAL_SCAN`] more
//! from a random start, taking from the fullest. With a thousand workers, scanning every lane
//! before parking costs more than the steals save.
//!
//! # Load counters
//!
//! Strategies that read loads (least-loaded, power of two) see, per worker, the jobs queued on
//! its lane plus the one it runs. The counter is raised before a job is committed and lowered
//! when the job is done, on the lane the job was committed to, even when a thief ran it. Every
//! raise is matched by exactly one lower, so the counters return to zero when the pool is idle
//! (a loom model checks it): a counter that drifted upward would starve its worker forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::job::Job;
use super::lane::{Lane, Listener, NoRoom, Reserve, Signal, Stash, TryPop, Turn};
use crate::balance::{Balancer, KeyHash, Loads};
use crate::sync::{Arc, AtomicUsize, CachePadded, Ordering};

/// The most jobs one steal takes: enough that an idle worker does not come back for every job
/// of a backed-up lane, few enough that a batch does not wait long behind one slow job.
const STEAL_BATCH: usize = 4;

/// Lanes a thief looks at beyond the hinted one.
const STEAL_SCAN: usize = 8;

#[allow(
    clippy::large_enum_variant,
    reason = "one per pool, inside its shared state: boxing the lane would add a load to every take"
)]
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
    /// Idle workers waiting for a job to steal.
    thieves: Signal,
    /// The lane a commit last found with its worker busy: where a woken thief looks first.
    busy_hint: AtomicUsize,
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
        Self::Shared(Lane::shared(capacity))
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
            .map(|index| {
                Lane::per_worker(capacity / workers + usize::from(index < capacity % workers))
            })
            .collect();
        let loads = (0..workers).map(|_| CachePadded(AtomicUsize::new(0))).collect();
        Self::PerWorker(PerWorker {
            lanes,
            loads,
            balancer,
            tracks_loads,
            stealing,
            thieves: Signal::default(),
            busy_hint: AtomicUsize::new(0),
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
    pub(crate) fn reserve(&self, lane: usize) -> Reserve<'_, Job> {
        self.lane(lane).reserve()
    }

    /// Queues a job into room reserved in `lane`. Returns whether an idle worker took notice.
    pub(crate) fn commit(&self, lane: usize, mut job: Job) -> bool {
        job.lane = lane;
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
                    per_worker.busy_hint.store(lane, Ordering::Relaxed);
                    return per_worker.thieves.notify_one();
                }
                noticed
            }
        }
    }

    /// Marks a job committed to `lane` as done, for the load counters.
    pub(crate) fn done(&self, lane: usize) {
        if let Self::PerWorker(per_worker) = self {
            if per_worker.tracks_loads {
                per_worker.loads[lane].fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Takes the worker of `lane`'s next job without waiting: one it stole earlier, else one of
    /// its lane's.
    pub(crate) fn try_next(
        &self,
        lane: usize,
        turn: &mut Turn,
        stash: &mut Stash<Job>,
    ) -> TryPop<Job> {
        if let Some(job) = stash.pop_front() {
            // A stolen job's room stays claimed in its lane until it starts.
            self.lane(job.lane).release(1);
            return TryPop::Job(job);
        }
        self.lane(lane).try_pop(turn)
    }

    /// Waits for the next job for the worker of `lane`.
    pub(crate) fn next_job<'a>(
        &'a self,
        lane: usize,
        turn: &'a mut Turn,
        stash: &'a mut Stash<Job>,
    ) -> NextJob<'a> {
        let interrupts = self.lane(lane).interrupts();
        NextJob { queues: self, lane, interrupts, turn, stash, own: None, thief: None }
    }

    /// Whether the queues take no more jobs.
    pub(crate) fn is_closed(&self) -> bool {
        self.lane(0).is_closed()
    }

    pub(crate) fn close(&self) {
        (0..self.lane_count()).for_each(|lane| self.lane(lane).close());
        if let Self::PerWorker(per_worker) = self {
            per_worker.thieves.notify_all();
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
            per_worker.thieves.notify_all();
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

    /// Steals for the worker of lane `thief`: from the fullest of the hinted lane and a few
    /// others, a job to run now and up to [`STEAL_BATCH`]` - 1` more into its stash.
    fn steal_for(per_worker: &PerWorker, thief: usize, stash: &mut Stash<Job>) -> Option<Job> {
        let count = per_worker.lanes.len();
        if count < 2 {
            return None;
        }
        let hint = per_worker.busy_hint.load(Ordering::Relaxed) % count;
        // A random start spreads thieves over the lanes; the models need every run replayable.
        let start = if cfg!(millpond_loom) { thief + 1 } else { fastrand::usize(..count) };
        let candidates = std::iter::once(hint)
            .chain((0..STEAL_SCAN.min(count)).map(|step| (start + step) % count));
        let (victim, queued) = candidates
            .filter(|&lane| lane != thief)
            .map(|lane| (lane, per_worker.lanes[lane].stealable_len()))
            .max_by_key(|&(_, queued)| queued)?;
        if queued == 0 {
            return None;
        }
        let job = per_worker.lanes[victim].steal(stash, STEAL_BATCH)?;
        per_worker.lanes[victim].release(1);
        Some(job)
    }
}

/// A worker waiting for its next job: from its lane, else (stealing) from another lane.
/// Cancellation safe: an idle worker that times out drops it and loses nothing.
pub(crate) struct NextJob<'a> {
    queues: &'a Queues,
    lane: usize,
    interrupts: u64,
    turn: &'a mut Turn,
    stash: &'a mut Stash<Job>,
    own: Option<Listener<'a>>,
    thief: Option<Listener<'a>>,
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
        let queues = this.queues;
        let lane = queues.lane(this.lane);
        match lane.poll_pop(cx, this.turn, &mut this.own) {
            Poll::Ready(Some(job)) => {
                this.thief = None;
                return Poll::Ready(Next::Job(job));
            }
            Poll::Ready(None) => return Poll::Ready(Next::Closed),
            Poll::Pending => {}
        }
        if lane.interrupts() != this.interrupts {
            return Poll::Ready(Next::Interrupted);
        }
        let Queues::PerWorker(per_worker) = queues else {
            return Poll::Pending;
        };
        if !per_worker.stealing {
            return Poll::Pending;
        }
        loop {
            if let Some(job) = Queues::steal_for(per_worker, this.lane, this.stash) {
                // Dropping the listeners passes on notifications they may have had.
                this.own = None;
                this.thief = None;
                return Poll::Ready(Next::Job(job));
            }
            match &mut this.thief {
                // Listen before the next look, so a job committed after it wakes us.
                None => this.thief = Some(per_worker.thieves.listen()),
                Some(listener) => {
                    ready!(Pin::new(listener).poll(cx));
                    this.thief = None;
                }
            }
        }
    }
}
