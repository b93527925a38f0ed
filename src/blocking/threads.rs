//! Counting the pool's threads: when a submit starts one, when an idle one may retire, and who
//! waits for them all to exit.
//!
//! `live` counts threads started (or being started) and not yet gone; `idle` counts threads
//! blocked on the queue. A submit starts a thread while fewer than `core` live, or while fewer
//! than `max` live and the jobs queued (its own included) outnumber the idle threads; so threads
//! start as work needs them, never all up front, and `live` never passes `max` (every increment
//! is a compare-and-swap against the bound).
//!
//! Comparing with the queue, not just asking whether any thread is idle, matters: a thread
//! counted idle may be waking for an earlier job, and a submit that trusted it would leave its
//! own job queued behind busy threads with `live` below `max`. The queue is read before `idle`,
//! and a waking thread leaves `idle` before it gives back its job's place in the queue, so the
//! earlier job is seen either still queued or with its thread no longer idle.
//!
//! The race to rule out is a thread retiring at the moment a job arrives: the submit sees the
//! thread idle and starts no other; the thread, timed out, leaves; the job would wait with no
//! thread to run it. Both sides are sequentially consistent, so they are ordered:
//!
//! * submit: reserve a place in the queue (`state`), then read `state` and `idle`;
//! * retiring thread: decrement `idle`, decrement `live`, then read `state`.
//!
//! If the submit read `idle` before the thread's decrement, the thread's later read of `state`
//! sees the reservation, and it stays (or, when `live` is back at `max`, leaves the job to the
//! threads that are). If it read `idle` after, it saw the thread gone and started one if it
//! could. Either way some thread runs the job.

use std::thread::{self, JoinHandle, Thread};
use std::time::Instant;

use super::queue::Queue;
use crate::sync::{AtomicUsize, CachePadded, Mutex, Ordering::SeqCst};

pub(crate) struct Threads {
    live: CachePadded<AtomicUsize>,
    idle: CachePadded<AtomicUsize>,
    core: usize,
    max: usize,
    /// Handles of threads started, pruned of finished ones at each start; joined by shutdown.
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// Threads parked in `wait_exit`, unparked when `live` reaches 0.
    waiters: Mutex<Vec<Thread>>,
}

impl Threads {
    pub(crate) fn new(core: usize, max: usize) -> Self {
        Self {
            live: CachePadded(AtomicUsize::new(0)),
            idle: CachePadded(AtomicUsize::new(0)),
            core,
            max,
            handles: Mutex::new(Vec::new()),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Called by a submit that has reserved its place: whether to start a thread for it. When
    /// true, the new thread already counts in `live`; the caller starts it, or calls `unclaim`.
    pub(crate) fn claim_start(&self, queue: &Queue) -> bool {
        let mut live = self.live.load(SeqCst);
        loop {
            // The queue first, then `idle`: see the module docs.
            let wanted =
                live < self.core || (live < self.max && queue.len() > self.idle.load(SeqCst));
            if !wanted {
                return false;
            }
            match self.live.compare_exchange_weak(live, live + 1, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(actual) => live = actual,
            }
        }
    }

    /// A claimed thread could not be started. Returns how many threads are live.
    pub(crate) fn unclaim(&self) -> usize {
        self.left()
    }

    /// Records the handle of a thread just started.
    pub(crate) fn started(&self, handle: JoinHandle<()>) {
        let mut handles = self.handles.lock();
        // Keeps the list as long as the live threads, however many come and go.
        handles.retain(|handle| !handle.is_finished());
        handles.push(handle);
    }

    /// Counts the thread idle. Returns whether it could retire if it stays idle: whether more
    /// than `core` threads live. One that cannot waits without a deadline, saving a clock
    /// reading per wait; should threads start meanwhile, those above the core retire instead.
    pub(crate) fn enter_idle(&self) -> bool {
        self.idle.fetch_add(1, SeqCst);
        self.live.load(SeqCst) > self.core
    }

    pub(crate) fn leave_idle(&self) {
        self.idle.fetch_sub(1, SeqCst);
    }

    /// Called by a thread whose keep-alive ran out while idle (after `leave_idle`): true when
    /// it has left the count and must exit; false when it is needed (one of the `core`, or work
    /// arrived as it was leaving). See the module docs for the race this closes.
    pub(crate) fn retire(&self, queue: &Queue) -> bool {
        let mut live = self.live.load(SeqCst);
        loop {
            if live <= self.core {
                return false;
            }
            match self.live.compare_exchange_weak(live, live - 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(actual) => live = actual,
            }
        }
        if queue.len() > 0 {
            // Work arrived as we left: come back if the bound allows, else the `max` threads
            // live now will run it.
            let mut now = self.live.load(SeqCst);
            while now < self.max {
                match self.live.compare_exchange_weak(now, now + 1, SeqCst, SeqCst) {
                    Ok(_) => return false,
                    Err(actual) => now = actual,
                }
            }
            return true;
        }
        // `live` is still the count this thread left.
        if live == 1 {
            self.wake_waiters();
        }
        true
    }

    /// A thread that still counted in `live` is exiting. Returns how many threads are live.
    pub(crate) fn left(&self) -> usize {
        let live = self.live.fetch_sub(1, SeqCst) - 1;
        if live == 0 {
            self.wake_waiters();
        }
        live
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(SeqCst)
    }

    pub(crate) fn idle(&self) -> usize {
        self.idle.load(SeqCst)
    }

    /// Parks until `done()` holds (checked whenever `live` reaches 0) or the deadline passes;
    /// returns whether it holds.
    pub(crate) fn wait_exit(&self, deadline: Option<Instant>, done: impl Fn() -> bool) -> bool {
        let me = thread::current();
        loop {
            // Registered before the check, so an unpark between the check and the park is kept
            // as the thread's token.
            self.waiters.lock().push(me.clone());
            if done() {
                break;
            }
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    thread::park_timeout(left);
                }
            }
        }
        self.waiters.lock().retain(|waiter| waiter.id() != me.id());
        done()
    }

    /// Joins the threads that have finished; with `all`, waits for every one (only once `live`
    /// is 0, when each is at most returning).
    pub(crate) fn join(&self, all: bool) {
        let handles = std::mem::take(&mut *self.handles.lock());
        let mut running = Vec::new();
        for handle in handles {
            if all || handle.is_finished() {
                // A worker catches its jobs' panics; an error here has nothing left to report.
                let _ = handle.join();
            } else {
                running.push(handle);
            }
        }
        self.handles.lock().append(&mut running);
    }

    /// Unparks every thread in `wait_exit`, to look again.
    pub(crate) fn wake_waiters(&self) {
        for waiter in self.waiters.lock().drain(..) {
            waiter.unpark();
        }
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;
    use crate::blocking::queue::Admit;

    #[test]
    fn threads_start_up_to_the_core_then_only_for_queued_work_up_to_the_max() {
        let queue = Queue::new(8);
        let threads = Threads::new(1, 2);
        assert!(threads.claim_start(&queue), "below the core: always");
        assert!(!threads.claim_start(&queue), "at the core with nothing queued: no");
        assert_eq!(queue.reserve(), Admit::Reserved);
        threads.enter_idle();
        assert!(!threads.claim_start(&queue), "one queued job, one idle thread: no");
        threads.leave_idle();
        assert!(threads.claim_start(&queue), "one queued job, no idle thread: yes");
        assert!(!threads.claim_start(&queue), "never past the max");
        assert_eq!(threads.live(), 2);
    }

    #[test]
    fn only_threads_above_the_core_retire_and_not_while_work_is_queued() {
        let queue = Queue::new(8);
        let threads = Threads::new(1, 3);
        assert!(threads.claim_start(&queue));
        assert_eq!(queue.reserve(), Admit::Reserved);
        assert!(threads.claim_start(&queue));
        assert!(!threads.retire(&queue), "work is queued: stay");
        assert_eq!(threads.live(), 2);
        queue.release();
        assert!(threads.retire(&queue));
        assert_eq!(threads.live(), 1);
        assert!(!threads.retire(&queue), "the core stays");
    }
}
