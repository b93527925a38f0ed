//! [`ClusterConfig`]: the settings of a cluster and of its backends' pools, as a configuration
//! file writes them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::de;
use super::{BalanceKind, PoolConfig};
use crate::cluster::{Cluster, ClusterBuilder};
use crate::pool::Manager;

/// The settings of a [`Cluster`], read from a configuration file or the environment.
///
/// A backend needs a [`Manager`], which a file cannot hold, so the backends themselves are added
/// in code; the configuration carries the cluster's own settings, and pool settings for backends
/// by name under `backends`. Every field is optional, and an unknown key is an error; so is a
/// name under `backends` that no backend of the cluster has, at [`ClusterBuilder::build`].
/// The `config` crate lowercases the keys it reads from the environment, so backends configured
/// from there need lowercase names.
///
/// # Examples
///
/// ```
/// use millpond::config::ClusterConfig;
///
/// let config: ClusterConfig = toml::from_str(
///     r#"
///     balance = "least_loaded"
///     probe_interval = "500ms"
///
///     [backends.replica1]
///     max_size = 32
///     "#,
/// )?;
/// assert_eq!(config.backends["replica1"].max_size, Some(32));
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// [`ClusterBuilder::name`].
    pub name: Option<String>,
    /// [`ClusterBuilder::balance`], by name.
    pub balance: Option<BalanceKind>,
    /// One weight per backend, in the order they are added, for the weighted `balance`
    /// strategies (and only for them).
    pub weights: Option<Vec<u32>>,
    /// [`ClusterBuilder::failures_to_eject`].
    pub failures_to_eject: Option<u32>,
    /// [`ClusterBuilder::probe_interval`].
    #[serde(deserialize_with = "de::duration")]
    pub probe_interval: Option<Duration>,
    /// [`ClusterBuilder::reads_fall_back_to_primary`].
    pub reads_fall_back_to_primary: Option<bool>,
    /// [`ClusterBuilder::rate_limit_per_key`]: `get_keyed` calls per second per key; set with
    /// `rate_limit_burst`.
    pub rate_limit_per_second: Option<f64>,
    /// [`ClusterBuilder::rate_limit_per_key`]: the burst per key.
    pub rate_limit_burst: Option<u32>,
    /// [`ClusterBuilder::outlier_detection`]: laid over the detection set in code, or over
    /// Envoy's defaults ([`OutlierDetection::new`](crate::cluster::OutlierDetection::new));
    /// the section's presence turns ejection on.
    pub outlier_detection: Option<OutlierConfig>,
    /// Pool settings by backend name, applied over the pool builder each backend was given in
    /// code.
    pub backends: BTreeMap<String, PoolConfig>,
}

impl ClusterConfig {
    /// A [`Cluster::builder`] with these settings applied: shorthand for
    /// `Cluster::builder().apply(self)`.
    pub fn builder<M: Manager>(&self) -> ClusterBuilder<M> {
        Cluster::builder().apply(self)
    }
}

/// The `outlier_detection` section of a [`ClusterConfig`]: the keys are
/// [`OutlierDetection`](crate::cluster::OutlierDetection)'s setters, each documented there with
/// its default. `consecutive_failures`, `success_rate_stdev` and `latency_factor` also take
/// `"off"`.
///
/// # Examples
///
/// ```
/// use millpond::config::ClusterConfig;
///
/// let config: ClusterConfig = toml::from_str(
///     r#"
///     [outlier_detection]
///     consecutive_failures = "off"
///     latency_factor = 3.0
///     interval = "5s"
///     max_ejected_percent = 50
///     "#,
/// )?;
/// let outliers = config.outlier_detection.unwrap();
/// assert_eq!(outliers.consecutive_failures, Some(None));
/// assert_eq!(outliers.latency_factor, Some(Some(3.0)));
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OutlierConfig {
    /// Failures in a row that eject at once; `Some(None)`, written `"off"`, turns the rule off.
    #[serde(deserialize_with = "de::count_or_off")]
    pub consecutive_failures: Option<Option<u32>>,
    /// How often the backends are compared.
    #[serde(deserialize_with = "de::duration")]
    pub interval: Option<Duration>,
    /// The first ejection's length.
    #[serde(deserialize_with = "de::duration")]
    pub base_ejection: Option<Duration>,
    /// The longest ejection.
    #[serde(deserialize_with = "de::duration")]
    pub max_ejection: Option<Duration>,
    /// The most backends ejected at once, in percent.
    pub max_ejected_percent: Option<u32>,
    /// The backends with enough calls a comparison needs.
    pub minimum_backends: Option<usize>,
    /// The calls in an interval a backend needs to be compared.
    pub request_volume: Option<u64>,
    /// Standard deviations below the mean success rate that eject; `Some(None)`, written
    /// `"off"`, turns the rule off.
    #[serde(deserialize_with = "de::number_or_off")]
    pub success_rate_stdev: Option<Option<f64>>,
    /// How many times the others' median latency ejects; `Some(None)`, written `"off"`, turns
    /// the rule off.
    #[serde(deserialize_with = "de::number_or_off")]
    pub latency_factor: Option<Option<f64>>,
}
