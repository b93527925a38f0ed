//! A queued caller's hand-off cell: where the engine leaves the resource (or the error) for a
//! caller that waits, and the caller's waker.
//!
//! The engine writes a ticket only under the pool lock (lock order: pool, then ticket), and the
//! waiting caller reads it without the pool lock. That takes one of the three pool-lock
//! acquisitions out of every hand-off between tasks, the lock both workers fight over when every
//! checkout waits.

use std::task::{Poll, Waker};

use tokio::time::Instant;

use super::engine::{Entry, Step};
use super::error::Error;
use crate::sync::Mutex;

/// What a ticket holds once the caller was served.
struct Served<R, E> {
    grant: Result<Entry<R>, Error<E>>,
    queued_at: Instant,
    granted_at: Instant,
}

struct Slot<R, E> {
    waker: Option<Waker>,
    served: Option<Served<R, E>>,
}

pub(crate) struct Ticket<R, E> {
    slot: Mutex<Slot<R, E>>,
}

impl<R, E> Ticket<R, E> {
    pub(crate) fn new(waker: &Waker) -> Self {
        Self { slot: Mutex::new(Slot { waker: Some(waker.clone()), served: None }) }
    }

    /// The caller's side: collects what was handed over, or refreshes the waker.
    pub(crate) fn poll(&self, waker: &Waker) -> Poll<Result<Step<R>, Error<E>>> {
        let mut slot = self.slot.lock();
        match slot.served.take() {
            Some(served) => Poll::Ready(
                served.grant.map(|entry| Step::Handed(entry, served.queued_at, served.granted_at)),
            ),
            None => {
                if !slot.waker.as_ref().is_some_and(|known| known.will_wake(waker)) {
                    slot.waker = Some(waker.clone());
                }
                Poll::Pending
            }
        }
    }

    /// The waiting caller's waker, to wake it without serving it (the pool's runtime went and
    /// the caller must move it: `home.rs`).
    pub(crate) fn waker(&self) -> Option<Waker> {
        self.slot.lock().waker.clone()
    }

    /// The engine's side (under the pool lock): hands over a resource or an error; returns the
    /// waker to wake once the pool lock is released.
    pub(crate) fn serve(
        &self,
        grant: Result<Entry<R>, Error<E>>,
        queued_at: Instant,
        granted_at: Instant,
    ) -> Option<Waker> {
        let mut slot = self.slot.lock();
        slot.served = Some(Served { grant, queued_at, granted_at });
        slot.waker.take()
    }

    /// The engine's side, for a caller that gave up after it was served: takes back what it was
    /// handed, if anything.
    pub(crate) fn reclaim(&self) -> Option<Result<Entry<R>, Error<E>>> {
        self.slot.lock().served.take().map(|served| served.grant)
    }
}
