//! What can go wrong opening or using a pooled SQLite connection.

use std::fmt;

/// An [`interact`](super::SqliteConnection::interact) call that did not return.
#[derive(Debug)]
#[non_exhaustive]
pub enum InteractError {
    /// The closure panicked; the message, when the payload was a string.
    Panicked(String),
    /// The runtime shut down before the closure ran.
    Cancelled,
}

impl fmt::Display for InteractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panicked(message) => write!(f, "the SQLite closure panicked: {message}"),
            Self::Cancelled => f.write_str("the SQLite closure was cancelled"),
        }
    }
}

impl std::error::Error for InteractError {}

impl From<tokio::task::JoinError> for InteractError {
    fn from(err: tokio::task::JoinError) -> Self {
        if err.is_panic() {
            Self::Panicked(crate::unwind::panic_message(&*err.into_panic()))
        } else {
            Self::Cancelled
        }
    }
}

/// Why a SQLite connection could not be opened or reset.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// SQLite refused: the file could not be opened, a pragma failed, a rollback failed.
    Sqlite(rusqlite::Error),
    /// The blocking call did not return.
    Interact(InteractError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(err) => write!(f, "sqlite: {err}"),
            Self::Interact(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Sqlite(err) => Some(err),
            Self::Interact(err) => Some(err),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sqlite(err)
    }
}

impl From<InteractError> for Error {
    fn from(err: InteractError) -> Self {
        Self::Interact(err)
    }
}
