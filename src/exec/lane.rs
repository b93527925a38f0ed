//! A bounded FIFO of jobs with async waiting on both ends: the queue of the shared scheduler and
//! each worker's queue in the per-worker scheduler.
//!
//! Everything sits under one mutex: the jobs, the closed flag, and two waiter lists (submitters
//! waiting for space, workers waiting for a job). Waiters are woken after the lock is released
//! and re-check under it, so no job is ever handed to a waiter that might be cancelled:
//!
//! * a submitter first *reserves* room, then builds its job and *commits* it, so that a refused
//!   task goes back to its caller as it came, never boxed;
//! * a commit wakes one waiting worker; a pop (or a steal) wakes one waiting submitter;
//! * `close` wakes everyone; reservations fail from then on, and pops drain what is left,
//!   reserved jobs included, before they report the end;
//! * a waiter dropped after it was woken, but before it used the wake-up, passes it on, so a
//!   cancelled `submit` or an idle worker that times out never strands a job or a free slot.
//!
//! The loom models in `loom_models.rs` check these races (submit vs shutdown, steal vs shutdown).

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use super::waiters::{Slot, Waiters};
use crate::sync::Mutex;

/// What a lane needs to know about a job: whether another worker may take it.
pub(crate) trait Stealable {
    /// Keyed jobs must run on their own worker, in order: they are never stolen.
    fn stealable(&self) -> bool;
}

#[derive(Debug)]
pub(crate) struct Lane<J> {
    state: Mutex<State<J>>,
    capacity: usize,
}

#[derive(Debug)]
struct State<J> {
    jobs: VecDeque<J>,
    /// Room promised to submitters that are building their job: counted against the capacity,
    /// and a closed lane is not finished while any is outstanding.
    reserved: usize,
    closed: bool,
    /// Set by a shutdown past its deadline: jobs committed from now on are dropped at once.
    dead: bool,
    /// Bumped by `interrupt`: parked workers wake and re-check their pool's size.
    interrupts: u64,
    pushers: Waiters,
    poppers: Waiters,
}

impl<J> State<J> {
    fn has_room(&self, capacity: usize) -> bool {
        self.jobs.len() + self.reserved < capacity
    }

    /// Closed, drained, and no reserved job still to come: workers may stop.
    fn finished(&self) -> bool {
        self.closed && self.jobs.is_empty() && self.reserved == 0
    }

    /// Every parked worker, once the lane has finished: they stop.
    fn wake_if_finished(&mut self) -> Vec<Waker> {
        if self.finished() { self.poppers.notify_all() } else { Vec::new() }
    }

    /// The wake-ups a job taken off the lane causes: a submitter waiting for its room, and every
    /// parked worker if that was the last job of a closed lane.
    fn after_take(&mut self) -> Vec<Waker> {
        let mut woken = self.wake_if_finished();
        woken.extend(self.pushers.notify_one());
        woken
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

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl<J: Stealable> Lane<J> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(capacity.min(4096)),
                reserved: 0,
                closed: false,
                dead: false,
                interrupts: 0,
                pushers: Waiters::default(),
                poppers: Waiters::default(),
            }),
            capacity,
        }
    }

    /// Reserves room for one job if there is any. A submitter reserves before it builds its job,
    /// so a refused task comes back to its caller unboxed.
    pub(crate) fn try_reserve(&self) -> Result<(), NoRoom> {
        let mut state = self.state.lock();
        if state.closed {
            Err(NoRoom::Closed)
        } else if state.has_room(self.capacity) {
            state.reserved += 1;
            Ok(())
        } else {
            Err(NoRoom::Full)
        }
    }

    /// Reserves room once there is some, registering in `slot` while there is none;
    /// `Ready(Err(Closed))` when the lane closes first.
    pub(crate) fn poll_reserve(
        &self,
        cx: &mut Context<'_>,
        slot: &mut Slot,
    ) -> Poll<Result<(), NoRoom>> {
        let mut state = self.state.lock();
        if state.closed {
            state.pushers.remove(slot);
            return Poll::Ready(Err(NoRoom::Closed));
        }
        if !state.has_room(self.capacity) {
            state.pushers.register(slot, cx.waker());
            return Poll::Pending;
        }
        state.pushers.remove(slot);
        state.reserved += 1;
        Poll::Ready(Ok(()))
    }

    /// Withdraws a waiting reservation, passing on a wake-up it received but did not use.
    pub(crate) fn cancel_reserve(&self, slot: &mut Slot) {
        if slot.is_none() {
            return;
        }
        let woken = {
            let mut state = self.state.lock();
            let was_woken = state.pushers.remove(slot);
            if was_woken && (state.has_room(self.capacity) || state.closed) {
                state.pushers.notify_one()
            } else {
                None
            }
        };
        wake(woken);
    }

    /// Queues a job into reserved room, waking one idle worker. Returns whether a worker was
    /// waiting for it. A lane killed by an expired shutdown drops the job instead.
    pub(crate) fn commit(&self, job: J) -> bool {
        let (woken, dropped) = {
            let mut state = self.state.lock();
            state.reserved -= 1;
            if state.dead {
                (state.wake_if_finished(), Some(job))
            } else {
                state.jobs.push_back(job);
                (state.poppers.notify_one().into_iter().collect(), None)
            }
        };
        // Outside the lock: dropping a job runs its destructors, which wake its handle.
        drop(dropped);
        let worker_waiting = !woken.is_empty();
        woken.into_iter().for_each(Waker::wake);
        worker_waiting
    }

    /// Takes the oldest job, waking one waiting submitter.
    pub(crate) fn try_pop(&self) -> TryPop<J> {
        let mut state = self.state.lock();
        match state.jobs.pop_front() {
            Some(job) => {
                let woken = state.after_take();
                drop(state);
                woken.into_iter().for_each(Waker::wake);
                TryPop::Job(job)
            }
            None if state.finished() => TryPop::Closed,
            None => TryPop::Empty,
        }
    }

    /// Takes the oldest job, or registers in `slot` to be woken when one is committed (or the
    /// lane finishes). `Ready(None)` when the lane is closed and drained.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>, slot: &mut Slot) -> Poll<Option<J>> {
        let mut state = self.state.lock();
        match state.jobs.pop_front() {
            Some(job) => {
                state.poppers.remove(slot);
                let woken = state.after_take();
                drop(state);
                woken.into_iter().for_each(Waker::wake);
                Poll::Ready(Some(job))
            }
            None if state.finished() => {
                state.poppers.remove(slot);
                Poll::Ready(None)
            }
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
            let was_woken = state.poppers.remove(slot);
            let has_job = !state.jobs.is_empty() || state.finished();
            if was_woken && has_job { state.poppers.notify_one() } else { None }
        };
        wake(woken);
    }

    /// Takes the oldest job another worker may run (not keyed), waking one waiting submitter.
    pub(crate) fn steal(&self) -> Option<J> {
        let mut state = self.state.lock();
        let index = state.jobs.iter().position(Stealable::stealable)?;
        let job = state.jobs.remove(index);
        let woken = state.after_take();
        drop(state);
        woken.into_iter().for_each(Waker::wake);
        job
    }

    /// Refuses new jobs from now on and wakes every waiter: submitters to fail, workers to drain
    /// what is left and stop.
    pub(crate) fn close(&self) {
        let woken = {
            let mut state = self.state.lock();
            state.closed = true;
            let mut woken = state.pushers.notify_all();
            woken.extend(state.poppers.notify_all());
            woken
        };
        woken.into_iter().for_each(Waker::wake);
    }

    /// Closes the lane for good (a shutdown past its deadline): takes every queued job, and
    /// jobs committed into room reserved earlier are dropped as they arrive.
    pub(crate) fn kill(&self) -> Vec<J> {
        let (jobs, woken) = {
            let mut state = self.state.lock();
            state.closed = true;
            state.dead = true;
            let jobs: Vec<J> = state.jobs.drain(..).collect();
            let mut woken = state.pushers.notify_all();
            woken.extend(state.poppers.notify_all());
            (jobs, woken)
        };
        woken.into_iter().for_each(Waker::wake);
        jobs
    }

    /// Wakes every parked worker to re-check the pool's size (after a resize).
    pub(crate) fn interrupt(&self) {
        let woken = {
            let mut state = self.state.lock();
            state.interrupts += 1;
            state.poppers.notify_all()
        };
        woken.into_iter().for_each(Waker::wake);
    }

    /// How many interrupts there have been.
    pub(crate) fn interrupts(&self) -> u64 {
        self.state.lock().interrupts
    }

    /// `(queued jobs, parked workers)`, for stats.
    pub(crate) fn occupancy(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.jobs.len(), state.poppers.len())
    }
}
