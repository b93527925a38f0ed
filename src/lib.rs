//! Async resource pooling for tokio.
//!
//! millpond pools the things a service should not make per request: database connections,
//! clients, sessions. It aims to be the pool you do not have to think about: fair to every caller,
//! safe to cancel at any point, quick to fail with the real cause when the backend is down, and
//! measurably faster than the alternatives on the hot path.
//!
//! # Quick start
//!
//! ```
//! use millpond::pool::{Manager, Pool};
//!
//! /// Stands in for a database driver.
//! struct Database;
//! struct Connection {
//!     queries: u64,
//! }
//!
//! impl Manager for Database {
//!     type Resource = Connection;
//!     type Error = std::io::Error;
//!
//!     async fn create(&self) -> Result<Connection, std::io::Error> {
//!         Ok(Connection { queries: 0 })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder(Database).max_size(16).min_idle(4).build()?;
//! let mut conn = pool.get().await?;
//! conn.queries += 1;
//! drop(conn); // back to the pool
//! assert_eq!(pool.status().in_use, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//!
//! * [`pool`]: the async resource pool: [`Pool`](pool::Pool), its [`Manager`](pool::Manager)
//!   trait, builder, errors, status and metrics; with the feature `metrics`, those figures
//!   published through the `metrics` facade under the OpenTelemetry `db.client.connection.*`
//!   names (`Pool::publish_metrics`).
//! * [`balance`]: load-balancing strategies (round-robin, weighted, key hash, least-loaded,
//!   power of two choices) behind one [`Balancer`](balance::Balancer) trait.
//! * [`blocking`]: a pool of OS threads for blocking closures (synchronous drivers, compression,
//!   file reads), with core and maximum threads, a bounded queue and a rejection policy, and
//!   handles awaited from async code or waited for from plain threads:
//!   [`BlockingPool`](blocking::BlockingPool).
//! * [`breaker`]: a circuit breaker for any async call, on error-rate, slow-call or
//!   consecutive-failure rules: [`CircuitBreaker`](breaker::CircuitBreaker).
//! * [`cluster`]: pools over several backends (primary and replicas, or peers) with balancing,
//!   failover and failback: [`Cluster`](cluster::Cluster).
//! * `config` (feature `serde`): settings for pools, worker pools and clusters read from
//!   configuration files and the environment, with durations like `"5s"`.
//! * [`exec`]: bounded worker pools running futures on tokio, with a shared queue or per-worker
//!   queues fed by a balancing strategy: [`WorkerPool`](exec::WorkerPool).
//! * [`limit`]: adaptive concurrency limits that find a backend's capacity from the latency
//!   and losses of its calls (Gradient2, AIMD), with a bounded wait queue that turns to
//!   newest-first under overload: [`AdaptiveLimiter`](limit::AdaptiveLimiter).
//! * [`load`]: load signals: a smoothed CPU usage (the container's cgroup, the machine, or this
//!   process) that sheds low-priority work or holds a breaker open past a threshold:
//!   [`CpuSampler`](load::CpuSampler).
//! * [`object`]: synchronous pools of reusable values (buffers, encoders):
//!   [`ObjectPool`](object::ObjectPool), with a per-thread fast path.
//! * `postgres` (feature `postgres`): a [`Manager`](pool::Manager) over tokio-postgres that
//!   never hands out a busy or in-transaction connection, with a prepared-statement cache.
//! * `redis` (feature `redis`): a [`Manager`](pool::Manager) over the redis crate that never
//!   hands on a connection with a reply pending, a session changed (`SELECT`, `MULTI`,
//!   `WATCH`, `CLIENT TRACKING`: reset with `RESET`) or a subscription (closed), and whose
//!   response timeout lets blocking commands (`BLPOP`) wait their time.
//! * `sqlite` (feature `sqlite`): a [`Manager`](pool::Manager) over rusqlite running SQLite on
//!   blocking threads, with WAL files and one shared `:memory:` database.
//!
//! # Comparison with similar crates
//!
//! | | millpond | deadpool | bb8 | r2d2 |
//! |---|---|---|---|---|
//! | async | yes (tokio) | yes | yes (tokio) | no |
//! | waiters served in order | always | yes | no: returning tasks can retake | no: newcomers can barge |
//! | cancelled `get()` cancels the connect | never | yes | no | n/a |
//! | fails fast when the backend is down | circuit breaker, with the real error | no | no | no |
//! | timeouts name their phase and cause | wait / create / check, with the real cause in the message and typed | wait / create / recycle | no | no |
//! | idle timeout, lifetime (jittered), keepalive, `min_idle` | all | via `retain` only | all but jitter and keepalive | all but jitter and keepalive |
//! | leak detection with call site | yes | no | no | no |
//! | concurrency model-checked | loom | no | no | no |
//! | a PostgreSQL connection returned mid-query or mid-transaction | closed (query cancelled) or rolled back | reused as is with the default `Fast` recycling; the other methods add a round trip per checkout and do not roll back | reused as is | n/a |
//! | session state a user left (`SET`, `LISTEN`, temporary tables, SQL `PREPARE`) | reset at checkout when the protocol showed a change (`postgres::SessionReset`); a clean session costs nothing | reset on every checkout with `RecyclingMethod::Clean` (a round trip each), kept otherwise | kept | n/a |
//! | a Redis connection left with a `SELECT`, an open `MULTI`, `WATCH`, `CLIENT TRACKING`, a subscription, or a reply pending | reset with `RESET` when a command showed a change, or closed; a clean connection costs nothing | deadpool-redis: `UNWATCH` and `PING` on recycle, the rest kept | bb8-redis: `PING`, the rest kept | n/a |
//! | one connection shared by several tasks (pipelining) | [`Pool::multiplexed`](pool::Pool::multiplexed) | no | no | no |
//!
//! Checkout throughput on a 2-core machine is in `docs/benchmarks.md`: far ahead of deadpool and
//! bb8 when callers rarely wait (each thread keeps a returned resource at hand), on par with
//! deadpool when every checkout is a hand-off between tasks.
//!
//! # Tracing
//!
//! Checkouts, creations, checks and submits each run in a [`tracing`](https://docs.rs/tracing)
//! span named for the pool (field `pool`) that records its `outcome` when it ends. All are below
//! INFO, so a subscriber at the usual production level sees none of them, and with no
//! subscriber interested a checkout pays only `tracing`'s level check:
//!
//! | span | level | fields | `outcome` |
//! |---|---|---|---|
//! | `pool.get`: every `get`, `get_timeout`, `try_get` (and the cluster and multiplexed gets through them) | TRACE | `pool`, `wait` (`false` for `try_get`), `outcome` | `ok`, `timeout`, `unavailable`, `closed`, `exhausted` |
//! | `pool.create`: one creation attempt | DEBUG | `pool`, `outcome`, `error` (the manager's, on `failed`) | `ok`, `failed`, `timeout`, `panicked` |
//! | `pool.check`: one [`Manager::check`](pool::Manager::check), before a hand-out or as keepalive | DEBUG | `pool`, `outcome`, `error` | `ok`, `failed`, `timeout`, `panicked`, `deadline` (the caller's deadline passed first) |
//! | `worker_pool.submit`: every submit, `try_submit` and `execute` variant | TRACE | `pool`, `outcome` | `ok`, `full`, `closed`, `timeout`, `would_deadlock`, `rate_limited`, `rate_limiter_unavailable` (redis), `overloaded`, `runtime_gone` |
//!
//! Any of them dropped before it finished (a `get()` its caller gave up) ends with
//! `outcome = "cancelled"`.
//!
//! # When not to use millpond
//!
//! * Synchronous code with no async runtime: use `r2d2`.
//! * A runtime other than tokio: millpond runs its creations and maintenance on tokio.
//! * Plain concurrency limiting with nothing to reuse: a `tokio::sync::Semaphore` is enough.
//!
//! # Safety and correctness
//!
//! The crate forbids `unsafe` code. The pool's state machine is a plain value behind one mutex;
//! its slot accounting and waiter hand-off are model-checked with [loom] (see the README for the
//! command), and a property test drives the public API against a simple model. The object pool's
//! hand-off between thread caches and its shared store is model-checked the same way, and has a
//! property test of its own.
//!
//! [loom]: https://docs.rs/loom
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backoff;
pub mod balance;
pub mod blocking;
pub mod breaker;
mod build_error;
pub mod cluster;
#[cfg(feature = "serde")]
pub mod config;
pub mod exec;
mod histogram;
mod home;
pub mod limit;
pub mod load;
pub mod object;
pub mod pool;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rate;
#[cfg(feature = "redis")]
pub mod redis;
mod report;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod sync;
mod time;
mod trace;
mod unwind;
mod wait_list;

pub use build_error::BuildError;
pub use histogram::DurationHistogram;
