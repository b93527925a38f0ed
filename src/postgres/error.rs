//! The error a PostgreSQL manager reports to the pool, which hands it to callers as the `source()`
//! of pool errors.

use std::fmt;
use std::io;

use super::wire::TransactionStatus;

/// Why a PostgreSQL connection could not be made, checked or reset.
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The I/O error already names the endpoint and the cause ("connection refused").
            Self::Connect(err) => write!(f, "{err}"),
            Self::Postgres(err) => write!(f, "postgres: {err}"),
            Self::Tls(err) => write!(f, "TLS setup failed: {err}"),
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
            Self::Connect(err) => Some(err),
            Self::Postgres(err) => Some(err),
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
