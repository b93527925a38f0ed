//! Where a lane keeps its queued jobs, on the packages the design names:
//!
//! * [`Pinned`]: jobs that only the lane's own worker (or, on the shared queue, any worker
//!   pulling from it) may take, in order. async-channel's bounded queue: a lock-free ring of
//!   `capacity` slots, allocated once.
//! * [`Open`]: a worker's jobs that idle workers may steal. A crossbeam-deque `Injector`: a
//!   lock-free FIFO that a thief can take a batch from in one operation.
//! * [`Stash`]: what a thief took beyond the job it runs now, run before its own lane's jobs
//!   (a crossbeam-deque `Worker`, owned by the thief).
//!
//! The lane counts room itself (`Lane::occupied`), before a job exists, so a push here never
//! finds the queue full, and nothing here waits: parking is the lane's [`Signal`]s.
//!
//! Under `--cfg millpond_loom` each is a mutexed `VecDeque` with the same methods, since loom
//! cannot see inside the packages (which bring their own verification); the models check the
//! protocols the lane builds on top of them.
//!
//! [`Signal`]: super::signal::Signal

/// Above this capacity a pinned queue grows in segments as jobs arrive instead of allocating
/// every slot up front: a generous `queue_capacity` should not cost its full size in memory
/// while the queue is short.
#[cfg(not(millpond_loom))]
const PREALLOCATED_UP_TO: usize = 4096;

#[cfg(not(millpond_loom))]
pub(crate) struct Pinned<J> {
    sender: async_channel::Sender<J>,
    receiver: async_channel::Receiver<J>,
}

#[cfg(not(millpond_loom))]
impl<J> Pinned<J> {
    pub(crate) fn new(capacity: usize) -> Self {
        let (sender, receiver) = if capacity <= PREALLOCATED_UP_TO {
            async_channel::bounded(capacity.max(1))
        } else {
            async_channel::unbounded()
        };
        Self { sender, receiver }
    }

    /// Queues a job into room the lane reserved for it. The job comes back only if the room
    /// was not there, which the lane's accounting rules out.
    pub(crate) fn push(&self, job: J) -> Result<(), J> {
        self.sender.try_send(job).map_err(async_channel::TrySendError::into_inner)
    }

    pub(crate) fn pop(&self) -> Option<J> {
        self.receiver.try_recv().ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.receiver.len()
    }
}

#[cfg(not(millpond_loom))]
pub(crate) struct Open<J>(crossbeam_deque::Injector<J>);

#[cfg(not(millpond_loom))]
impl<J> Open<J> {
    pub(crate) fn new() -> Self {
        Self(crossbeam_deque::Injector::new())
    }

    pub(crate) fn push(&self, job: J) {
        self.0.push(job);
    }

    pub(crate) fn pop(&self) -> Option<J> {
        retry(|| self.0.steal())
    }

    /// Takes the oldest job to run now and up to `limit - 1` more into `stash`.
    pub(crate) fn steal_batch(&self, stash: &Stash<J>, limit: usize) -> Option<J> {
        retry(|| self.0.steal_batch_with_limit_and_pop(&stash.0, limit))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Repeats a steal that lost a race with another (`Retry`) until it says empty or succeeds.
#[cfg(not(millpond_loom))]
fn retry<J>(mut steal: impl FnMut() -> crossbeam_deque::Steal<J>) -> Option<J> {
    loop {
        match steal() {
            crossbeam_deque::Steal::Success(job) => return Some(job),
            crossbeam_deque::Steal::Empty => return None,
            crossbeam_deque::Steal::Retry => std::hint::spin_loop(),
        }
    }
}

#[cfg(not(millpond_loom))]
pub(crate) struct Stash<J>(crossbeam_deque::Worker<J>);

#[cfg(not(millpond_loom))]
impl<J> Stash<J> {
    pub(crate) fn new() -> Self {
        Self(crossbeam_deque::Worker::new_fifo())
    }

    pub(crate) fn pop(&self) -> Option<J> {
        self.0.pop()
    }
}

#[cfg(millpond_loom)]
mod model {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use crate::sync::Mutex;

    pub(crate) struct Pinned<J>(Mutex<VecDeque<J>>);

    impl<J> Pinned<J> {
        pub(crate) fn new(_capacity: usize) -> Self {
            Self(Mutex::new(VecDeque::new()))
        }

        pub(crate) fn push(&self, job: J) -> Result<(), J> {
            self.0.lock().push_back(job);
            Ok(())
        }

        pub(crate) fn pop(&self) -> Option<J> {
            self.0.lock().pop_front()
        }

        pub(crate) fn len(&self) -> usize {
            self.0.lock().len()
        }
    }

    pub(crate) struct Open<J>(Mutex<VecDeque<J>>);

    impl<J> Open<J> {
        pub(crate) fn new() -> Self {
            Self(Mutex::new(VecDeque::new()))
        }

        pub(crate) fn push(&self, job: J) {
            self.0.lock().push_back(job);
        }

        pub(crate) fn pop(&self) -> Option<J> {
            self.0.lock().pop_front()
        }

        pub(crate) fn steal_batch(&self, stash: &Stash<J>, limit: usize) -> Option<J> {
            let mut jobs = self.0.lock();
            let first = jobs.pop_front()?;
            let more = (jobs.len() / 2).min(limit.saturating_sub(1));
            stash.0.borrow_mut().extend(jobs.drain(..more));
            Some(first)
        }

        pub(crate) fn len(&self) -> usize {
            self.0.lock().len()
        }
    }

    pub(crate) struct Stash<J>(RefCell<VecDeque<J>>);

    impl<J> Stash<J> {
        pub(crate) fn new() -> Self {
            Self(RefCell::new(VecDeque::new()))
        }

        pub(crate) fn pop(&self) -> Option<J> {
            self.0.borrow_mut().pop_front()
        }
    }
}

#[cfg(millpond_loom)]
pub(crate) use model::{Open, Pinned, Stash};
