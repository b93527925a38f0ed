//! What a worker pool's handle and its workers share: the queues, the worker count, the stats.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::admission::{Admission, Priority};
use super::error::SubmitError;
use super::job::Job;
use super::lane::NoRoom;
use super::queues::Queues;
use super::stats::Shards;
use super::waiters::{Slot, Waiters};
use super::worker;
use crate::home::{Home, Rehome};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering};

pub(crate) type PanicHook = Box<dyn Fn(&str) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) queues: Queues,
    pub(crate) idle_timeout: Duration,
    pub(crate) shards: Shards,
    pub(crate) admission: Admission,
    /// Live workers.
    live: AtomicUsize,
    min_workers: AtomicUsize,
    max_workers: AtomicUsize,
    /// Whether workers come and go (the shared queue with `min < max`, or after a resize).
    elastic: bool,
    rejected: AtomicU64,
    panic_hook: Option<PanicHook>,
    /// The runtime the workers run on; they move to a submitter's when it shuts down.
    home: Arc<Home>,
    workers: Mutex<Workers>,
}

struct Workers {
    handles: Vec<JoinHandle<()>>,
    /// Shutdowns waiting for the last worker to exit.
    exits: Waiters,
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
}

impl Inner {
    pub(crate) fn start(settings: Settings) -> Arc<Self> {
        let inner = Arc::new(Self {
            id: crate::sync::unique_id(),
            queues: settings.queues,
            idle_timeout: settings.idle_timeout,
            shards: Shards::new(),
            admission: settings.admission,
            live: AtomicUsize::new(0),
            min_workers: AtomicUsize::new(settings.min_workers),
            max_workers: AtomicUsize::new(settings.max_workers),
            elastic: settings.elastic,
            rejected: AtomicU64::new(0),
            panic_hook: settings.panic_hook,
            home: Home::new(settings.runtime),
            workers: Mutex::new(Workers { handles: Vec::new(), exits: Waiters::default() }),
        });
        let weak = Arc::downgrade(&inner);
        inner.home.on_move(move || {
            if let Some(inner) = weak.upgrade() {
                inner.restart_workers();
            }
        });
        let lanes = inner.queues.lane_count();
        for index in 0..settings.min_workers {
            inner.live.fetch_add(1, Ordering::AcqRel);
            inner.spawn_worker(index % lanes);
        }
        inner
    }

    /// Counts one more live worker if fewer than `below` are alive; the caller then starts it.
    fn add_worker_below(&self, below: usize) -> bool {
        let mut live = self.live.load(Ordering::Acquire);
        while live < below {
            match self.live.compare_exchange_weak(
                live,
                live + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => live = actual,
            }
        }
        false
    }

    fn spawn_worker(self: &Arc<Self>, lane: usize) {
        let handle = self.home.spawn(worker::run(Arc::clone(self), lane));
        let mut workers = self.workers.lock();
        workers.handles.retain(|handle| !handle.is_finished());
        workers.handles.push(handle);
    }

    /// Whether a worker may retire now: the pool is elastic and above its minimum.
    pub(crate) fn may_shrink(&self) -> bool {
        self.elastic && self.live.load(Ordering::Relaxed) > self.min_workers.load(Ordering::Relaxed)
    }

    /// Starts one more worker if none is idle and the pool may grow (the shared queue only).
    pub(crate) fn grow(self: &Arc<Self>) {
        if self.elastic && self.add_worker_below(self.max_workers.load(Ordering::Acquire)) {
            self.spawn_worker(0);
        }
    }

    /// Takes a worker off the count if the pool may shrink. The worker exits on `true`.
    pub(crate) fn try_retire(&self) -> bool {
        let min = self.min_workers.load(Ordering::Acquire);
        let mut live = self.live.load(Ordering::Acquire);
        while live > min {
            match self.live.compare_exchange_weak(
                live,
                live - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => live = actual,
            }
        }
        false
    }

    /// Whether a resize left more workers than allowed.
    pub(crate) fn is_over_size(&self) -> bool {
        self.live.load(Ordering::Relaxed) > self.max_workers.load(Ordering::Relaxed)
    }

    pub(crate) fn is_resizable(&self) -> bool {
        self.elastic
    }

    /// Sets a new maximum (and lowers the minimum to it if needed). Extra workers retire after
    /// their current task; parked ones are interrupted so they retire at once.
    pub(crate) fn resize(self: &Arc<Self>, max: usize) {
        let min = self.min_workers.load(Ordering::Acquire).min(max);
        self.min_workers.store(min, Ordering::Release);
        self.max_workers.store(max, Ordering::Release);
        while self.add_worker_below(min) {
            self.spawn_worker(0);
        }
        if self.live.load(Ordering::Acquire) > max {
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
        let remaining = if counted {
            self.live.fetch_sub(1, Ordering::AcqRel) - 1
        } else {
            self.live.load(Ordering::Acquire)
        };
        if remaining == 0 {
            let woken = self.workers.lock().exits.notify_all();
            woken.into_iter().for_each(std::task::Waker::wake);
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until every worker has exited.
    pub(crate) fn all_exited(&self) -> AllExited<'_> {
        AllExited { inner: self, slot: None }
    }

    /// Aborts every worker task: their running jobs are dropped (handles see `Aborted`).
    pub(crate) fn abort_workers(&self) {
        for handle in &self.workers.lock().handles {
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

    /// Starts workers up to the minimum on the runtime the pool just moved to.
    fn restart_workers(self: &Arc<Self>) {
        let lanes = self.queues.lane_count();
        let min = self.min_workers.load(Ordering::Acquire);
        // Workers drop off the count before their runtime's drop marks the home gone, so `live`
        // counts only workers that are still running.
        let mut index = self.live();
        while self.add_worker_below(min) {
            self.spawn_worker(index % lanes);
            index += 1;
        }
    }

    /// Reserves room for a job without waiting. Returns the lane to commit to.
    pub(crate) fn try_reserve(
        self: &Arc<Self>,
        key: Option<u64>,
        priority: Priority,
    ) -> Result<usize, Refused> {
        self.admit(key, priority)?;
        self.queues.try_reserve(key).map_err(|(_, no_room)| self.reject(no_room.into()))
    }

    /// Reserves room for a job, waiting (up to `timeout`) while there is none. Returns the lane
    /// to commit to.
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        key: Option<u64>,
        priority: Priority,
        timeout: Option<Duration>,
    ) -> Result<usize, Refused> {
        self.admit(key, priority)?;
        let lane = match self.queues.try_reserve(key) {
            Ok(lane) => return Ok(lane),
            Err((_, NoRoom::Closed)) => return Err(self.reject(Refused::Closed)),
            Err((lane, NoRoom::Full)) => lane,
        };
        if worker::in_pool(self.id) {
            return Err(self.reject(Refused::WouldDeadlock));
        }
        // Only workers make room: should their runtime go while this submit waits, they start
        // again on this submitter's.
        self.home.stand_by();
        let reserved = self.queues.reserve(lane);
        let reserved = match timeout {
            None => reserved.await,
            Some(timeout) => match tokio::time::timeout(timeout, reserved).await {
                Ok(reserved) => reserved,
                Err(_) => return Err(self.reject(Refused::Timeout)),
            },
        };
        reserved.map(|()| lane).map_err(|no_room| self.reject(no_room.into()))
    }

    /// Queues a job into reserved room and starts a worker if none noticed it and the pool may
    /// grow.
    pub(crate) fn commit(self: &Arc<Self>, lane: usize, job: Job) {
        if !self.queues.commit(lane, job) {
            self.grow();
        }
    }
}

/// Waits for the last worker to exit; cancellation safe.
pub(crate) struct AllExited<'a> {
    inner: &'a Inner,
    slot: Slot,
}

impl Future for AllExited<'_> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = &mut *self;
        let mut workers = this.inner.workers.lock();
        if this.inner.live.load(Ordering::Acquire) == 0 {
            workers.exits.remove(&mut this.slot);
            return std::task::Poll::Ready(());
        }
        workers.exits.register(&mut this.slot, cx.waker());
        std::task::Poll::Pending
    }
}

impl Drop for AllExited<'_> {
    fn drop(&mut self) {
        if self.slot.is_some() {
            self.inner.workers.lock().exits.remove(&mut self.slot);
        }
    }
}
