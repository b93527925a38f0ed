//! Bounded worker pools: a fixed or elastic set of workers (tokio tasks) running submitted
//! futures, with a bounded queue and backpressure.
//!
//! A plain `tokio::spawn` per task has no bound: a burst of a million requests becomes a million
//! tasks, all holding memory and all hitting the database at once. A [`WorkerPool`] runs at most
//! `max_workers` tasks at a time and queues at most `queue_capacity` more; a submitter beyond
//! that waits for room ([`WorkerPool::submit`]) or gets its task back
//! ([`WorkerPool::try_submit`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use millpond::exec::WorkerPool;
//!
//! let pool = WorkerPool::builder().workers(4).queue_capacity(100).build()?;
//! let handles: Vec<_> = futures::future::try_join_all((0..10).map(|n| pool.submit(async move { n * n }))).await?;
//! let squares = futures::future::try_join_all(handles).await?;
//! assert_eq!(squares[9], 81);
//! pool.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Two schedulers
//!
//! * [`Scheduler::SharedQueue`] (the default): one queue every worker pulls from. The next task
//!   goes to whichever worker is free first, so a slow task never holds up the tasks behind it
//!   while another worker is idle. It is the only elastic scheduler (ants-style: `min_workers`,
//!   `max_workers`, `idle_timeout`). Every submit and every worker meet on one queue
//!   (async-channel's lock-free one).
//! * [`Scheduler::per_worker`]: one queue per worker, and a [balancing
//!   strategy](crate::balance) picks the queue of each task. Submits and workers spread over
//!   many queues, and [`WorkerPool::submit_keyed`] gets per-key order (same key, same worker, in
//!   order). A task can wait behind a slow one on its worker, which least-loaded and
//!   power-of-two strategies and work stealing (`Scheduler::per_worker(..).stealing(true)`)
//!   reduce; keyed tasks are never stolen.
//!
//! Both can be [resized](WorkerPool::resize) at run time; a per-worker pool keeps each key's
//! order across the resize.
//!
//! `docs/benchmarks.md` measures both on the same workloads and says when each wins.
//!
//! # Failure behaviour
//!
//! * A panicking task is caught: its handle returns [`TaskError::Panicked`], the panic hook (or
//!   a `tracing` warning) reports it, and the worker carries on.
//! * [`TaskHandle::abort`] cancels a queued or running task; dropping a handle does not.
//! * A task of the pool that would *wait* on its own full pool gets
//!   [`SubmitError::WouldDeadlock`] instead: if every worker did that, nothing would drain the
//!   queue. (Running the task inline instead would break the bound on running tasks and can
//!   recurse without limit, so the pool refuses and lets the caller decide.)
//! * [`WorkerPool::shutdown`] stops intake and finishes queued work;
//!   [`WorkerPool::shutdown_timeout`] aborts what is left at its deadline. Every pending submit
//!   and every handle resolves: nothing waits forever.
//!
//! # Overload protection
//!
//! * **Rate limits** at admission: [`WorkerPoolBuilder::rate_limit`] for the pool and
//!   [`WorkerPoolBuilder::rate_limit_per_key`] for each key of `submit_keyed` (per user, per
//!   tenant). A refused task comes back in [`SubmitError::RateLimited`] at once.
//! * **Stale work**: with [`WorkerPoolBuilder::max_queue_wait`], a task that waited longer is
//!   dropped when a worker reaches it; its handle says [`TaskError::Shed`].
//! * **Priorities**: [`WorkerPool::submit_with`] takes a [`Priority`]. While the pool is
//!   overloaded ([`WorkerPoolBuilder::overload_queue_len`],
//!   [`WorkerPoolBuilder::overload_queue_wait`]), low-priority submits get
//!   [`SubmitError::Overloaded`] and queued low-priority tasks are shed, so core work keeps its
//!   latency; they are admitted again as soon as the load falls. The queue stays first in,
//!   first out, so low priority is never starved under normal load.
//! * **Metrics**: with the `metrics` feature, [`WorkerPool::publish_metrics`] sends
//!   [`WorkerPool::stats`] through the `metrics` facade as `millpond.worker_pool.*` (`publish.rs`).
//!
//! # When not to use it
//!
//! * For a few long-lived background tasks, `tokio::spawn` is simpler.
//! * For CPU-bound work that never awaits, use a thread pool (`rayon`, `spawn_blocking`): a
//!   worker here is an async task and blocks its runtime thread while it computes.

mod admission;
mod api;
mod builder;
mod error;
mod handle;
mod inner;
mod job;
mod lane;
mod lanes;
#[cfg(feature = "metrics")]
mod publish;
mod queues;
mod stats;
mod worker;
mod worker_count;

#[cfg(all(test, millpond_loom))]
mod loom_models;

pub use admission::Priority;
pub use api::WorkerPool;
pub use builder::{DEFAULT_IDLE_TIMEOUT, DEFAULT_QUEUE_CAPACITY, Scheduler, WorkerPoolBuilder};
pub use error::{Degraded, SubmitError, TaskError};
pub use handle::TaskHandle;
pub use stats::Stats;
