//! The error a PostgreSQL manager reports to the pool, which hands it to callers inside pool
//! errors ([`pool::Error::manager_error`](crate::pool::Error::manager_error)).

use std::fmt;
use std::io;

use super::wire::TransactionStatus;

/// Why a PostgreSQL connection could not be made, checked or reset.
///
/// A refusal by the server prints as the server said it, severity, SQLSTATE and message (and its
/// detail and hint when there are), on one line:
/// `FATAL 3D000: database "nope" does not exist`. [`Error::db_error`] gives the server's error
/// typed. Other variants print their own part and return what lies below from `source()`, so a
/// chain printer shows each message once.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be opened: the server is down, unreachable, or refused.
    Connect(io::Error),
    /// The server or the protocol reported an error: authentication, startup, or a failed ping.
    Postgres(tokio_postgres::Error),
    /// The TLS connector could not be set up for the host.
    Tls(Box<dyn std::error::Error + Send + Sync>),
    /// The connection was closed.
    Closed,
    /// A query its caller abandoned was still running.
    Busy,
    /// A rollback did not bring the connection out of its transaction.
    StuckInTransaction(TransactionStatus),
}

impl Error {
    /// The server's own error (severity, SQLSTATE code, message, detail), when the server
    /// refused: wrong password, unknown database, too many connections, a failed ping.
    pub fn db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            Self::Postgres(err) => err.as_db_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(err) => match err.as_db_error() {
                Some(db) => {
                    write!(f, "{} {}: {}", db.severity(), db.code().code(), db.message())?;
                    if let Some(detail) = db.detail() {
                        write!(f, " (detail: {detail})")?;
                    }
                    if let Some(hint) = db.hint() {
                        write!(f, " (hint: {hint})")?;
                    }
                    Ok(())
                }
                None => write!(f, "postgres: {err}"),
            },
            // The I/O error already names the cause ("connection refused").
            Self::Connect(err) => write!(f, "{err}"),
            Self::Tls(_) => f.write_str("TLS setup failed"),
            Self::Closed => f.write_str("the connection is closed"),
            Self::Busy => f.write_str("the connection is still running an abandoned query"),
            Self::StuckInTransaction(status) => {
                write!(f, "the connection is still {status:?} after a rollback")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // These print the wrapped error (or, for the server's error, its fields), so they
            // hand on what lies below it rather than repeat it.
            Self::Postgres(err) if err.as_db_error().is_some() => None,
            Self::Postgres(err) => err.source(),
            Self::Connect(err) => err.source(),
            Self::Tls(err) => Some(err.as_ref()),
            Self::Closed | Self::Busy | Self::StuckInTransaction(_) => None,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::Postgres(err)
    }
}
