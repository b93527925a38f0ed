//! [`Builder`]: every knob of a pool, with its default and the rule `build()` enforces.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::api::Pool;
use super::config::{Config, IdleOrder};
use super::manager::Manager;
use super::shared::{PoolRef, Shared};
use crate::build_error::BuildError;
use crate::sync::Arc;

/// Configures and builds a [`Pool`]; start from [`Pool::builder`].
///
/// Every setting has a default that suits a database connection pool. `build()` checks the whole
/// configuration and names the first field it rejects; nothing panics on a bad value.
///
/// | setting | default |
/// |---|---|
/// | [`max_size`](Self::max_size) | 10 |
/// | [`min_idle`](Self::min_idle) | 0 |
/// | [`max_idle`](Self::max_idle) | `max_size` |
/// | [`acquire_timeout`](Self::acquire_timeout) | 30 s |
/// | [`create_timeout`](Self::create_timeout) | 10 s |
/// | [`check_timeout`](Self::check_timeout) | 5 s |
/// | [`check_window`](Self::check_window) | 500 ms |
/// | [`idle_timeout`](Self::idle_timeout) | 10 min |
/// | [`max_lifetime`](Self::max_lifetime) | 30 min, minus up to 5 % jitter |
/// | [`keepalive`](Self::keepalive) | off |
/// | [`max_concurrent_creates`](Self::max_concurrent_creates) | 2 |
/// | [`backoff`](Self::backoff) | 50 ms doubling to 5 s |
/// | [`breaker`](Self::breaker) | opens after 5 failures, probes after 5 s |
/// | [`leak_threshold`](Self::leak_threshold) | off |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// # use millpond::pool::{Manager, Pool};
/// # struct Conns;
/// # impl Manager for Conns {
/// #     type Resource = ();
/// #     type Error = std::io::Error;
/// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), millpond::BuildError> {
/// let pool = Pool::builder(Conns)
///     .max_size(16)
///     .min_idle(4)
///     .acquire_timeout(Duration::from_secs(5))
///     .idle_timeout(Some(Duration::from_secs(60)))
///     .build()?;
/// assert_eq!(pool.status().max_size, 16);
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build()` is called"]
pub struct Builder<M> {
    manager: M,
    config: Config,
}

impl<M: Manager> Builder<M> {
    pub(crate) fn new(manager: M) -> Self {
        Self { manager, config: Config::default() }
    }

    /// The same configuration around another manager made from this one: how a cluster wraps
    /// each backend's manager to watch its creations.
    pub(crate) fn map_manager<N: Manager>(self, wrap: impl FnOnce(M) -> N) -> Builder<N> {
        Builder { manager: wrap(self.manager), config: self.config }
    }

    /// Tells `watcher` of every creation attempt and of those that hit the create timeout.
    pub(crate) fn watch_creations(
        mut self,
        watcher: Arc<dyn super::create::CreateWatcher>,
    ) -> Self {
        self.config.create_watcher = Some(watcher);
        self
    }

    /// Names the pool `name` unless a name was set: how a cluster names its backends' pools.
    pub(crate) fn default_name(mut self, name: &str) -> Self {
        if self.config.name == Config::default().name {
            self.config.name = name.to_owned();
        }
        self
    }

    /// Puts checkouts under an adaptive concurrency limit: a `get()` first takes room under
    /// `limiter`, waiting in its queue if needed, and the checkout reports to it when it ends
    /// (its hold time as a success, or what [`Pooled::report`](super::Pooled::report) says).
    /// When the database slows down, the limit falls and checkouts wait or are turned away
    /// ([`Error::Limited`](super::Error::Limited)) before its connections pile up with queries
    /// it cannot serve. Give each backend its own limiter (one per pool in a cluster): the
    /// limit is a property of the backend.
    ///
    /// The pool's acquire timeout covers the wait for room too. `max_size` still bounds the
    /// connections; a limit above it changes nothing until the limit falls below it.
    ///
    /// ```
    /// # use millpond::pool::{Manager, Pool};
    /// # struct Db;
    /// # impl Manager for Db {
    /// #     type Resource = ();
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// use millpond::limit::{AdaptiveLimiter, Gradient2};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = AdaptiveLimiter::builder(Gradient2::new().min_limit(2).max_limit(32)).build()?;
    /// let pool = Pool::builder(Db).max_size(32).adaptive_limit(limiter.clone()).build()?;
    /// let conn = pool.get().await?;
    /// assert_eq!(limiter.status().in_flight, 1);
    /// drop(conn);
    /// assert_eq!(limiter.status().succeeded, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn adaptive_limit(mut self, limiter: crate::limit::AdaptiveLimiter) -> Self {
        self.config.limiter = Some(limiter);
        self
    }

    /// Limits how often each key may check out through [`Pool::get_keyed`](super::Pool::get_keyed):
    /// `per_second` on average, with bursts of up to `burst` (a token bucket per key: per user,
    /// per tenant, per source address). A key over its limit gets
    /// [`Error::RateLimited`](super::Error::RateLimited) at once, with the time until it may
    /// try again. Keys not seen for a while are forgotten. Off by default; `get` and `try_get`
    /// take no key and are not limited.
    pub fn rate_limit_per_key(mut self, per_second: f64, burst: u32) -> Self {
        self.config.rate_per_key = Some((per_second, burst));
        self
    }

    /// The most resources the pool holds at once, idle and in use together. Must be at least 1.
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.config.max_size = max_size;
        self
    }

    /// Idle resources kept ready: a background task creates them ahead of demand and replaces
    /// those that expire. Must not exceed `max_idle`.
    pub fn min_idle(mut self, min_idle: usize) -> Self {
        self.config.min_idle = min_idle;
        self
    }

    /// The most idle resources kept; a resource returned above it is closed. At least 1, at most
    /// `max_size`; defaults to `max_size`.
    pub fn max_idle(mut self, max_idle: usize) -> Self {
        self.config.max_idle = Some(max_idle);
        self
    }

    /// How many creations may run at once. A small bound (`HikariCP` creates one at a time) spares a
    /// struggling backend a connection storm, and lets resources that come back serve a spike
    /// instead of new ones.
    pub fn max_concurrent_creates(mut self, limit: usize) -> Self {
        self.config.max_concurrent_creates = limit;
        self
    }

    /// Which idle resource is handed out first.
    pub fn idle_order(mut self, order: IdleOrder) -> Self {
        self.config.idle_order = order;
        self
    }

    /// The longest a whole `get()` may take: waiting, and checking resources. Must be non-zero.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// The longest one [`Manager::create`] may take before it counts as failed.
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.config.create_timeout = timeout;
        self
    }

    /// The longest one [`Manager::check`] may take before the resource is closed as broken.
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.config.check_timeout = timeout;
        self
    }

    /// Whether `get()` runs [`Manager::check`] on resources that sat idle (default `true`).
    pub fn check_on_get(mut self, enabled: bool) -> Self {
        self.config.check_on_get = enabled;
        self
    }

    /// A resource used or checked within this window is handed out without a check, so a busy
    /// pool pays no round trip per `get()`. [`Duration::ZERO`] checks every time.
    pub fn check_window(mut self, window: Duration) -> Self {
        self.config.check_window = window;
        self
    }

    /// Idle resources above `min_idle` unused this long are closed; `None` keeps them.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Resources older than this are closed (when idle or on return) and replaced; `None` lets
    /// them live forever. Each resource's lifetime is shortened by a random jitter.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.config.max_lifetime = lifetime;
        self
    }

    /// The largest fraction of `max_lifetime` cut at random from each resource's lifetime, so that
    /// resources created together are not all closed and recreated together. `0.0..=0.5`.
    pub fn lifetime_jitter(mut self, fraction: f64) -> Self {
        self.config.lifetime_jitter = fraction;
        self
    }

    /// Runs [`Manager::check`] in the background on resources idle this long, closing those that
    /// fail, so a firewall or server that drops quiet connections is noticed before a caller is.
    pub fn keepalive(mut self, interval: Option<Duration>) -> Self {
        self.config.keepalive = interval;
        self
    }

    /// Delays between retries of a failing creation: from `initial`, doubling up to `max`, each
    /// with random jitter.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff = crate::backoff::Backoff { initial, max };
        self
    }

    /// The circuit breaker: after `failures` consecutive failed creations it opens, and `get()`
    /// calls that only a creation could serve fail at once with
    /// [`Error::Unavailable`](super::Error::Unavailable) (queued callers too); callers that a
    /// resource in use could serve when it comes back keep waiting. After `cooldown`, the next
    /// call that needs a creation starts one probe, and its success closes the breaker.
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.config.breaker_threshold = Some(failures);
        self.config.breaker_cooldown = cooldown;
        self
    }

    /// Also opens the breaker when at least `rate` (in `(0, 1]`) of the creations that ended in
    /// the last `window` failed, once the window holds `minimum_calls` of them: the rule
    /// [`CircuitBreaker`](crate::breaker::CircuitBreaker) uses, for a backend that fails often
    /// but not every time in a row. Off by default; the run of consecutive failures
    /// ([`breaker`](Self::breaker)) still applies.
    pub fn breaker_failure_rate(mut self, rate: f64, minimum_calls: u32, window: Duration) -> Self {
        let rules = self.rate_rules();
        rules.failure_rate = Some(rate);
        rules.minimum_calls = minimum_calls;
        self.config.breaker_window = window;
        self
    }

    /// Also opens the breaker when at least `rate` of the creations in the window took longer
    /// than `threshold`: a backend that still answers, too slowly to be worth waiting for. It
    /// uses the window and minimum of [`breaker_failure_rate`](Self::breaker_failure_rate), or
    /// 10 s and 10 creations. Off by default.
    pub fn breaker_slow_creations(mut self, threshold: Duration, rate: f64) -> Self {
        self.rate_rules().slow = Some((threshold, rate));
        self
    }

    fn rate_rules(&mut self) -> &mut crate::breaker::RateRules {
        self.config.breaker_rates.get_or_insert(crate::breaker::RateRules {
            failure_rate: None,
            slow: None,
            minimum_calls: 10,
        })
    }

    /// Turns the circuit breaker off, its rate rules too: callers wait out their timeout however
    /// long the backend is down.
    pub fn disable_breaker(mut self) -> Self {
        self.config.breaker_threshold = None;
        self.config.breaker_rates = None;
        self
    }

    /// Logs a `tracing` warning, with the call site of the `get()`, for every resource held longer
    /// than this. Off by default; costs a map insert per checkout when on.
    pub fn leak_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.config.leak_threshold = threshold;
        self
    }

    /// How often the background task reaps, keeps alive, refills and scans for leaks (default 1 s).
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        self.config.maintenance_interval = interval;
        self
    }

    /// The pool's name (default `"millpond"`; must not be empty): the
    /// `db.client.connection.pool.name` attribute of its published metrics, and what
    /// [`Pool::name`] returns. OpenTelemetry asks for a name unique within the application.
    ///
    /// # Examples
    ///
    /// ```
    /// # use millpond::pool::{Manager, Pool};
    /// # struct Conns;
    /// # impl Manager for Conns {
    /// #     type Resource = ();
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder(Conns).name("orders-db").build()?;
    /// assert_eq!(pool.name(), "orders-db");
    /// assert!(Pool::builder(Conns).name("").build().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Whether the maintenance task publishes the pool's metrics at every tick (every
    /// `maintenance_interval`), as [`Pool::publish_metrics`] does (default `false`). The figures
    /// go to the global recorder (`metrics::set_global_recorder`), as the task runs on its own.
    ///
    /// # Examples
    ///
    /// ```
    /// # use millpond::pool::{Manager, Pool};
    /// # struct Conns;
    /// # impl Manager for Conns {
    /// #     type Resource = ();
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let pool = Pool::builder(Conns)
    ///     .name("orders-db")
    ///     .maintenance_interval(Duration::from_secs(5))
    ///     .publish_metrics(true)
    ///     .build()?;
    /// # drop(pool);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(mut self, enabled: bool) -> Self {
        self.config.publish_metrics = enabled;
        self
    }

    /// Sets every setting that `config` holds, and leaves the others as they are: a configuration
    /// file's settings on top of the code's defaults. Setters called after it override it.
    ///
    /// The values are checked by [`build`](Self::build), like those of the setters.
    ///
    /// # Examples
    ///
    /// ```
    /// # use millpond::pool::{Manager, Pool};
    /// # use millpond::config::PoolConfig;
    /// # struct Conns;
    /// # impl Manager for Conns {
    /// #     type Resource = ();
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config: PoolConfig = toml::from_str("max_size = 4")?;
    /// let pool = Pool::builder(Conns).min_idle(1).apply(&config).build()?;
    /// assert_eq!(pool.status().max_size, 4);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "serde")]
    pub fn apply(mut self, config: &crate::config::PoolConfig) -> Self {
        let settings = &mut self.config;
        let crate::config::PoolConfig {
            max_size,
            min_idle,
            max_idle,
            max_concurrent_creates,
            idle_order,
            acquire_timeout,
            create_timeout,
            check_timeout,
            check_on_get,
            check_window,
            idle_timeout,
            max_lifetime,
            lifetime_jitter,
            keepalive,
            backoff_initial,
            backoff_max,
            breaker_threshold,
            breaker_cooldown,
            breaker_failure_rate,
            breaker_minimum_calls,
            breaker_window,
            breaker_slow_threshold,
            breaker_slow_rate,
            rate_limit_per_second,
            rate_limit_burst,
            adaptive_limit,
            leak_threshold,
            maintenance_interval,
            name,
        } = config.clone();
        fn set<T>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        set(&mut settings.max_size, max_size);
        set(&mut settings.name, name);
        set(&mut settings.min_idle, min_idle);
        set(&mut settings.max_idle, max_idle.map(Some));
        set(&mut settings.max_concurrent_creates, max_concurrent_creates);
        set(&mut settings.idle_order, idle_order);
        set(&mut settings.acquire_timeout, acquire_timeout);
        set(&mut settings.create_timeout, create_timeout);
        set(&mut settings.check_timeout, check_timeout);
        set(&mut settings.check_on_get, check_on_get);
        set(&mut settings.check_window, check_window);
        set(&mut settings.idle_timeout, idle_timeout);
        set(&mut settings.max_lifetime, max_lifetime);
        set(&mut settings.lifetime_jitter, lifetime_jitter);
        set(&mut settings.keepalive, keepalive);
        set(&mut settings.backoff.initial, backoff_initial);
        set(&mut settings.backoff.max, backoff_max);
        set(&mut settings.breaker_threshold, breaker_threshold);
        set(&mut settings.breaker_cooldown, breaker_cooldown);
        set(&mut settings.leak_threshold, leak_threshold);
        set(&mut settings.maintenance_interval, maintenance_interval);
        set(&mut settings.breaker_window, breaker_window);
        if breaker_failure_rate.is_some() || breaker_minimum_calls.is_some() {
            let rules = self.rate_rules();
            set(&mut rules.failure_rate, breaker_failure_rate.map(Some));
            set(&mut rules.minimum_calls, breaker_minimum_calls);
        }
        // A half-given pair takes its other half from the code, or 0, which `build()` refuses
        // naming the field.
        if breaker_slow_threshold.is_some() || breaker_slow_rate.is_some() {
            let rules = self.rate_rules();
            let (threshold, rate) = rules.slow.unwrap_or((Duration::ZERO, 0.0));
            rules.slow = Some((
                breaker_slow_threshold.unwrap_or(threshold),
                breaker_slow_rate.unwrap_or(rate),
            ));
        }
        if rate_limit_per_second.is_some() || rate_limit_burst.is_some() {
            let (per_second, burst) = self.config.rate_per_key.unwrap_or((0.0, 0));
            self.config.rate_per_key = Some((
                rate_limit_per_second.unwrap_or(per_second),
                rate_limit_burst.unwrap_or(burst),
            ));
        }
        if let Some(limit) = adaptive_limit {
            match limit.build() {
                Ok(limiter) => self.config.limiter = Some(limiter),
                Err(rejected) => {
                    self.config.rejected.get_or_insert(rejected.nested_in("adaptive_limit"));
                }
            }
        }
        self
    }

    /// Checks the configuration and starts the pool.
    ///
    /// The pool's background work (creations, maintenance, and failing queued callers at their
    /// deadline) runs on the tokio runtime current at this call. If that runtime shuts down while
    /// the pool lives on (a `static` pool shared by `#[tokio::test]`s, each with a runtime of its
    /// own), the work moves to the runtime of the next caller that needs it. Callers already
    /// waiting when it goes are not left hanging: the work moves at once to the runtime of a
    /// recent caller that waited on a creation or armed a deadline, if one is still running, and
    /// otherwise every queued caller is woken and moves it to its own runtime (a caller whose
    /// runtime is gone too waits for the next caller that has one). Creating the `min_idle`
    /// resources starts at once, at most `max_concurrent_creates` at a time.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field, when a size is zero or out of order
    /// (`min_idle <= max_idle <= max_size`), a timeout or interval is zero, the backoff is inverted,
    /// the jitter is outside `0.0..=0.5` or the breaker threshold is zero; or when called outside
    /// a tokio runtime.
    pub fn build(mut self) -> Result<Pool<M>, BuildError> {
        self.config.validate()?;
        if let Some((per_second, burst)) = self.config.rate_per_key {
            let shape = crate::rate::Shape::new(per_second, burst, "rate_limit_per_key")?;
            self.config.per_key = Some(Arc::new(crate::rate::KeyedBuckets::new(shape)));
        }
        let runtime = Handle::try_current().map_err(|_| BuildError::no_runtime())?;
        let shared = Arc::new(Shared::new(self.manager, self.config, runtime));
        shared.cache.install_handles(|| Arc::new(PoolRef(Arc::clone(&shared))));
        shared.launch();
        let creations = shared.engine.lock().plan_creations(Instant::now());
        shared.spawn_creations(creations);
        Ok(Pool::from_shared(shared))
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use std::time::Duration;

    use super::Builder;
    use crate::config::PoolConfig;
    use crate::pool::{IdleOrder, Manager};

    struct Unit;

    impl Manager for Unit {
        type Resource = ();
        type Error = std::io::Error;

        async fn create(&self) -> Result<(), std::io::Error> {
            Ok(())
        }
    }

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn apply_sets_every_setting_a_config_holds() {
        let config: PoolConfig = toml::from_str(
            r#"
            max_size = 40
            min_idle = 3
            max_idle = 20
            max_concurrent_creates = 4
            idle_order = "fifo"
            acquire_timeout = "1s"
            create_timeout = "2s"
            check_timeout = "3s"
            check_on_get = false
            check_window = "4s"
            idle_timeout = "5s"
            max_lifetime = "6s"
            lifetime_jitter = 0.25
            keepalive = "7s"
            backoff_initial = "8s"
            backoff_max = "9s"
            breaker_threshold = 11
            breaker_cooldown = "12s"
            leak_threshold = "13s"
            maintenance_interval = "14s"
            name = "orders-db"
            breaker_failure_rate = 0.5
            breaker_minimum_calls = 20
            breaker_window = "30s"
            breaker_slow_threshold = "2s"
            breaker_slow_rate = 0.8
            rate_limit_per_second = 5.0
            rate_limit_burst = 10
            "#,
        )
        .unwrap();
        let applied = Builder::new(Unit).apply(&config).config;
        assert_eq!(applied.max_size, 40);
        assert_eq!(applied.min_idle, 3);
        assert_eq!(applied.max_idle, Some(20));
        assert_eq!(applied.max_concurrent_creates, 4);
        assert_eq!(applied.idle_order, IdleOrder::Fifo);
        assert_eq!(applied.acquire_timeout, secs(1));
        assert_eq!(applied.create_timeout, secs(2));
        assert_eq!(applied.check_timeout, secs(3));
        assert!(!applied.check_on_get);
        assert_eq!(applied.check_window, secs(4));
        assert_eq!(applied.idle_timeout, Some(secs(5)));
        assert_eq!(applied.max_lifetime, Some(secs(6)));
        assert!((applied.lifetime_jitter - 0.25).abs() < f64::EPSILON);
        assert_eq!(applied.keepalive, Some(secs(7)));
        assert_eq!(applied.backoff.initial, secs(8));
        assert_eq!(applied.backoff.max, secs(9));
        assert_eq!(applied.breaker_threshold, Some(11));
        assert_eq!(applied.breaker_cooldown, secs(12));
        assert_eq!(applied.leak_threshold, Some(secs(13)));
        assert_eq!(applied.maintenance_interval, secs(14));
        assert_eq!(applied.name, "orders-db");
        let rules = applied.breaker_rates.clone().expect("rate rules");
        assert_eq!(rules.failure_rate, Some(0.5));
        assert_eq!(rules.minimum_calls, 20);
        assert_eq!(rules.slow, Some((secs(2), 0.8)));
        assert_eq!(applied.breaker_window, secs(30));
        assert_eq!(applied.rate_per_key, Some((5.0, 10)));
        assert!(applied.validate().is_ok());
    }

    #[test]
    fn off_turns_settings_off_and_absent_keys_keep_the_code_s_settings() {
        let config: PoolConfig = toml::from_str(
            r#"
            idle_timeout = "off"
            max_lifetime = "off"
            keepalive = "off"
            leak_threshold = "off"
            breaker_threshold = "off"
            "#,
        )
        .unwrap();
        let applied = Builder::new(Unit)
            .max_size(7)
            .keepalive(Some(secs(1)))
            .leak_threshold(Some(secs(1)))
            .apply(&config)
            .config;
        assert_eq!(applied.max_size, 7);
        assert_eq!(applied.idle_timeout, None);
        assert_eq!(applied.max_lifetime, None);
        assert_eq!(applied.keepalive, None);
        assert_eq!(applied.leak_threshold, None);
        assert_eq!(applied.breaker_threshold, None);

        let untouched = Builder::new(Unit).apply(&PoolConfig::default()).config;
        let defaults = Builder::new(Unit).config;
        assert_eq!(format!("{untouched:?}"), format!("{defaults:?}"));
    }
}
