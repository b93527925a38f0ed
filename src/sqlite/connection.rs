//! The pooled SQLite connection: a rusqlite [`Connection`] used from blocking threads.

use rusqlite::Connection;

use super::error::InteractError;
use crate::sync::{Arc, Mutex};

/// A connection from a [`SqliteManager`](super::SqliteManager).
///
/// SQLite calls block, so they run in [`interact`](Self::interact) closures on tokio's blocking
/// threads.
#[derive(Debug)]
pub struct SqliteConnection {
    /// Shared with the blocking call in progress, if any: a call outlives a caller that stopped
    /// waiting for it.
    inner: Arc<Mutex<Connection>>,
}

impl SqliteConnection {
    pub(crate) fn new(connection: Connection) -> Self {
        Self { inner: Arc::new(Mutex::new(connection)) }
    }

    /// Runs `call` with the connection on a blocking thread and returns what it returns.
    ///
    /// # Errors
    ///
    /// [`InteractError::Panicked`] if `call` panicked (the connection is rolled back before its
    /// next use), [`InteractError::Cancelled`] if the runtime shut down first.
    ///
    /// # Cancel safety
    ///
    /// Not cancellable: dropping the future does not stop `call`, which runs to its end on its
    /// blocking thread. The pool then closes the connection rather than reuse it under a call in
    /// progress.
    pub async fn interact<F, R>(&self, call: F) -> Result<R, InteractError>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || call(&mut inner.lock()))
            .await
            .map_err(InteractError::from)
    }

    /// Whether a call whose caller stopped waiting is still running on the connection.
    pub fn is_busy(&self) -> bool {
        Arc::strong_count(&self.inner) > 1
    }

    /// Whether the connection sits inside a transaction. Asked by the pool, which alone holds the
    /// connection then; a busy connection counts as not in one (ask `is_busy` first).
    pub(crate) fn in_transaction(&self) -> bool {
        !self.is_busy() && !self.inner.lock().is_autocommit()
    }
}
