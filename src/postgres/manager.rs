//! [`PgManager`]: how a pool makes, checks, resets and retires PostgreSQL connections.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Config, NoTls};

use super::connection::PgConnection;
use super::error::Error;
use super::socket::{self, Socket};
use super::tls::WatchTls;
use super::wire::{Watched, Wire};
use crate::pool::{CloseReason, Manager};
use crate::sync::Arc;

/// How long a checkout waits for the answer to a query still in flight before deciding its caller
/// abandoned it.
const BUSY_GRACE: Duration = Duration::from_millis(20);

/// Statements each connection keeps prepared, unless configured otherwise.
const DEFAULT_STATEMENT_CACHE_CAPACITY: usize = 256;

/// A [`Manager`] for PostgreSQL connections over tokio-postgres.
///
/// - **create** opens a socket to the first configured host that answers (TCP or Unix socket,
///   honouring `connect_timeout`), starts the session, and drives it in a task of its own.
/// - **check** costs nothing for a connection the pool used within its check window; past it,
///   an empty query makes sure the server still answers.
/// - **on return**, a closed connection is dropped. The rest is judged at the next checkout: a
///   clean connection used within the check window goes out with no I/O (past the window, the
///   empty query above); one whose caller dropped a query mid-way (still unanswered after a
///   20 ms grace) is closed and its query cancelled on the server; one left inside a
///   transaction, open or failed, is rolled back first, a round trip paid only by connections
///   that need it.
///
/// Without TLS (the default, [`NoTls`]) an `sslmode=prefer` configuration connects in plaintext,
/// as tokio-postgres does; [`with_tls`](Self::with_tls) plugs in a connector such as
/// `postgres-native-tls` or `tokio-postgres-rustls`.
///
/// # Examples
///
/// ```no_run
/// use millpond::pool::Pool;
/// use millpond::postgres::PgManager;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let manager: PgManager = "host=localhost user=app dbname=app".parse()?;
/// let pool = Pool::builder(manager).max_size(16).build()?;
///
/// let conn = pool.get().await?;
/// let statement = conn.prepare_cached("SELECT name FROM users WHERE id = $1").await?;
/// let row = conn.query_one(&statement, &[&42_i64]).await?;
/// let name: &str = row.get(0);
/// # let _ = name;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PgManager<T = NoTls> {
    /// The configuration as given.
    config: Config,
    /// The configuration connections are made with (see [`session_config`]).
    session: Config,
    tls: T,
    statement_cache_capacity: usize,
}

/// The configuration to connect with: without a TLS connector, `sslmode=prefer` means plaintext
/// (the watcher's TLS wrapper cannot tell tokio-postgres that no TLS is possible).
fn session_config(config: &Config, tls_configured: bool) -> Config {
    let mut session = config.clone();
    if !tls_configured && config.get_ssl_mode() == SslMode::Prefer {
        session.ssl_mode(SslMode::Disable);
    }
    session
}

impl PgManager<NoTls> {
    /// A manager connecting with `config`, without TLS.
    pub fn new(config: Config) -> Self {
        Self {
            session: session_config(&config, false),
            config,
            tls: NoTls,
            statement_cache_capacity: DEFAULT_STATEMENT_CACHE_CAPACITY,
        }
    }
}

impl FromStr for PgManager<NoTls> {
    type Err = tokio_postgres::Error;

    /// Parses a libpq connection string, `key=value` pairs or a `postgres://` URL.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s.parse()?))
    }
}

impl<T> PgManager<T> {
    /// The same manager, connecting through `tls`.
    pub fn with_tls<U>(self, tls: U) -> PgManager<U> {
        PgManager {
            session: session_config(&self.config, true),
            config: self.config,
            tls,
            statement_cache_capacity: self.statement_cache_capacity,
        }
    }

    /// How many statements [`PgConnection::prepare_cached`] keeps per connection (256 by
    /// default; 0 turns the cache off).
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }

    /// The connection configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl<T> Manager for PgManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::TlsConnect: Send,
    T::Stream: Send + 'static,
    T::Error: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send + 'static,
{
    type Resource = PgConnection;
    type Error = Error;

    async fn create(&self) -> Result<PgConnection, Error> {
        let (socket, endpoint) = socket::connect(&self.session).await.map_err(Error::Connect)?;
        let tls = self
            .tls
            .clone()
            .make_tls_connect(endpoint.host())
            .map_err(|err| Error::Tls(err.into()))?;
        let wire = Arc::new(Wire::default());
        let watched = Watched::new(socket, Arc::clone(&wire));
        let (client, connection) =
            self.session.connect_raw(watched, WatchTls { inner: tls }).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "millpond: a PostgreSQL connection ended with an error");
            }
        });
        Ok(PgConnection::new(client, wire, endpoint, self.statement_cache_capacity))
    }

    async fn check(&self, conn: &mut PgConnection) -> Result<(), Error> {
        if conn.is_closed() {
            return Err(Error::Closed);
        }
        if conn.wire.is_busy() && !conn.wire.settle(BUSY_GRACE).await {
            // A query its caller abandoned is still running: the next user would wait behind
            // it. Closing the connection (`on_close` cancels the query) is cheaper.
            return Err(Error::Busy);
        }
        if !conn.wire.status().is_idle() {
            // Left inside a transaction, open or failed. A rollback tokio-postgres already
            // queued for a dropped `Transaction` makes this one redundant, which only draws a
            // warning from the server.
            conn.batch_execute("ROLLBACK").await?;
            let status = conn.wire.status();
            return if status.is_idle() { Ok(()) } else { Err(Error::StuckInTransaction(status)) };
        }
        conn.simple_query("").await?;
        Ok(())
    }

    fn needs_check(&self, conn: &PgConnection) -> bool {
        conn.is_closed() || conn.wire.is_busy() || !conn.wire.status().is_idle()
    }

    fn is_reusable(&self, conn: &mut PgConnection) -> bool {
        // What a returned connection still has in flight is judged at its next checkout
        // (`needs_check`), when the closing `ReadyForQuery` of a finished query has had time to
        // arrive: judging here would close healthy connections.
        !conn.is_closed()
    }

    fn on_close(&self, conn: PgConnection, reason: CloseReason) {
        if conn.wire.is_busy() && !conn.is_closed() {
            tracing::debug!(
                ?reason,
                "millpond: closing a busy PostgreSQL connection; cancelling its query"
            );
            conn.cancel_in_background();
        }
    }
}
