//! [`AdaptiveLimitConfig`]: an adaptive concurrency limiter, as a configuration file writes it.

use std::time::Duration;

use serde::Deserialize;

use super::de;
use crate::BuildError;
use crate::limit::builder::{DEFAULT_CODEL_INTERVAL, DEFAULT_CODEL_TARGET};
use crate::limit::{AdaptiveLimiter, AdaptiveLimiterBuilder, Aimd, Gradient2};

/// An [`AdaptiveLimiter`], read from a configuration file or the environment: the `adaptive_limit`
/// section of a [`PoolConfig`](super::PoolConfig) or a
/// [`WorkerPoolConfig`](super::WorkerPoolConfig).
///
/// Every field is optional and keeps the default of the setter it names. The algorithm's keys
/// are its setters' names; a key the chosen algorithm does not take (`tolerance` for AIMD,
/// `timeout` for Gradient2) is refused at `build()`, naming it, rather than ignored.
///
/// # Examples
///
/// ```
/// use millpond::config::AdaptiveLimitConfig;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: AdaptiveLimitConfig = toml::from_str(
///     r#"
///     algorithm = "gradient2"
///     min_limit = 2
///     max_limit = 64
///     tolerance = 1.1
///     queue_timeout = "250ms"
///     "#,
/// )?;
/// let limiter = config.build()?;
/// assert!(limiter.status().limit >= 2);
///
/// let config: AdaptiveLimitConfig = toml::from_str("algorithm = \"aimd\"\ntolerance = 1.1")?;
/// let err = config.build().unwrap_err();
/// assert_eq!(err.path().as_deref(), Some("tolerance"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdaptiveLimitConfig {
    /// The algorithm: `"gradient2"` ([`Gradient2`], the default) or `"aimd"` ([`Aimd`]).
    pub algorithm: Option<AlgorithmKind>,
    /// The limit before the first sample ([`Gradient2::initial_limit`], [`Aimd::initial_limit`]).
    pub initial_limit: Option<usize>,
    /// The floor ([`Gradient2::min_limit`], [`Aimd::min_limit`]).
    pub min_limit: Option<usize>,
    /// The ceiling ([`Gradient2::max_limit`], [`Aimd::max_limit`]).
    pub max_limit: Option<usize>,
    /// The factor a loss multiplies the limit by ([`Gradient2::backoff`], [`Aimd::backoff`]).
    pub backoff: Option<f64>,
    /// [`Gradient2::tolerance`].
    pub tolerance: Option<f64>,
    /// [`Gradient2::smoothing`].
    pub smoothing: Option<f64>,
    /// [`Gradient2::queue_size`].
    pub queue_size: Option<usize>,
    /// [`Gradient2::long_window`].
    pub long_window: Option<u32>,
    /// [`Gradient2::probe_multiplier`].
    pub probe_multiplier: Option<u32>,
    /// [`Gradient2::probe_samples`].
    pub probe_samples: Option<u32>,
    /// [`Gradient2::probe_interval`].
    #[serde(deserialize_with = "de::duration")]
    pub probe_interval: Option<Duration>,
    /// [`Aimd::timeout`]: a success slower than this counts as a loss.
    #[serde(deserialize_with = "de::duration")]
    pub timeout: Option<Duration>,
    /// [`AdaptiveLimiterBuilder::max_queue`].
    pub max_queue: Option<usize>,
    /// [`AdaptiveLimiterBuilder::queue_timeout`].
    #[serde(deserialize_with = "de::duration")]
    pub queue_timeout: Option<Duration>,
    /// `"adaptive_lifo"` (the default, [`AdaptiveLimiterBuilder::adaptive_lifo`]) or `"fifo"`
    /// ([`AdaptiveLimiterBuilder::fifo`]).
    pub queue_order: Option<QueueOrder>,
    /// The CoDel target of the adaptive LIFO queue (5 ms).
    #[serde(deserialize_with = "de::duration")]
    pub codel_target: Option<Duration>,
    /// The CoDel interval of the adaptive LIFO queue (100 ms).
    #[serde(deserialize_with = "de::duration")]
    pub codel_interval: Option<Duration>,
}

/// A built-in limit algorithm, by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlgorithmKind {
    /// [`Gradient2`]: delay-based, the default.
    #[default]
    Gradient2,
    /// [`Aimd`]: loss-based.
    Aimd,
}

/// How an [`AdaptiveLimiter`] serves its waiting callers, by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueueOrder {
    /// First in, first out until the queue stands, then newest first with stale waiters turned
    /// away ([`AdaptiveLimiterBuilder::adaptive_lifo`]).
    #[default]
    AdaptiveLifo,
    /// Strictly first in, first out ([`AdaptiveLimiterBuilder::fifo`]).
    Fifo,
}

impl AdaptiveLimitConfig {
    /// Makes the limiter these settings describe.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field: a value the algorithm or the queue refuses (see
    /// [`AdaptiveLimiterBuilder::build`]), a key the chosen algorithm does not take, or CoDel
    /// settings with a `"fifo"` queue.
    pub fn build(&self) -> Result<AdaptiveLimiter, BuildError> {
        self.builder()?.build()
    }

    fn builder(&self) -> Result<AdaptiveLimiterBuilder, BuildError> {
        let algorithm = self.algorithm.unwrap_or_default();
        let mut builder = match algorithm {
            AlgorithmKind::Gradient2 => {
                if let Some(timeout) = &self.timeout {
                    return Err(not_taken(algorithm, "timeout", timeout));
                }
                let gradient = Gradient2::new();
                let gradient = set(gradient, self.initial_limit, Gradient2::initial_limit);
                let gradient = set(gradient, self.min_limit, Gradient2::min_limit);
                let gradient = set(gradient, self.max_limit, Gradient2::max_limit);
                let gradient = set(gradient, self.queue_size, Gradient2::queue_size);
                let gradient = set(gradient, self.backoff, Gradient2::backoff);
                let gradient = set(gradient, self.tolerance, Gradient2::tolerance);
                let gradient = set(gradient, self.smoothing, Gradient2::smoothing);
                let gradient = set(gradient, self.long_window, Gradient2::long_window);
                let gradient = set(gradient, self.probe_multiplier, Gradient2::probe_multiplier);
                let gradient = set(gradient, self.probe_samples, Gradient2::probe_samples);
                let gradient = set(gradient, self.probe_interval, Gradient2::probe_interval);
                AdaptiveLimiter::builder(gradient)
            }
            AlgorithmKind::Aimd => {
                let gradient_only: [(&'static str, Option<&dyn std::fmt::Debug>); 7] = [
                    ("tolerance", self.tolerance.as_ref().map(|v| v as _)),
                    ("smoothing", self.smoothing.as_ref().map(|v| v as _)),
                    ("queue_size", self.queue_size.as_ref().map(|v| v as _)),
                    ("long_window", self.long_window.as_ref().map(|v| v as _)),
                    ("probe_multiplier", self.probe_multiplier.as_ref().map(|v| v as _)),
                    ("probe_samples", self.probe_samples.as_ref().map(|v| v as _)),
                    ("probe_interval", self.probe_interval.as_ref().map(|v| v as _)),
                ];
                if let Some((field, Some(value))) =
                    gradient_only.into_iter().find(|(_, value)| value.is_some())
                {
                    return Err(not_taken(algorithm, field, value));
                }
                let aimd = Aimd::new();
                let aimd = set(aimd, self.initial_limit, Aimd::initial_limit);
                let aimd = set(aimd, self.min_limit, Aimd::min_limit);
                let aimd = set(aimd, self.max_limit, Aimd::max_limit);
                let aimd = set(aimd, self.backoff, Aimd::backoff);
                let aimd = set(aimd, self.timeout, Aimd::timeout);
                AdaptiveLimiter::builder(aimd)
            }
        };
        builder = set(builder, self.max_queue, AdaptiveLimiterBuilder::max_queue);
        builder = set(builder, self.queue_timeout, AdaptiveLimiterBuilder::queue_timeout);
        match self.queue_order.unwrap_or_default() {
            QueueOrder::Fifo => {
                if let Some(target) = &self.codel_target {
                    return Err(BuildError::invalid("codel_target", target, FIFO_HAS_NO_CODEL));
                }
                if let Some(interval) = &self.codel_interval {
                    return Err(BuildError::invalid("codel_interval", interval, FIFO_HAS_NO_CODEL));
                }
                builder = builder.fifo();
            }
            QueueOrder::AdaptiveLifo => {
                let target = self.codel_target.unwrap_or(DEFAULT_CODEL_TARGET);
                let interval = self.codel_interval.unwrap_or(DEFAULT_CODEL_INTERVAL);
                // Checked here too, to name the keys as the file writes them.
                for (field, value) in [("codel_target", target), ("codel_interval", interval)] {
                    if value.is_zero() {
                        return Err(BuildError::invalid(field, value, "must be above zero"));
                    }
                }
                builder = builder.adaptive_lifo(target, interval);
            }
        }
        Ok(builder)
    }
}

/// `target` with `setter` applied to `value`, if the file gave one.
fn set<B, T>(target: B, value: Option<T>, setter: fn(B, T) -> B) -> B {
    match value {
        Some(value) => setter(target, value),
        None => target,
    }
}

fn not_taken(
    algorithm: AlgorithmKind,
    field: &'static str,
    value: &dyn std::fmt::Debug,
) -> BuildError {
    BuildError::invalid(
        field,
        value,
        format!("the {algorithm:?} algorithm does not take this setting"),
    )
}

const FIFO_HAS_NO_CODEL: &str =
    "a \"fifo\" queue never switches to LIFO, so it takes no CoDel setting";

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> AdaptiveLimitConfig {
        toml::from_str(text).unwrap()
    }

    fn refused(text: &str) -> Option<String> {
        read(text).build().unwrap_err().path()
    }

    #[tokio::test]
    async fn every_key_reaches_its_setter() {
        let limiter = read("algorithm = \"aimd\"\ninitial_limit = 7\nmin_limit = 3\nmax_limit = 9")
            .build()
            .unwrap();
        assert_eq!(limiter.status().limit, 7);
        let limiter =
            read("initial_limit = 5\nmin_limit = 5\nmax_limit = 5\nmax_queue = 0").build().unwrap();
        assert_eq!(limiter.status().limit, 5);
        let _held: Vec<_> = (0..5).map(|_| limiter.try_acquire().unwrap()).collect();
        assert!(limiter.acquire().await.is_err(), "max_queue = 0 waits for nothing");
    }

    #[test]
    fn bad_values_and_misplaced_keys_are_refused_by_name() {
        assert_eq!(refused("min_limit = 10\nmax_limit = 5").as_deref(), Some("max_limit"));
        assert_eq!(refused("tolerance = 0.5").as_deref(), Some("tolerance"));
        assert_eq!(refused("queue_timeout = \"0s\"").as_deref(), Some("queue_timeout"));
        assert_eq!(refused("algorithm = \"aimd\"\nsmoothing = 0.5").as_deref(), Some("smoothing"));
        assert_eq!(refused("timeout = \"1s\"").as_deref(), Some("timeout"));
        assert_eq!(
            refused("queue_order = \"fifo\"\ncodel_target = \"5ms\"").as_deref(),
            Some("codel_target")
        );
        assert_eq!(refused("codel_interval = \"0s\"").as_deref(), Some("codel_interval"));
        assert!(toml::from_str::<AdaptiveLimitConfig>("algorithm = \"vegas\"").is_err());
        assert!(toml::from_str::<AdaptiveLimitConfig>("limit = 5").is_err(), "unknown key");
    }
}
