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

/// What [`SessionReset::Precise`] sends: `DISCARD ALL` without `DEALLOCATE ALL` and
/// `DISCARD PLANS`, which would drop the statements tokio-postgres and
/// [`PgConnection::prepare_cached`] keep prepared. One simple query, so one round trip; it may
/// start with `ROLLBACK` as none of its statements refuses a transaction block.
macro_rules! precise_reset {
    () => {
        "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
         SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
    };
}

/// The precise reset of a session in which no SQL `PREPARE` was seen.
const PRECISE_RESET: &str = precise_reset!();

/// The precise reset of a session that may hold statements a user made with SQL `PREPARE`
/// (`from_sql`): those are deallocated one by one, by a server-side loop that costs more than
/// the rest of the reset, so it runs only when the protocol showed a `PREPARE` (or a `DO`
/// block, or the user marked the session dirty by hand).
const PRECISE_RESET_WITH_PREPARED: &str = concat!(
    precise_reset!(),
    "; DO $millpond$ DECLARE statement text; BEGIN \
     FOR statement IN SELECT name FROM pg_prepared_statements WHERE from_sql LOOP \
     EXECUTE 'DEALLOCATE ' || quote_ident(statement); END LOOP; END $millpond$"
);

/// How a [`PgManager`] clears the session state one user leaves to the next: settings,
/// `LISTEN`s, advisory locks, temporary tables, SQL-prepared statements, open cursors.
///
/// The reset runs at checkout, where the pool already rolls back an abandoned transaction (in the
/// same round trip, for [`Precise`](Self::Precise)). A reset cut short (its `get()` cancelled or
/// timed out) closes the connection, so no one gets a half-reset session.
///
/// **Knowing when a session is dirty.** The manager watches the protocol: a `CommandComplete`
/// for `SET`, `RESET`, `LISTEN`, `PREPARE`, `DECLARE CURSOR`, `DO` or any `CREATE` (a temporary
/// table looks like a permanent one), or a `ParameterStatus` (the server reporting a changed
/// setting such as `TimeZone`, `application_name` or the role), marks it. The protocol does not
/// show session advisory locks, settings changed through `set_config()` that the server does not
/// report, temporary tables made by `CREATE TEMP TABLE ... AS` or `SELECT ... INTO` (tagged like
/// any `SELECT`), or `currval`/`lastval`: mark those with [`PgConnection::mark_dirty`].
///
/// The default is [`Precise`](Self::Precise): a clean connection (by far the common case) costs
/// nothing, a dirty one one round trip, and the statement cache survives. The measured cost of
/// each policy is in `benches/postgres.rs` (`pg_session_reset_64_tasks`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SessionReset {
    /// Never reset: session state passes from user to user. For applications that set nothing,
    /// or that set the same things on every checkout.
    Off,
    /// Reset a session only when it is dirty, with `DISCARD ALL` minus what would drop the
    /// statements tokio-postgres keeps prepared: `CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT;
    /// RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES;`,
    /// and, when the protocol showed a SQL `PREPARE` or a `DO` block (or the session was marked
    /// by hand), a `DEALLOCATE` of each statement made with SQL `PREPARE`. The default.
    #[default]
    Precise,
    /// `DISCARD ALL` at the checkout of every session used since its last reset, dirty or not, as
    /// pgbouncer's `server_reset_query` runs on every release: one round trip per checkout that
    /// follows a use. A session nobody sent a request on since (a fresh connection, or one a
    /// `try_get` took and gave back unused) goes out as it is. It drops every prepared statement,
    /// so the [`prepare_cached`](PgConnection::prepare_cached) cache starts over after each one;
    /// tokio-postgres's own statements for looking up custom types (enums, composites, domains)
    /// are dropped too, and it does not notice: a query on a custom type the connection has not
    /// looked up before may then fail with "prepared statement ... does not exist".
    DiscardAll,
    /// Run this SQL (as one simple query) when the session is dirty, instead of the
    /// [`Precise`](Self::Precise) reset. A `DISCARD ALL` or `DEALLOCATE ALL` in it empties the
    /// statement cache, as in [`DiscardAll`](Self::DiscardAll).
    Custom(String),
}

impl SessionReset {
    /// The statement that resets a session in the state `wire` shows, if this policy resets it.
    fn statement(&self, wire: &Wire) -> Option<&str> {
        match self {
            Self::Off => None,
            Self::Precise if !wire.is_dirty() => None,
            Self::Precise if wire.may_hold_sql_prepared() => Some(PRECISE_RESET_WITH_PREPARED),
            Self::Precise => Some(PRECISE_RESET),
            Self::DiscardAll => wire.is_used().then_some("DISCARD ALL"),
            Self::Custom(sql) => wire.is_dirty().then_some(sql.as_str()),
        }
    }
}

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
///   transaction, open or failed, is rolled back first, and one whose session a user changed
///   (`SET`, `LISTEN`, a temporary table, ...) is reset as [`SessionReset`] says (by default only
///   when the protocol showed a change): a round trip paid only by connections that need it.
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
    reset: SessionReset,
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
            reset: SessionReset::default(),
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
            reset: self.reset,
        }
    }

    /// How many statements [`PgConnection::prepare_cached`] keeps per connection (256 by
    /// default; 0 turns the cache off).
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }

    /// How session state a user leaves behind is cleared before the next user
    /// ([`SessionReset::Precise`] by default: only when the protocol showed a change).
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::postgres::{PgManager, SessionReset};
    ///
    /// # fn run() -> Result<(), tokio_postgres::Error> {
    /// let manager: PgManager = "host=localhost user=app".parse()?;
    /// let manager = manager.session_reset(SessionReset::DiscardAll);
    /// # let _ = manager;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn session_reset(mut self, reset: SessionReset) -> Self {
        self.reset = reset;
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
        // Left inside a transaction, open or failed, it is rolled back. A rollback tokio-postgres
        // already queued for a dropped `Transaction` makes this one redundant, which only draws a
        // warning from the server.
        let rollback = !conn.wire.status().is_idle();
        let used = conn.wire.is_used();
        let reset = self.reset.statement(&conn.wire);
        match (rollback, reset) {
            (false, None) => {
                conn.simple_query("").await?;
                if !used {
                    // The pool's own ping is no use of the session: under `DiscardAll` it would
                    // cost the next checkout a reset.
                    conn.wire.clear_used();
                }
                return Ok(());
            }
            (true, None) => conn.batch_execute("ROLLBACK").await?,
            (false, Some(reset)) => conn.batch_execute(reset).await?,
            (true, Some(reset)) if matches!(self.reset, SessionReset::Precise) => {
                conn.batch_execute(&format!("ROLLBACK; {reset}")).await?;
            }
            (true, Some(reset)) => {
                // `DISCARD ALL` refuses to run inside a transaction block, or a multi-statement
                // query; a custom reset may too.
                conn.batch_execute("ROLLBACK").await?;
                conn.batch_execute(reset).await?;
            }
        }
        let status = conn.wire.status();
        if !status.is_idle() {
            return Err(Error::StuckInTransaction(status));
        }
        if reset.is_some() {
            // The reset's answer has arrived, after everything sent before it, and no one else
            // can send on this connection: what it marked (its own `SET`s and `RESET`, and its
            // own use) is gone.
            conn.wire.clear_dirty();
        }
        Ok(())
    }

    /// Work cycles answered on the connection since the last take, and those the server failed
    /// with an error of its own (a SQLSTATE of class 08, 40, 53, 55, 57, 58 or XX: see
    /// `wire::server_at_fault`), as the protocol watcher counted them; and the time the others
    /// took from request to answer.
    fn take_traffic(&self, conn: &PgConnection) -> Option<crate::pool::Traffic> {
        let tally = conn.wire.take_traffic();
        Some(
            crate::pool::Traffic::new(tally.calls, tally.failures)
                .with_time(tally.timed, tally.time),
        )
    }

    fn needs_check(&self, conn: &PgConnection) -> bool {
        conn.is_closed()
            || conn.wire.is_busy()
            || !conn.wire.status().is_idle()
            || self.reset.statement(&conn.wire).is_some()
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
