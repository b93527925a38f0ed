//! The pooled connection: a tokio-postgres [`Client`] with what the pool watches about it and a
//! cache of prepared statements.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use tokio_postgres::{CancelToken, Client, NoTls, Statement};

use super::socket::Endpoint;
use super::wire::{TransactionStatus, Wire};
use crate::sync::{Arc, Mutex};

/// How long a best-effort cancel request may take, connecting included: a frozen server would
/// otherwise keep the task waiting forever.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection from a [`PgManager`](super::PgManager): derefs to [`tokio_postgres::Client`], so
/// every query method is there.
///
/// The pool watches it: a connection returned with a query still in flight (its future was
/// dropped mid-query) is closed and its query cancelled on the server; one returned inside a
/// transaction is rolled back before anyone else gets it; one whose session a user changed
/// (`SET`, `LISTEN`, a temporary table, ...) is reset as the manager's
/// [`SessionReset`](super::SessionReset) says. State the protocol cannot show, such as a session
/// advisory lock taken through `SELECT`, is flagged with [`mark_dirty`](Self::mark_dirty).
pub struct PgConnection {
    client: Client,
    pub(crate) wire: Arc<Wire>,
    statements: Mutex<HashMap<String, Statement>>,
    statement_capacity: usize,
    cancel: CancelToken,
    endpoint: Endpoint,
}

impl PgConnection {
    pub(crate) fn new(
        client: Client,
        wire: Arc<Wire>,
        endpoint: Endpoint,
        statement_capacity: usize,
    ) -> Self {
        let cancel = client.cancel_token();
        Self {
            client,
            wire,
            statements: Mutex::new(HashMap::new()),
            statement_capacity,
            cancel,
            endpoint,
        }
    }

    /// Prepares `query` once per connection and returns the cached statement afterwards, so a hot
    /// query is parsed and planned by the server only on first use.
    ///
    /// The cache holds up to the manager's
    /// [`statement_cache_capacity`](super::PgManager::statement_cache_capacity) statements; past
    /// that, an arbitrary one is evicted (and closed on the server).
    ///
    /// # Errors
    ///
    /// What [`Client::prepare`] reports for a query that is not yet cached.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a prepare dropped mid-way caches nothing. Its `Parse` still goes to the
    /// server and counts as work, like a query: parsing takes locks, so it can wait (behind an
    /// `ALTER TABLE`, say). A checkout that finds it unanswered waits the 20 ms grace for the
    /// answer. If the answer comes, the connection goes on serving; if not, the connection is
    /// closed, the `Parse` is cancelled on the server, and the caller gets another connection.
    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, tokio_postgres::Error> {
        if self.wire.take_statements_lost() {
            // A `DISCARD ALL` or `DEALLOCATE ALL` dropped them on the server.
            self.statements.lock().clear();
        }
        if let Some(statement) = self.statements.lock().get(query) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(query).await?;
        let mut statements = self.statements.lock();
        if statements.len() >= self.statement_capacity {
            if let Some(evicted) = statements.keys().next().cloned() {
                statements.remove(&evicted);
            }
        }
        if self.statement_capacity > 0 {
            statements.insert(query.to_owned(), statement.clone());
        }
        Ok(statement)
    }

    /// How many prepared statements this connection caches.
    pub fn cached_statements(&self) -> usize {
        self.statements.lock().len()
    }

    /// The transaction status the server reported at the end of the last completed request.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.wire.status()
    }

    /// Marks the session as changed, so the pool resets it before the next user gets it (under
    /// the default [`SessionReset::Precise`](super::SessionReset::Precise)).
    ///
    /// The pool sees most session changes in the protocol (see
    /// [`SessionReset`](super::SessionReset)); call this after what it cannot see: a session
    /// advisory lock (`SELECT pg_advisory_lock(..)`), a setting changed with `set_config()`, a
    /// temporary table made by `CREATE TEMP TABLE ... AS` or `SELECT ... INTO`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: millpond::postgres::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = pool.get().await?;
    /// conn.execute("SELECT pg_advisory_lock($1)", &[&42_i64]).await?;
    /// conn.mark_dirty();
    /// // ... work under the lock; if this code returns early, the reset releases it.
    /// # Ok(())
    /// # }
    /// ```
    pub fn mark_dirty(&self) {
        self.wire.mark_dirty();
    }

    /// Whether the session holds state a user set since the pool last reset it: seen in the
    /// protocol, or marked with [`mark_dirty`](Self::mark_dirty).
    pub fn is_dirty(&self) -> bool {
        self.wire.is_dirty()
    }

    /// Whether a query sent on this connection is still waiting for the server's answer (not
    /// counting tokio-postgres's own housekeeping: closing a dropped statement, rolling back a
    /// dropped transaction).
    pub fn is_busy(&self) -> bool {
        self.wire.is_busy()
    }

    /// Asks the server, over a connection of its own, to cancel whatever this one is running.
    /// Fire and forget: used when the pool closes a connection that is still busy, so the server
    /// does not go on running a query nobody waits for.
    pub(crate) fn cancel_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let token = self.cancel.clone();
        let endpoint = self.endpoint.clone();
        runtime.spawn(async move {
            let cancelled = async {
                let socket = endpoint.connect(None).await?;
                token.cancel_query_raw(socket, NoTls).await.map_err(std::io::Error::other)
            };
            let outcome = tokio::time::timeout(CANCEL_TIMEOUT, cancelled)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            if let Err(err) = outcome {
                tracing::debug!(error = %err, "millpond: could not cancel an abandoned query");
            }
        });
    }
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("endpoint", &self.endpoint)
            .field("busy", &self.is_busy())
            .field("transaction_status", &self.transaction_status())
            .field("dirty", &self.is_dirty())
            .field("cached_statements", &self.cached_statements())
            .finish_non_exhaustive()
    }
}

impl Deref for PgConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl TransactionStatus {
    /// Whether this is [`TransactionStatus::Idle`].
    pub fn is_idle(self) -> bool {
        self == Self::Idle
    }
}
