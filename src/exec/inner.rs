//! What a worker pool's handle and its workers share: the queues, the worker count, the stats.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::admission::{Admission, Priority};
use super::error::SubmitError;
use super::job::Job;
use super::lane::{Lane, Listener, NoRoom, Signal};
use super::queues::{Queues, Reserved, Wait};
use super::stats::Shards;
use super::worker;
use super::worker_count::WorkerCount;
use crate::home::{Home, Rehome};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, fence};
use crate::unwind::PanicHook;

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) queues: Queues,
    pub(crate) idle_timeout: Duration,
    pub(crate) shards: Shards,
    pub(crate) admission: Admission,
    /// Live workers and their bounds.
    count: WorkerCount,
    rejected: AtomicU64,
    panic_hook: Option<PanicHook>,
    /// The runtime the workers run on; they move to a submitter's when it shuts down.
    home: Arc<Home>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Shutdowns waiting for the last worker to exit.
    exits: Signal,
    /// The worker pool's name in its published metrics.
    pub(crate) name: String,
    /// What the last metrics publish sent, so the next one sends only what changed since.
    #[cfg(feature = "metrics")]
    pub(crate) published: Mutex<super::publish::Published>,
}

/// Why a reservation was refused, before the task is put back into the error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused {
    Full,
    Closed,
    Timeout,
    WouldDeadlock,
    RateLimited,
    Overloaded,
    RuntimeGone,
}

impl Refused {
    pub(crate) fn with<F>(self, task: F) -> SubmitError<F> {
        match self {
            Self::Full => SubmitError::Full(task),
            Self::Closed => SubmitError::Closed(task),
            Self::Timeout => SubmitError::Timeout(task),
            Self::WouldDeadlock => SubmitError::WouldDeadlock(task),
            Self::RateLimited => SubmitError::RateLimited(task),
            Self::Overloaded => SubmitError::Overloaded(task),
            Self::RuntimeGone => SubmitError::RuntimeGone(task),
        }
    }
}

impl From<NoRoom> for Refused {
    fn from(no_room: NoRoom) -> Self {
        match no_room {
            NoRoom::Full => Self::Full,
            NoRoom::Closed => Self::Closed,
        }
    }
}

pub(crate) struct Settings {
    pub(crate) queues: Queues,
    pub(crate) min_workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) elastic: bool,
    pub(crate) idle_timeout: Duration,
    pub(crate) panic_hook: Option<PanicHook>,
    pub(crate) runtime: Handle,
    pub(crate) admission: Admission,
    pub(crate) name: String,
}

impl Inner {
    pub(crate) fn start(settings: Settings) -> Arc<Self> {
        let inner = Arc::new(Self {
            id: crate::sync::unique_id(),
            queues: settings.queues,
            idle_timeout: settings.idle_timeout,
            shards: Shards::new(),
            admission: settings.admission,
            count: WorkerCount::new(settings.min_workers, settings.max_workers, settings.elastic),
            rejected: AtomicU64::new(0),
            panic_hook: settings.panic_hook,
            home: Home::new(settings.runtime),
            workers: Mutex::new(Vec::new()),
            exits: Signal::default(),
            name: settings.name,
            #[cfg(feature = "metrics")]
            published: Mutex::new(super::publish::Published::default()),
        });
        let weak = Arc::downgrade(&inner);
        inner.home.on_move(move || {
            if let Some(inner) = weak.upgrade() {
                inner.restart_workers();
            }
        });
        let weak = Arc::downgrade(&inner);
        inner.home.on_stranded(move || {
            // No live runtime to move to: the submits waiting for room, and the handles of the
            // jobs left queued, are woken to move the pool to their own runtime. A handle cannot
            // reach the pool, so the home is listed under the pool's id for it first (`home.rs`).
            if let Some(inner) = weak.upgrade() {
                inner.home.leave_for_rescue(inner.id);
                inner.queues.wake_stranded();
            }
        });
        let weak = Arc::downgrade(&inner);
        inner.queues.on_staff(move |lane| {
            if let Some(inner) = weak.upgrade() {
                inner.join_worker(lane);
            }
        });
        let lanes = inner.queues.lane_count();
        // Counted in by `WorkerCount::new`.
        for index in 0..settings.min_workers {
            inner.spawn_worker(index % lanes);
        }
        inner
    }

    fn spawn_worker(self: &Arc<Self>, lane: usize) {
        let handle = self.home.spawn(worker::run(Arc::clone(self), lane));
        let mut workers = self.workers.lock();
        workers.retain(|handle| !handle.is_finished());
        workers.push(handle);
    }

    /// Counts in and starts a worker for per-worker lane `lane`, which a resize put in use (or
    /// reopened after its worker left).
    fn join_worker(self: &Arc<Self>, lane: usize) {
        self.count.join();
        self.spawn_worker(lane);
    }

    /// Whether a worker may retire when idle: the pool is elastic and above its minimum.
    pub(crate) fn may_shrink(&self) -> bool {
        self.count.may_shrink()
    }

    /// Starts one more worker if the pool may grow (the shared queue only).
    pub(crate) fn grow(self: &Arc<Self>) {
        if self.count.grow() {
            self.spawn_worker(0);
        }
    }

    /// Takes the idle worker of `lane` off the count if the pool may shrink and the lane has no
    /// job for it. The worker exits on `true`.
    ///
    /// A job committed as the worker leaves is never left without one: the worker looks at the
    /// lane again after it left the count, and the committer, finding no parked worker, tries to
    /// grow the pool after it queued the job. With a fence between each one's write and read,
    /// at least one sees the other: the worker comes back onto the count (if the committer's
    /// grow has not taken its place), or the committer starts a new worker.
    pub(crate) fn retire_idle(&self, lane: usize) -> bool {
        retire_if_idle(self.queues.lane(lane), &self.count)
    }

    /// Takes a worker off the count if a resize left more than allowed (the shared queue: a
    /// per-worker pool retires the workers of the lanes it retires). The worker exits on
    /// `true`.
    pub(crate) fn retire_surplus(&self) -> bool {
        self.count.is_elastic() && self.count.retire_surplus()
    }

    /// Why this pool cannot be resized, if it cannot.
    pub(crate) fn fixed(&self) -> Option<&'static str> {
        self.queues.fixed()
    }

    /// Sets a new maximum (and lowers the minimum to it if needed). Extra workers retire after
    /// their current task; parked ones are interrupted so they retire at once. Per-worker
    /// queues use `max` lanes from then on, each with its worker (`lanes.rs`).
    pub(crate) fn resize(self: &Arc<Self>, max: usize) {
        if self.home.is_gone() && !self.is_closed() {
            // New workers must start where they will run. Outside any runtime they start on
            // the next submit that moves the pool.
            let _ = self.rehome();
        }
        if !self.count.is_elastic() {
            self.queues.resize(max);
            return;
        }
        let resized = self.count.resize(max);
        for _ in 0..resized.start {
            self.spawn_worker(0);
        }
        if resized.interrupt {
            (0..self.queues.lane_count()).for_each(|lane| self.queues.lane(lane).interrupt());
        }
    }

    /// Stops intake.
    pub(crate) fn close(&self) {
        self.queues.close();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.queues.is_closed()
    }

    pub(crate) fn worker_exited(&self, counted: bool) {
        if self.count.exited(counted) {
            self.exits.notify_all();
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.count.live()
    }

    /// Waits until every worker has exited.
    pub(crate) fn all_exited(&self) -> AllExited<'_> {
        AllExited { inner: self, listener: None }
    }

    /// Aborts every worker task: their running jobs are dropped (handles see `Aborted`).
    pub(crate) fn abort_workers(&self) {
        for handle in &*self.workers.lock() {
            handle.abort();
        }
    }

    pub(crate) fn reject(&self, why: Refused) -> Refused {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        why
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub(crate) fn report_panic(&self, panic: &(dyn std::any::Any + Send)) {
        let message = crate::unwind::panic_message(panic);
        match &self.panic_hook {
            Some(hook) => {
                crate::unwind::contain("panic_hook", || hook(&message));
            }
            None => tracing::warn!(panic = %message, "millpond: a worker pool task panicked"),
        }
    }

    /// Admits a job of `priority` (rate limits, overload) before it takes queue room, after making
    /// sure it has workers to run it.
    fn admit(self: &Arc<Self>, key: Option<u64>, priority: Priority) -> Result<(), Refused> {
        if self.home.is_gone() && !self.is_closed() {
            self.rehome()?;
        }
        self.admission.admit(key, priority, || self.queues.queued()).map_err(|why| self.reject(why))
    }

    /// The workers died with the runtime they ran on: starts them again on the caller's, which
    /// then runs the jobs still queued too. `RuntimeGone` when the caller has no runtime either.
    #[cold]
    fn rehome(self: &Arc<Self>) -> Result<(), Refused> {
        match self.home.rehome() {
            Rehome::Stayed => Ok(()),
            Rehome::Moved => {
                tracing::debug!(
                    "millpond: the worker pool's runtime shut down; its workers restarted on the \
                     submitter's runtime"
                );
                Ok(())
            }
            Rehome::Stranded => Err(self.reject(Refused::RuntimeGone)),
        }
    }

    /// Starts workers up to the minimum on the runtime the pool just moved to: those that died
    /// while the pool had no runtime to move to (they could not replace themselves). Workers
    /// still counted are dropped after the move and replace themselves on their own lanes
    /// ([`replace_worker`](Self::replace_worker)).
    ///
    /// The number is fixed before any spawn: a spawn onto a runtime that is gone too drops the
    /// worker at once, and a loop until the count reaches the minimum would never end.
    fn restart_workers(self: &Arc<Self>) {
        if self.is_closed() {
            return;
        }
        if let Some(lanes) = self.queues.unstaffed() {
            for lane in lanes {
                if self.home.is_gone() {
                    self.queues.unstaff(lane);
                    continue;
                }
                self.join_worker(lane);
            }
            return;
        }
        let lanes = self.queues.lane_count();
        let missing = self.count.fill_to_min();
        for lane in 0..missing {
            if self.home.is_gone() {
                // The runtime just moved to is gone as well: the rest are off the count again.
                self.worker_exited(true);
                continue;
            }
            self.spawn_worker(lane % lanes);
        }
    }

    /// A worker of `lane` was dropped by its runtime before it finished. If the pool has moved
    /// to a live runtime and is open, a new worker takes its place (and its place on the count);
    /// otherwise it leaves the count, and the next submit that moves the pool starts workers
    /// again.
    pub(crate) fn replace_worker(self: &Arc<Self>, lane: usize) {
        if self.is_closed() || self.home.is_gone() {
            self.queues.unstaff(lane);
            self.worker_exited(true);
            return;
        }
        self.spawn_worker(lane);
    }

    /// Reserves room for a job without waiting. Returns where to commit it.
    pub(crate) fn try_reserve(
        self: &Arc<Self>,
        key: Option<u64>,
        priority: Priority,
    ) -> Result<Reserved, Refused> {
        self.admit(key, priority)?;
        self.queues.try_reserve(key).map_err(|wait| {
            self.reject(match wait {
                // A key moving after a resize waits like a full queue.
                Wait::Room(_) | Wait::Moving(_) => Refused::Full,
                Wait::Closed => Refused::Closed,
            })
        })
    }

    /// Reserves room for a job, waiting (up to `timeout`) while there is none, or while its key
    /// moves to another lane after a resize. Returns where to commit it.
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        key: Option<u64>,
        priority: Priority,
        timeout: Option<Duration>,
    ) -> Result<Reserved, Refused> {
        self.admit(key, priority)?;
        let first = match self.queues.try_reserve(key) {
            Ok(reserved) => return Ok(reserved),
            Err(Wait::Closed) => return Err(self.reject(Refused::Closed)),
            Err(wait) => wait,
        };
        // A task of this pool that waited for room, or for its key's drain after a resize
        // (which may be waiting for this very task), could wait forever.
        if worker::in_pool(self.id) {
            return Err(self.reject(Refused::WouldDeadlock));
        }
        // Only workers make room: should their runtime go while this submit waits, they start
        // again on this submitter's.
        self.home.stand_by();
        let reserved = self.wait_reserve(key, first);
        let reserved = match timeout {
            None => reserved.await,
            Some(timeout) => match tokio::time::timeout(timeout, reserved).await {
                Ok(reserved) => reserved,
                Err(_) => return Err(self.reject(Refused::Timeout)),
            },
        };
        reserved.map_err(|why| self.reject(why))
    }

    /// The waits of [`reserve`](Self::reserve), from its first refusal `wait`.
    async fn wait_reserve(
        self: &Arc<Self>,
        key: Option<u64>,
        mut wait: Wait,
    ) -> Result<Reserved, Refused> {
        loop {
            match wait {
                Wait::Closed => return Err(Refused::Closed),
                Wait::Room(lane) => {
                    let mut reserve = std::pin::pin!(self.queues.reserve(lane));
                    // Woken because the runtime went with no other in reserve, it moves the pool
                    // here.
                    let claimed = std::future::poll_fn(|cx| {
                        self.stay_home();
                        reserve.as_mut().poll(cx)
                    })
                    .await;
                    match claimed {
                        Ok(()) => {
                            if let Some(reserved) = self.queues.claimed(lane, key) {
                                return Ok(reserved);
                            }
                        }
                        // A lane a resize retired: route again.
                        Err(NoRoom::Closed) if !self.is_closed() => {}
                        Err(no_room) => return Err(no_room.into()),
                    }
                }
                Wait::Moving(route) => {
                    let Some(drained) = self.queues.drained() else {
                        return Err(Refused::Closed);
                    };
                    let mut listener = None;
                    std::future::poll_fn(|cx| {
                        loop {
                            self.stay_home();
                            if !self.queues.still_moving(route) {
                                return std::task::Poll::Ready(());
                            }
                            match &mut listener {
                                // Listen, then look once more before parking (`signal.rs`).
                                None => listener = Some(drained.listen()),
                                Some(waiting) => {
                                    std::task::ready!(std::pin::Pin::new(waiting).poll(cx));
                                    listener = None;
                                }
                            }
                        }
                    })
                    .await;
                }
            }
            wait = match self.queues.try_reserve(key) {
                Ok(reserved) => return Ok(reserved),
                Err(wait) => wait,
            };
        }
    }

    /// Moves the pool to the caller's runtime if its own went (a submit waiting for room).
    fn stay_home(self: &Arc<Self>) {
        if self.home.is_gone() && !self.is_closed() {
            // Polled outside any runtime, it stays put; that is no refusal to count.
            let _ = self.home.rehome();
        }
    }

    /// Queues a job into reserved room and starts a worker if none noticed it and the pool may
    /// grow.
    pub(crate) fn commit(self: &Arc<Self>, reserved: Reserved, job: Job) {
        if !self.queues.commit(reserved, job) {
            self.grow();
        }
    }
}

/// [`Inner::retire_idle`] on its parts, for the loom models to drive.
pub(crate) fn retire_if_idle(lane: &Lane<Job>, count: &WorkerCount) -> bool {
    if !lane.is_empty() || !count.retire_idle() {
        return false;
    }
    // Pairs with the fence in `Lane::commit`.
    fence(Ordering::SeqCst);
    if lane.is_empty() {
        return true;
    }
    // Back onto the count to run the job; if the count is full, a committer's grow already
    // started a worker in this one's place.
    !count.grow()
}

/// Waits for the last worker to exit; cancellation safe.
pub(crate) struct AllExited<'a> {
    inner: &'a Inner,
    listener: Option<Listener<'a>>,
}

impl Future for AllExited<'_> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = &mut *self;
        loop {
            if this.inner.count.live() == 0 {
                this.listener = None;
                return std::task::Poll::Ready(());
            }
            match &mut this.listener {
                None => this.listener = Some(this.inner.exits.listen()),
                Some(listener) => {
                    std::task::ready!(std::pin::Pin::new(listener).poll(cx));
                    this.listener = None;
                }
            }
        }
    }
}
