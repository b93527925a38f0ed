//! A bounded FIFO of jobs with async waiting on both ends: the queue of the shared scheduler and
//! each worker's queue in the per-worker scheduler.
//!
//! The jobs sit in async-channel's lock-free queues (`jobs.rs`): one in a shared lane, and two
//! in a per-worker lane, for the jobs only its worker may take and for those idle workers may
//! steal. Room is counted here, in `occupied` (jobs queued
//! plus room reserved), so a submitter claims its room with one compare-and-swap, before its job
//! exists:
//!
//! * a submitter first *reserves* room, then builds its job and *commits* it, so that a refused
//!   task goes back to its caller as it came, never boxed;
//! * a commit notifies one parked worker; a take frees room and notifies one waiting submitter;
//!   a notification to nobody costs a fence and a load (`signal.rs`). A gate that notified a
//!   worker only while fewer than two were on their way (tokio's rule, with a second to get
//!   past the LIFO slot) was slower here: 1.8 against 2.5 M no-op tasks/s, 0.8 against 1.4
//!   with stealing (`benches/exec.rs`, scenario a);
//! * `close` wakes everyone; reservations fail from then on, and takes drain what is left,
//!   reserved jobs included, before they report the end;
//! * a waiter dropped after it was notified, but before it used the notification, passes it on,
//!   so a cancelled `submit` or an idle worker that times out never strands a job or a free slot.
//!
//! # One word for room and state
//!
//! The closed flag is the top bit of the word that counts the room taken, and the dead flag (a
//! shutdown past its deadline) the next, so a reservation and a close are two updates of one
//! atomic and are totally ordered: a reservation either comes first (and the workers, which stop
//! only on "closed and nothing taken", wait for its job) or sees the flag and fails. A job can
//! never land in a lane whose workers have left.
//!
//! | bits        | meaning                                                          |
//! |-------------|------------------------------------------------------------------|
//! | 63          | `CLOSED`: no more reservations                                    |
//! | 62          | `DEAD`: killed; jobs committed from now on are dropped            |
//! | 0..62       | jobs queued (or stolen and not started) plus room reserved        |
//!
//! A job stolen from a per-worker lane keeps its room in that lane until the thief starts it
//! ([`Lane::release`]), so a batch waiting in a thief's stash still counts against the bound.
//!
//! The loom models in `loom_models.rs` check the races: submit vs shutdown, steal vs shutdown,
//! the waiting hand-offs, a cancelled submit, `kill`.

mod jobs;
mod signal;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use self::jobs::Jobs;
pub(crate) use self::jobs::Stash;
pub(crate) use self::signal::{Listener, Signal};
use crate::sync::{AtomicU64, AtomicUsize, Ordering, fence};

/// What a lane needs to know about a job: whether another worker may take it.
pub(crate) trait Stealable {
    /// Keyed jobs must run on their own worker, in order: they are never stolen.
    fn stealable(&self) -> bool;
}

/// The flag bit of `Lane::occupied` that refuses reservations.
const CLOSED: usize = 1 << (usize::BITS - 1);
/// The flag bit of `Lane::occupied` set by `kill`.
const DEAD: usize = 1 << (usize::BITS - 2);
const FLAGS: usize = CLOSED | DEAD;

pub(crate) struct Lane<J> {
    /// The most room taken at once: fixed for the shared queue; a per-worker lane's share of
    /// the pool's capacity, set again when a resize changes the number of lanes. Never above
    /// `slots`, so a push into reserved room always finds a free slot.
    capacity: AtomicUsize,
    /// The slots of the queues, fixed when the lane is made.
    slots: usize,
    /// The flags and the room taken; see the module docs.
    occupied: AtomicUsize,
    /// Every job of a shared lane; the keyed jobs of a per-worker lane.
    pinned: Jobs<J>,
    /// The jobs of a per-worker lane that other workers may steal.
    open: Option<Jobs<J>>,
    /// Bumped by `interrupt`: parked workers wake and re-check their pool's size.
    interrupts: AtomicU64,
    /// Submitters waiting for room.
    room: Signal,
    /// Workers waiting for a job.
    work: Signal,
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRoom {
    Full,
    Closed,
}

/// The result of a take that does not wait.
#[derive(Debug)]
pub(crate) enum TryPop<J> {
    Job(J),
    Empty,
    /// Closed and drained: no job will ever come.
    Closed,
}

/// Which of a per-worker lane's two queues a worker looks at first: it alternates, so that
/// neither its keyed nor its unkeyed jobs can hold up the other kind for long.
#[derive(Debug, Default)]
pub(crate) struct Turn(bool);

impl<J: Stealable> Lane<J> {
    /// A lane whose jobs only its own workers take: the shared queue.
    pub(crate) fn shared(capacity: usize) -> Self {
        Self::with(capacity, None)
    }

    /// A worker's lane in the per-worker scheduler: unkeyed jobs may be stolen.
    pub(crate) fn per_worker(capacity: usize) -> Self {
        Self::with(capacity, Some(Jobs::new(capacity)))
    }

    fn with(capacity: usize, open: Option<Jobs<J>>) -> Self {
        Self {
            capacity: AtomicUsize::new(capacity),
            slots: capacity,
            occupied: AtomicUsize::new(0),
            pinned: Jobs::new(capacity),
            open,
            interrupts: AtomicU64::new(0),
            room: Signal::default(),
            work: Signal::default(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.occupied.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Closed, drained, and no reserved job still to come: workers may stop.
    pub(crate) fn finished(&self) -> bool {
        self.occupied.load(Ordering::Acquire) & !DEAD == CLOSED
    }

    /// Claims one unit of room.
    fn claim(&self) -> Result<(), NoRoom> {
        // Relaxed start: the compare-and-swap below re-reads the word with its real ordering.
        let mut occupied = self.occupied.load(Ordering::Relaxed);
        loop {
            if occupied & CLOSED != 0 {
                return Err(NoRoom::Closed);
            }
            // Relaxed: a resize changes the capacity rarely, and a claim that read the old one
            // still stays within the slots.
            if occupied & !FLAGS >= self.capacity.load(Ordering::Relaxed) {
                return Err(NoRoom::Full);
            }
            // AcqRel: a successful claim orders after the close it did not see.
            match self.occupied.compare_exchange_weak(
                occupied,
                occupied + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => occupied = actual,
            }
        }
    }

    /// Sets the lane's share of the pool's capacity (at least 1, at most the slots it was made
    /// with). Room already taken above a lowered share stays taken until its jobs start.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.min(self.slots).max(1), Ordering::Relaxed);
    }

    /// Takes reservations again after a [`close`](Self::close) that retired the lane (a resize
    /// that shrank the pool, undone by one that grew it). The caller serialises this with the
    /// close and with the lane's worker leaving; a killed lane stays closed.
    pub(crate) fn reopen(&self) {
        if self.occupied.load(Ordering::Acquire) & DEAD == 0 {
            self.occupied.fetch_and(!CLOSED, Ordering::AcqRel);
        }
    }

    /// Gives back `count` units of room (jobs taken, or dropped by a dead lane), notifying a
    /// waiting submitter, and every parked worker if that finished a closed lane.
    pub(crate) fn release(&self, count: usize) {
        let before = self.occupied.fetch_sub(count, Ordering::AcqRel);
        if before & !DEAD == CLOSED + count {
            self.work.notify_all();
        }
        if count == 1 {
            self.room.notify_one();
        } else {
            self.room.notify_all();
        }
    }

    /// Reserves room for one job if there is any. A submitter reserves before it builds its job,
    /// so a refused task comes back to its caller unboxed.
    pub(crate) fn try_reserve(&self) -> Result<(), NoRoom> {
        self.claim()
    }

    /// Waits for room; cancellation safe.
    pub(crate) fn reserve(&self) -> Reserve<'_, J> {
        Reserve { lane: self, listener: None }
    }

    /// Queues a job into reserved room and notifies a parked worker. Returns whether one was
    /// notified. A lane killed by an expired shutdown drops the job instead.
    pub(crate) fn commit(&self, job: J) -> bool {
        if self.occupied.load(Ordering::Acquire) & DEAD != 0 {
            drop(job);
            self.release(1);
            return false;
        }
        if let Err(job) = self.queue_for(&job).push(job) {
            // The room was reserved, so the queue cannot be full; should it ever be, the job is
            // dropped (its handle says so) rather than lost or pushed past the bound.
            debug_assert!(false, "a queue refused a job with reserved room");
            drop(job);
            self.release(1);
            return false;
        }
        // Pairs with the fence in `kill`: either the kill's drain sees this job, or this sees
        // the flag and drains it here.
        fence(Ordering::SeqCst);
        if self.occupied.load(Ordering::Relaxed) & DEAD != 0 {
            self.drain_dead();
            return false;
        }
        self.work.notify_one()
    }

    /// The queue `job` goes to: the stealable one of a per-worker lane if it may be stolen.
    fn queue_for(&self, job: &J) -> &Jobs<J> {
        match &self.open {
            Some(open) if job.stealable() => open,
            _ => &self.pinned,
        }
    }

    /// Takes the oldest job of one queue, else of the other, freeing its room.
    fn take(&self, turn: &mut Turn) -> Option<J> {
        let job = match &self.open {
            None => self.pinned.pop(),
            Some(open) => {
                turn.0 = !turn.0;
                if turn.0 {
                    open.pop().or_else(|| self.pinned.pop())
                } else {
                    self.pinned.pop().or_else(|| open.pop())
                }
            }
        }?;
        self.release(1);
        Some(job)
    }

    /// Takes the next job without waiting.
    pub(crate) fn try_pop(&self, turn: &mut Turn) -> TryPop<J> {
        match self.take(turn) {
            Some(job) => TryPop::Job(job),
            None if self.finished() => TryPop::Closed,
            None => TryPop::Empty,
        }
    }

    /// Takes the next job, or listens in `listener` to be woken when one is committed (or the
    /// lane finishes). `Ready(None)` when the lane is closed and drained.
    pub(crate) fn poll_pop<'a>(
        &'a self,
        cx: &mut Context<'_>,
        turn: &mut Turn,
        listener: &mut Option<Listener<'a>>,
    ) -> Poll<Option<J>> {
        loop {
            if let Some(job) = self.take(turn) {
                // Dropping the listener passes on a notification it may have had.
                *listener = None;
                return Poll::Ready(Some(job));
            }
            if self.finished() {
                *listener = None;
                return Poll::Ready(None);
            }
            match listener {
                // Listen, then look once more before parking (`signal.rs`).
                None => *listener = Some(self.work.listen()),
                Some(waiting) => {
                    ready!(Pin::new(waiting).poll(cx));
                    *listener = None;
                }
            }
        }
    }

    /// Takes the oldest stealable job to run now, and up to `limit - 1` more into `stash`. The
    /// room of every job taken stays claimed until the thief [releases](Self::release) it as
    /// the job starts.
    pub(crate) fn steal(&self, stash: &mut Stash<J>, limit: usize) -> Option<J> {
        self.open.as_ref()?.steal_batch(stash, limit)
    }

    /// Stealable jobs queued, to choose a victim.
    pub(crate) fn stealable_len(&self) -> usize {
        self.open.as_ref().map_or(0, Jobs::len)
    }

    /// Refuses new jobs from now on and wakes every waiter: submitters to fail, workers to drain
    /// what is left and stop.
    pub(crate) fn close(&self) {
        self.occupied.fetch_or(CLOSED, Ordering::AcqRel);
        self.room.notify_all();
        self.work.notify_all();
    }

    /// Takes every job queued right now.
    fn drain(&self) -> Vec<J> {
        let mut jobs = Vec::new();
        while let Some(job) = self.pinned.pop() {
            jobs.push(job);
        }
        if let Some(open) = &self.open {
            while let Some(job) = open.pop() {
                jobs.push(job);
            }
        }
        jobs
    }

    /// A commit that raced a `kill`: drops what the kill's drain did not see.
    fn drain_dead(&self) {
        let jobs = self.drain();
        let count = jobs.len();
        // Dropping a job runs its destructors, which wake its handle.
        drop(jobs);
        if count > 0 {
            self.release(count);
        }
    }

    /// Closes the lane for good (a shutdown past its deadline): takes every queued job, and
    /// jobs committed into room reserved earlier are dropped as they arrive.
    pub(crate) fn kill(&self) -> Vec<J> {
        self.occupied.fetch_or(CLOSED | DEAD, Ordering::AcqRel);
        // Pairs with the fence in `commit`.
        fence(Ordering::SeqCst);
        let jobs = self.drain();
        if !jobs.is_empty() {
            self.release(jobs.len());
        }
        self.room.notify_all();
        self.work.notify_all();
        jobs
    }

    /// Wakes every waiting submitter and the tasks awaiting queued jobs (named by `awaiting`):
    /// the pool's runtime went with nowhere to move, and each must move it to its own.
    ///
    /// The queues cannot be read in place, so the jobs are taken out and put back in order; a
    /// job committed meanwhile may land among them. This runs only when the pool's runtime is
    /// gone, where order among the stranded jobs is the least of the caller's concerns.
    pub(crate) fn wake_stranded(&self, awaiting: impl Fn(&J) -> Option<Waker>) {
        self.room.notify_all();
        let mut woken = Vec::new();
        for job in self.drain() {
            woken.extend(awaiting(&job));
            if let Err(job) = self.queue_for(&job).push(job) {
                debug_assert!(false, "a queue refused a job it held");
                drop(job);
                self.release(1);
            }
        }
        woken.into_iter().for_each(Waker::wake);
        self.work.notify_all();
    }

    /// Whether no job is queued right now.
    pub(crate) fn is_empty(&self) -> bool {
        self.pinned.len() == 0 && self.stealable_len() == 0
    }

    /// Wakes every parked worker to re-check the pool's size (after a resize).
    pub(crate) fn interrupt(&self) {
        self.interrupts.fetch_add(1, Ordering::SeqCst);
        self.work.notify_all();
    }

    /// How many interrupts there have been.
    pub(crate) fn interrupts(&self) -> u64 {
        self.interrupts.load(Ordering::SeqCst)
    }

    /// Jobs queued plus room reserved, read without the lock: what overload checks count.
    pub(crate) fn occupied(&self) -> usize {
        self.occupied.load(Ordering::Relaxed) & !FLAGS
    }

    /// `(queued jobs, parked workers)`, for stats.
    pub(crate) fn occupancy(&self) -> (usize, usize) {
        (self.pinned.len() + self.stealable_len(), self.work.waiting())
    }
}

/// Waits for room in one lane; cancellation safe.
pub(crate) struct Reserve<'a, J> {
    lane: &'a Lane<J>,
    listener: Option<Listener<'a>>,
}

impl<J: Stealable> Future for Reserve<'_, J> {
    type Output = Result<(), NoRoom>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match this.lane.claim() {
                Err(NoRoom::Full) => {}
                claimed => {
                    // Dropping the listener passes on a notification it may have had.
                    this.listener = None;
                    return Poll::Ready(claimed);
                }
            }
            match &mut this.listener {
                None => this.listener = Some(this.lane.room.listen()),
                Some(listener) => {
                    ready!(Pin::new(listener).poll(cx));
                    this.listener = None;
                }
            }
        }
    }
}
