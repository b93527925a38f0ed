//! Redis connection pools over the [redis](https://docs.rs/redis) crate: a
//! [`Manager`](crate::pool::Manager) for [`Pool`](crate::pool::Pool), behind the `redis`
//! feature.
//!
//! ```no_run
//! use millpond::pool::Pool;
//! use millpond::redis::{RedisManager, RedisPool};
//! use redis::AsyncCommands;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager: RedisManager = "redis://127.0.0.1:6379".parse()?;
//! let pool: RedisPool = Pool::builder(manager)
//!     .max_size(16)
//!     .acquire_timeout(Duration::from_secs(5))
//!     .build()?;
//!
//! // Exclusive: the redis crate's commands, session commands included.
//! let mut conn = pool.get().await?;
//! conn.set::<_, _, ()>("greeting", "hello").await?;
//! let greeting: String = conn.get("greeting").await?;
//!
//! // Shared: up to 8 tasks pipeline their commands on each connection.
//! let shared = pool.multiplexed(8)?;
//! let conn = shared.get().await?;
//! let greeting: String = conn.query(redis::cmd("GET").arg("greeting")).await?;
//! # let _ = greeting;
//! # Ok(())
//! # }
//! ```
//!
//! # What the pool guarantees about a connection it hands out
//!
//! A connection comes back to the pool however its user left it. The pooled
//! [`RedisConnection`] sees the name of every command sent through it, counts the commands
//! still waiting for a reply, and the manager makes sure the next user gets a connection that:
//!
//! - **has no reply pending**: one returned with a command whose future was dropped, or that
//!   timed out, is closed (its reply, or a `BLPOP` still blocked on the server, which would
//!   pop an element no one reads, must not reach the next user);
//! - **pairs each reply with its command**: one that subscribed (`SUBSCRIBE`, `PSUBSCRIBE`,
//!   `SSUBSCRIBE`), ran `MONITOR` or `CLIENT REPLY OFF|SKIP` is closed;
//! - **has the configured session**: one left with another database `SELECT`ed, a `MULTI`
//!   without `EXEC`, `WATCH`ed keys, `CLIENT TRACKING` on, another user `AUTH`enticated, a
//!   protocol changed by `HELLO`, or a client name, is restored with `RESET`, then `AUTH` and
//!   `SELECT` of the configured database, in one round trip before its next use (a `WATCH` and
//!   `MULTI` that ended with their `EXEC` need none);
//! - **costs nothing when clean**: a connection nobody changed goes out with no I/O (past the
//!   pool's check window, a `PING` first, as for every manager).
//!
//! The response timeout is per command: a blocking command (`BLPOP`, `XREAD ... BLOCK`) waits
//! its own blocking time on top of it, a checkout can change it for itself, and
//! [`RedisConnection::query_timeout`] gives one command its own.
//!
//! # A rate limit shared by every instance of a service
//!
//! [`rate_limit::RateLimiter`] keeps a GCRA limit per key in Redis, on the server's clock, so
//! that a per-user or per-IP limit holds across processes; it takes its connections from a
//! [`RedisPool`] and can gate a worker pool's keyed submits.

mod command;
mod connection;
mod error;
mod manager;
pub mod rate_limit;
mod session;

pub use connection::RedisConnection;
pub use error::Error;
pub use manager::RedisManager;
pub use rate_limit::RateLimiter;

/// A pool of Redis connections.
pub type RedisPool = crate::pool::Pool<RedisManager>;

pub use ::redis;
