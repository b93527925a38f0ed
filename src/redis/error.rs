//! The error a Redis connection's commands report, and that the manager reports to the pool,
//! which hands it to callers inside pool errors
//! ([`pool::Error::manager_error`](crate::pool::Error::manager_error)).

use std::fmt;
use std::time::Duration;

/// Why a Redis command, connection, check or reset failed.
///
/// [`Redis`](Self::Redis) prints the redis crate's error as it is (a server error such as
/// `WRONGTYPE ...`, or an I/O error such as "connection refused") and has it typed through
/// [`redis_error`](Self::redis_error); the other variants are the pool's own.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The redis crate reported an error: the server refused the command, the connection
    /// broke, or it could not be made.
    Redis(redis::RedisError),
    /// No reply came within the response timeout (for a blocking command: its own blocking
    /// time plus the response timeout). The connection is closed when it goes back to the
    /// pool, as the late reply may still come.
    Timeout(Duration),
    /// A command that changes the session (`SELECT`, `MULTI`, `WATCH`, `SUBSCRIBE`, ...) was
    /// sent through shared access ([`RedisConnection::query`](super::RedisConnection::query) and
    /// the like, which a multiplexed view's borrowers share): it would reach every other
    /// borrower. Send it through exclusive access, `&mut` (the redis crate's
    /// [`AsyncCommands`](redis::AsyncCommands) on a checkout from
    /// [`Pool::get`](crate::pool::Pool::get)).
    SessionCommand(String),
    /// A command sent on this connection was abandoned before its reply came (its future was
    /// dropped, or it timed out): the reply could reach the next user.
    Abandoned,
    /// The connection broke, or a command (a subscription, `MONITOR`, `CLIENT REPLY OFF`) made
    /// the server's replies no longer pair one to one with commands.
    Closed,
    /// The pool's check (`PING`) or the reset of a dirty session (`RESET`, `AUTH`, `SELECT`)
    /// got a reply those commands do not give; the reply, as the redis crate prints it.
    UnexpectedReply(String),
}

impl Error {
    /// The redis crate's error, for [`Redis`](Self::Redis).
    pub fn redis_error(&self) -> Option<&redis::RedisError> {
        match self {
            Self::Redis(err) => Some(err),
            _ => None,
        }
    }

    /// Whether a reply did not come in time: [`Timeout`](Self::Timeout), or an I/O timeout the
    /// redis crate reported.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Redis(err) => err.is_timeout(),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(err) => write!(f, "{err}"),
            Self::Timeout(after) => write!(f, "no reply from the Redis server within {after:?}"),
            Self::SessionCommand(name) => write!(
                f,
                "{name} changes the session and would reach every borrower of a shared \
                 connection; send it through an exclusive checkout (&mut)"
            ),
            Self::Abandoned => {
                f.write_str("a command sent on the connection was abandoned before its reply came")
            }
            Self::Closed => f.write_str("the connection is closed"),
            Self::UnexpectedReply(reply) => {
                write!(f, "the pool's check or session reset got an unexpected reply: {reply}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // It prints the wrapped error, so it hands on what lies below it.
            Self::Redis(err) => std::error::Error::source(err),
            _ => None,
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        Self::Redis(err)
    }
}
