//! The loop each pool thread runs.
//!
//! A busy thread takes jobs with `try_take_turn`, which touches no idle counter and wakes
//! nobody: a flood costs each job one channel pop and one release of its queue place. Only when
//! the queue is empty (or another thread is taking) does the thread count itself idle and wait
//! its turn, up to its keep-alive; a thread that times out retires if it is above the core
//! (`Threads::retire`). Threads take one at a time, as the `threadpool` crate's do: with tiny
//! jobs, two threads popping the channel at once mostly trade its cache lines.
//!
//! Exit on shutdown: the queue reads exactly `CLOSED` once every admitted job has been taken.
//! A thread that sees it after its last job exits, and passes a wake-up to the channel as it
//! goes, so the next blocked thread wakes, sees the same, and passes it on.

use std::time::Instant;

use super::queue::Take;
use super::shared::Shared;
use crate::sync::Arc;

pub(crate) fn work(shared: &Arc<Shared>) {
    let mut exit = Exit { shared, counted: true };
    let queue = &shared.queue;
    loop {
        if let Some(job) = queue.try_take_turn() {
            queue.release();
            shared.run(job, true);
            continue;
        }
        if queue.is_finished() {
            return;
        }
        let may_retire = shared.threads.enter_idle();
        // A keep-alive too long to add is forever.
        let deadline =
            may_retire.then(|| Instant::now().checked_add(shared.settings.keep_alive)).flatten();
        let taken = queue.take_until(deadline);
        shared.threads.leave_idle();
        match taken {
            Take::Job(job) => {
                queue.release();
                shared.run(job, true);
            }
            // The loop looks at the state first thing.
            Take::Wake => {}
            Take::TimedOut => {
                if shared.threads.retire(queue) {
                    exit.counted = false;
                    return;
                }
            }
        }
    }
}

/// Leaves the thread count however the loop ends (a panic outside a job included, which
/// `Job::run` should make impossible), and relays the shutdown wake-up.
struct Exit<'a> {
    shared: &'a Shared,
    /// Whether the thread still counts in `live` (a retired thread already left it).
    counted: bool,
}

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.shared.threads.left();
        }
        if self.shared.queue.is_closed() {
            self.shared.queue.wake_one();
        }
    }
}
