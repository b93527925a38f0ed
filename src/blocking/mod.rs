//! A pool of OS threads for blocking work: code that calls a synchronous driver, compresses,
//! hashes or reads files, which must not run on an async runtime's threads.
//!
//! [`BlockingPool`] offers what Java's `ThreadPoolExecutor` does and `tokio::task::spawn_blocking`
//! does not: core and maximum threads, a keep-alive for threads above the core, a bounded queue
//! whose overflow follows a [`RejectionPolicy`], and figures ([`Stats`]) with queue-wait and
//! run-time histograms. It needs no runtime: a [`BlockingHandle`] is awaited from async code and
//! waited for ([`join`](BlockingHandle::join), [`wait_timeout`](BlockingHandle::wait_timeout))
//! from plain threads.
//!
//! ```
//! use millpond::blocking::{BlockingPool, RejectionPolicy};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = BlockingPool::builder()
//!     .core_threads(1)
//!     .max_threads(4)
//!     .queue_capacity(64)
//!     .rejection_policy(RejectionPolicy::CallerRuns)
//!     .build()?;
//!
//! // From a plain thread: wait for the value.
//! let size = pool.spawn(|| std::fs::read("Cargo.toml").map(|bytes| bytes.len()))?;
//! assert!(size.join()?? > 0);
//!
//! // From async code (any runtime, or none): await it.
//! let handle = pool.spawn(|| 2 + 2)?;
//! assert_eq!(futures::executor::block_on(handle)?, 4);
//!
//! pool.shutdown(); // finishes the queued jobs and joins the threads
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour
//!
//! * **Threads** start as jobs arrive, never up front: one per submit until `core_threads` are
//!   live, then one whenever a job finds no idle thread, up to `max_threads`. A thread above
//!   the core exits after `keep_alive` without work. At most `max_threads` jobs run at once.
//! * **The queue** holds at most `queue_capacity` jobs; a full queue never grows. A submit that
//!   finds it full is refused with its closure given back ([`RejectionPolicy::Reject`], the
//!   default), runs the job on the caller's thread ([`RejectionPolicy::CallerRuns`]), or evicts
//!   the oldest queued job ([`RejectionPolicy::DropOldest`]; that job's handle says
//!   [`TaskError::Evicted`]).
//! * **Panics** are caught on the thread, which carries on: the handle returns
//!   [`TaskError::Panicked`] with the message, the panic hook (or a `tracing` warning) reports
//!   it, and [`Stats::panicked`] counts it.
//! * **Shutdown**: [`BlockingPool::shutdown`] stops intake, runs what is queued and joins every
//!   thread; [`BlockingPool::shutdown_timeout`] gives up at its deadline, dropping the jobs
//!   still queued. Dropping the pool stops intake without waiting; the threads finish the queue
//!   and exit.
//!
//! # Comparison
//!
//! | | `BlockingPool` | `spawn_blocking` | `threadpool` | `rayon::spawn` |
//! |---|---|---|---|---|
//! | bounded queue | yes, with a rejection policy | no | no | no |
//! | core / max threads, keep-alive | yes | max and keep-alive | fixed | fixed |
//! | result handle | async and blocking | async (`JoinHandle`) | none | none |
//! | a panicking job | caught, reported on its handle and hook | caught, on its handle | kills and replaces the thread | aborts the process (default) |
//! | needs tokio | no | yes | no | no |
//!
//! # When not to use it
//!
//! * For CPU-bound data parallelism (splitting one computation over the cores), use `rayon`.
//! * For the occasional blocking call inside a tokio application, `spawn_blocking` is simpler;
//!   choose this pool when the blocking work needs its own bound, its own figures, or a policy
//!   for overload.
//!
//! # Where things live
//!
//! | file | what |
//! |---|---|
//! | `pool.rs`, `builder.rs`, `handle.rs`, `error.rs`, `stats.rs` | the public types |
//! | `shared.rs` | submit (admission, rejection policy, starting threads), running a job, shutdown |
//! | `queue.rs` | the bounded queue: an admission counter in front of a `crossbeam_channel` |
//! | `threads.rs` | counting threads: when to start one, when one may retire, waiting for exit |
//! | `worker.rs` | the loop each thread runs |
//! | `job.rs` | a type-erased job: closure and handle sender in one box |

mod builder;
mod error;
mod handle;
mod job;
mod pool;
mod queue;
mod shared;
mod stats;
mod threads;
mod worker;

#[cfg(all(test, millpond_loom))]
mod loom_models;

pub use builder::{
    BlockingPoolBuilder, DEFAULT_KEEP_ALIVE, DEFAULT_QUEUE_CAPACITY, RejectionPolicy,
};
pub use error::{SubmitError, TaskError};
pub use handle::BlockingHandle;
pub use pool::BlockingPool;
pub use stats::Stats;
