//! A rate limiter shared by every instance of a service, kept in Redis: GCRA on the server's
//! clock, one Redis key per limited key, a local short-circuit for keys known to be over their
//! limit, and a choice of failing open or closed when Redis is down.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use millpond::pool::Pool;
//! use millpond::redis::rate_limit::{Decision, FailurePolicy, RateLimiter};
//! use millpond::redis::RedisPool;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool: RedisPool = Pool::builder("redis://127.0.0.1:6379".parse()?).max_size(8).build()?;
//! // 100 requests a minute per user, 20 of them at once; every instance of the service
//! // builds the same limiter on the same server, and they share the count.
//! let limiter = RateLimiter::builder(pool)
//!     .rate(100, Duration::from_secs(60))
//!     .burst(20)
//!     .prefix("api:user:")
//!     .timeout(Duration::from_millis(50))
//!     .on_unavailable(FailurePolicy::Open)
//!     .build()?;
//!
//! match limiter.check("user-42").await? {
//!     Decision::Allowed { remaining } => println!("go ahead, {remaining} left"),
//!     Decision::Refused { retry_after, .. } => println!("429, retry in {retry_after:?}"),
//!     Decision::AllowedUnchecked(cause) => println!("Redis is down ({cause}), let it pass"),
//!     _ => {}
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # The algorithm
//!
//! GCRA (the generic cell rate algorithm; a token bucket written as one number): each key holds
//! its *theoretical arrival time* (TAT), when its bucket would be full again. With an emission
//! interval `T = period / count` and a burst `b`, a request of `n` at `now` is admitted when
//! `max(TAT, now) + n·T - b·T <= now`, and moves the TAT to `max(TAT, now) + n·T`. Over any
//! window of length `w` a key admits at most `b + w / T` requests, whichever instance asks. A
//! refusal writes nothing, so refused requests do not push the key's recovery back.
//!
//! One Lua script does the read, the decision and the write atomically on the server (sent as
//! `EVALSHA`, with `EVAL` when the server does not have the script cached, after a restart for
//! example). The clock is the server's own `TIME`, read inside the script: the instances'
//! clocks may disagree, the server's is the one they share. The key is written with an expiry
//! (`SET ... PX`) at the moment its TAT falls behind the server's clock, when a missing key and
//! the stored one mean the same: an idle key costs the server nothing.
//!
//! The emission interval is a whole number of microseconds, rounded up from `period / count`,
//! so rates above a million a second act as a million, and a rate is never exceeded by the
//! rounding.
//!
//! # The local short-circuit
//!
//! When the server refuses a key, it says when the key would fit again; until then the limiter
//! refuses that key itself, with no round trip ([`Decision::Refused`] with `local: true`), and
//! the answer is the one the server would give (a refusal writes nothing, and other instances'
//! admissions only push the key's TAT later). This is what keeps a flood from one abusive key
//! from costing one Redis round trip per request. At most
//! [`local_capacity`](RateLimiterBuilder::local_capacity) keys are remembered (10 000 by
//! default); past that the limiter forgets the ones closest to their deadline, which costs
//! round trips, never a wrong answer.
//!
//! # When Redis is down
//!
//! A check that cannot reach the server (no connection, a broken one, a script error, or the
//! check's [`timeout`](RateLimiterBuilder::timeout) passed) follows the
//! [`FailurePolicy`]: [`Closed`](FailurePolicy::Closed) (the default) returns
//! [`Error::Unavailable`] with the cause; [`Open`](FailurePolicy::Open) admits with
//! [`Decision::AllowedUnchecked`], which carries the same cause, so those admissions can be
//! counted apart ([`RateLimiterStats::allowed_unchecked`]). Keys refused locally stay refused
//! while the server is down: their answer needs no server.
//!
//! # At worker-pool admission
//!
//! The worker pool's own [`rate_limit_per_key`](crate::exec::WorkerPoolBuilder::rate_limit_per_key)
//! counts inside one process. [`shared_rate_limit_per_key`](crate::exec::WorkerPoolBuilder::shared_rate_limit_per_key)
//! hands the pool a limiter of this kind instead, or as well: [`submit_keyed`](crate::exec::WorkerPool::submit_keyed)
//! awaits its check (the key as a decimal number) before it takes queue room, and a task it
//! does not admit comes back in [`SubmitError::RateLimited`](crate::exec::SubmitError::RateLimited),
//! or, when Redis could not answer and the limiter fails closed, in
//! [`SubmitError::RateLimiterUnavailable`](crate::exec::SubmitError::RateLimiterUnavailable)
//! with the [`Unavailable`] cause.
//!
//! ```no_run
//! # use millpond::exec::WorkerPool;
//! # use millpond::redis::rate_limit::RateLimiter;
//! # async fn run(limiter: RateLimiter, user: u64) -> Result<(), Box<dyn std::error::Error>> {
//! let workers = WorkerPool::builder().shared_rate_limit_per_key(limiter.clone()).build()?;
//! match workers.submit_keyed(user, async move { /* the user's work */ }).await {
//!     Ok(handle) => handle.await?,
//!     Err(refused) if refused.is_rate_limited() => { /* 429 */ }
//!     Err(other) => return Err(other.to_string().into()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The other submits have no key and do not consult it. Code that must not wait can ask the
//! short-circuit alone with [`check_local`](RateLimiter::check_local), which answers without a
//! round trip for keys known to be refused.
//!
//! # Where things live
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the public types: [`RateLimiter`], its builder, [`Decision`], the statistics |
//! | `gcra.lua` | the script: the algorithm, on the server |
//! | `refusals.rs` | the local short-circuit and its memory bound |
//! | `error.rs` | [`Error`] and [`Unavailable`] |

mod error;
mod refusals;

use std::fmt;
use std::time::Duration;

use redis::{Cmd, ErrorKind, Script, ServerErrorKind, Value};
use tokio::time::Instant;

pub use self::error::{Error, Unavailable};
use self::refusals::Refusals;
use crate::build_error::BuildError;
use crate::pool::{Multiplexed, Pool};
use crate::redis::{Error as RedisError, RedisConnection, RedisManager};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// The script's source.
const SCRIPT: &str = include_str!("gcra.lua");

/// The longest tolerance (`interval × burst`) the limiter takes: about 35 years. The script's
/// numbers are doubles: the server's clock in microseconds (about 2^51 today) plus this stays
/// below 2^53, where every integer is exact.
const MAX_TOLERANCE_US: u64 = 1 << 50;

/// What to do with a check when Redis cannot answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Admit, as [`Decision::AllowedUnchecked`] with the cause: the service stays up, and its
    /// limits are off while Redis is.
    Open,
    /// Refuse, as [`Error::Unavailable`] with the cause (the default): nothing is admitted that
    /// was not counted.
    #[default]
    Closed,
}

/// The answer to a check.
#[derive(Debug)]
#[must_use = "a check admits nothing unless its decision is acted on"]
#[non_exhaustive]
pub enum Decision {
    /// Admitted and counted.
    Allowed {
        /// How many more single admissions the key would take right now.
        remaining: u64,
    },
    /// Refused: the key is over its limit.
    Refused {
        /// How long until the same request would fit.
        retry_after: Duration,
        /// Whether the limiter answered from its short-circuit, without asking the server.
        local: bool,
    },
    /// Admitted without being counted: Redis could not be asked and the limiter fails open.
    AllowedUnchecked(Unavailable),
}

impl Decision {
    /// Whether the request may go ahead: [`Allowed`](Self::Allowed) or
    /// [`AllowedUnchecked`](Self::AllowedUnchecked).
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Self::Refused { .. })
    }

    /// How long until the same request would fit, for [`Refused`](Self::Refused).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// What a limiter has done since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimiterStats {
    /// Requests the server admitted (not counting `check_n(key, 0)`, which only asks).
    pub allowed: u64,
    /// Requests the server refused.
    pub refused: u64,
    /// Requests refused by the short-circuit, without a round trip.
    pub refused_locally: u64,
    /// Requests admitted uncounted because Redis could not be asked ([`FailurePolicy::Open`]).
    pub allowed_unchecked: u64,
    /// Requests refused because Redis could not be asked ([`FailurePolicy::Closed`]).
    pub refused_unavailable: u64,
    /// Scripts sent to the server (`EVALSHA`, and `EVAL` when the server lacked the script).
    pub round_trips: u64,
    /// Keys the short-circuit remembers now.
    pub remembered: usize,
}

/// Where the limiter's connections come from: a pool's exclusive checkouts, or a multiplexed
/// view of it, whose connections carry several checks at once.
#[derive(Clone)]
#[non_exhaustive]
pub enum Connections {
    /// Each check takes a connection of its own.
    Pool(Pool<RedisManager>),
    /// Checks share connections, pipelined.
    Multiplexed(Multiplexed<RedisManager>),
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pool(_) => "Connections::Pool",
            Self::Multiplexed(_) => "Connections::Multiplexed",
        })
    }
}

impl From<Pool<RedisManager>> for Connections {
    fn from(pool: Pool<RedisManager>) -> Self {
        Self::Pool(pool)
    }
}

impl From<Multiplexed<RedisManager>> for Connections {
    fn from(view: Multiplexed<RedisManager>) -> Self {
        Self::Multiplexed(view)
    }
}

/// Settings for a [`RateLimiter`]; from [`RateLimiter::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct RateLimiterBuilder {
    connections: Connections,
    count: u64,
    period: Duration,
    burst: Option<u32>,
    prefix: String,
    timeout: Duration,
    policy: FailurePolicy,
    local_capacity: usize,
}

impl RateLimiterBuilder {
    /// `count` admissions per `period` at the steady rate (the default is 10 a second).
    pub fn rate(mut self, count: u64, period: Duration) -> Self {
        self.count = count;
        self.period = period;
        self
    }

    /// How many admissions a key that was idle takes at once (the default is `count`, one
    /// period's worth).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// What goes before each limited key to make its Redis key (the default is
    /// `"millpond:rate:"`). Limiters with different settings need different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a check waits for a connection and the script's answer together before it
    /// follows the [failure policy](Self::on_unavailable) (the default is 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What a check does when Redis cannot answer it (the default is
    /// [`FailurePolicy::Closed`]).
    pub fn on_unavailable(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How many refused keys the short-circuit remembers at most (the default is 10 000; 0
    /// turns it off).
    pub fn local_capacity(mut self, keys: usize) -> Self {
        self.local_capacity = keys;
        self
    }

    /// Checks the settings and builds the limiter. It sends nothing to the server.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field for a `count` or `period` of 0, a burst of 0, a
    /// period so long that one burst would take more than 35 years to refill, or a timeout of
    /// 0.
    pub fn build(self) -> Result<RateLimiter, BuildError> {
        if self.count == 0 {
            return Err(BuildError::invalid("rate", self.count, "the count must be at least 1"));
        }
        if self.period.is_zero() {
            return Err(BuildError::invalid("rate", self.period, "the period must be above 0"));
        }
        let burst = match self.burst {
            Some(burst) => burst,
            None => u32::try_from(self.count).unwrap_or(u32::MAX),
        };
        if burst == 0 {
            return Err(BuildError::invalid("burst", burst, "the burst must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(BuildError::invalid("timeout", self.timeout, "must be above 0"));
        }
        // Rounded up: a shorter interval would admit more than asked.
        let interval_us = self.period.as_micros().div_ceil(u128::from(self.count)).max(1);
        let tolerance_us = interval_us.saturating_mul(u128::from(burst));
        if tolerance_us > u128::from(MAX_TOLERANCE_US) {
            return Err(BuildError::invalid(
                "rate",
                (self.count, self.period, burst),
                "one burst would take more than 35 years to refill",
            ));
        }
        // Both fit: tolerance_us >= interval_us and it is at most MAX_TOLERANCE_US.
        let (interval_us, tolerance_us) = (interval_us as u64, tolerance_us as u64);
        Ok(RateLimiter {
            shared: Arc::new(Shared {
                connections: self.connections,
                interval_us,
                tolerance_us,
                burst,
                prefix: self.prefix,
                timeout: self.timeout,
                policy: self.policy,
                refusals: Mutex::new(Refusals::new(self.local_capacity)),
                script: Script::new(SCRIPT),
                counters: Counters::default(),
            }),
        })
    }
}

/// A GCRA rate limiter kept in Redis, shared by every limiter built with the same settings and
/// prefix on the same server, in this process or another. Cloning is cheap and shares the
/// short-circuit and the statistics. See the [module docs](self).
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    connections: Connections,
    interval_us: u64,
    tolerance_us: u64,
    burst: u32,
    prefix: String,
    timeout: Duration,
    policy: FailurePolicy,
    refusals: Mutex<Refusals>,
    /// The script, for its SHA-1.
    script: Script,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    allowed: AtomicU64,
    refused: AtomicU64,
    refused_locally: AtomicU64,
    allowed_unchecked: AtomicU64,
    refused_unavailable: AtomicU64,
    round_trips: AtomicU64,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        f.debug_struct("RateLimiter")
            .field("interval", &Duration::from_micros(shared.interval_us))
            .field("burst", &shared.burst)
            .field("prefix", &shared.prefix)
            .field("timeout", &shared.timeout)
            .field("policy", &shared.policy)
            .finish_non_exhaustive()
    }
}

/// The script's answer.
enum Answer {
    Allowed { remaining: u64 },
    Refused { retry_after: Duration },
}

impl RateLimiter {
    /// A builder for a limiter whose checks take their connections from `connections`: a
    /// [`RedisPool`](crate::redis::RedisPool), or a [multiplexed view](Pool::multiplexed) of
    /// one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millpond::redis::RedisPool;
    /// # use millpond::redis::rate_limit::RateLimiter;
    /// # use std::time::Duration;
    /// # fn run(pool: RedisPool) -> Result<(), Box<dyn std::error::Error>> {
    /// // Checks share pipelined connections, up to 32 on each.
    /// let limiter = RateLimiter::builder(pool.multiplexed(32)?)
    ///     .rate(5, Duration::from_secs(1))
    ///     .burst(10)
    ///     .build()?;
    /// # let _ = limiter;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(connections: impl Into<Connections>) -> RateLimiterBuilder {
        RateLimiterBuilder {
            connections: connections.into(),
            count: 10,
            period: Duration::from_secs(1),
            burst: None,
            prefix: "millpond:rate:".to_owned(),
            timeout: Duration::from_secs(1),
            policy: FailurePolicy::default(),
            local_capacity: 10_000,
        }
    }

    /// Checks one admission of `key`: [`check_n`](Self::check_n) with `n = 1`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millpond::redis::rate_limit::{Decision, RateLimiter};
    /// # async fn run(limiter: RateLimiter, ip: std::net::IpAddr) -> Result<(), Box<dyn std::error::Error>> {
    /// match limiter.check(ip.to_string()).await? {
    ///     Decision::Refused { retry_after, .. } => {
    ///         println!("429 Too Many Requests, Retry-After: {}", retry_after.as_secs() + 1);
    ///     }
    ///     _ => { /* serve the request */ }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`check_n`](Self::check_n).
    ///
    /// # Cancel safety
    ///
    /// As [`check_n`](Self::check_n).
    pub async fn check(&self, key: impl AsRef<[u8]>) -> Result<Decision, Error> {
        self.check_n(key, 1).await
    }

    /// Checks `n` admissions of `key` at once: admits and counts all of them, or none. With
    /// `n = 0` it only asks how many remain, and counts nothing on the server.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millpond::redis::rate_limit::RateLimiter;
    /// # async fn run(limiter: RateLimiter) -> Result<(), Box<dyn std::error::Error>> {
    /// // A batch of 5 items costs 5 admissions, all or none.
    /// if limiter.check_n("tenant-9", 5).await?.is_allowed() {
    ///     /* send the batch */
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A key the short-circuit knows to be refused is refused at once, without a round trip;
    /// any other costs one script on the server, within the limiter's timeout.
    ///
    /// # Errors
    ///
    /// [`Error::ExceedsBurst`] when `n` is above the burst (it could never fit);
    /// [`Error::Unavailable`] with the cause when Redis could not answer and the limiter fails
    /// closed. A limiter that fails open returns [`Decision::AllowedUnchecked`] instead.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes may or may not have counted the admission on
    /// the server (the script may already have run), as with any request cut off on the wire;
    /// it never admits more than the limit allows. The connection the check was using is
    /// closed rather than reused with a reply pending.
    pub async fn check_n(&self, key: impl AsRef<[u8]>, n: u32) -> Result<Decision, Error> {
        let key = key.as_ref();
        let shared = &*self.shared;
        if n > shared.burst {
            return Err(Error::ExceedsBurst { n, burst: shared.burst });
        }
        let sent_at = Instant::now();
        if let Some(decision) = self.local(key, n, sent_at) {
            return Ok(decision);
        }
        let answer = tokio::time::timeout(shared.timeout, self.ask(key, n))
            .await
            .unwrap_or(Err(Unavailable::Timeout(shared.timeout)));
        let counters = &shared.counters;
        match answer {
            Ok(Answer::Allowed { remaining }) => {
                // A peek (`n = 0`) took nothing: not an admission, and no news for the
                // short-circuit.
                if n > 0 {
                    counters.allowed.fetch_add(1, Ordering::Relaxed);
                    shared.refusals.lock().forget(key);
                }
                Ok(Decision::Allowed { remaining })
            }
            Ok(Answer::Refused { retry_after }) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                // From the moment the request left: no later than the server's reading of its
                // clock, so the local refusal ends no later than the server's would.
                if let Some(until) = sent_at.checked_add(retry_after) {
                    shared.refusals.lock().remember(key, n, until, Instant::now());
                }
                Ok(Decision::Refused { retry_after, local: false })
            }
            Err(cause) => match shared.policy {
                FailurePolicy::Open => {
                    counters.allowed_unchecked.fetch_add(1, Ordering::Relaxed);
                    Ok(Decision::AllowedUnchecked(cause))
                }
                FailurePolicy::Closed => {
                    counters.refused_unavailable.fetch_add(1, Ordering::Relaxed);
                    Err(Error::Unavailable(cause))
                }
            },
        }
    }

    /// Answers from the short-circuit alone, with no round trip: `Some` refusal when `key` is
    /// known to be refused for `n` admissions now, `None` when only the server can say. For
    /// places that must not wait, such as the worker pool's `try_` submits; a `None` admits
    /// nothing and counts nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millpond::redis::rate_limit::RateLimiter;
    /// # fn run(limiter: &RateLimiter) {
    /// if let Some(refused) = limiter.check_local("user-42", 1) {
    ///     println!("refused without asking Redis: {refused:?}");
    /// }
    /// # }
    /// ```
    pub fn check_local(&self, key: impl AsRef<[u8]>, n: u32) -> Option<Decision> {
        self.local(key.as_ref(), n, Instant::now())
    }

    fn local(&self, key: &[u8], n: u32, now: Instant) -> Option<Decision> {
        let retry_after = self.shared.refusals.lock().refused(key, n, now)?;
        self.shared.counters.refused_locally.fetch_add(1, Ordering::Relaxed);
        Some(Decision::Refused { retry_after, local: true })
    }

    /// The Redis key that holds `key`'s state: the prefix, then `key`. For looking at the
    /// server (`PTTL`, `DEL` to reset a key by hand).
    pub fn redis_key(&self, key: impl AsRef<[u8]>) -> Vec<u8> {
        let prefix = self.shared.prefix.as_bytes();
        let key = key.as_ref();
        let mut full = Vec::with_capacity(prefix.len() + key.len());
        full.extend_from_slice(prefix);
        full.extend_from_slice(key);
        full
    }

    /// What the limiter has done so far.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millpond::redis::rate_limit::RateLimiter;
    /// # fn run(limiter: &RateLimiter) {
    /// let stats = limiter.stats();
    /// println!(
    ///     "{} admitted, {} refused ({} without a round trip), {} admitted while Redis was down",
    ///     stats.allowed,
    ///     stats.refused + stats.refused_locally,
    ///     stats.refused_locally,
    ///     stats.allowed_unchecked,
    /// );
    /// # }
    /// ```
    pub fn stats(&self) -> RateLimiterStats {
        let counters = &self.shared.counters;
        RateLimiterStats {
            allowed: counters.allowed.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
            refused_locally: counters.refused_locally.load(Ordering::Relaxed),
            allowed_unchecked: counters.allowed_unchecked.load(Ordering::Relaxed),
            refused_unavailable: counters.refused_unavailable.load(Ordering::Relaxed),
            round_trips: counters.round_trips.load(Ordering::Relaxed),
            remembered: self.shared.refusals.lock().len(),
        }
    }

    /// Runs the script for `n` admissions of `key` on a connection of the limiter's.
    async fn ask(&self, key: &[u8], n: u32) -> Result<Answer, Unavailable> {
        match &self.shared.connections {
            Connections::Pool(pool) => {
                let conn = pool.get().await.map_err(Unavailable::Checkout)?;
                self.run(&conn, key, n).await
            }
            Connections::Multiplexed(view) => {
                let conn = view.get().await.map_err(Unavailable::Checkout)?;
                self.run(&conn, key, n).await
            }
        }
    }

    async fn run(&self, conn: &RedisConnection, key: &[u8], n: u32) -> Result<Answer, Unavailable> {
        let shared = &*self.shared;
        let script = &shared.script;
        let redis_key = self.redis_key(key);
        let invoke = |cmd: &mut Cmd| {
            cmd.arg(1).arg(&redis_key).arg(shared.interval_us).arg(shared.tolerance_us).arg(n);
        };
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(script.get_hash());
        invoke(&mut evalsha);
        shared.counters.round_trips.fetch_add(1, Ordering::Relaxed);
        let reply = match conn.query::<Value>(&evalsha).await {
            Err(RedisError::Redis(err))
                if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
            {
                // The server lost its script cache (a restart, `SCRIPT FLUSH`): `EVAL` runs
                // the script and caches it again for the next `EVALSHA`.
                let mut eval = redis::cmd("EVAL");
                eval.arg(SCRIPT);
                invoke(&mut eval);
                shared.counters.round_trips.fetch_add(1, Ordering::Relaxed);
                conn.query::<Value>(&eval).await
            }
            other => other,
        }
        .map_err(Unavailable::Command)?;
        parse(&reply).ok_or_else(|| Unavailable::UnexpectedReply(format!("{reply:?}")))
    }
}

/// Reads the script's `{allowed, remaining, retry_after_us, ttl_us}`.
fn parse(reply: &Value) -> Option<Answer> {
    let Value::Array(fields) = reply else { return None };
    let int = |index: usize| match fields.get(index)? {
        Value::Int(value) => u64::try_from(*value).ok(),
        _ => None,
    };
    match int(0)? {
        1 => Some(Answer::Allowed { remaining: int(1)? }),
        0 => Some(Answer::Refused { retry_after: Duration::from_micros(int(2)?) }),
        _ => None,
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    fn limiter(
        builder: impl FnOnce(RateLimiterBuilder) -> RateLimiterBuilder,
    ) -> RateLimiterBuilder {
        let pool =
            Pool::builder(RedisManager::new("redis://127.0.0.1:1").unwrap()).build().unwrap();
        builder(RateLimiter::builder(pool))
    }

    #[tokio::test]
    async fn settings_are_checked_and_the_interval_rounds_up() {
        let built = limiter(|b| b.rate(3, Duration::from_secs(1)).burst(2)).build().unwrap();
        assert_eq!(built.shared.interval_us, 333_334);
        assert_eq!(built.shared.tolerance_us, 666_668);
        let default_burst = limiter(|b| b.rate(7, Duration::from_secs(1))).build().unwrap();
        assert_eq!(default_burst.shared.burst, 7);
        for (field, builder) in [
            ("rate", limiter(|b| b.rate(0, Duration::from_secs(1)))),
            ("rate", limiter(|b| b.rate(1, Duration::ZERO))),
            ("burst", limiter(|b| b.burst(0))),
            ("timeout", limiter(|b| b.timeout(Duration::ZERO))),
            ("rate", limiter(|b| b.rate(1, Duration::from_secs(3600 * 24 * 365 * 40)).burst(1))),
        ] {
            let err = builder.build().unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[tokio::test]
    async fn a_request_above_the_burst_is_refused_without_asking() {
        let built = limiter(|b| b.burst(3)).build().unwrap();
        let err = built.check_n("user", 4).await.unwrap_err();
        assert!(matches!(err, Error::ExceedsBurst { n: 4, burst: 3 }), "{err}");
        assert_eq!(built.stats().round_trips, 0);
    }

    #[test]
    fn the_reply_is_read_or_refused() {
        let reply = |fields: &[i64]| Value::Array(fields.iter().map(|v| Value::Int(*v)).collect());
        assert!(matches!(parse(&reply(&[1, 4, 0, 100])), Some(Answer::Allowed { remaining: 4 })));
        assert!(matches!(
            parse(&reply(&[0, 0, 1500, 100])),
            Some(Answer::Refused { retry_after }) if retry_after == Duration::from_micros(1500)
        ));
        assert!(parse(&reply(&[2, 0, 0, 0])).is_none());
        assert!(parse(&reply(&[0, 0, -1, 0])).is_none());
        assert!(parse(&Value::Nil).is_none());
    }
}
