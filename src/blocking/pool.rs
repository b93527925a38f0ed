//! [`BlockingPool`]: the public face of the pool. The paths it takes live in `shared.rs`.

use std::fmt;
use std::time::{Duration, Instant};

use super::builder::BlockingPoolBuilder;
use super::error::SubmitError;
use super::handle::BlockingHandle;
use super::shared::Shared;
use super::stats::Stats;
use crate::sync::Arc;

/// A pool of OS threads for blocking closures, with a bounded queue. See the
/// [module docs](super).
///
/// Share it behind an `Arc` (or a `static`); its methods take `&self`. Dropping it stops intake
/// without waiting: the jobs already queued still run, then the threads exit.
pub struct BlockingPool {
    shared: Arc<Shared>,
}

impl BlockingPool {
    /// A builder with the defaults: as many threads as CPUs, all core, a queue of
    /// [`DEFAULT_QUEUE_CAPACITY`](super::DEFAULT_QUEUE_CAPACITY), [`RejectionPolicy::Reject`].
    ///
    /// [`RejectionPolicy::Reject`]: super::RejectionPolicy::Reject
    pub fn builder() -> BlockingPoolBuilder {
        BlockingPoolBuilder::default()
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Submits `job` and returns a handle to its value. It runs on one of the pool's threads,
    /// one that is idle or, up to `max_threads`, one started for it.
    ///
    /// # Errors
    ///
    /// The closure comes back, unrun, in [`SubmitError::Full`] when the queue is full under the
    /// `Reject` policy, [`SubmitError::Shutdown`] after a shutdown, or [`SubmitError::Spawn`]
    /// when the pool had no thread and none could be started. Under `CallerRuns` a full queue
    /// runs the job before this returns; under `DropOldest` it evicts the oldest queued job.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::blocking::BlockingPool;
    ///
    /// let pool = BlockingPool::builder().max_threads(2).build()?;
    /// let handles: Vec<_> = (0..4u64).map(|n| pool.spawn(move || n * n).unwrap()).collect();
    /// let squares: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// # Ok::<(), millpond::BuildError>(())
    /// ```
    pub fn spawn<F, T>(&self, job: F) -> Result<BlockingHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (sender, handle) = BlockingHandle::new();
        self.shared.submit(job, Some(sender)).map(|()| handle)
    }

    /// Submits `job` without a handle: cheaper when nobody waits for the result. A panic is
    /// still caught and reported (panic hook, [`Stats::panicked`]).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::blocking::BlockingPool;
    ///
    /// let pool = BlockingPool::builder().max_threads(1).build()?;
    /// pool.execute(|| println!("on a pool thread")).unwrap();
    /// pool.shutdown();
    /// assert_eq!(pool.stats().completed, 1);
    /// # Ok::<(), millpond::BuildError>(())
    /// ```
    pub fn execute<F>(&self, job: F) -> Result<(), SubmitError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        self.shared.submit::<F, ()>(job, None)
    }

    /// Stops intake, lets the queued jobs run, and blocks until every thread has exited and
    /// been joined. Later submits get [`SubmitError::Shutdown`].
    ///
    /// It blocks the calling thread: from async code, call it inside `spawn_blocking`, or just
    /// drop the pool. Called from a job of this same pool it cannot wait for its own thread: it
    /// stops intake and returns.
    pub fn shutdown(&self) {
        self.shared.shutdown(None);
    }

    /// Like [`shutdown`](Self::shutdown), waiting at most `timeout`. Returns true when every job
    /// ran and every thread exited in time. Otherwise the jobs still queued are dropped unrun
    /// (their handles resolve to [`TaskError::Cancelled`](super::TaskError::Cancelled)), and the
    /// jobs still running finish on their threads, which exit then; it does not wait for them.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use millpond::blocking::{BlockingPool, TaskError};
    ///
    /// let pool = BlockingPool::builder().max_threads(1).build()?;
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let running = pool.spawn(move || gate.recv().is_ok()).unwrap();
    /// let queued = pool.spawn(|| "never").unwrap();
    /// assert!(!pool.shutdown_timeout(Duration::from_millis(20)));
    /// assert_eq!(queued.join(), Err(TaskError::Cancelled));
    /// release.send(()).unwrap();
    /// assert_eq!(running.join(), Ok(true));
    /// # Ok::<(), millpond::BuildError>(())
    /// ```
    pub fn shutdown_timeout(&self, timeout: Duration) -> bool {
        // A timeout too large to add is no timeout.
        self.shared.shutdown(Instant::now().checked_add(timeout))
    }

    /// Whether the pool was shut down (or is shutting down): it takes no new jobs.
    pub fn is_shutdown(&self) -> bool {
        self.shared.queue.is_closed()
    }

    /// A snapshot of the pool's threads, queue, counters and histograms.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::blocking::BlockingPool;
    ///
    /// let pool = BlockingPool::builder().max_threads(2).build()?;
    /// pool.spawn(|| ()).unwrap().join().unwrap();
    /// let stats = pool.stats();
    /// assert_eq!(stats.completed, 1);
    /// assert_eq!(stats.run_time.count(), 1);
    /// assert!(stats.threads <= 2);
    /// # Ok::<(), millpond::BuildError>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl Drop for BlockingPool {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPool")
            .field("threads", &self.shared.threads.live())
            .field("queued", &self.shared.queue.len())
            .field("shutdown", &self.is_shutdown())
            .finish_non_exhaustive()
    }
}
