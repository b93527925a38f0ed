//! Settings read from configuration files and the environment (the `serde` feature).
//!
//! Each builder has a plain-data twin that deserializes with serde: [`PoolConfig`] for
//! [`pool::Builder`](crate::pool::Builder), [`WorkerPoolConfig`] for
//! [`WorkerPoolBuilder`](crate::exec::WorkerPoolBuilder) and [`ClusterConfig`] for
//! [`ClusterBuilder`](crate::cluster::ClusterBuilder). Their keys are the builders' setter names in
//! `snake_case`, every key is optional, and an unknown key is refused, so a misspelt setting fails
//! loudly instead of being ignored. Durations are written like `"5s"`, `"250ms"` or `"1m 30s"`,
//! and settings that can be turned off take `"off"`.
//!
//! Reading checks types: `acquire_timeout = "soon"` fails to deserialize, with serde's error
//! naming the key. The builder's `build()` checks values, as it does for settings made in code:
//! `max_size = 0` is a [`BuildError`](crate::BuildError) whose
//! [`path`](crate::BuildError::path) names the field (`backends.replica1.max_size` for a
//! cluster's backend; [`nested_in`](crate::BuildError::nested_in) adds your own sections).
//!
//! | file | type | applied by |
//! |---|---|---|
//! | `pool.rs` | [`PoolConfig`] | [`pool::Builder::apply`](crate::pool::Builder::apply), [`PoolConfig::builder`] |
//! | `exec.rs` | [`WorkerPoolConfig`] | [`WorkerPoolBuilder::apply`](crate::exec::WorkerPoolBuilder::apply), [`WorkerPoolConfig::builder`] |
//! | `limit.rs` | [`AdaptiveLimitConfig`] | the `adaptive_limit` section of a pool or worker pool, [`AdaptiveLimitConfig::build`] |
//! | `cluster.rs` | [`ClusterConfig`] | [`ClusterBuilder::apply`](crate::cluster::ClusterBuilder::apply), [`ClusterConfig::builder`] |
//! | `de.rs` | | the duration and `"off"` formats |
//!
//! With the [`config`](https://docs.rs/config) crate, environment variables such as
//! `APP__POOL__MAX_SIZE=32` override a file when read with
//! `Environment::with_prefix("APP").separator("__")`: the names are the keys in upper case, and
//! `__` steps into a section. `examples/config.rs` shows the whole setup.

mod cluster;
mod de;
mod exec;
mod limit;
mod pool;

use serde::Deserialize;

pub use cluster::{ClusterConfig, OutlierConfig};
pub use exec::{RateLimitConfig, SchedulerKind, WorkerPoolConfig};
pub use limit::{AdaptiveLimitConfig, AlgorithmKind, QueueOrder};
pub use pool::PoolConfig;

use crate::balance::Balance;

/// A built-in [`Balance`] strategy, by name: `"round_robin"`, `"random"`,
/// `"weighted_round_robin"`, `"weighted_random"`, `"key_hash"`, `"least_loaded"` or
/// `"power_of_two"`. The weighted ones take their weights from the `weights` key beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BalanceKind {
    /// [`Balance::RoundRobin`].
    RoundRobin,
    /// [`Balance::Random`].
    Random,
    /// [`Balance::WeightedRoundRobin`].
    WeightedRoundRobin,
    /// [`Balance::WeightedRandom`].
    WeightedRandom,
    /// [`Balance::KeyHash`].
    KeyHash,
    /// [`Balance::LeastLoaded`].
    LeastLoaded,
    /// [`Balance::PowerOfTwo`].
    PowerOfTwo,
}

impl BalanceKind {
    /// Whether the strategy takes weights.
    pub fn is_weighted(self) -> bool {
        matches!(self, Self::WeightedRoundRobin | Self::WeightedRandom)
    }

    /// The strategy, with `weights` for the weighted ones (ignored by the others).
    pub fn to_balance(self, weights: Vec<u32>) -> Balance {
        match self {
            Self::RoundRobin => Balance::RoundRobin,
            Self::Random => Balance::Random,
            Self::WeightedRoundRobin => Balance::WeightedRoundRobin(weights),
            Self::WeightedRandom => Balance::WeightedRandom(weights),
            Self::KeyHash => Balance::KeyHash,
            Self::LeastLoaded => Balance::LeastLoaded,
            Self::PowerOfTwo => Balance::PowerOfTwo,
        }
    }
}

/// The strategy a configuration asks for over `current`, the one set in code: `kind` replaces
/// it, and `weights` alone replace the weights of a weighted `current`. Weights for a strategy
/// that takes none are refused, naming `weights`.
pub(crate) fn configured_balance(
    current: &Balance,
    kind: Option<BalanceKind>,
    weights: Option<&Vec<u32>>,
) -> Result<Balance, crate::BuildError> {
    let refuse = |weights: &Vec<u32>, strategy: &dyn std::fmt::Debug| {
        Err(crate::BuildError::invalid(
            "weights",
            weights,
            format!("only the weighted strategies take weights, and the balance is {strategy:?}"),
        ))
    };
    match (kind, weights) {
        (Some(kind), Some(weights)) if !kind.is_weighted() => refuse(weights, &kind),
        (Some(kind), weights) => Ok(kind.to_balance(weights.cloned().unwrap_or_default())),
        (None, Some(weights)) => match current {
            Balance::WeightedRoundRobin(_) => Ok(Balance::WeightedRoundRobin(weights.clone())),
            Balance::WeightedRandom(_) => Ok(Balance::WeightedRandom(weights.clone())),
            other => refuse(weights, other),
        },
        (None, None) => Ok(current.clone()),
    }
}
