//! The handle of a submitted job: awaitable from async code, waitable from plain threads.
//!
//! The value travels in a `futures_channel::oneshot`. Its receiver is a `Future` that needs no
//! runtime, so async code simply awaits it; a plain thread polls the same receiver with a waker
//! that unparks it and parks in between ([`std::thread::park_timeout`] gives `wait_timeout`).
//! One channel thus serves both worlds. `tokio::sync::oneshot` would not: its `blocking_recv`
//! panics when called on a runtime thread and has no timeout, and it would tie the pool to
//! tokio. A hand-rolled slot (mutex, condvar and waker) would do the same as this in more code.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::error::TaskError;
use crate::sync::Arc;

pub(crate) type Sender<T> = oneshot::Sender<Result<T, TaskError>>;

/// The result of a job submitted with [`BlockingPool::spawn`](super::BlockingPool::spawn).
///
/// Await it from async code (it is a `Future` and needs no particular runtime), or wait for it
/// from a plain thread with [`join`](Self::join) or [`wait_timeout`](Self::wait_timeout).
/// Dropping it does not cancel the job: the job still runs and its value is dropped.
///
/// # Examples
///
/// ```
/// use millpond::blocking::BlockingPool;
///
/// let pool = BlockingPool::builder().max_threads(2).build()?;
/// let sum = pool.spawn(|| (1..=10).sum::<u32>()).unwrap();
/// assert_eq!(sum.join(), Ok(55));
///
/// // The same handle type, awaited from async code.
/// let handle = pool.spawn(|| "done").unwrap();
/// assert_eq!(futures::executor::block_on(handle), Ok("done"));
/// # Ok::<(), millpond::BuildError>(())
/// ```
#[must_use = "dropping a handle does not cancel the job; use `execute` to run a job without one"]
pub struct BlockingHandle<T> {
    receiver: oneshot::Receiver<Result<T, TaskError>>,
}

impl<T> BlockingHandle<T> {
    pub(crate) fn new() -> (Sender<T>, Self) {
        let (sender, receiver) = oneshot::channel();
        (sender, Self { receiver })
    }

    /// Blocks the calling thread until the job has finished, and returns its value.
    ///
    /// Do not call it on an async runtime's thread: it blocks that thread (await the handle
    /// instead).
    ///
    /// # Errors
    ///
    /// [`TaskError::Panicked`] when the job panicked, [`TaskError::Evicted`] when it was dropped
    /// from the queue for a newer one, [`TaskError::Cancelled`] when the pool shut down before
    /// it ran.
    pub fn join(mut self) -> Result<T, TaskError> {
        // Without a deadline the wait only ends with a value.
        self.wait(None).unwrap_or(Err(TaskError::Cancelled))
    }

    /// Blocks the calling thread until the job has finished or `timeout` has passed; `None` on
    /// timeout, when the job is still queued or running (wait again, or await the handle).
    ///
    /// Once it has returned `Some`, the value is gone: later waits return
    /// `Some(Err(TaskError::Cancelled))`.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join), inside the `Some`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use millpond::blocking::BlockingPool;
    ///
    /// let pool = BlockingPool::builder().max_threads(1).build()?;
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let mut handle = pool.spawn(move || gate.recv().is_ok()).unwrap();
    /// assert_eq!(handle.wait_timeout(Duration::from_millis(10)), None);
    /// release.send(()).unwrap();
    /// assert_eq!(handle.wait_timeout(Duration::from_secs(60)), Some(Ok(true)));
    /// # Ok::<(), millpond::BuildError>(())
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<T, TaskError>> {
        // A timeout too large to add is as good as none.
        self.wait(Instant::now().checked_add(timeout))
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Option<Result<T, TaskError>> {
        // A job that has already finished needs no waker: look before making one.
        if let Poll::Ready(result) = self.poll_result(&mut Context::from_waker(Waker::noop())) {
            return Some(result);
        }
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(result) = self.poll_result(&mut cx) {
                return Some(result);
            }
            // A wake-up between the poll and the park leaves the thread's token set, so the park
            // returns at once; a spurious return just polls again.
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    thread::park_timeout(left);
                }
            }
        }
    }

    fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, TaskError>> {
        // The sender is dropped without a value only when the job itself was dropped unrun.
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|received| received.unwrap_or(Err(TaskError::Cancelled)))
    }
}

/// # Cancel safety
///
/// Dropping the future (the handle) never cancels the job, and a handle polled and dropped
/// before completion loses nothing but the value.
impl<T> Future for BlockingHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_result(cx)
    }
}

impl<T> std::fmt::Debug for BlockingHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingHandle").finish_non_exhaustive()
    }
}

/// Wakes a thread parked in [`BlockingHandle::wait`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
