//! [`RedisManager`]: how a pool makes, checks, resets and retires Redis connections.

use std::str::FromStr;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value};

use super::connection::RedisConnection;
use super::error::Error;
use crate::pool::Manager;

/// How long making a connection may take, handshake included, unless configured otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a command waits for its reply (on top of its own blocking time, for a blocking
/// command), unless configured otherwise.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Manager`] for Redis connections over the redis crate.
///
/// - **create** connects (TCP or a Unix socket), authenticates and selects the configured
///   database, all within the connect timeout.
/// - **check** costs nothing for a clean connection the pool used within its check window;
///   past it, a `PING` makes sure the server still answers.
/// - **on return**, a connection is closed if a command sent on it was abandoned before its
///   reply came (its future was dropped, or it timed out: the reply, or a blocked `BLPOP` that
///   would still pop an element, must not reach the next user), if it broke, or if a command
///   made the server's replies stop pairing one to one with commands (`SUBSCRIBE`,
///   `PSUBSCRIBE`, `SSUBSCRIBE`, `MONITOR`, `CLIENT REPLY OFF|SKIP`, `QUIT`).
/// - **at the next checkout**, a connection whose session a user changed (`SELECT`, a `MULTI`
///   without `EXEC`, a `WATCH` without `EXEC` or `UNWATCH`, `CLIENT TRACKING`, `AUTH`,
///   `HELLO`, `CLIENT SETNAME`, raw access to the crate's connection) is restored in one
///   round trip: `RESET` (Redis 6.2
///   or later), then `AUTH` with the configured credentials and `SELECT` of the configured
///   database where those are set. A reset whose replies are not what those commands answer,
///   or that fails (a server before Redis 6.2 has no `RESET`), closes the connection instead.
///   A clean connection is handed out with no I/O.
///
/// # Examples
///
/// ```no_run
/// use millpond::pool::Pool;
/// use millpond::redis::RedisManager;
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = RedisManager::new("redis://127.0.0.1:6379")?
///     .db(2)
///     .response_timeout(Some(Duration::from_millis(500)));
/// let pool = Pool::builder(manager).max_size(16).build()?;
///
/// let conn = pool.get().await?;
/// let hits: i64 = conn.query(redis::cmd("INCR").arg("hits")).await?;
/// # let _ = hits;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisManager {
    info: ConnectionInfo,
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
}

impl RedisManager {
    /// A manager connecting as `info` says: a `redis://` (or `unix://`) URL, or the redis
    /// crate's [`ConnectionInfo`].
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] if `info` is not a valid URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::redis::RedisManager;
    ///
    /// # fn run() -> Result<(), millpond::redis::Error> {
    /// let manager = RedisManager::new("redis://:secret@127.0.0.1:6379/1")?;
    /// assert_eq!(manager.connection_info().redis_settings().db(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(info: impl IntoConnectionInfo) -> Result<Self, Error> {
        Ok(Self::from_info(info.into_connection_info()?))
    }

    /// A manager connecting over TCP to `host:port`, database 0, without credentials (set them
    /// with [`db`](Self::db), [`username`](Self::username) and [`password`](Self::password)).
    ///
    /// # Errors
    ///
    /// None today; the redis crate's conversion it goes through returns a `Result`.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::redis::RedisManager;
    ///
    /// # fn run() -> Result<(), millpond::redis::Error> {
    /// let manager = RedisManager::tcp("127.0.0.1", 6379)?.db(3).password("secret");
    /// assert_eq!(manager.connection_info().redis_settings().db(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn tcp(host: impl Into<String>, port: u16) -> Result<Self, Error> {
        Self::new(ConnectionAddr::Tcp(host.into(), port))
    }

    fn from_info(info: ConnectionInfo) -> Self {
        Self {
            info,
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
        }
    }

    /// Selects database `db` (0 by default) on every connection, and again after each reset.
    #[must_use]
    pub fn db(mut self, db: i64) -> Self {
        let settings = self.info.redis_settings().clone().set_db(db);
        self.info = self.info.set_redis_settings(settings);
        self
    }

    /// Authenticates as `username` (an ACL user; Redis 6 or later) with the
    /// [`password`](Self::password).
    #[must_use]
    pub fn username(mut self, username: impl AsRef<str>) -> Self {
        let settings = self.info.redis_settings().clone().set_username(username);
        self.info = self.info.set_redis_settings(settings);
        self
    }

    /// Authenticates with `password` (as the `default` user unless a
    /// [`username`](Self::username) is set).
    #[must_use]
    pub fn password(mut self, password: impl AsRef<str>) -> Self {
        let settings = self.info.redis_settings().clone().set_password(password);
        self.info = self.info.set_redis_settings(settings);
        self
    }

    /// How long making a connection may take, handshake included (5 s by default; `None`: no
    /// limit of its own, only the pool's create timeout).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command waits for its reply before [`Error::Timeout`] (5 s by default; `None`:
    /// no limit). A blocking command (`BLPOP key 2`) waits its own blocking time on top; a
    /// checkout can change it for itself with
    /// [`RedisConnection::set_response_timeout`], a command with
    /// [`RedisConnection::query_timeout`].
    #[must_use]
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// What connections are made with.
    pub fn connection_info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The commands that restore a session after `RESET`: re-authenticate and re-select the
    /// configured database, where those differ from what `RESET` leaves (the `default` user,
    /// database 0, RESP2).
    fn reset_pipeline(&self) -> redis::Pipeline {
        let settings = self.info.redis_settings();
        let mut pipe = redis::pipe();
        pipe.cmd("RESET");
        if settings.protocol() != redis::ProtocolVersion::RESP2 {
            let hello = pipe.cmd("HELLO").arg(3);
            if let Some(password) = settings.password() {
                hello.arg("AUTH").arg(settings.username().unwrap_or("default")).arg(password);
            }
        } else if let Some(password) = settings.password() {
            let auth = pipe.cmd("AUTH");
            if let Some(username) = settings.username() {
                auth.arg(username);
            }
            auth.arg(password);
        }
        if settings.db() != 0 {
            pipe.cmd("SELECT").arg(settings.db());
        }
        pipe
    }

    /// Resets a dirty session in one round trip. The replies are checked one by one: the first
    /// must be `RESET`'s own. A reply left over from before (a message of a subscription made
    /// through raw access) would come first and fail the check, so a reset that passes leaves
    /// nothing unread behind it.
    async fn reset(&self, conn: &mut RedisConnection) -> Result<(), Error> {
        let pipe = self.reset_pipeline();
        let count = pipe.cmd_iter().count();
        let mut raw = conn.raw_clone();
        let replies = raw.req_packed_commands(&pipe, 0, count).await?;
        let mut replies = replies.into_iter();
        match replies.next() {
            Some(Value::SimpleString(reply)) if reply == "RESET" => {}
            other => return Err(Error::UnexpectedReply(format!("{other:?}"))),
        }
        for reply in replies {
            if let Value::ServerError(err) = reply {
                return Err(Error::UnexpectedReply(err.to_string()));
            }
        }
        conn.session.clear_dirty();
        Ok(())
    }
}

impl FromStr for RedisManager {
    type Err = Error;

    /// Parses a `redis://` or `unix://` URL.
    fn from_str(url: &str) -> Result<Self, Error> {
        Self::new(url)
    }
}

impl Manager for RedisManager {
    type Resource = RedisConnection;
    type Error = Error;

    async fn create(&self) -> Result<RedisConnection, Error> {
        let client = redis::Client::open(self.info.clone())?;
        // The crate's own response timeout stays off: the connection applies its own, per
        // command, so a blocking command can wait its time and an abandoned one is seen.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(None);
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        let inner = match self.connect_timeout {
            Some(limit) => {
                tokio::time::timeout(limit, connect).await.map_err(|_| Error::Timeout(limit))??
            }
            None => connect.await?,
        };
        Ok(RedisConnection::new(inner, self.response_timeout))
    }

    async fn check(&self, conn: &mut RedisConnection) -> Result<(), Error> {
        if conn.session.is_doomed() {
            return Err(Error::Closed);
        }
        if conn.session.in_flight() > 0 {
            return Err(Error::Abandoned);
        }
        if conn.session.is_dirty() {
            return self.reset(conn).await.inspect_err(|_| conn.session.doom());
        }
        let mut raw = conn.raw_clone();
        match raw.req_packed_command(&redis::cmd("PING")).await {
            Ok(Value::SimpleString(pong)) if pong == "PONG" => Ok(()),
            Ok(other) => {
                conn.session.doom();
                Err(Error::UnexpectedReply(format!("{other:?}")))
            }
            Err(err) => {
                conn.session.doom();
                Err(Error::Redis(err))
            }
        }
    }

    fn needs_check(&self, conn: &RedisConnection) -> bool {
        conn.session.is_dirty() || !conn.session.is_reusable()
    }

    fn is_reusable(&self, conn: &mut RedisConnection) -> bool {
        conn.restore_timeout();
        conn.session.is_reusable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reset pipeline's commands, as text.
    fn reset_commands(manager: &RedisManager) -> Vec<String> {
        manager
            .reset_pipeline()
            .cmd_iter()
            .map(|cmd| {
                cmd.args_iter()
                    .filter_map(|arg| match arg {
                        redis::Arg::Simple(bytes) => {
                            Some(String::from_utf8_lossy(bytes).into_owned())
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn the_reset_restores_only_what_differs_from_what_reset_leaves() {
        let plain = RedisManager::new("redis://127.0.0.1").unwrap();
        assert_eq!(reset_commands(&plain), ["RESET"]);
        let db = plain.clone().db(3).password("pw");
        assert_eq!(reset_commands(&db), ["RESET", "AUTH pw", "SELECT 3"]);
        let user = plain.clone().username("app").password("pw");
        assert_eq!(reset_commands(&user), ["RESET", "AUTH app pw"]);
        let resp3 = RedisManager::new("redis://app:pw@127.0.0.1/2?protocol=resp3").unwrap();
        assert_eq!(reset_commands(&resp3), ["RESET", "HELLO 3 AUTH app pw", "SELECT 2"]);
        let resp3_anonymous = RedisManager::new("redis://127.0.0.1/?protocol=resp3").unwrap();
        assert_eq!(reset_commands(&resp3_anonymous), ["RESET", "HELLO 3"]);
    }

    #[test]
    fn builders_set_the_connection_info() {
        let manager =
            RedisManager::tcp("localhost", 7000).unwrap().db(5).username("u").password("p");
        let settings = manager.connection_info().redis_settings();
        assert_eq!(
            (settings.db(), settings.username(), settings.password()),
            (5, Some("u"), Some("p"))
        );
        assert!(
            matches!(manager.connection_info().addr(), ConnectionAddr::Tcp(host, 7000) if host == "localhost")
        );
        assert!("not a url".parse::<RedisManager>().is_err());
        assert!(format!("{manager:?}").contains("redacted"), "no password in Debug output");
    }
}
