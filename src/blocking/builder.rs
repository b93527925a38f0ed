//! Configuration of a [`BlockingPool`], validated by [`BlockingPoolBuilder::build`].

use std::fmt;
use std::time::Duration;

use super::pool::BlockingPool;
use super::queue::MAX_CAPACITY;
use super::shared::{Settings, Shared};
use crate::BuildError;
use crate::sync::Arc;
use crate::unwind::PanicHook;

/// The default [`queue_capacity`](BlockingPoolBuilder::queue_capacity): jobs queued and not yet
/// started.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// The default [`keep_alive`](BlockingPoolBuilder::keep_alive) of threads above the core.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// What a submit does when the queue is full.
///
/// A submit to a pool that is shut down is always refused, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RejectionPolicy {
    /// Refuse the job: the closure comes back in [`SubmitError::Full`](super::SubmitError::Full)
    /// (the default). Java's `AbortPolicy`, without losing the job.
    #[default]
    Reject,
    /// Run the job on the submitter's thread, before the submit returns: backpressure that slows
    /// the producer down to the pool's pace. Its handle is ready when the submit returns; a panic
    /// is caught and reported as for a job run by the pool. Java's `CallerRunsPolicy`.
    CallerRuns,
    /// Drop the oldest queued job to make room; its handle resolves to
    /// [`TaskError::Evicted`](super::TaskError::Evicted). For work where only the latest
    /// matters. Java's `DiscardOldestPolicy`.
    DropOldest,
}

/// Builds a [`BlockingPool`]: [`BlockingPool::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use millpond::blocking::{BlockingPool, RejectionPolicy};
///
/// let pool = BlockingPool::builder()
///     .core_threads(2)
///     .max_threads(16)
///     .keep_alive(Duration::from_secs(30))
///     .queue_capacity(256)
///     .rejection_policy(RejectionPolicy::CallerRuns)
///     .thread_name("compress")
///     .build()?;
/// assert_eq!(pool.spawn(|| 6 * 7).unwrap().join(), Ok(42));
/// # Ok::<(), millpond::BuildError>(())
/// ```
pub struct BlockingPoolBuilder {
    core_threads: Option<usize>,
    max_threads: Option<usize>,
    keep_alive: Duration,
    queue_capacity: usize,
    policy: RejectionPolicy,
    panic_hook: Option<PanicHook>,
    thread_name: String,
    stack_size: Option<usize>,
}

impl fmt::Debug for BlockingPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPoolBuilder")
            .field("core_threads", &self.core_threads)
            .field("max_threads", &self.max_threads)
            .field("keep_alive", &self.keep_alive)
            .field("queue_capacity", &self.queue_capacity)
            .field("rejection_policy", &self.policy)
            .field("thread_name", &self.thread_name)
            .field("stack_size", &self.stack_size)
            .finish_non_exhaustive()
    }
}

impl Default for BlockingPoolBuilder {
    fn default() -> Self {
        Self {
            core_threads: None,
            max_threads: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            policy: RejectionPolicy::Reject,
            panic_hook: None,
            thread_name: String::from("millpond-blocking"),
            stack_size: None,
        }
    }
}

impl BlockingPoolBuilder {
    /// A fixed number of threads: sets both [`core_threads`](Self::core_threads) and
    /// [`max_threads`](Self::max_threads).
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.core_threads = Some(threads);
        self.max_threads = Some(threads);
        self
    }

    /// Threads kept even when idle. They still start only as jobs arrive, one per submit until
    /// there are this many. Default: [`max_threads`](Self::max_threads) (a fixed-size pool);
    /// may be 0, so that an idle pool holds no thread at all.
    #[must_use]
    pub fn core_threads(mut self, core: usize) -> Self {
        self.core_threads = Some(core);
        self
    }

    /// The most threads the pool runs: the bound on jobs running at once. A thread above the
    /// core starts when a job arrives and no thread is idle (sooner than Java's
    /// `ThreadPoolExecutor`, which waits for the queue to fill), and exits after
    /// [`keep_alive`](Self::keep_alive) without work. Default: the number of CPUs.
    #[must_use]
    pub fn max_threads(mut self, max: usize) -> Self {
        self.max_threads = Some(max);
        self
    }

    /// How long a thread above the core may stay idle before it exits. Default
    /// [`DEFAULT_KEEP_ALIVE`].
    #[must_use]
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The most jobs queued and not yet started. A full queue never grows: a submit beyond it is
    /// handled by the [`rejection_policy`](Self::rejection_policy). At most `queue_capacity +
    /// max_threads` jobs are held at once. Default [`DEFAULT_QUEUE_CAPACITY`].
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// What a submit does when the queue is full. Default [`RejectionPolicy::Reject`].
    #[must_use]
    pub fn rejection_policy(mut self, policy: RejectionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Called with the message of every job that panics, after its thread caught the panic.
    /// Without a hook, panics are logged with `tracing` at warn level. A hook that panics is
    /// contained.
    #[must_use]
    pub fn panic_hook(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.panic_hook = Some(Box::new(hook));
        self
    }

    /// The name of the pool's threads, as debuggers and panic messages show it. Default
    /// `"millpond-blocking"`; must not contain a NUL byte.
    #[must_use]
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// The stack size of the pool's threads, in bytes. Default: the standard library's (2 MiB,
    /// or `RUST_MIN_STACK`).
    #[must_use]
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Builds the pool. No thread starts until the first job arrives.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field: `max_threads` of 0, `core_threads` above
    /// `max_threads`, `queue_capacity` of 0 (a job needs somewhere to wait for a thread) or
    /// above `usize::MAX / 2`, a `thread_name` with a NUL byte.
    ///
    /// ```
    /// use millpond::blocking::BlockingPool;
    ///
    /// let err = BlockingPool::builder().max_threads(2).core_threads(4).build().unwrap_err();
    /// assert_eq!(err.field(), Some("core_threads"));
    /// ```
    pub fn build(self) -> Result<BlockingPool, BuildError> {
        let max = match self.max_threads {
            Some(max) => max,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        if max == 0 {
            return Err(BuildError::invalid("max_threads", 0, "a pool needs at least one thread"));
        }
        let core = self.core_threads.unwrap_or(max);
        if core > max {
            return Err(BuildError::invalid(
                "core_threads",
                core,
                format!("cannot exceed max_threads ({max})"),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(BuildError::invalid(
                "queue_capacity",
                0,
                "must be at least 1: a job needs somewhere to wait for a thread",
            ));
        }
        if self.queue_capacity > MAX_CAPACITY {
            return Err(BuildError::invalid(
                "queue_capacity",
                self.queue_capacity,
                format!("must be at most {MAX_CAPACITY}"),
            ));
        }
        if self.thread_name.contains('\0') {
            return Err(BuildError::invalid(
                "thread_name",
                &self.thread_name,
                "must not contain a NUL byte",
            ));
        }
        let settings = Settings {
            keep_alive: self.keep_alive,
            policy: self.policy,
            panic_hook: self.panic_hook,
            thread_name: self.thread_name,
            stack_size: self.stack_size,
        };
        let shared = Shared::new(self.queue_capacity, core, max, settings);
        Ok(BlockingPool::from_shared(Arc::new(shared)))
    }
}
