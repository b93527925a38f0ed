//! Adaptive concurrency limits: admit calls while fewer than a limit are in flight, and let
//! the outcome of each call move the limit, so that it settles where the backend is busy but
//! not queueing.
//!
//! A static limit must be guessed: too low wastes the backend, too high lets requests pile up
//! inside it until every one of them is slow. An [`AdaptiveLimiter`] finds the limit from what
//! the calls report, with one of two algorithms:
//!
//! - [`Gradient2`] (delay-based, the one to start with): shrinks the limit as soon as calls get
//!   slower than their long-term average, before anything fails.
//! - [`Aimd`] (loss-based): grows by one per success, cuts on timeouts and refusals. For a
//!   backend that sheds load itself.
//!
//! Both carry the published defaults of Netflix's concurrency-limits, and fixes for what its
//! users ran into (see each type). Callers that find no room wait in a bounded queue with a
//! deadline, first in first out until the queue stands, then newest first with stale callers
//! turned away (CoDel, as folly does it).
//!
//! ```
//! use millpond::limit::{AdaptiveLimiter, Gradient2};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = AdaptiveLimiter::builder(Gradient2::new().min_limit(4).max_limit(256))
//!     .max_queue(64)
//!     .queue_timeout(Duration::from_millis(250))
//!     .build()?;
//! let answer = limiter.run(async { 42 }).await?;
//! assert_eq!(answer, 42);
//! assert_eq!(limiter.status().in_flight, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Where things live
//!
//! | file | what it holds |
//! |---|---|
//! | `limiter.rs` | [`AdaptiveLimiter`], [`Permit`], waiting callers |
//! | `builder.rs` | [`AdaptiveLimiterBuilder`] and the defaults |
//! | `engine.rs` | the state machine: limit, in flight, queue, hand-off |
//! | `codel.rs` | telling a standing queue from a burst |
//! | `algorithm.rs` | [`LimitAlgorithm`], [`Sample`], [`Outcome`] |
//! | `aimd.rs`, `gradient.rs` | the two algorithms |

mod aimd;
mod algorithm;
pub(crate) mod builder;
mod codel;
mod engine;
mod error;
mod gradient;
mod limiter;

#[cfg(all(test, millpond_loom))]
mod loom_models;

pub use aimd::Aimd;
pub use algorithm::{LimitAlgorithm, Outcome, Sample};
pub use builder::AdaptiveLimiterBuilder;
pub use error::Rejected;
pub use gradient::Gradient2;
pub use limiter::{AdaptiveLimiter, LimiterStatus, Permit};
