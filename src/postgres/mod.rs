//! PostgreSQL connection pools over [tokio-postgres](https://docs.rs/tokio-postgres): a
//! [`Manager`](crate::pool::Manager) for [`Pool`](crate::pool::Pool), behind the `postgres`
//! feature.
//!
//! ```no_run
//! use millpond::pool::Pool;
//! use millpond::postgres::PgManager;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager: PgManager = std::env::var("DATABASE_URL")?.parse()?;
//! let pool = Pool::builder(manager)
//!     .max_size(16)
//!     .min_idle(2)
//!     .acquire_timeout(Duration::from_secs(5))
//!     .build()?;
//!
//! let mut conn = pool.get().await?;
//! let tx = conn.transaction().await?;
//! tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", &[]).await?;
//! tx.commit().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What the pool guarantees about a connection it hands out
//!
//! A connection comes back to the pool however its user left it. The manager reads what the
//! server said last (it watches the protocol's `ReadyForQuery` messages under tokio-postgres,
//! see `docs/design.md`) and makes sure the next user gets a connection that is:
//!
//! - **open**: a closed connection is dropped on return, and again on checkout;
//! - **not busy**: one returned with a query still running (its future was dropped) is closed,
//!   and the query is cancelled on the server;
//! - **outside any transaction**: one returned inside a transaction, open or failed, whether
//!   begun with [`Client::transaction`](tokio_postgres::Client::transaction) or a plain `BEGIN`,
//!   is rolled back before its next use;
//! - **without the last user's session state**: settings (`SET`, including the role and time
//!   zone), `LISTEN`s, temporary tables, SQL-prepared statements and open cursors, which the
//!   manager sees in the protocol, and advisory locks or anything else a user flags with
//!   [`PgConnection::mark_dirty`], are reset before its next use, as [`SessionReset`] says; by
//!   default, a session nobody changed is not reset.

mod connection;
mod error;
mod manager;
mod socket;
mod tls;
mod wire;

pub use connection::PgConnection;
pub use error::Error;
pub use manager::{PgManager, SessionReset};
pub use socket::Socket;
pub use wire::TransactionStatus;

/// A pool of PostgreSQL connections.
pub type PgPool<T = tokio_postgres::NoTls> = crate::pool::Pool<PgManager<T>>;

pub use tokio_postgres;
