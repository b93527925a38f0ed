//! [`WorkerPoolConfig`]: the settings of a worker pool, as a configuration file writes them.

use std::time::Duration;

use serde::Deserialize;

use super::BalanceKind;
use super::de;
use crate::exec::{WorkerPool, WorkerPoolBuilder};

/// The settings of a [`WorkerPool`], read from a configuration file or the environment.
///
/// Every field is optional: a field left out keeps the [`WorkerPoolBuilder`]'s default (or what
/// the code set before [`WorkerPoolBuilder::apply`]). The keys are the names of the builder's
/// setters; the scheduler is spread over `scheduler`, `balance`, `weights` and `stealing`. An
/// unknown key is an error.
///
/// # Examples
///
/// ```
/// use millpond::config::WorkerPoolConfig;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: WorkerPoolConfig = toml::from_str(
///     r#"
///     workers = 2
///     scheduler = "per_worker"
///     balance = "least_loaded"
///     stealing = true
///     max_queue_wait = "2s"
///     rate_limit = { per_second = 100.0, burst = 10 }
///     "#,
/// )?;
/// let workers = config.builder().build()?;
/// assert_eq!(workers.stats().workers, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkerPoolConfig {
    /// [`WorkerPoolBuilder::workers`]: sets both `min_workers` and `max_workers`, which, when
    /// given too, override it.
    pub workers: Option<usize>,
    /// [`WorkerPoolBuilder::min_workers`].
    pub min_workers: Option<usize>,
    /// [`WorkerPoolBuilder::max_workers`].
    pub max_workers: Option<usize>,
    /// [`WorkerPoolBuilder::queue_capacity`].
    pub queue_capacity: Option<usize>,
    /// [`WorkerPoolBuilder::scheduler`]: `"shared_queue"` or `"per_worker"`.
    pub scheduler: Option<SchedulerKind>,
    /// How the per-worker scheduler picks an unkeyed task's worker (per-worker queues only).
    pub balance: Option<BalanceKind>,
    /// One weight per worker, for the weighted `balance` strategies (and only for them).
    pub weights: Option<Vec<u32>>,
    /// Whether idle workers steal queued tasks from the others (per-worker queues only).
    pub stealing: Option<bool>,
    /// [`WorkerPoolBuilder::idle_timeout`].
    #[serde(deserialize_with = "de::duration")]
    pub idle_timeout: Option<Duration>,
    /// [`WorkerPoolBuilder::rate_limit`].
    pub rate_limit: Option<RateLimitConfig>,
    /// [`WorkerPoolBuilder::rate_limit_per_key`].
    pub rate_limit_per_key: Option<RateLimitConfig>,
    /// [`WorkerPoolBuilder::max_queue_wait`].
    #[serde(deserialize_with = "de::duration")]
    pub max_queue_wait: Option<Duration>,
    /// [`WorkerPoolBuilder::overload_queue_len`].
    pub overload_queue_len: Option<usize>,
    /// [`WorkerPoolBuilder::overload_queue_wait`].
    #[serde(deserialize_with = "de::duration")]
    pub overload_queue_wait: Option<Duration>,
    /// [`WorkerPoolBuilder::overload_cpu`]: the CPU share (in `(0, 1]`) past which the pool
    /// counts as overloaded. Without a sampler given in code, `build()` starts one with
    /// [`CpuSampler`](crate::load::CpuSampler)'s defaults.
    pub overload_cpu: Option<f64>,
    /// [`WorkerPoolBuilder::adaptive_limit`]: an adaptive limit on the tasks running at once,
    /// which replaces one given in code.
    pub adaptive_limit: Option<super::AdaptiveLimitConfig>,
    /// [`WorkerPoolBuilder::name`]: the worker pool's name in its published metrics.
    pub name: Option<String>,
}

impl WorkerPoolConfig {
    /// A [`WorkerPool::builder`] with these settings applied: shorthand for
    /// `WorkerPool::builder().apply(self)`.
    pub fn builder(&self) -> WorkerPoolBuilder {
        WorkerPool::builder().apply(self)
    }
}

/// Which [`Scheduler`](crate::exec::Scheduler) a worker pool uses, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchedulerKind {
    /// [`Scheduler::SharedQueue`](crate::exec::Scheduler::SharedQueue): `"shared_queue"`.
    SharedQueue,
    /// [`Scheduler::PerWorker`](crate::exec::Scheduler::PerWorker): `"per_worker"`.
    PerWorker,
}

/// A token-bucket rate limit: `{ per_second = 100.0, burst = 10 }`. Both keys are required.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Tasks admitted a second on average.
    pub per_second: f64,
    /// Tasks admitted at once after an idle spell.
    pub burst: u32,
}

impl RateLimitConfig {
    /// A limit of `per_second` tasks a second on average and `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }
}
