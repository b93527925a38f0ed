//! Async pools of managed resources: database connections, clients, sessions.
//!
//! A [`Manager`] says how to create, check and retire a resource; a [`Pool`] keeps between
//! `min_idle` and `max_size` of them and hands them out as [`Pooled`] guards that return the
//! resource when dropped.
//!
//! ```
//! use millpond::pool::{Manager, Pool};
//! use std::time::Duration;
//!
//! struct Connector;
//!
//! impl Manager for Connector {
//!     type Resource = Vec<u8>; // stands in for a connection
//!     type Error = std::io::Error;
//!
//!     async fn create(&self) -> Result<Vec<u8>, std::io::Error> {
//!         Ok(Vec::with_capacity(1024))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder(Connector)
//!     .max_size(16)
//!     .min_idle(2)
//!     .acquire_timeout(Duration::from_secs(5))
//!     .build()?;
//! let mut conn = pool.get().await?;
//! conn.extend_from_slice(b"SELECT 1");
//! # Ok(())
//! # }
//! ```
//!
//! # How it behaves
//!
//! * **Fair.** Callers that have to wait are served strictly in arrival order: a returned resource
//!   goes straight to the oldest waiter, and a newcomer cannot take it first.
//! * **Cancellation safe.** Dropping a `get()` future at any await never leaks a slot or a
//!   resource. Creation runs in its own task, so a cancelled `get()` does not abort a connection
//!   handshake half-way; the new resource serves the next caller.
//! * **Frugal under spikes.** Creations already running count against demand and at most
//!   [`max_concurrent_creates`](Builder::max_concurrent_creates) run at once, so a burst that the
//!   returning resources can absorb does not open a connection per caller.
//! * **Honest when the backend is down.** Failed creations are retried with exponential backoff
//!   and jitter. After repeated failures the circuit breaker opens and a `get()` that only a new
//!   resource could serve fails at once with [`Error::Unavailable`], carrying the backend's own
//!   error; one probe after the cool-down closes it again. A [`Error::Timeout`] names the phase that was slow and carries the last creation error.
//! * **Self-maintaining.** A background task closes resources past their idle timeout or
//!   lifetime (lifetimes are jittered so a pool does not recycle all its connections at once),
//!   keeps idle resources alive with [`Manager::check`], refills `min_idle`, and reports leaks.
//!   It ends when the last [`Pool`] handle is dropped.
//!
//! # Where things live
//!
//! | file | what it holds |
//! |---|---|
//! | `api.rs` | [`Pool`], the public handle |
//! | `builder.rs`, `config.rs` | [`Builder`], defaults and validation |
//! | `manager.rs` | the [`Manager`] trait and [`CloseReason`] |
//! | `guard.rs` | [`Pooled`] and [`Metadata`] |
//! | `error.rs` | [`Error`], [`CreateError`], [`TimeoutPhase`], [`DrainError`] |
//! | `metrics.rs` | [`Status`], [`Metrics`], [`DurationHistogram`] |
//! | `publish.rs` | sending those figures to the `metrics` facade (`metrics` feature) |
//! | `engine.rs` | the state machine: slot accounting, idle set, FIFO hand-off, creation planning |
//! | `crate::wait_list` | the waiter queue with O(1) cancellation (shared with `crate::limit`) |
//! | `acquire.rs`, `create.rs`, `check.rs` | the one way out of the pool (`get`, `try_get`, and the views built on them), the creation task, running `check` |
//! | `maintenance.rs`, `expiry.rs` | the background tasks: upkeep, and failing waiters at their deadline |

mod acquire;
mod api;
mod builder;
mod cache;
mod check;
mod config;
pub(crate) mod create;
mod engine;
mod error;
mod expiry;
mod guard;
mod leak;
mod maintenance;
mod manager;
mod metrics;
mod multiplex;
#[cfg(feature = "metrics")]
mod publish;
mod shared;
mod ticket;

#[cfg(all(test, millpond_loom))]
mod loom_models;

pub use api::Pool;
pub use builder::Builder;
pub use config::IdleOrder;
pub use error::{CreateError, DrainError, Error, TimeoutPhase};
pub use guard::{Metadata, Pooled};
pub use manager::{CloseReason, Manager, Traffic};
pub use metrics::{ClosedCounts, DurationHistogram, Metrics, Status};
pub use multiplex::{Borrowed, Multiplexed};
