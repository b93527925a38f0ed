//! [`PoolConfig`]: the settings of a resource pool, as a configuration file writes them.

use std::time::Duration;

use serde::Deserialize;

use super::de;
use crate::pool::{Builder, IdleOrder, Manager, Pool};

/// The settings of a [`Pool`], read from a configuration file or the environment.
///
/// Every field is optional: a field left out keeps the [`Builder`]'s default (or what the code
/// set before [`Builder::apply`]). The keys are the names of the builder's setters, so each
/// field's meaning and default are documented there. Durations are written like `"5s"`,
/// `"250ms"` or `"1m 30s"`; the settings that can be turned off also take `"off"`. An unknown
/// key is an error, so a misspelt setting is not silently ignored.
///
/// Deserializing checks types; [`Builder::build`] checks values, and names the field of a value
/// it refuses (`max_size` must be at least 1, `min_idle <= max_idle <= max_size`, durations
/// above zero, and so on).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use millpond::config::PoolConfig;
/// # use millpond::pool::Manager;
/// # struct Conns;
/// # impl Manager for Conns {
/// #     type Resource = ();
/// #     type Error = std::io::Error;
/// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: PoolConfig = toml::from_str(
///     r#"
///     max_size = 16
///     min_idle = 2
///     acquire_timeout = "5s"
///     idle_timeout = "off"
///     "#,
/// )?;
/// assert_eq!(config.acquire_timeout, Some(Duration::from_secs(5)));
/// assert_eq!(config.idle_timeout, Some(None));
///
/// let pool = config.builder(Conns).build()?;
/// assert_eq!(pool.status().max_size, 16);
///
/// // A value the pool cannot run is refused at `build()`, naming the field.
/// let config: PoolConfig = toml::from_str("max_size = 0")?;
/// let err = config.builder(Conns).build().unwrap_err();
/// assert_eq!(err.path().as_deref(), Some("max_size"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// [`Builder::max_size`].
    pub max_size: Option<usize>,
    /// [`Builder::min_idle`].
    pub min_idle: Option<usize>,
    /// [`Builder::max_idle`].
    pub max_idle: Option<usize>,
    /// [`Builder::max_concurrent_creates`].
    pub max_concurrent_creates: Option<usize>,
    /// [`Builder::idle_order`]: `"lifo"` or `"fifo"`.
    pub idle_order: Option<IdleOrder>,
    /// [`Builder::acquire_timeout`].
    #[serde(deserialize_with = "de::duration")]
    pub acquire_timeout: Option<Duration>,
    /// [`Builder::create_timeout`].
    #[serde(deserialize_with = "de::duration")]
    pub create_timeout: Option<Duration>,
    /// [`Builder::check_timeout`].
    #[serde(deserialize_with = "de::duration")]
    pub check_timeout: Option<Duration>,
    /// [`Builder::check_on_get`].
    pub check_on_get: Option<bool>,
    /// [`Builder::check_window`] (`"0s"` checks on every `get()`).
    #[serde(deserialize_with = "de::duration")]
    pub check_window: Option<Duration>,
    /// [`Builder::idle_timeout`]; `Some(None)`, written `"off"`, keeps idle resources.
    #[serde(deserialize_with = "de::duration_or_off")]
    pub idle_timeout: Option<Option<Duration>>,
    /// [`Builder::max_lifetime`]; `Some(None)`, written `"off"`, lets resources live forever.
    #[serde(deserialize_with = "de::duration_or_off")]
    pub max_lifetime: Option<Option<Duration>>,
    /// [`Builder::lifetime_jitter`], a fraction in `0.0..=0.5`.
    pub lifetime_jitter: Option<f64>,
    /// [`Builder::keepalive`]; `Some(None)`, written `"off"`, turns it off.
    #[serde(deserialize_with = "de::duration_or_off")]
    pub keepalive: Option<Option<Duration>>,
    /// The first delay of [`Builder::backoff`].
    #[serde(deserialize_with = "de::duration")]
    pub backoff_initial: Option<Duration>,
    /// The largest delay of [`Builder::backoff`].
    #[serde(deserialize_with = "de::duration")]
    pub backoff_max: Option<Duration>,
    /// The failures that open the circuit breaker ([`Builder::breaker`]); `Some(None)`, written
    /// `"off"`, turns the breaker off ([`Builder::disable_breaker`]).
    #[serde(deserialize_with = "de::count_or_off")]
    pub breaker_threshold: Option<Option<u32>>,
    /// How long the open circuit breaker waits before it probes ([`Builder::breaker`]).
    #[serde(deserialize_with = "de::duration")]
    pub breaker_cooldown: Option<Duration>,
    /// The rate of [`Builder::breaker_failure_rate`], in `(0, 1]`.
    pub breaker_failure_rate: Option<f64>,
    /// The creations the window must hold before the breaker's rate rules judge it (10).
    pub breaker_minimum_calls: Option<u32>,
    /// How far back the breaker's rate rules look (10 s).
    #[serde(deserialize_with = "de::duration")]
    pub breaker_window: Option<Duration>,
    /// The threshold of [`Builder::breaker_slow_creations`]; set with `breaker_slow_rate`.
    #[serde(deserialize_with = "de::duration")]
    pub breaker_slow_threshold: Option<Duration>,
    /// The rate of [`Builder::breaker_slow_creations`], in `(0, 1]`.
    pub breaker_slow_rate: Option<f64>,
    /// [`Builder::rate_limit_per_key`]: checkouts per second per key; set with
    /// `rate_limit_burst`.
    pub rate_limit_per_second: Option<f64>,
    /// [`Builder::rate_limit_per_key`]: the burst per key.
    pub rate_limit_burst: Option<u32>,
    /// [`Builder::adaptive_limit`]: an adaptive limit on the checkouts out at once, which
    /// replaces one given in code. In a [`ClusterConfig`](super::ClusterConfig)'s `backends`
    /// section, each backend gets a limiter of its own.
    pub adaptive_limit: Option<super::AdaptiveLimitConfig>,
    /// [`Builder::leak_threshold`]; `Some(None)`, written `"off"`, turns leak warnings off.
    #[serde(deserialize_with = "de::duration_or_off")]
    pub leak_threshold: Option<Option<Duration>>,
    /// [`Builder::maintenance_interval`].
    #[serde(deserialize_with = "de::duration")]
    pub maintenance_interval: Option<Duration>,
    /// [`Builder::name`]: the pool's name in its published metrics.
    pub name: Option<String>,
}

impl PoolConfig {
    /// A [`Pool::builder`] for `manager` with these settings applied: shorthand for
    /// `Pool::builder(manager).apply(self)`.
    pub fn builder<M: Manager>(&self, manager: M) -> Builder<M> {
        Pool::builder(manager).apply(self)
    }
}
