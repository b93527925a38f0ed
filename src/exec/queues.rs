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
use super::lanes::{LaneSet, Route};
use crate::balance::{Balancer, KeyHash, Loads};
use crate::sync::{Arc, AtomicUsize, Ordering, fence};

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
    /// The lanes, which of them are in use, and how a resize changes that (`lanes.rs`).
    lanes: LaneSet,
    balancer: Arc<dyn Balancer>,
    /// Whether the balancer reads loads; the counters are kept only then.
    tracks_loads: bool,
    stealing: bool,
    /// Whether the balancer has one weight per worker, which a resize would leave behind.
    weighted: bool,
    /// Idle workers waiting for a job to steal.
    thieves: Signal,
    /// The lane a commit last found with its worker busy: where a woken thief looks first.
    busy_hint: AtomicUsize,
}

/// Room reserved for a job: the lane to commit it to and, for a keyed job of per-worker queues,
/// the keyed counter of that lane it is counted in until it is done (`lanes.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reserved {
    pub(crate) lane: usize,
    counted: Option<u8>,
}

impl Reserved {
    /// Room in `lane` for a job that is not counted as keyed.
    pub(crate) fn unkeyed(lane: usize) -> Self {
        Self { lane, counted: None }
    }
}

/// Why a reservation that does not wait got none.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// No room in this lane (the key's lane, or the first pick).
    Room(usize),
    /// The key is moving to another lane after a resize: wait for the drain (`lanes.rs`).
    Moving(Route),
    Closed,
}

struct LaneLoads<'a> {
    lanes: &'a LaneSet,
    count: usize,
}

impl Loads for LaneLoads<'_> {
    fn count(&self) -> usize {
        self.count
    }

    fn load(&self, index: usize) -> usize {
        // Relaxed: a load is a hint for the pick; a stale one costs balance, not correctness.
        self.lanes.get(index).load.load(Ordering::Relaxed)
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
        weighted: bool,
    ) -> Self {
        Self::PerWorker(PerWorker {
            lanes: LaneSet::new(workers, capacity),
            balancer,
            tracks_loads,
            stealing,
            weighted,
            thieves: Signal::default(),
            busy_hint: AtomicUsize::new(0),
        })
    }

    pub(crate) fn lane(&self, index: usize) -> &Lane<Job> {
        match self {
            Self::Shared(lane) => lane,
            Self::PerWorker(per_worker) => &per_worker.lanes.get(index).lane,
        }
    }

    /// Lanes that exist, retired ones included: what shutdown and stats visit.
    pub(crate) fn lane_count(&self) -> usize {
        match self {
            Self::Shared(_) => 1,
            Self::PerWorker(per_worker) => per_worker.lanes.allocated(),
        }
    }

    /// Lanes in use: one per worker (per-worker queues), else 1.
    pub(crate) fn active_lanes(&self) -> usize {
        match self {
            Self::Shared(_) => 1,
            Self::PerWorker(per_worker) => per_worker.lanes.route().count,
        }
    }

    /// Reserves room without waiting: in the picked lane, else (unkeyed, per-worker) in the
    /// first other lane in use with room.
    pub(crate) fn try_reserve(&self, key: Option<u64>) -> Result<Reserved, Wait> {
        match self {
            Self::Shared(lane) => match lane.try_reserve() {
                Ok(()) => Ok(Reserved::unkeyed(0)),
                Err(NoRoom::Full) => Err(Wait::Room(0)),
                Err(NoRoom::Closed) => Err(Wait::Closed),
            },
            Self::PerWorker(per_worker) => per_worker.try_reserve(key),
        }
    }

    /// Waits for room in `lane`.
    pub(crate) fn reserve(&self, lane: usize) -> Reserve<'_, Job> {
        self.lane(lane).reserve()
    }

    /// Takes room a waiting reserve claimed in `lane` for a job of `key`; `None` when a resize
    /// routes the key elsewhere meanwhile (the room is given back: reserve again).
    pub(crate) fn claimed(&self, lane: usize, key: Option<u64>) -> Option<Reserved> {
        match (self, key) {
            (Self::PerWorker(per_worker), Some(key)) => {
                let route = per_worker.lanes.route();
                if route.moves(key) || KeyHash::target(key, route.count) != lane {
                    per_worker.lanes.get(lane).lane.release(1);
                    return None;
                }
                per_worker.count_keyed(lane, route)
            }
            _ => Some(Reserved::unkeyed(lane)),
        }
    }

    /// Whether a keyed submit that saw `route` must still wait for the drain.
    pub(crate) fn still_moving(&self, route: Route) -> bool {
        match self {
            Self::Shared(_) => false,
            Self::PerWorker(per_worker) => per_worker.lanes.still_moving(route),
        }
    }

    /// Where keyed submits wait for a drain to end.
    pub(crate) fn drained(&self) -> Option<&Signal> {
        match self {
            Self::Shared(_) => None,
            Self::PerWorker(per_worker) => Some(per_worker.lanes.drained()),
        }
    }

    /// Queues a job into room reserved in `lane`. Returns whether an idle worker took notice.
    pub(crate) fn commit(&self, reserved: Reserved, mut job: Job) -> bool {
        let lane = reserved.lane;
        job.lane = lane;
        job.counted = reserved.counted;
        match self {
            Self::Shared(shared) => shared.commit(job),
            Self::PerWorker(per_worker) => {
                let stealable = !job.keyed;
                let slot = per_worker.lanes.get(lane);
                if per_worker.tracks_loads {
                    // Raised before the job is visible, so its worker's lower can never come
                    // first and wrap the counter.
                    slot.load.fetch_add(1, Ordering::AcqRel);
                }
                let noticed = slot.lane.commit(job);
                if !noticed && stealable && per_worker.stealing {
                    // The lane's worker is busy: let an idle worker come and steal it.
                    per_worker.busy_hint.store(lane, Ordering::Relaxed);
                    return per_worker.thieves.notify_one();
                }
                noticed
            }
        }
    }

    /// Marks a job committed to `lane` (counted in the keyed counter `counted`) as done, for
    /// the load counters and a resize's drain.
    pub(crate) fn done(&self, lane: usize, counted: Option<u8>) {
        if let Self::PerWorker(per_worker) = self {
            if per_worker.tracks_loads {
                per_worker.lanes.get(lane).load.fetch_sub(1, Ordering::AcqRel);
            }
            if let Some(parity) = counted {
                per_worker.lanes.keyed_done(lane, parity);
            }
        }
    }

    /// Why this pool cannot be resized, if it cannot.
    pub(crate) fn fixed(&self) -> Option<&'static str> {
        match self {
            Self::PerWorker(per_worker) if per_worker.weighted => {
                Some("a weighted strategy has one weight per worker, so its pool keeps its workers")
            }
            _ => None,
        }
    }

    /// Uses `count` lanes from now on (per-worker queues); see `lanes.rs`.
    pub(crate) fn resize(&self, count: usize) {
        if let Self::PerWorker(per_worker) = self {
            per_worker.lanes.resize(count);
        }
    }

    /// Sets how a resize starts a worker on a lane (per-worker queues).
    pub(crate) fn on_staff(&self, staffer: impl Fn(usize) + Send + Sync + 'static) {
        if let Self::PerWorker(per_worker) = self {
            per_worker.lanes.on_staff(staffer);
        }
    }

    /// The worker of `lane` found it closed and drained: whether it leaves (`false` when a
    /// resize reopened the lane meanwhile).
    pub(crate) fn leave(&self, lane: usize) -> bool {
        match self {
            Self::Shared(_) => true,
            Self::PerWorker(per_worker) => per_worker.lanes.leave(lane),
        }
    }

    /// A worker of `lane` ended and nothing replaced it.
    pub(crate) fn unstaff(&self, lane: usize) {
        if let Self::PerWorker(per_worker) = self {
            per_worker.lanes.unstaff(lane);
        }
    }

    /// Per-worker lanes that need a worker started (after the runtime took theirs); `None`
    /// for the shared queue.
    pub(crate) fn unstaffed(&self) -> Option<Vec<usize>> {
        match self {
            Self::Shared(_) => None,
            Self::PerWorker(per_worker) => Some(per_worker.lanes.unstaffed()),
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

    /// Whether the queues take no more jobs. Lane 0 is never retired by a resize.
    pub(crate) fn is_closed(&self) -> bool {
        self.lane(0).is_closed()
    }

    pub(crate) fn close(&self) {
        match self {
            Self::Shared(lane) => lane.close(),
            Self::PerWorker(per_worker) => {
                per_worker.lanes.close();
                per_worker.thieves.notify_all();
            }
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

    /// The load counters, for the models and tests of their balance.
    #[cfg(test)]
    pub(crate) fn loads(&self) -> Vec<usize> {
        match self {
            Self::Shared(_) => Vec::new(),
            Self::PerWorker(per_worker) => (0..per_worker.lanes.allocated())
                .map(|lane| per_worker.lanes.get(lane).load.load(Ordering::Acquire))
                .collect(),
        }
    }

    /// The keyed counters, for the models and tests of a resize's drain.
    #[cfg(test)]
    pub(crate) fn keyed_counts(&self) -> Vec<[usize; 2]> {
        match self {
            Self::Shared(_) => Vec::new(),
            Self::PerWorker(per_worker) => per_worker.lanes.keyed_counts(),
        }
    }

    /// Steals for the worker of lane `thief`: from the fullest of the hinted lane and a few
    /// others, a job to run now and up to [`STEAL_BATCH`]` - 1` more into its stash.
    fn steal_for(per_worker: &PerWorker, thief: usize, stash: &mut Stash<Job>) -> Option<Job> {
        let lanes = &per_worker.lanes;
        // Lanes in use, and the hinted one, which may be a lane a shrink retired.
        let count = lanes.route().count;
        let hint = per_worker.busy_hint.load(Ordering::Relaxed) % lanes.allocated();
        if count < 2 && hint == thief {
            return None;
        }
        // A random start spreads thieves over the lanes; the models need every run replayable.
        let start = if cfg!(millpond_loom) { thief + 1 } else { fastrand::usize(..count) };
        let candidates = std::iter::once(hint)
            .chain((0..STEAL_SCAN.min(count)).map(|step| (start + step) % count));
        let (victim, queued) = candidates
            .filter(|&lane| lane != thief)
            .map(|lane| (lane, lanes.get(lane).lane.stealable_len()))
            .max_by_key(|&(_, queued)| queued)?;
        if queued == 0 {
            return None;
        }
        let victim = &lanes.get(victim).lane;
        let job = victim.steal(stash, STEAL_BATCH)?;
        victim.release(1);
        Some(job)
    }
}

impl PerWorker {
    fn try_reserve(&self, key: Option<u64>) -> Result<Reserved, Wait> {
        loop {
            let route = self.lanes.route();
            let first = match key {
                Some(key) if route.moves(key) => {
                    // A shutdown ends every wait for a drain: the submit is refused instead.
                    if self.lanes.get(0).lane.is_closed() {
                        return Err(Wait::Closed);
                    }
                    return Err(Wait::Moving(route));
                }
                Some(key) => KeyHash::target(key, route.count),
                // `min`: a strategy that breaks its contract must not index past the lanes.
                None => self
                    .balancer
                    .pick(&LaneLoads { lanes: &self.lanes, count: route.count }, None)
                    .min(route.count - 1),
            };
            match self.lanes.get(first).lane.try_reserve() {
                Ok(()) => match key {
                    None => return Ok(Reserved::unkeyed(first)),
                    Some(_) => match self.count_keyed(first, route) {
                        Some(reserved) => return Ok(reserved),
                        None => continue,
                    },
                },
                // Retired by a shrink after the route was read: the shrink published its route
                // before it closed the lane, so the next read (after this fence, which pairs
                // with the close) routes around it.
                Err(NoRoom::Closed) if !self.lanes.get(0).lane.is_closed() => {
                    fence(Ordering::Acquire);
                    continue;
                }
                Err(NoRoom::Closed) => return Err(Wait::Closed),
                Err(NoRoom::Full) => {}
            }
            if key.is_none() {
                for step in 1..route.count {
                    let index = (first + step) % route.count;
                    if self.lanes.get(index).lane.try_reserve().is_ok() {
                        return Ok(Reserved::unkeyed(index));
                    }
                }
            }
            return Err(Wait::Room(first));
        }
    }

    /// Counts a keyed job into room claimed in `lane` under `route`; `None` (room given back)
    /// when a resize changed the route meanwhile.
    fn count_keyed(&self, lane: usize, route: Route) -> Option<Reserved> {
        if self.lanes.count_keyed(lane, route) {
            Some(Reserved { lane, counted: Some(route.parity()) })
        } else {
            self.lanes.get(lane).lane.release(1);
            None
        }
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

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use crate::balance::Balance;
    use crate::exec::{Scheduler, WorkerPool};

    /// Load and keyed counters return to zero once a pool resized under load is idle: a counter
    /// left above zero would steer least-loaded picks away from its lane forever, or hold every
    /// later resize's drain open.
    #[test]
    fn counters_return_to_zero_after_resizes_under_load() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = WorkerPool::builder()
                .workers(3)
                .queue_capacity(64)
                .scheduler(Scheduler::per_worker(Balance::LeastLoaded).stealing(true))
                .build()
                .unwrap();
            let mut handles = Vec::new();
            for (round, size) in [7, 2, 5, 1, 4].into_iter().enumerate() {
                for n in 0..200u64 {
                    let job = async { tokio::task::yield_now().await };
                    handles.push(if n % 2 == 0 {
                        pool.submit_keyed(n % 17 + round as u64, job).await.unwrap()
                    } else {
                        pool.submit(job).await.unwrap()
                    });
                }
                pool.resize(size).unwrap();
            }
            for handle in handles {
                handle.await.unwrap();
            }
            // Every worker lowers its job's counters before it exits.
            pool.shutdown().await;
            let queues = &pool.inner_for_probe().queues;
            assert!(queues.loads().iter().all(|load| *load == 0), "{:?}", queues.loads());
            assert!(
                queues.keyed_counts().iter().all(|counts| *counts == [0, 0]),
                "{:?}",
                queues.keyed_counts()
            );
        });
    }
}
