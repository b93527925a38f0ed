//! Configuration of a [`WorkerPool`], validated by [`WorkerPoolBuilder::build`].

use std::fmt;
use std::time::Duration;

use super::api::WorkerPool;
use super::inner::{Inner, PanicHook, Settings};
use super::queues::Queues;
use crate::BuildError;
use crate::balance::Balance;

/// Which queues the workers take their tasks from. See the [module docs](super) for when each
/// wins.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Scheduler {
    /// One bounded queue that every worker pulls from (the default). The only scheduler that
    /// can grow and shrink its workers (`min_workers < max_workers`, `resize`).
    SharedQueue,
    /// One bounded queue per worker, fed by a balancing strategy; keyed tasks always go to their
    /// key's worker.
    PerWorker {
        /// How an unkeyed task's worker is picked.
        balance: Balance,
        /// Whether a worker with an empty queue takes unkeyed tasks queued at other workers.
        stealing: bool,
    },
}

impl Scheduler {
    /// The shared queue.
    pub fn shared_queue() -> Self {
        Self::SharedQueue
    }

    /// Per-worker queues balanced by `balance`, without stealing.
    pub fn per_worker(balance: Balance) -> Self {
        Self::PerWorker { balance, stealing: false }
    }

    /// Turns work stealing on or off (per-worker queues only; the shared queue needs none).
    #[must_use]
    pub fn stealing(self, on: bool) -> Self {
        match self {
            Self::PerWorker { balance, .. } => Self::PerWorker { balance, stealing: on },
            shared => shared,
        }
    }
}

/// The queue capacity when [`WorkerPoolBuilder::queue_capacity`] is not set.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// How long an extra worker (above `min_workers`) waits idle before it exits, when
/// [`WorkerPoolBuilder::idle_timeout`] is not set.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`WorkerPool`]; made by [`WorkerPool::builder`].
#[must_use = "a builder does nothing until `build()` is called"]
pub struct WorkerPoolBuilder {
    min_workers: Option<usize>,
    max_workers: Option<usize>,
    queue_capacity: usize,
    scheduler: Scheduler,
    idle_timeout: Duration,
    panic_hook: Option<PanicHook>,
}

impl fmt::Debug for WorkerPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPoolBuilder")
            .field("min_workers", &self.min_workers)
            .field("max_workers", &self.max_workers)
            .field("queue_capacity", &self.queue_capacity)
            .field("scheduler", &self.scheduler)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for WorkerPoolBuilder {
    fn default() -> Self {
        Self {
            min_workers: None,
            max_workers: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            scheduler: Scheduler::SharedQueue,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            panic_hook: None,
        }
    }
}

impl WorkerPoolBuilder {
    /// A fixed number of workers: how many tasks run at once. Default: the number of CPUs.
    pub fn workers(mut self, workers: usize) -> Self {
        self.min_workers = Some(workers);
        self.max_workers = Some(workers);
        self
    }

    /// Workers kept even when idle (elastic pools; the shared queue only).
    pub fn min_workers(mut self, min_workers: usize) -> Self {
        self.min_workers = Some(min_workers);
        self
    }

    /// The most workers the pool runs: the bound on tasks running at once. Workers above
    /// `min_workers` start when a task finds no idle worker, and exit after `idle_timeout`.
    pub fn max_workers(mut self, max_workers: usize) -> Self {
        self.max_workers = Some(max_workers);
        self
    }

    /// The most tasks queued and not yet started; a submit beyond it waits (or fails, for
    /// `try_submit`). With per-worker queues it is split evenly between the workers. At most
    /// `queue_capacity + max_workers` tasks are ever held. Default [`DEFAULT_QUEUE_CAPACITY`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// The scheduler. Default [`Scheduler::SharedQueue`].
    pub fn scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// How long a worker above `min_workers` may stay idle before it exits.
    /// Default [`DEFAULT_IDLE_TIMEOUT`].
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Called with the message of every task that panics (after the worker caught it). Without
    /// a hook, panics are logged with `tracing` at warn level. A hook that panics is contained.
    pub fn panic_hook(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.panic_hook = Some(Box::new(hook));
        self
    }

    /// Checks the configuration and starts `min_workers` workers on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field when a worker count or the queue capacity is 0,
    /// `min_workers > max_workers`, per-worker queues are asked to be elastic or given fewer
    /// queue slots than workers, or a weighted strategy's weights do not match the workers or
    /// are all zero (field `weights`). [`BuildError::is_no_runtime`] when called outside a tokio
    /// runtime.
    pub fn build(self) -> Result<WorkerPool, BuildError> {
        let default_workers = std::thread::available_parallelism().map_or(4, usize::from);
        let max_workers = self.max_workers.or(self.min_workers).unwrap_or(default_workers);
        let min_workers = self.min_workers.unwrap_or(max_workers);
        if max_workers == 0 {
            return Err(BuildError::invalid("max_workers", 0, "a pool needs at least one worker"));
        }
        if min_workers > max_workers {
            return Err(BuildError::invalid(
                "min_workers",
                min_workers,
                format!("cannot exceed max_workers ({max_workers})"),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(BuildError::invalid(
                "queue_capacity",
                0,
                "must be at least 1: a submit needs somewhere to wait for a worker",
            ));
        }
        let (queues, elastic) = match &self.scheduler {
            Scheduler::SharedQueue => (Queues::shared(self.queue_capacity), true),
            Scheduler::PerWorker { balance, stealing } => {
                if min_workers != max_workers {
                    return Err(BuildError::invalid(
                        "min_workers",
                        min_workers,
                        format!(
                            "per-worker queues need a fixed number of workers \
                             (max_workers is {max_workers}); use Scheduler::SharedQueue \
                             for an elastic pool"
                        ),
                    ));
                }
                if self.queue_capacity < max_workers {
                    return Err(BuildError::invalid(
                        "queue_capacity",
                        self.queue_capacity,
                        format!(
                            "per-worker queues split the capacity between {max_workers} \
                             workers, so it must be at least that"
                        ),
                    ));
                }
                let balancer = balance.build(max_workers, "weights")?;
                let tracks_loads = balancer.reads_loads();
                (
                    Queues::per_worker(
                        max_workers,
                        self.queue_capacity,
                        balancer,
                        tracks_loads,
                        *stealing,
                    ),
                    false,
                )
            }
        };
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| BuildError::no_runtime())?;
        let inner = Inner::start(Settings {
            queues,
            min_workers: if elastic { min_workers } else { max_workers },
            max_workers,
            elastic,
            idle_timeout: self.idle_timeout,
            panic_hook: self.panic_hook,
            runtime,
        });
        Ok(WorkerPool::from_inner(inner))
    }
}
