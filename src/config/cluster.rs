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
