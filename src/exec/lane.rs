//! A bounded FIFO of jobs with async waiting on both ends: the queue of the shared scheduler and
//! each worker's queue in the per-worker scheduler.
//!
//! The jobs and the two waiter lists (submitters waiting for room, workers waiting for a job) sit
//! under one mutex. Room is counted outside it, in `occupied` (jobs queued plus room reserved),
//! so a submitter claims its room with one compare-and-swap and takes the lock once, to queue.
//! Waiters are woken after the lock is released and re-check under it, so no job is ever handed
//! to a waiter that might be cancelled:
//!
//! * a submitter first *reserves* room, then builds its job and *commits* it, so that a refused
//!   task goes back to its caller as it came, never boxed;
//! * a commit wakes one parked worker; a pop (or a steal) frees room and wakes one waiting
//!   submitter;
//! * `close` wakes everyone; reservations fail from then on, and pops drain what is left,
//!   reserved jobs included, before they report the end;
//! * a waiter dropped after it was woken, but before it used the wake-up, passes it on, so a
//!   cancelled `submit` or an idle worker that times out never strands a job or a free slot.
//!
//! # Closing against a reservation
//!
//! The closed flag is the top bit of the same word that counts the room taken, so a reservation
//! and a close are two updates of one atomic and are totally ordered: a reservation either comes
//! first (and the workers, which stop only on "closed and nothing taken", wait for its job) or
//! sees the flag and fails. A job can never land in a lane whose workers have left. The loom
//! models in `loom_models.rs` check this and the other races (submit vs shutdown, steal vs
//! shutdown, the waiting hand-offs, a cancelled submit, `kill`).

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use super::waiters::{Slot, Waiters};
use crate::sync::{AtomicUsize, Mutex, Ordering};

/// What a lane needs to know about a job: whether another worker may take it.
pub(crate) trait Stealable {
    /// Keyed jobs must run on their own worker, in order: they are never stolen.
    fn stealable(&self) -> bool;
}

#[derive(Debug)]
pub(crate) struct Lane<J> {
    capacity: usize,
    /// [`CLOSED`] once the lane takes no more reservations, plus the jobs queued and the room
    /// reserved by submitters still building their job. The count never exceeds `capacity`; it
    /// is raised by reservations and lowered (under the lock) when a job is taken.
    occupied: AtomicUsize,
    state: Mutex<State<J>>,
}

#[derive(Debug)]
struct State<J> {
    jobs: VecDeque<J>,
    /// Set by a shutdown past its deadline: jobs committed from now on are dropped at once.
    dead: bool,
    /// Bumped by `interrupt`: parked workers wake and re-check their pool's size.
    interrupts: u64,
    pushers: Waiters,
    poppers: Waiters,
}

impl<J> State<J> {
    /// Wakes the longest-parked worker, if any. Every commit wakes one: a gate that woke a worker
    /// only when none was already on its way stalled under tokio's scheduler, where the woken
    /// worker can sit in the LIFO slot of a thread busy with a long task while the other thread
    /// has nobody to run (p99 queueing delay 16.2 ms instead of 1.27 ms in the paced benchmark).
    fn wake_a_worker(&mut self) -> Option<Waker> {
        self.poppers.notify_one()
    }

    fn wake_all_workers(&mut self) -> Vec<Waker> {
        self.poppers.notify_all()
    }

    /// Takes a worker's registration off the list; `true` when it had been woken.
    fn unregister_worker(&mut self, slot: &mut Slot) -> bool {
        self.poppers.remove(slot)
    }
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRoom {
    Full,
    Closed,
}

/// The result of a pop that does not wait.
#[derive(Debug)]
pub(crate) enum TryPop<J> {
    Job(J),
    Empty,
    /// Closed and drained: no job will ever come.
    Closed,
}

/// The flag bit of `Lane::occupied`.
const CLOSED: usize = 1 << (usize::BITS - 1);

fn wake_all(woken: Vec<Waker>) {
    woken.into_iter().for_each(Waker::wake);
}

impl<J: Stealable> Lane<J> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            occupied: AtomicUsize::new(0),
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(capacity.min(4096)),
                dead: false,
                interrupts: 0,
                pushers: Waiters::default(),
                poppers: Waiters::default(),
            }),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.occupied.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Closed, drained, and no reserved job still to come: workers may stop.
    fn finished(&self) -> bool {
        self.occupied.load(Ordering::Acquire) == CLOSED
    }

    fn has_room(&self) -> bool {
        self.occupied.load(Ordering::Acquire) & !CLOSED < self.capacity
    }

    /// Every parked worker, once the lane has finished: they stop.
    fn wake_if_finished(&self, state: &mut State<J>) -> Vec<Waker> {
        if self.finished() { state.wake_all_workers() } else { Vec::new() }
    }

    /// Claims one unit of room, without the lock.
    fn claim(&self) -> Result<(), NoRoom> {
        // Relaxed start: the compare-and-swap below re-reads the word with its real ordering.
        let mut occupied = self.occupied.load(Ordering::Relaxed);
        loop {
            if occupied & CLOSED != 0 {
                return Err(NoRoom::Closed);
            }
            if occupied >= self.capacity {
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

    /// Reserves room for one job if there is any. A submitter reserves before it builds its job,
    /// so a refused task comes back to its caller unboxed.
    pub(crate) fn try_reserve(&self) -> Result<(), NoRoom> {
        self.claim()
    }

    /// Reserves room once there is some, registering in `slot` while there is none;
    /// `Ready(Err(Closed))` when the lane closes first.
    pub(crate) fn poll_reserve(
        &self,
        cx: &mut Context<'_>,
        slot: &mut Slot,
    ) -> Poll<Result<(), NoRoom>> {
        let mut state = self.state.lock();
        match self.claim() {
            Err(NoRoom::Full) => {
                state.pushers.register(slot, cx.waker());
                Poll::Pending
            }
            claimed => {
                state.pushers.remove(slot);
                Poll::Ready(claimed)
            }
        }
    }

    /// Withdraws a waiting reservation, passing on a wake-up it received but did not use.
    pub(crate) fn cancel_reserve(&self, slot: &mut Slot) {
        if slot.is_none() {
            return;
        }
        let woken = {
            let mut state = self.state.lock();
            let was_woken = state.pushers.remove(slot);
            if was_woken && (self.has_room() || self.is_closed()) {
                state.pushers.notify_one()
            } else {
                None
            }
        };
        wake_all(woken.into_iter().collect());
    }

    /// Queues a job into reserved room, waking a parked worker. Returns whether a worker was
    /// woken for it. A lane killed by an expired shutdown drops the job instead.
    pub(crate) fn commit(&self, job: J) -> bool {
        let (woken, dropped) = {
            let mut state = self.state.lock();
            if state.dead {
                self.occupied.fetch_sub(1, Ordering::AcqRel);
                (self.wake_if_finished(&mut state), Some(job))
            } else {
                state.jobs.push_back(job);
                (state.wake_a_worker().into_iter().collect(), None)
            }
        };
        // Outside the lock: dropping a job runs its destructors, which wake its handle.
        drop(dropped);
        let woke_worker = !woken.is_empty();
        wake_all(woken);
        woke_worker
    }

    /// The wake-ups a job taken off the lane causes: a submitter waiting for the room, and every
    /// parked worker if that was the last job of a closed lane.
    fn after_take(&self, state: &mut State<J>) -> Vec<Waker> {
        self.occupied.fetch_sub(1, Ordering::AcqRel);
        let mut woken = self.wake_if_finished(state);
        woken.extend(state.pushers.notify_one());
        woken
    }

    /// Takes the oldest job, waking one waiting submitter.
    pub(crate) fn try_pop(&self) -> TryPop<J> {
        let mut state = self.state.lock();
        match state.jobs.pop_front() {
            Some(job) => {
                let woken = self.after_take(&mut state);
                drop(state);
                wake_all(woken);
                TryPop::Job(job)
            }
            None if self.finished() => TryPop::Closed,
            None => TryPop::Empty,
        }
    }

    /// Takes the oldest job, or registers in `slot` to be woken when one is committed (or the
    /// lane finishes). `Ready(None)` when the lane is closed and drained.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>, slot: &mut Slot) -> Poll<Option<J>> {
        let mut state = self.state.lock();
        state.unregister_worker(slot);
        match state.jobs.pop_front() {
            Some(job) => {
                let woken = self.after_take(&mut state);
                drop(state);
                wake_all(woken);
                Poll::Ready(Some(job))
            }
            None if self.finished() => Poll::Ready(None),
            None => {
                state.poppers.register(slot, cx.waker());
                Poll::Pending
            }
        }
    }

    /// Withdraws a waiting pop, passing on a wake-up it received but did not use.
    pub(crate) fn cancel_pop(&self, slot: &mut Slot) {
        if slot.is_none() {
            return;
        }
        let woken = {
            let mut state = self.state.lock();
            let was_woken = state.unregister_worker(slot);
            let has_job = !state.jobs.is_empty() || self.finished();
            if was_woken && has_job { state.wake_a_worker() } else { None }
        };
        wake_all(woken.into_iter().collect());
    }

    /// Takes the oldest job another worker may run (not keyed), waking one waiting submitter.
    pub(crate) fn steal(&self) -> Option<J> {
        let mut state = self.state.lock();
        let index = state.jobs.iter().position(Stealable::stealable)?;
        let job = state.jobs.remove(index);
        let woken = self.after_take(&mut state);
        drop(state);
        wake_all(woken);
        job
    }

    /// Refuses new jobs from now on and wakes every waiter: submitters to fail, workers to drain
    /// what is left and stop.
    pub(crate) fn close(&self) {
        self.occupied.fetch_or(CLOSED, Ordering::AcqRel);
        let woken = {
            let mut state = self.state.lock();
            let mut woken = state.pushers.notify_all();
            woken.extend(state.wake_all_workers());
            woken
        };
        wake_all(woken);
    }

    /// Closes the lane for good (a shutdown past its deadline): takes every queued job, and
    /// jobs committed into room reserved earlier are dropped as they arrive.
    pub(crate) fn kill(&self) -> Vec<J> {
        self.occupied.fetch_or(CLOSED, Ordering::AcqRel);
        let (jobs, woken) = {
            let mut state = self.state.lock();
            state.dead = true;
            let jobs: Vec<J> = state.jobs.drain(..).collect();
            self.occupied.fetch_sub(jobs.len(), Ordering::AcqRel);
            let mut woken = state.pushers.notify_all();
            woken.extend(state.wake_all_workers());
            (jobs, woken)
        };
        wake_all(woken);
        jobs
    }

    /// Wakes every waiting submitter and the tasks awaiting queued jobs (named by `awaiting`):
    /// the pool's runtime went with nowhere to move, and each must move it to its own.
    pub(crate) fn wake_stranded(&self, awaiting: impl Fn(&J) -> Option<Waker>) {
        let woken = {
            let mut state = self.state.lock();
            let mut woken = state.pushers.notify_all();
            woken.extend(state.jobs.iter().filter_map(&awaiting));
            woken
        };
        wake_all(woken);
    }

    /// Runs `decide` under the lane's lock if no job is queued, so that no commit can slip in
    /// between the look and the decision; `false` when a job is queued.
    pub(crate) fn if_empty(&self, decide: impl FnOnce() -> bool) -> bool {
        let state = self.state.lock();
        state.jobs.is_empty() && decide()
    }

    /// Wakes every parked worker to re-check the pool's size (after a resize).
    pub(crate) fn interrupt(&self) {
        let woken = {
            let mut state = self.state.lock();
            state.interrupts += 1;
            state.wake_all_workers()
        };
        wake_all(woken);
    }

    /// How many interrupts there have been.
    pub(crate) fn interrupts(&self) -> u64 {
        self.state.lock().interrupts
    }

    /// `(queued jobs, parked workers)`, for stats.
    /// Jobs queued plus room reserved, read without the lock: what overload checks count.
    pub(crate) fn occupied(&self) -> usize {
        self.occupied.load(Ordering::Relaxed) & !CLOSED
    }

    pub(crate) fn occupancy(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.jobs.len(), state.poppers.len())
    }
}
