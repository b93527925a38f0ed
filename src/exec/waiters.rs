//! A FIFO list of parked tasks, for the conditions a lane waits on ("space", "a job").
//!
//! Waiters do not receive anything through the list: a woken waiter re-checks its condition under
//! the lane lock. That keeps every wait cancellation safe: dropping a waiting future loses
//! nothing, it only has to pass on a wake-up it received but will not use
//! ([`Waiters::remove`] tells it whether it had one).

use std::collections::VecDeque;
use std::task::Waker;

/// Where a waiting future is registered, if anywhere.
pub(crate) type Slot = Option<u64>;

#[derive(Debug, Default)]
pub(crate) struct Waiters {
    queue: VecDeque<(u64, Waker)>,
    next_id: u64,
}

impl Waiters {
    /// Registers (or refreshes) the caller's waker, keeping its place in line when it already had
    /// one.
    pub(crate) fn register(&mut self, slot: &mut Slot, waker: &Waker) {
        if let Some(id) = *slot {
            if let Some(entry) = self.queue.iter_mut().find(|(queued, _)| *queued == id) {
                if !entry.1.will_wake(waker) {
                    entry.1 = waker.clone();
                }
                return;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back((id, waker.clone()));
        *slot = Some(id);
    }

    /// Takes the longest-waiting waker, to be woken once the lock is released.
    pub(crate) fn notify_one(&mut self) -> Option<Waker> {
        self.queue.pop_front().map(|(_, waker)| waker)
    }

    /// Takes every waker.
    pub(crate) fn notify_all(&mut self) -> Vec<Waker> {
        self.queue.drain(..).map(|(_, waker)| waker).collect()
    }

    /// Forgets the caller's registration. Returns `true` when it had been notified (taken off the
    /// list) without having used the wake-up yet, which the caller may then have to pass on.
    pub(crate) fn remove(&mut self, slot: &mut Slot) -> bool {
        let Some(id) = slot.take() else {
            return false;
        };
        match self.queue.iter().position(|(queued, _)| *queued == id) {
            Some(index) => {
                self.queue.remove(index);
                false
            }
            None => true,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}
