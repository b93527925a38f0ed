//! [`SqliteManager`]: how a pool opens, resets and retires SQLite connections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::connection::SqliteConnection;
use super::error::{Error, InteractError};
use crate::pool::Manager;
use crate::sync::{Arc, Mutex};

/// How long a connection waits for another's write lock before `SQLITE_BUSY`, by default.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A hook run on every new connection, after millpond's own pragmas.
type OnConnect = dyn Fn(&mut Connection) -> rusqlite::Result<()> + Send + Sync;

/// A [`Manager`] for SQLite connections over rusqlite.
///
/// Build it with [`file`](Self::file) or [`memory`](Self::memory); [`new`](Self::new) picks
/// by the path, treating `:memory:` as [`memory`](Self::memory).
pub struct SqliteManager {
    target: Target,
    busy_timeout: Duration,
    wal: bool,
    on_connect: Option<Arc<OnConnect>>,
    /// For a memory database: a connection held for the manager's life, so the database
    /// survives while the pool holds none.
    _anchor: Option<Mutex<Connection>>,
}

#[derive(Debug, Clone)]
enum Target {
    File(PathBuf),
    /// A `memdb` VFS name: one database shared by every connection opened with it.
    Memory(String),
}

impl std::fmt::Debug for SqliteManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteManager")
            .field("target", &self.target)
            .field("busy_timeout", &self.busy_timeout)
            .field("wal", &self.wal)
            .finish_non_exhaustive()
    }
}

impl SqliteManager {
    /// A manager for `path`: a file, or `:memory:` for one shared in-memory database.
    ///
    /// # Errors
    ///
    /// Only for `:memory:`, if the shared database cannot be created.
    pub fn new(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        if path.as_os_str() == ":memory:" { Self::memory() } else { Ok(Self::file(path)) }
    }

    /// A manager for the database file at `path` (created if missing), in WAL mode with a 5 s
    /// busy timeout.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::with_target(Target::File(path.into()), None)
    }

    /// A manager for one in-memory database that every connection of the pool shares.
    ///
    /// SQLite's plain `:memory:` gives each connection a database of its own, so a table one
    /// pooled connection creates would be missing on the next. This uses SQLite's `memdb`
    /// storage under a name unique to the manager instead, with normal locking (writers wait
    /// for each other within the busy timeout).
    ///
    /// # Errors
    ///
    /// If SQLite cannot create the database.
    pub fn memory() -> Result<Self, Error> {
        let name = format!("file:/millpond-{}?vfs=memdb", crate::sync::unique_id());
        let target = Target::Memory(name);
        let anchor = open(&target)?;
        Ok(Self::with_target(target, Some(Mutex::new(anchor))))
    }

    fn with_target(target: Target, anchor: Option<Mutex<Connection>>) -> Self {
        Self {
            target,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            wal: true,
            on_connect: None,
            _anchor: anchor,
        }
    }

    /// How long a connection waits for a lock another holds before failing with `SQLITE_BUSY`
    /// (5 s by default).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Whether a file database is switched to WAL mode (the default). Memory databases have no
    /// journal file and ignore this.
    pub fn wal(mut self, enabled: bool) -> Self {
        self.wal = enabled;
        self
    }

    /// Runs `hook` on each new connection, after millpond's own settings: pragmas such as
    /// `foreign_keys`, functions, extensions.
    pub fn on_connect(
        mut self,
        hook: impl Fn(&mut Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// What a blocking thread needs to open a connection.
    fn opener(&self) -> Opener {
        Opener {
            target: self.target.clone(),
            busy_timeout: self.busy_timeout,
            wal: self.wal,
            on_connect: self.on_connect.clone(),
        }
    }
}

/// The settings a new connection is opened with, moved to a blocking thread.
struct Opener {
    target: Target,
    busy_timeout: Duration,
    wal: bool,
    on_connect: Option<Arc<OnConnect>>,
}

impl Opener {
    /// Opens and sets up one connection; blocking.
    fn connect(self) -> Result<Connection, Error> {
        let mut conn = open(&self.target)?;
        conn.busy_timeout(self.busy_timeout)?;
        if self.wal && matches!(self.target, Target::File(_)) {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // With WAL, NORMAL keeps the database consistent after a crash; it only risks the
            // last transactions on a power cut, and saves an fsync per commit.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        if let Some(hook) = &self.on_connect {
            hook(&mut conn)?;
        }
        Ok(conn)
    }
}

fn open(target: &Target) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    Ok(match target {
        Target::File(path) => Connection::open_with_flags(path, flags)?,
        Target::Memory(name) => Connection::open_with_flags(name, flags)?,
    })
}

impl Manager for SqliteManager {
    type Resource = SqliteConnection;
    type Error = Error;

    async fn create(&self) -> Result<SqliteConnection, Error> {
        // Opening touches the file system and may wait on a lock: off the async workers.
        let opener = self.opener();
        let opened = tokio::task::spawn_blocking(move || opener.connect())
            .await
            .map_err(InteractError::from)?;
        opened.map(SqliteConnection::new)
    }

    async fn check(&self, conn: &mut SqliteConnection) -> Result<(), Error> {
        // Only reached for a connection left inside a transaction (`needs_check`), or one that
        // sat idle: a local database has nothing to ping.
        if conn.in_transaction() {
            conn.interact(|conn| conn.execute_batch("ROLLBACK")).await??;
        }
        Ok(())
    }

    fn needs_check(&self, conn: &SqliteConnection) -> bool {
        conn.in_transaction()
    }

    fn is_reusable(&self, conn: &mut SqliteConnection) -> bool {
        // A call its caller stopped waiting for still holds the connection.
        !conn.is_busy()
    }
}
