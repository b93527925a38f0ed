//! The bounded queue: an admission counter in front of a `crossbeam_channel`.
//!
//! The channel itself is unbounded; the bound is kept by `state`, one atomic word:
//!
//! | bits | meaning |
//! |---|---|
//! | top bit (`CLOSED`) | the pool takes no new jobs |
//! | the rest | jobs admitted and not yet taken by a thread (queued, or about to be pushed) |
//!
//! A submit first reserves a place (a compare-and-swap that fails when the count is at capacity
//! or the pool is closed), and only then boxes its closure and pushes it. So a full queue hands
//! the caller's closure back unboxed, the channel never holds more than `capacity` jobs (a flood
//! costs no memory beyond the bound), and closing is one `fetch_or` that no later reservation can
//! slip past. A thread that takes a job gives its place back (`release`).
//!
//! Threads learn of a shutdown through the same word: once it reads exactly `CLOSED`, every
//! admitted job has been taken, so a thread that sees it may exit. Threads blocked on the channel
//! are woken by wake-up messages (`None`) passed along from one exiting thread to the next (see
//! `worker.rs`).
//!
//! Orderings: everything on `state` is `SeqCst`, because the keep-alive check in `threads.rs`
//! pairs a read of `state` with counters in another word (a store-load pattern that only a single
//! total order rules out: see `Threads::retire`). The cost is nothing on x86 (a locked RMW is
//! sequentially consistent anyway) and one fence per operation elsewhere.

use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::job::{Envelope, Message};
use crate::sync::{AtomicUsize, CachePadded, Mutex, Ordering::SeqCst};

const CLOSED: usize = 1 << (usize::BITS - 1);

/// The largest queue capacity the state word can count.
pub(crate) const MAX_CAPACITY: usize = CLOSED - 1;

/// What a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A place is reserved: push a job, or give it back with `release`.
    Reserved,
    /// The queue is at capacity.
    Full,
    /// The pool is closed.
    Closed,
}

/// What a blocking take found.
pub(crate) enum Take {
    Job(Envelope),
    /// A wake-up: look at the pool's state.
    Wake,
    TimedOut,
}

pub(crate) struct Queue {
    state: CachePadded<AtomicUsize>,
    /// Held by the pool thread that is taking from the channel. One taker at a time keeps the
    /// threads from contending on the channel's head with every job (the channel is correct
    /// without it: `evict_oldest` and a shutdown's drain take without a turn).
    turn: Mutex<()>,
    capacity: usize,
    sender: Sender<Message>,
    receiver: Receiver<Message>,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Self {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Self {
            state: CachePadded(AtomicUsize::new(0)),
            turn: Mutex::new(()),
            capacity,
            sender,
            receiver,
        }
    }

    /// Reserves a place for one job.
    pub(crate) fn reserve(&self) -> Admit {
        let mut state = self.state.load(SeqCst);
        loop {
            if state & CLOSED != 0 {
                return Admit::Closed;
            }
            if state >= self.capacity {
                return Admit::Full;
            }
            match self.state.compare_exchange_weak(state, state + 1, SeqCst, SeqCst) {
                Ok(_) => return Admit::Reserved,
                Err(actual) => state = actual,
            }
        }
    }

    /// Pushes a job into the place its caller reserved.
    pub(crate) fn push(&self, job: Envelope) {
        // The queue holds a receiver as long as it lives, so the send cannot fail; should it
        // ever, the handle hears that the job never ran instead of waiting forever.
        if let Err(error) = self.sender.send(Some(job)) {
            if let Some(job) = error.into_inner() {
                job.cancel(super::TaskError::Cancelled);
            }
        }
    }

    /// Gives back a place: a job was taken, or a reservation is abandoned. True when that left
    /// the pool closed with nothing admitted, so threads waiting on the channel must be woken.
    pub(crate) fn release(&self) -> bool {
        self.state.fetch_sub(1, SeqCst) == CLOSED | 1
    }

    /// Takes a job without blocking; `None` when there is none now. A wake-up found here is
    /// consumed: every caller looks at the state next, which is all a wake-up asks.
    pub(crate) fn try_take(&self) -> Option<Envelope> {
        self.receiver.try_recv().ok().flatten()
    }

    /// A pool thread's `try_take`: `None` also when another thread has the turn to take (it
    /// then waits its turn in `take_timeout`).
    pub(crate) fn try_take_turn(&self) -> Option<Envelope> {
        let _turn = self.turn.try_lock()?;
        self.try_take()
    }

    /// Waits until `deadline` (`None`: as long as it takes) for a job or a wake-up, in turn
    /// with the other pool threads.
    pub(crate) fn take_until(&self, deadline: Option<Instant>) -> Take {
        let turn = match deadline {
            Some(deadline) => self.turn.try_lock_until(deadline),
            None => Some(self.turn.lock()),
        };
        let Some(_turn) = turn else {
            return Take::TimedOut;
        };
        let received = match deadline {
            Some(deadline) => self.receiver.recv_deadline(deadline),
            None => self.receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(Some(job)) => Take::Job(job),
            // Disconnection cannot happen (the queue holds a sender); treat it as a wake-up.
            Ok(None) | Err(RecvTimeoutError::Disconnected) => Take::Wake,
            Err(RecvTimeoutError::Timeout) => Take::TimedOut,
        }
    }

    /// Takes the oldest queued job to evict it; the caller inherits its place in the queue (the
    /// count does not change). `None` when the queue is empty now (the places are held by
    /// reservations not yet pushed, or were freed meanwhile: reserve again).
    pub(crate) fn evict_oldest(&self) -> Option<Envelope> {
        match self.receiver.try_recv() {
            Ok(Some(job)) => Some(job),
            Ok(None) => {
                // Only a closed pool has wake-ups queued; put it back for the threads.
                self.wake_one();
                None
            }
            Err(_) => None,
        }
    }

    /// Closes the queue to new jobs. True when nothing was admitted at that moment (threads
    /// waiting on the channel must be woken; otherwise the thread that takes the last job will).
    pub(crate) fn close(&self) -> bool {
        self.state.fetch_or(CLOSED, SeqCst) & !CLOSED == 0
    }

    /// Whether the queue is closed and every admitted job has been taken: a thread may exit.
    pub(crate) fn is_finished(&self) -> bool {
        self.state.load(SeqCst) == CLOSED
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(SeqCst) & CLOSED != 0
    }

    /// Jobs admitted and not yet taken.
    pub(crate) fn len(&self) -> usize {
        self.state.load(SeqCst) & !CLOSED
    }

    /// Wakes one thread blocked on the channel (or the next one to look).
    pub(crate) fn wake_one(&self) {
        // Cannot fail while the queue holds a receiver.
        let _ = self.sender.send(None);
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;
    use crate::blocking::job::Task;

    fn envelope() -> Envelope {
        let task: Task<fn(), ()> = Task { closure: || (), sender: None, queued_at: None };
        Box::new(task)
    }

    #[test]
    fn reservations_stop_at_capacity_and_after_close() {
        let queue = Queue::new(2);
        assert_eq!(queue.reserve(), Admit::Reserved);
        assert_eq!(queue.reserve(), Admit::Reserved);
        assert_eq!(queue.reserve(), Admit::Full);
        assert_eq!(queue.len(), 2);
        assert!(!queue.release());
        assert!(!queue.close(), "a job is still admitted");
        assert_eq!(queue.reserve(), Admit::Closed);
        assert!(!queue.is_finished());
        assert!(queue.release(), "the last place given back after close finishes the queue");
        assert!(queue.is_finished());
    }

    #[test]
    fn closing_an_empty_queue_finishes_it_at_once() {
        let queue = Queue::new(1);
        assert!(queue.close());
        assert!(queue.is_finished() && queue.is_closed());
    }

    #[test]
    fn eviction_takes_the_oldest_job_and_keeps_the_count() {
        let queue = Queue::new(2);
        for _ in 0..2 {
            assert_eq!(queue.reserve(), Admit::Reserved);
            queue.push(envelope());
        }
        assert!(queue.evict_oldest().is_some());
        assert_eq!(queue.len(), 2, "the evicting submit inherits the place");
        assert!(queue.try_take().is_some());
        assert!(queue.try_take().is_none());
        assert!(queue.evict_oldest().is_none());
    }

    #[test]
    fn wake_ups_are_not_jobs() {
        let queue = Queue::new(1);
        queue.wake_one();
        assert!(matches!(queue.take_until(Some(Instant::now())), Take::Wake));
        assert!(matches!(queue.take_until(Some(Instant::now())), Take::TimedOut));
        queue.wake_one();
        assert!(queue.try_take().is_none());
        assert!(matches!(queue.take_until(Some(Instant::now())), Take::TimedOut), "consumed");
    }
}
