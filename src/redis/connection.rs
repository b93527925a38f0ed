//! The pooled connection: the redis crate's multiplexed connection, with what the pool watches
//! about its session and the response timeout of the current checkout.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Value};

use super::command::{self, Block, Effect};
use super::error::Error;
use super::session::Session;

/// A connection from a [`RedisManager`](super::RedisManager).
///
/// It wraps the redis crate's [`MultiplexedConnection`], the crate's async connection to one
/// server (1.x has no other for tokio besides the self-reconnecting `ConnectionManager`, whose
/// hidden reconnects would take failures out of the pool's sight). Each pooled connection is
/// its own socket; "multiplexed" means it can carry the commands of several tasks at once,
/// which is what lets a [multiplexed view](crate::pool::Pool::multiplexed) of the pool lend one
/// connection to several borrowers and pipeline their commands.
///
/// # Two ways to send commands
///
/// - **Exclusive** (`&mut`, a checkout from [`Pool::get`](crate::pool::Pool::get)): the redis
///   crate's [`AsyncCommands`](redis::AsyncCommands), [`Cmd::query_async`] and
///   [`Pipeline::query_async`] take `&mut conn` and run any command, `SELECT`, `MULTI`,
///   `WATCH` and `CLIENT TRACKING` included. The pool sees each command's name, and before the
///   connection's next user a session someone changed is reset, one that no longer pairs replies
///   with commands (a subscription, `MONITOR`, `CLIENT REPLY OFF`) is closed (see
///   [`RedisManager`](super::RedisManager)).
/// - **Shared** (`&self`: [`query`](Self::query), [`query_timeout`](Self::query_timeout),
///   [`pipeline`](Self::pipeline)), which is all a multiplexed view's borrowers get: commands
///   that change the session are refused with [`Error::SessionCommand`], as they would reach
///   every other borrower. An atomic pipeline ([`Pipeline::atomic`]) is fine: its
///   `MULTI`...`EXEC` goes out in one piece. A blocking command (`BLPOP`) is not refused, but
///   the server runs one connection's commands in order, so on a shared connection every other
///   borrower waits behind it: send blocking commands through exclusive checkouts.
///
/// Raw access to the crate's connection through `Deref`/`DerefMut` is allowed, but the pool
/// cannot see the commands sent through it: it marks the session dirty, so it is reset (one
/// round trip) before the next user.
///
/// # Timeouts
///
/// Each command waits for its reply up to the response timeout, [`Error::Timeout`] after it
/// (the connection is then closed on return, as the reply may still come). A blocking command
/// (`BLPOP`, `BRPOP`, `BLMOVE`, `BZPOPMIN`, `BLMPOP`, `XREAD`/`XREADGROUP ... BLOCK`, `WAIT`)
/// waits its own blocking time on top, and forever when it blocks forever (`BLPOP key 0`).
/// [`set_response_timeout`](Self::set_response_timeout) changes the timeout for the rest of a
/// checkout, [`query_timeout`](Self::query_timeout) for one command.
pub struct RedisConnection {
    inner: MultiplexedConnection,
    pub(crate) session: Session,
    /// The manager's response timeout, which each checkout starts with.
    pub(crate) default_timeout: Option<Duration>,
    /// This checkout's response timeout.
    timeout: Option<Duration>,
}

impl RedisConnection {
    pub(crate) fn new(inner: MultiplexedConnection, timeout: Option<Duration>) -> Self {
        Self { inner, session: Session::default(), default_timeout: timeout, timeout }
    }

    /// Runs one command that leaves the session as it found it, and converts its reply.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: millpond::redis::RedisPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = pool.get().await?;
    /// conn.query::<()>(redis::cmd("SET").arg("greeting").arg("hello")).await?;
    /// let greeting: String = conn.query(redis::cmd("GET").arg("greeting")).await?;
    /// // A blocking command waits its own time on top of the response timeout.
    /// let popped: Option<(String, String)> =
    ///     conn.query(redis::cmd("BLPOP").arg("jobs").arg(2)).await?;
    /// # let _ = (greeting, popped);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::SessionCommand`] for a command that changes the session; [`Error::Timeout`]
    /// when no reply came in time; [`Error::Redis`] when the server refused the command, the
    /// connection broke or the reply does not convert to `T`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses the reply, and the connection is closed when it goes back to
    /// the pool rather than handed on with a reply (or a blocked `BLPOP`) still pending.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        self.sender(true, None).query(cmd).await
    }

    /// [`query`](Self::query) with its own timeout for the reply, which replaces both the
    /// response timeout and a blocking command's allowance: `None` waits as long as it takes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: millpond::redis::RedisPool) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let conn = pool.get().await?;
    /// // A slow script gets ten seconds, whatever the response timeout.
    /// let total: i64 = conn
    ///     .query_timeout(redis::cmd("FCALL").arg("rebuild_index").arg(0), Some(Duration::from_secs(10)))
    ///     .await?;
    /// # let _ = total;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`query`](Self::query).
    ///
    /// # Cancel safety
    ///
    /// As for [`query`](Self::query).
    pub async fn query_timeout<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        timeout: Option<Duration>,
    ) -> Result<T, Error> {
        self.sender(true, Some(timeout)).query(cmd).await
    }

    /// Runs a pipeline of commands that leave the session as they found it, in one round trip;
    /// an atomic one ([`Pipeline::atomic`]) runs as a `MULTI`/`EXEC` transaction.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: millpond::redis::RedisPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = pool.get().await?;
    /// let (visits, last): (i64, String) = conn
    ///     .pipeline(redis::pipe().atomic().incr("visits", 1).getset("last", "me"))
    ///     .await?;
    /// # let _ = (visits, last);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`query`](Self::query); the timeout covers the whole pipeline, with the blocking
    /// time of each blocking command in it added.
    ///
    /// # Cancel safety
    ///
    /// As for [`query`](Self::query).
    pub async fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, Error> {
        let mut sender = self.sender(true, None);
        let outcome = pipe.query_async(&mut sender).await;
        sender.outcome(outcome)
    }

    /// The response timeout of this checkout: the manager's
    /// [`response_timeout`](super::RedisManager::response_timeout) unless changed with
    /// [`set_response_timeout`](Self::set_response_timeout).
    pub fn response_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Changes the response timeout until the connection goes back to the pool (`None`: wait
    /// as long as it takes); the next checkout starts with the manager's again.
    pub fn set_response_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Marks the session as changed, so the pool resets it before the next user gets it. For
    /// state the pool cannot see in command names, set by a script or module command.
    pub fn mark_dirty(&self) {
        self.session.mark_dirty();
    }

    /// Whether the session may hold state a user set since the pool last reset it.
    pub fn is_dirty(&self) -> bool {
        self.session.is_dirty()
    }

    /// How many commands sent on this connection wait for their reply. More than the commands
    /// running now means one was abandoned, and the connection will be closed on return.
    pub fn in_flight(&self) -> usize {
        self.session.in_flight()
    }

    /// Whether the pool will close this connection when it comes back (it broke, or a command
    /// made the server's replies no longer pair with commands).
    pub fn is_broken(&self) -> bool {
        self.session.is_doomed()
    }

    /// A clone of the crate's connection, for the pool's own commands (the check and the
    /// reset), which are not the user's and are not tracked.
    pub(crate) fn raw_clone(&self) -> MultiplexedConnection {
        self.inner.clone()
    }

    /// Restores the checkout's response timeout to the manager's, as the connection comes back.
    pub(crate) fn restore_timeout(&mut self) {
        self.timeout = self.default_timeout;
    }

    fn sender(&self, shared: bool, timeout: Option<Option<Duration>>) -> Sender<'_> {
        Sender { conn: self, inner: self.inner.clone(), shared, timeout, failure: None }
    }
}

/// One use of a connection: sends commands through a clone of the multiplexed connection (so
/// shared access can send), records what each does to the session, and keeps the pool's own
/// error beside the `RedisError` the crate's traits must return.
struct Sender<'c> {
    conn: &'c RedisConnection,
    inner: MultiplexedConnection,
    /// Refuse commands that change the session.
    shared: bool,
    /// A timeout given for this use, instead of the checkout's plus the blocking time.
    timeout: Option<Option<Duration>>,
    failure: Option<Error>,
}

impl Sender<'_> {
    async fn query<T: FromRedisValue>(mut self, cmd: &Cmd) -> Result<T, Error> {
        let outcome = cmd.query_async(&mut self).await;
        self.outcome(outcome)
    }

    fn outcome<T>(&mut self, outcome: Result<T, RedisError>) -> Result<T, Error> {
        outcome.map_err(|err| self.failure.take().unwrap_or(Error::Redis(err)))
    }

    /// Checks and records what the commands `cmds()` yields, sent in this order, do to the
    /// session, before they go out. `transaction`: they go out between a `MULTI` and an `EXEC`
    /// of the redis crate's own (an atomic pipeline), which end any transaction opened before,
    /// and the watches with it.
    fn admit<'a, I>(&mut self, cmds: impl Fn() -> I, transaction: bool) -> Result<(), RedisError>
    where
        I: Iterator<Item = &'a Cmd>,
    {
        if self.shared {
            if let Some(refused) = cmds().find(|cmd| command::classify(cmd).changes_session()) {
                let name = name(refused);
                let err = RedisError::from((
                    redis::ErrorKind::Client,
                    "a command that changes the session was sent through shared access",
                    name.clone(),
                ));
                self.failure = Some(Error::SessionCommand(name));
                return Err(err);
            }
        }
        let session = &self.conn.session;
        if transaction {
            session.note(Effect::Begin);
        }
        cmds().for_each(|cmd| session.note(command::classify(cmd)));
        if transaction {
            session.note(Effect::End);
        }
        Ok(())
    }

    fn reply_timeout(&self, block: Block) -> Option<Duration> {
        self.timeout.unwrap_or_else(|| block.reply_timeout(self.conn.timeout))
    }

    /// Records a failure for the caller and hands the crate's traits a `RedisError`.
    fn fail(&mut self, err: Error) -> RedisError {
        let redis = match &err {
            Error::Redis(err) => err.clone(),
            Error::Timeout(_) => {
                std::io::Error::new(std::io::ErrorKind::TimedOut, err.to_string()).into()
            }
            other => std::io::Error::other(other.to_string()).into(),
        };
        self.failure = Some(err);
        redis
    }
}

/// The name of a command, for an error message.
fn name(cmd: &Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_uppercase(),
        _ => String::from("(unnamed)"),
    }
}

/// Waits for a reply, counting it in flight until it comes. A reply that does not come in time,
/// or whose waiter is dropped, stays counted: the connection is not handed on.
async fn exchange<T>(
    session: &Session,
    reply: impl Future<Output = Result<T, RedisError>>,
    timeout: Option<Duration>,
) -> Result<T, Error> {
    session.begin();
    let outcome = match timeout {
        Some(limit) => match tokio::time::timeout(limit, reply).await {
            Ok(outcome) => outcome,
            Err(_) => return Err(Error::Timeout(limit)),
        },
        None => reply.await,
    };
    session.end();
    outcome.map_err(|err| {
        if err.is_unrecoverable_error() || err.is_io_error() {
            session.doom();
        }
        Error::Redis(err)
    })
}

impl ConnectionLike for Sender<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.admit(|| std::iter::once(cmd), false)?;
            let timeout = self.reply_timeout(command::block(cmd));
            let reply = self.inner.send_packed_command(cmd);
            let outcome = exchange(&self.conn.session, reply, timeout).await;
            outcome.map_err(|err| self.fail(err))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.admit(|| pipe.cmd_iter(), pipe.is_transaction())?;
            let block = pipe.cmd_iter().map(command::block).fold(Block::No, Block::then);
            let timeout = self.reply_timeout(block);
            let reply = self.inner.send_packed_commands(pipe, offset, count);
            let outcome = exchange(&self.conn.session, reply, timeout).await;
            outcome.map_err(|err| self.fail(err))
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// Exclusive access: every command, session commands included, with the pool watching.
impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut sender = self.sender(false, None);
            sender.req_packed_command(cmd).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut sender = self.sender(false, None);
            sender.req_packed_commands(pipe, offset, count).await
        })
    }

    /// The database the manager selects; a `SELECT` sent since does not change it (and is
    /// undone before the next user).
    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("db", &self.inner.get_db())
            .field("dirty", &self.is_dirty())
            .field("broken", &self.is_broken())
            .field("in_flight", &self.in_flight())
            .field("response_timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Raw access to the redis crate's connection. The pool cannot see what is sent through it, so
/// it marks the session dirty: it is reset before the next user.
impl Deref for RedisConnection {
    type Target = MultiplexedConnection;

    fn deref(&self) -> &MultiplexedConnection {
        self.session.mark_dirty();
        &self.inner
    }
}

/// As [`Deref`]: the session is marked dirty.
impl DerefMut for RedisConnection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        self.session.mark_dirty();
        &mut self.inner
    }
}
