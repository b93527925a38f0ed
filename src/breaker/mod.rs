//! A circuit breaker for any async call: stop calling a downstream service that is failing or
//! slow, let one probe through after a cool-down, and resume when it succeeds.
//!
//! It is the state machine the pool runs around its creations (closed, open for a cool-down,
//! half-open for one probe), with the rules a service protecting a dependency needs to trip it:
//! an error rate, a slow-call rate, or a run of consecutive failures, over a sliding window.
//!
//! ```
//! use millpond::breaker::{BreakerError, CircuitBreaker};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), millpond::BuildError> {
//! let breaker = CircuitBreaker::builder()
//!     .failure_rate(0.5)                               // half of the calls failed...
//!     .minimum_calls(20)                               // ...of at least 20...
//!     .window(Duration::from_secs(10))                 // ...in the last 10 s
//!     .slow_calls(Duration::from_secs(1), 0.8)         // or 80 % took over a second
//!     .open_for(Duration::from_secs(5))                // then refuse for 5 s, and probe
//!     .build()?;
//!
//! match breaker.call(async { fetch_price().await }).await {
//!     Ok(price) => println!("{price}"),
//!     Err(BreakerError::Open { retry_in }) => println!("pricing is down; retry in {retry_in:?}"),
//!     Err(BreakerError::Failed(err)) => println!("pricing failed: {err}"),
//! }
//! # Ok(())
//! # }
//! # async fn fetch_price() -> Result<u32, std::io::Error> { Ok(42) }
//! ```

mod circuit;
mod machine;
mod window;

pub use circuit::{BreakerError, BreakerState, CallPermit, CircuitBreaker, CircuitBreakerBuilder};
pub(crate) use machine::{Breaker, Permit};
pub(crate) use window::{RateRules, Window};
