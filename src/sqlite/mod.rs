//! SQLite connection pools over [rusqlite](https://docs.rs/rusqlite), behind the `sqlite` feature:
//! the embedded default, nothing to install (SQLite is compiled in).
//!
//! SQLite calls block, so a [`SqliteConnection`] runs them on tokio's blocking threads through
//! [`interact`](SqliteConnection::interact), never on the async workers.
//!
//! ```no_run
//! use millpond::pool::Pool;
//! use millpond::sqlite::SqliteManager;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder(SqliteManager::file("app.db")).max_size(8).build()?;
//!
//! let conn = pool.get().await?;
//! let users: i64 = conn
//!     .interact(|conn| conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0)))
//!     .await??;
//! # let _ = users;
//! # Ok(())
//! # }
//! ```
//!
//! # Files and memory
//!
//! - A file database is opened in WAL mode (readers do not block the writer) with
//!   `synchronous=NORMAL` and a 5 s busy timeout, so concurrent writers queue instead of
//!   failing with `SQLITE_BUSY`.
//! - `:memory:` ([`SqliteManager::memory`]) is **one** database shared by every connection of
//!   the pool, as a pool user expects, not a separate empty database per connection. It lives
//!   as long as the manager, even while the pool holds no connection.
//!
//! # What the next user gets
//!
//! A connection returned while an `interact` its caller gave up on is still running is closed
//! (the call finishes on its blocking thread, then the connection is dropped). One returned
//! inside a transaction, left open by a `BEGIN` or a panic, is rolled back before its next use.

mod connection;
mod error;
mod manager;

pub use connection::SqliteConnection;
pub use error::{Error, InteractError};
pub use manager::SqliteManager;

/// A pool of SQLite connections.
pub type SqlitePool = crate::pool::Pool<SqliteManager>;

pub use rusqlite;
