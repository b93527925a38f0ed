//! Every setting of a pool, its default, and the rules `build()` enforces.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::build_error::BuildError;

/// Which idle resource `get()` takes first.
///
/// With the `serde` feature it deserializes from `"lifo"` or `"fifo"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize), serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum IdleOrder {
    /// The most recently returned one (the default). Keeps a warm working set and lets the idle
    /// timeout shrink the pool after a spike.
    #[default]
    Lifo,
    /// The one idle longest. Spreads use over every resource, which keeps them all exercised but
    /// stops the idle timeout from ever firing on a pool in steady use.
    Fifo,
}

/// The validated settings of a pool.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_size: usize,
    pub(crate) min_idle: usize,
    /// `None` until set: it follows `max_size`.
    pub(crate) max_idle: Option<usize>,
    pub(crate) max_concurrent_creates: usize,
    pub(crate) idle_order: IdleOrder,
    pub(crate) acquire_timeout: Duration,
    pub(crate) create_timeout: Duration,
    pub(crate) check_timeout: Duration,
    pub(crate) check_on_get: bool,
    pub(crate) check_window: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) lifetime_jitter: f64,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) backoff: Backoff,
    pub(crate) breaker_threshold: Option<u32>,
    pub(crate) breaker_cooldown: Duration,
    /// Rate rules over creations that also open the breaker, and the window they look at.
    pub(crate) breaker_rates: Option<crate::breaker::RateRules>,
    pub(crate) breaker_window: Duration,
    pub(crate) leak_threshold: Option<Duration>,
    pub(crate) maintenance_interval: Duration,
    /// Told of the creations the pool gives up at `create_timeout` (a cluster's backend health).
    pub(crate) create_watcher: Option<crate::sync::Arc<dyn super::create::CreateWatcher>>,
    /// The pool's name in its published metrics.
    pub(crate) name: String,
    /// Checkouts take room under this limit first (`Builder::adaptive_limit`).
    pub(crate) limiter: Option<crate::limit::AdaptiveLimiter>,
    /// A configuration file's setting that `Builder::apply` could not take, returned by
    /// `build()`.
    pub(crate) rejected: Option<BuildError>,
    /// `(per_second, burst)` of each key's limit for `get_keyed`, checked at `build()`.
    pub(crate) rate_per_key: Option<(f64, u32)>,
    /// The buckets of that limit, made by `build()`.
    pub(crate) per_key: Option<crate::sync::Arc<crate::rate::KeyedBuckets>>,
    /// Publish the metrics at every maintenance tick.
    #[cfg(feature = "metrics")]
    pub(crate) publish_metrics: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_size: 10,
            min_idle: 0,
            max_idle: None,
            max_concurrent_creates: 2,
            idle_order: IdleOrder::Lifo,
            acquire_timeout: Duration::from_secs(30),
            create_timeout: Duration::from_secs(10),
            check_timeout: Duration::from_secs(5),
            check_on_get: true,
            check_window: Duration::from_millis(500),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            lifetime_jitter: 0.05,
            keepalive: None,
            backoff: Backoff { initial: Duration::from_millis(50), max: Duration::from_secs(5) },
            breaker_threshold: Some(5),
            breaker_cooldown: Duration::from_secs(5),
            breaker_rates: None,
            breaker_window: Duration::from_secs(10),
            leak_threshold: None,
            maintenance_interval: Duration::from_secs(1),
            create_watcher: None,
            name: String::from("millpond"),
            limiter: None,
            rejected: None,
            rate_per_key: None,
            per_key: None,
            #[cfg(feature = "metrics")]
            publish_metrics: false,
        }
    }
}

fn positive(field: &'static str, value: Duration) -> Result<(), BuildError> {
    if value.is_zero() {
        return Err(BuildError::invalid(field, value, "must be greater than zero"));
    }
    Ok(())
}

fn positive_if_set(field: &'static str, value: Option<Duration>) -> Result<(), BuildError> {
    value.map_or(Ok(()), |value| positive(field, value))
}

impl Config {
    pub(crate) fn max_idle(&self) -> usize {
        self.max_idle.unwrap_or(self.max_size)
    }

    /// Checks every rule, naming the first field that breaks one.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        if let Some(rejected) = &self.rejected {
            return Err(rejected.clone());
        }
        if self.name.is_empty() {
            return Err(BuildError::invalid("name", &self.name, "must not be empty"));
        }
        if self.max_size == 0 {
            return Err(BuildError::invalid(
                "max_size",
                self.max_size,
                "must be greater than zero",
            ));
        }
        let max_idle = self.max_idle();
        if max_idle == 0 {
            return Err(BuildError::invalid("max_idle", max_idle, "must be greater than zero"));
        }
        if max_idle > self.max_size {
            return Err(BuildError::invalid(
                "max_idle",
                max_idle,
                format!("must not exceed `max_size` ({})", self.max_size),
            ));
        }
        if self.min_idle > max_idle {
            return Err(BuildError::invalid(
                "min_idle",
                self.min_idle,
                format!("must not exceed `max_idle` ({max_idle})"),
            ));
        }
        if self.max_concurrent_creates == 0 {
            return Err(BuildError::invalid(
                "max_concurrent_creates",
                self.max_concurrent_creates,
                "must be greater than zero",
            ));
        }
        positive("acquire_timeout", self.acquire_timeout)?;
        positive("create_timeout", self.create_timeout)?;
        positive("check_timeout", self.check_timeout)?;
        positive_if_set("idle_timeout", self.idle_timeout)?;
        positive_if_set("max_lifetime", self.max_lifetime)?;
        positive_if_set("keepalive", self.keepalive)?;
        positive_if_set("leak_threshold", self.leak_threshold)?;
        positive("maintenance_interval", self.maintenance_interval)?;
        positive("backoff_initial", self.backoff.initial)?;
        if self.backoff.max < self.backoff.initial {
            return Err(BuildError::invalid(
                "backoff_max",
                self.backoff.max,
                format!("must be at least `backoff_initial` ({:?})", self.backoff.initial),
            ));
        }
        if !(0.0..=0.5).contains(&self.lifetime_jitter) {
            return Err(BuildError::invalid(
                "lifetime_jitter",
                self.lifetime_jitter,
                "must be a fraction between 0.0 and 0.5",
            ));
        }
        if self.breaker_threshold == Some(0) {
            return Err(BuildError::invalid(
                "breaker_threshold",
                0,
                "must be at least one failure (use `disable_breaker()` to turn it off)",
            ));
        }
        positive("breaker_cooldown", self.breaker_cooldown)?;
        if let Some(rules) = &self.breaker_rates {
            let rate_ok = |rate: f64| rate > 0.0 && rate <= 1.0;
            if let Some(rate) = rules.failure_rate.filter(|rate| !rate_ok(*rate)) {
                return Err(BuildError::invalid("breaker_failure_rate", rate, "must be in (0, 1]"));
            }
            if let Some((threshold, rate)) = rules.slow {
                positive("breaker_slow_creations", threshold)?;
                if !rate_ok(rate) {
                    return Err(BuildError::invalid(
                        "breaker_slow_creations",
                        rate,
                        "the rate must be in (0, 1]",
                    ));
                }
            }
            if rules.minimum_calls == 0 {
                return Err(BuildError::invalid(
                    "breaker_failure_rate",
                    0,
                    "minimum_calls must be at least 1",
                ));
            }
            positive("breaker_failure_rate", self.breaker_window)?;
        }
        Ok(())
    }
}
