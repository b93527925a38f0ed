//! Configuration of a [`WorkerPool`], validated by [`WorkerPoolBuilder::build`].

use std::fmt;
use std::time::Duration;

use super::admission::{Admission, Overload};
use super::api::WorkerPool;
use super::inner::{Inner, Settings};
use super::queues::Queues;
use super::worker_count::MAX_WORKERS;
use crate::BuildError;
use crate::balance::Balance;
use crate::rate::{KeyedBuckets, Shape, TokenBucket};
use crate::unwind::PanicHook;

/// Which queues the workers take their tasks from. See the [module docs](super) for when each
/// wins.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Scheduler {
    /// One bounded queue that every worker pulls from (the default). The only elastic
    /// scheduler: workers start under load and retire when idle (`min_workers < max_workers`).
    /// Both schedulers can be [resized](super::WorkerPool::resize).
    SharedQueue,
    /// One bounded queue per worker, fed by a balancing strategy; keyed tasks always go to their
    /// key's worker.
    PerWorker {
        /// How an unkeyed task's worker is picked.
        balance: Balance,
        /// Whether a worker with an empty queue takes unkeyed tasks queued at other workers.
        stealing: bool,
    },
}

impl Scheduler {
    /// The shared queue.
    pub fn shared_queue() -> Self {
        Self::SharedQueue
    }

    /// Per-worker queues balanced by `balance`, without stealing.
    pub fn per_worker(balance: Balance) -> Self {
        Self::PerWorker { balance, stealing: false }
    }

    /// Turns work stealing on or off (per-worker queues only; the shared queue needs none).
    #[must_use]
    pub fn stealing(self, on: bool) -> Self {
        match self {
            Self::PerWorker { balance, .. } => Self::PerWorker { balance, stealing: on },
            shared => shared,
        }
    }
}

/// The queue capacity when [`WorkerPoolBuilder::queue_capacity`] is not set (raised to one slot
/// per worker for per-worker queues with more workers than that).
///
/// A queue holds as much latency as it holds work: 128 tasks keep the p99 queueing delay of the
/// skewed workload in `benches/exec.rs` (90 % of tasks ~1 µs, 10 % ~200 µs, 64 workers on two
/// cores) at 1.5–1.8 ms, where 1,024 held 11–13 ms. A deeper queue absorbs longer bursts
/// without making submitters wait; set `queue_capacity` to the delay you can accept times the
/// rate the pool drains at.
pub const DEFAULT_QUEUE_CAPACITY: usize = 128;

/// How long an extra worker (above `min_workers`) waits idle before it exits, when
/// [`WorkerPoolBuilder::idle_timeout`] is not set.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`WorkerPool`]; made by [`WorkerPool::builder`].
#[must_use = "a builder does nothing until `build()` is called"]
pub struct WorkerPoolBuilder {
    min_workers: Option<usize>,
    max_workers: Option<usize>,
    /// `None` until set: the default depends on the scheduler and the workers.
    queue_capacity: Option<usize>,
    scheduler: Scheduler,
    idle_timeout: Duration,
    panic_hook: Option<PanicHook>,
    rate_limit: Option<(f64, u32)>,
    rate_limit_per_key: Option<(f64, u32)>,
    #[cfg(feature = "redis")]
    shared_rate_limit_per_key: Option<crate::redis::RateLimiter>,
    max_queue_wait: Option<Duration>,
    adaptive_limit: Option<crate::limit::AdaptiveLimiter>,
    overload: Overload,
    name: String,
    /// A configuration file's setting that [`apply`](Self::apply) could not take, returned by
    /// `build()`.
    #[cfg(feature = "serde")]
    rejected: Option<BuildError>,
    /// A configuration file's `overload_cpu` threshold, for a sampler `build()` starts (it
    /// needs the runtime) when the code gave none.
    #[cfg(feature = "serde")]
    configured_cpu: Option<f64>,
}

impl fmt::Debug for WorkerPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPoolBuilder")
            .field("min_workers", &self.min_workers)
            .field("max_workers", &self.max_workers)
            .field("queue_capacity", &self.queue_capacity)
            .field("scheduler", &self.scheduler)
            .field("idle_timeout", &self.idle_timeout)
            .field("rate_limit", &self.rate_limit)
            .field("rate_limit_per_key", &self.rate_limit_per_key)
            .field("max_queue_wait", &self.max_queue_wait)
            .field("adaptive_limit", &self.adaptive_limit)
            .field("overload", &self.overload)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Default for WorkerPoolBuilder {
    fn default() -> Self {
        Self {
            min_workers: None,
            max_workers: None,
            queue_capacity: None,
            scheduler: Scheduler::SharedQueue,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            panic_hook: None,
            rate_limit: None,
            rate_limit_per_key: None,
            #[cfg(feature = "redis")]
            shared_rate_limit_per_key: None,
            max_queue_wait: None,
            adaptive_limit: None,
            overload: Overload::default(),
            name: String::from("millpond"),
            #[cfg(feature = "serde")]
            rejected: None,
            #[cfg(feature = "serde")]
            configured_cpu: None,
        }
    }
}

impl WorkerPoolBuilder {
    /// A fixed number of workers: how many tasks run at once. Default: the number of CPUs.
    pub fn workers(mut self, workers: usize) -> Self {
        self.min_workers = Some(workers);
        self.max_workers = Some(workers);
        self
    }

    /// Workers kept even when idle (elastic pools; the shared queue only).
    pub fn min_workers(mut self, min_workers: usize) -> Self {
        self.min_workers = Some(min_workers);
        self
    }

    /// The most workers the pool runs: the bound on tasks running at once. Workers above
    /// `min_workers` start when a task finds no idle worker, and exit after `idle_timeout`.
    pub fn max_workers(mut self, max_workers: usize) -> Self {
        self.max_workers = Some(max_workers);
        self
    }

    /// The most tasks queued and not yet started; a submit beyond it waits (or fails, for
    /// `try_submit`). With per-worker queues it is split evenly between the workers. At most
    /// `queue_capacity + max_workers` tasks are ever held. Default [`DEFAULT_QUEUE_CAPACITY`]
    /// (128), or one slot per worker for per-worker queues with more workers than that.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = Some(capacity);
        self
    }

    /// The scheduler. Default [`Scheduler::SharedQueue`].
    pub fn scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// How long a worker above `min_workers` may stay idle before it exits.
    /// Default [`DEFAULT_IDLE_TIMEOUT`].
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Called with the message of every task that panics (after the worker caught it). Without
    /// a hook, panics are logged with `tracing` at warn level. A hook that panics is contained.
    pub fn panic_hook(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.panic_hook = Some(Box::new(hook));
        self
    }

    /// Admits at most `per_second` tasks a second on average, and `burst` at once, over the
    /// whole pool; a submit beyond it gets its task back in [`SubmitError::RateLimited`] at once,
    /// without waiting. A token bucket: idle time refills it up to `burst`.
    ///
    /// `build()` refuses a rate that is not finite, not above 0, or slower than one task every
    /// 100 years, and a burst of 0. Extreme values that are valid only ever admit less than
    /// asked: the interval between tokens is rounded up to a whole nanosecond (so rates above
    /// about 10^7 a second come out a little lower: 6·10^8 acts as 5·10^8, and anything above
    /// 10^9 as 10^9), and a burst that takes more than a century to refill holds a century's
    /// worth.
    ///
    /// [`SubmitError::RateLimited`]: super::SubmitError::RateLimited
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> Self {
        self.rate_limit = Some((per_second, burst));
        self
    }

    /// Like [`rate_limit`](Self::rate_limit), for each key of
    /// [`submit_keyed`](super::WorkerPool::submit_keyed) separately: per user, per tenant, per
    /// source address.
    pub fn rate_limit_per_key(mut self, per_second: f64, burst: u32) -> Self {
        self.rate_limit_per_key = Some((per_second, burst));
        self
    }

    /// A per-key limit for [`submit_keyed`](super::WorkerPool::submit_keyed) kept in Redis, so
    /// that it holds across every instance of a service (see
    /// [`redis::rate_limit`](crate::redis::rate_limit)); the key is `limiter`'s key as a decimal
    /// number, after its prefix.
    ///
    /// `submit_keyed` awaits it before anything else, before it takes queue room: one round
    /// trip, unless the limiter's short-circuit already knows the key is refused. A task it
    /// does not admit comes back in [`SubmitError::RateLimited`] when the key was over its
    /// limit, and in [`SubmitError::RateLimiterUnavailable`] with the cause when Redis could
    /// not be asked and the limiter fails closed (both are
    /// [`is_rate_limited`](super::SubmitError::is_rate_limited)); one a limiter that fails
    /// open admits unchecked goes ahead. An admission it granted is spent even when the pool
    /// then refuses the task (full, closed, or over an in-process limit). Other submits do not
    /// consult it: they have no key.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millpond::exec::WorkerPool;
    /// # use millpond::redis::{RateLimiter, RedisPool};
    /// # use std::time::Duration;
    /// # async fn run(redis: RedisPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let per_user = RateLimiter::builder(redis).rate(10, Duration::from_secs(1)).build()?;
    /// let workers = WorkerPool::builder().shared_rate_limit_per_key(per_user).build()?;
    /// let user = 42;
    /// match workers.submit_keyed(user, async { /* the user's work */ }).await {
    ///     Err(refused) if refused.is_rate_limited() => { /* 429 */ }
    ///     other => other?.await?,
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`SubmitError::RateLimited`]: super::SubmitError::RateLimited
    /// [`SubmitError::RateLimiterUnavailable`]: super::SubmitError::RateLimiterUnavailable
    #[cfg(feature = "redis")]
    pub fn shared_rate_limit_per_key(mut self, limiter: crate::redis::RateLimiter) -> Self {
        self.shared_rate_limit_per_key = Some(limiter);
        self
    }

    /// Drops a task that waited in the queue longer than this, when a worker reaches it, instead
    /// of running it late; its handle resolves to [`TaskError::Shed`](super::TaskError::Shed).
    /// Off by default.
    pub fn max_queue_wait(mut self, max_wait: Duration) -> Self {
        self.max_queue_wait = Some(max_wait);
        self
    }

    /// Lets at most `limiter`'s limit of tasks run at once, and moves that limit with how they
    /// go: a worker takes room under the limit before it starts a task, and the task's run
    /// time is the latency the limiter judges (a panic counts as a failure). Set more workers
    /// than the limit can reach, or the workers bound the tasks first. A task the limiter turns
    /// away (its queue full, its wait past the limiter's timeout, or stale in a standing queue)
    /// is shed: its handle resolves to [`TaskError::Shed`](super::TaskError::Shed). Off by
    /// default.
    ///
    /// ```
    /// use millpond::exec::WorkerPool;
    /// use millpond::limit::{AdaptiveLimiter, Gradient2};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = AdaptiveLimiter::builder(Gradient2::new().min_limit(4).max_limit(64)).build()?;
    /// let pool = WorkerPool::builder().workers(64).adaptive_limit(limiter.clone()).build()?;
    /// pool.submit(async { /* a call to the backend */ }).await?.await?;
    /// assert_eq!(limiter.status().succeeded, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn adaptive_limit(mut self, limiter: crate::limit::AdaptiveLimiter) -> Self {
        self.adaptive_limit = Some(limiter);
        self
    }

    /// Counts the pool as overloaded while more than `queued` tasks wait: low-priority tasks
    /// ([`Priority::Low`](super::Priority::Low)) are then refused at submit and shed from the
    /// queue, until it is back under. Off by default.
    pub fn overload_queue_len(mut self, queued: usize) -> Self {
        self.overload.queue_len = Some(queued);
        self
    }

    /// Counts the pool as overloaded while the queue-wait p99 is above `wait`: while more than
    /// 1 % of the tasks workers started in the last 100–200 ms had waited longer. The same effect
    /// as [`overload_queue_len`](Self::overload_queue_len). Off by default.
    pub fn overload_queue_wait(mut self, wait: Duration) -> Self {
        self.overload.queue_wait = Some(wait);
        self
    }

    /// Counts the pool as overloaded while `cpu`'s smoothed usage is past `threshold` (a share
    /// in `(0, 1]`, such as the seed's 0.9): low-priority tasks are then refused at submit and
    /// shed from the queue, as with the other overload rules. Off by default.
    ///
    /// ```
    /// use millpond::exec::WorkerPool;
    /// use millpond::load::CpuSampler;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), millpond::BuildError> {
    /// let cpu = CpuSampler::builder().build()?;
    /// let pool = WorkerPool::builder().overload_cpu(cpu, 0.9).build()?;
    /// # drop(pool);
    /// # Ok(())
    /// # }
    /// ```
    pub fn overload_cpu(mut self, cpu: crate::load::CpuSampler, threshold: f64) -> Self {
        self.overload.cpu = Some((cpu, threshold));
        self
    }

    /// The worker pool's name (default `"millpond"`; must not be empty): the
    /// `millpond.worker_pool.name` attribute of its published metrics, and what
    /// [`WorkerPool::name`] returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::exec::WorkerPool;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let workers = WorkerPool::builder().workers(2).name("thumbnails").build()?;
    /// assert_eq!(workers.name(), "thumbnails");
    /// assert!(WorkerPool::builder().name("").build().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets every setting that `config` holds, and leaves the others as they are: a configuration
    /// file's settings on top of the code's defaults. Setters called after it override it.
    ///
    /// `balance`, `weights` and `stealing` configure per-worker queues: the scheduler `config`
    /// names, or else the one set in code. Given for the shared queue, or weights for a strategy
    /// without them, they make [`build`](Self::build) fail naming the key; `build` checks the
    /// values as it does those of the setters.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::config::WorkerPoolConfig;
    /// use millpond::exec::WorkerPool;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config: WorkerPoolConfig = toml::from_str("max_workers = 3")?;
    /// let workers = WorkerPool::builder().min_workers(1).apply(&config).build()?;
    /// assert_eq!(workers.stats().workers, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "serde")]
    pub fn apply(mut self, config: &crate::config::WorkerPoolConfig) -> Self {
        let crate::config::WorkerPoolConfig {
            workers,
            min_workers,
            max_workers,
            queue_capacity,
            scheduler,
            balance,
            weights,
            stealing,
            idle_timeout,
            rate_limit,
            rate_limit_per_key,
            max_queue_wait,
            overload_queue_len,
            overload_queue_wait,
            overload_cpu,
            adaptive_limit,
            name,
        } = config;
        if let Some(name) = name {
            self.name.clone_from(name);
        }
        if let Some(workers) = *workers {
            self = self.workers(workers);
        }
        if min_workers.is_some() {
            self.min_workers = *min_workers;
        }
        if max_workers.is_some() {
            self.max_workers = *max_workers;
        }
        if let Some(capacity) = *queue_capacity {
            self.queue_capacity = Some(capacity);
        }
        match configured_scheduler(
            &self.scheduler,
            *scheduler,
            *balance,
            weights.as_ref(),
            *stealing,
        ) {
            Ok(scheduler) => self.scheduler = scheduler,
            Err(rejected) => {
                self.rejected.get_or_insert(rejected);
            }
        }
        if let Some(idle_timeout) = *idle_timeout {
            self.idle_timeout = idle_timeout;
        }
        if let Some(limit) = rate_limit {
            self.rate_limit = Some((limit.per_second, limit.burst));
        }
        if let Some(limit) = rate_limit_per_key {
            self.rate_limit_per_key = Some((limit.per_second, limit.burst));
        }
        if max_queue_wait.is_some() {
            self.max_queue_wait = *max_queue_wait;
        }
        if overload_queue_len.is_some() {
            self.overload.queue_len = *overload_queue_len;
        }
        if overload_queue_wait.is_some() {
            self.overload.queue_wait = *overload_queue_wait;
        }
        if let Some(threshold) = *overload_cpu {
            match &mut self.overload.cpu {
                Some((_, set_in_code)) => *set_in_code = threshold,
                None => self.configured_cpu = Some(threshold),
            }
        }
        if let Some(limit) = adaptive_limit {
            match limit.build() {
                Ok(limiter) => self.adaptive_limit = Some(limiter),
                Err(rejected) => {
                    self.rejected.get_or_insert(rejected.nested_in("adaptive_limit"));
                }
            }
        }
        self
    }

    /// Checks the configuration and starts `min_workers` workers on the current tokio runtime.
    ///
    /// If that runtime shuts down while the pool lives on (a `static` pool shared by
    /// `#[tokio::test]`s, each with a runtime of its own), the workers die with it and the next
    /// submit starts them again on its own runtime. Those already waiting do not hang: the
    /// workers restart at once on the runtime of a recent submit that waited for room, if one is
    /// still running; otherwise waiting submits, and tasks awaiting the handle of a queued task,
    /// are woken and restart them on their own runtime. A task still running when the runtime
    /// went was dropped with it: its handle resolves to
    /// [`TaskError::Aborted`](super::TaskError::Aborted).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field when a worker count or the queue capacity is 0,
    /// `max_workers` is above 2,097,151, `min_workers > max_workers`, per-worker queues are asked to be elastic or given fewer
    /// queue slots than workers, or a weighted strategy's weights do not match the workers or
    /// are all zero (field `weights`), or a rate limit is out of range (see
    /// [`rate_limit`](Self::rate_limit)). [`BuildError::is_no_runtime`] when called outside a
    /// tokio runtime.
    /// With the `serde` feature, also `balance`, `weights` or `stealing` when a configuration
    /// given to `apply` set them for a scheduler or strategy that takes none, and
    /// `adaptive_limit.<field>` for a limiter setting its [`build`](crate::config::AdaptiveLimitConfig::build)
    /// refuses.
    #[cfg_attr(
        not(feature = "serde"),
        allow(unused_mut, reason = "only a configured CPU threshold changes it")
    )]
    pub fn build(mut self) -> Result<WorkerPool, BuildError> {
        #[cfg(feature = "serde")]
        if let Some(rejected) = &self.rejected {
            return Err(rejected.clone());
        }
        #[cfg(feature = "serde")]
        if let Some(threshold) = self.configured_cpu.take() {
            let cpu = crate::load::CpuSampler::builder().build()?;
            self.overload.cpu = Some((cpu, threshold));
        }
        let default_workers = std::thread::available_parallelism().map_or(4, usize::from);
        let max_workers = self.max_workers.or(self.min_workers).unwrap_or(default_workers);
        let min_workers = self.min_workers.unwrap_or(max_workers);
        if max_workers == 0 {
            return Err(BuildError::invalid("max_workers", 0, "a pool needs at least one worker"));
        }
        if max_workers > MAX_WORKERS {
            return Err(BuildError::invalid(
                "max_workers",
                max_workers,
                format!("a pool has at most {MAX_WORKERS} workers"),
            ));
        }
        if min_workers > max_workers {
            return Err(BuildError::invalid(
                "min_workers",
                min_workers,
                format!("cannot exceed max_workers ({max_workers})"),
            ));
        }
        if self.name.is_empty() {
            return Err(BuildError::invalid("name", &self.name, "must not be empty"));
        }
        let queue_capacity = self.queue_capacity.unwrap_or(match self.scheduler {
            Scheduler::SharedQueue => DEFAULT_QUEUE_CAPACITY,
            Scheduler::PerWorker { .. } => DEFAULT_QUEUE_CAPACITY.max(max_workers),
        });
        if queue_capacity == 0 {
            return Err(BuildError::invalid(
                "queue_capacity",
                0,
                "must be at least 1: a submit needs somewhere to wait for a worker",
            ));
        }
        let (queues, elastic) = match &self.scheduler {
            Scheduler::SharedQueue => (Queues::shared(queue_capacity), true),
            Scheduler::PerWorker { balance, stealing } => {
                if min_workers != max_workers {
                    return Err(BuildError::invalid(
                        "min_workers",
                        min_workers,
                        format!(
                            "per-worker queues need a fixed number of workers \
                             (max_workers is {max_workers}); use Scheduler::SharedQueue \
                             for an elastic pool"
                        ),
                    ));
                }
                if queue_capacity < max_workers {
                    return Err(BuildError::invalid(
                        "queue_capacity",
                        queue_capacity,
                        format!(
                            "per-worker queues split the capacity between {max_workers} \
                             workers, so it must be at least that"
                        ),
                    ));
                }
                let balancer = balance.build(max_workers, "weights")?;
                let tracks_loads = balancer.reads_loads();
                let weighted =
                    matches!(balance, Balance::WeightedRoundRobin(_) | Balance::WeightedRandom(_));
                (
                    Queues::per_worker(
                        max_workers,
                        queue_capacity,
                        balancer,
                        tracks_loads,
                        *stealing,
                        weighted,
                    ),
                    false,
                )
            }
        };
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| BuildError::no_runtime())?;
        let admission = self.admission(queue_capacity)?;
        let inner = Inner::start(Settings {
            queues,
            min_workers: if elastic { min_workers } else { max_workers },
            max_workers,
            elastic,
            idle_timeout: self.idle_timeout,
            panic_hook: self.panic_hook,
            runtime,
            admission,
            name: self.name,
        });
        Ok(WorkerPool::from_inner(inner))
    }
}

impl WorkerPoolBuilder {
    /// Checks the admission settings against the queue capacity `build()` settled on and
    /// checked, and builds them.
    fn admission(&self, queue_capacity: usize) -> Result<Admission, BuildError> {
        let rate = match self.rate_limit {
            Some((per_second, burst)) => {
                Some(TokenBucket::new(Shape::new(per_second, burst, "rate_limit")?))
            }
            None => None,
        };
        let per_key = match self.rate_limit_per_key {
            Some((per_second, burst)) => {
                Some(KeyedBuckets::new(Shape::new(per_second, burst, "rate_limit_per_key")?))
            }
            None => None,
        };
        if let Some(max_wait) = self.max_queue_wait.filter(|wait| wait.is_zero()) {
            return Err(BuildError::invalid("max_queue_wait", max_wait, "must be above 0"));
        }
        if let Some(queued) = self.overload.queue_len {
            if queued == 0 || queued >= queue_capacity {
                return Err(BuildError::invalid(
                    "overload_queue_len",
                    queued,
                    format!(
                        "must be at least 1 and below queue_capacity ({}), or the pool is \
                         always or never overloaded",
                        queue_capacity
                    ),
                ));
            }
        }
        if let Some(wait) = self.overload.queue_wait {
            if wait.is_zero() {
                return Err(BuildError::invalid("overload_queue_wait", wait, "must be above 0"));
            }
            if self.max_queue_wait.is_some_and(|max_wait| wait >= max_wait) {
                return Err(BuildError::invalid(
                    "overload_queue_wait",
                    wait,
                    "must be below max_queue_wait, or every task is shed before the pool \
                     counts as overloaded",
                ));
            }
        }
        if let Some((_, threshold)) = &self.overload.cpu {
            if !(*threshold > 0.0 && *threshold <= 1.0) {
                return Err(BuildError::invalid("overload_cpu", *threshold, "must be in (0, 1]"));
            }
        }
        let mut admission =
            Admission::new(rate, per_key, self.overload.clone(), self.max_queue_wait);
        admission.limiter = self.adaptive_limit.clone();
        #[cfg(feature = "redis")]
        {
            admission.shared_per_key = self.shared_rate_limit_per_key.clone();
        }
        Ok(admission)
    }
}

/// The scheduler a configuration asks for over `current`, the one set in code.
#[cfg(feature = "serde")]
fn configured_scheduler(
    current: &Scheduler,
    kind: Option<crate::config::SchedulerKind>,
    balance: Option<crate::config::BalanceKind>,
    weights: Option<&Vec<u32>>,
    stealing: Option<bool>,
) -> Result<Scheduler, BuildError> {
    use crate::config::SchedulerKind;

    let per_worker = match kind {
        Some(SchedulerKind::SharedQueue) => false,
        Some(SchedulerKind::PerWorker) => true,
        None => matches!(current, Scheduler::PerWorker { .. }),
    };
    if !per_worker {
        let only_per_worker = |field, value: &dyn fmt::Debug| {
            Err(BuildError::invalid(
                field,
                value,
                "only per-worker queues take it: set `scheduler` to \"per_worker\"",
            ))
        };
        if let Some(balance) = balance {
            return only_per_worker("balance", &balance);
        }
        if let Some(weights) = weights {
            return only_per_worker("weights", weights);
        }
        if let Some(stealing) = stealing {
            return only_per_worker("stealing", &stealing);
        }
        return Ok(Scheduler::SharedQueue);
    }
    let (current_balance, current_stealing) = match current {
        Scheduler::PerWorker { balance, stealing } => (balance.clone(), *stealing),
        Scheduler::SharedQueue => (Balance::RoundRobin, false),
    };
    let balance = crate::config::configured_balance(&current_balance, balance, weights)?;
    Ok(Scheduler::PerWorker { balance, stealing: stealing.unwrap_or(current_stealing) })
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use std::time::Duration;

    use super::{Scheduler, WorkerPoolBuilder};
    use crate::balance::Balance;
    use crate::config::WorkerPoolConfig;

    fn applied(toml: &str) -> WorkerPoolBuilder {
        let config: WorkerPoolConfig = toml::from_str(toml).unwrap();
        WorkerPoolBuilder::default().apply(&config)
    }

    #[test]
    fn apply_sets_every_setting_a_config_holds() {
        let builder = applied(
            r#"
            min_workers = 2
            max_workers = 6
            queue_capacity = 64
            idle_timeout = "3s"
            rate_limit = { per_second = 50.0, burst = 5 }
            rate_limit_per_key = { per_second = 2.5, burst = 1 }
            max_queue_wait = "4s"
            overload_queue_len = 32
            overload_queue_wait = "1s"
            name = "thumbnails"
            "#,
        );
        assert_eq!(builder.name, "thumbnails");
        assert_eq!(builder.min_workers, Some(2));
        assert_eq!(builder.max_workers, Some(6));
        assert_eq!(builder.queue_capacity, Some(64));
        assert!(matches!(builder.scheduler, Scheduler::SharedQueue));
        assert_eq!(builder.idle_timeout, Duration::from_secs(3));
        assert_eq!(builder.rate_limit, Some((50.0, 5)));
        assert_eq!(builder.rate_limit_per_key, Some((2.5, 1)));
        assert_eq!(builder.max_queue_wait, Some(Duration::from_secs(4)));
        assert_eq!(builder.overload.queue_len, Some(32));
        assert_eq!(builder.overload.queue_wait, Some(Duration::from_secs(1)));
        assert!(builder.rejected.is_none());
    }

    #[test]
    fn the_scheduler_is_read_from_its_four_keys() {
        let builder = applied(
            r#"
            workers = 3
            scheduler = "per_worker"
            balance = "weighted_round_robin"
            weights = [1, 2, 3]
            stealing = true
            "#,
        );
        assert_eq!((builder.min_workers, builder.max_workers), (Some(3), Some(3)));
        let Scheduler::PerWorker { balance: Balance::WeightedRoundRobin(weights), stealing } =
            &builder.scheduler
        else {
            panic!("{:?}", builder.scheduler);
        };
        assert_eq!((weights.as_slice(), *stealing), ([1, 2, 3].as_slice(), true));

        // Without `scheduler`, the keys adjust the per-worker scheduler set in code.
        let config: WorkerPoolConfig = toml::from_str("balance = \"power_of_two\"").unwrap();
        let builder = WorkerPoolBuilder::default()
            .scheduler(Scheduler::per_worker(Balance::KeyHash).stealing(true))
            .apply(&config);
        assert!(matches!(
            builder.scheduler,
            Scheduler::PerWorker { balance: Balance::PowerOfTwo, stealing: true }
        ));
    }

    #[test]
    fn per_worker_keys_for_the_shared_queue_are_refused_naming_the_key() {
        for (toml, field) in [
            ("balance = \"random\"", "balance"),
            ("stealing = false", "stealing"),
            ("scheduler = \"shared_queue\"\nweights = [1]", "weights"),
            ("scheduler = \"per_worker\"\nbalance = \"random\"\nweights = [1]", "weights"),
        ] {
            let rejected = applied(toml).rejected.expect(toml);
            assert_eq!(rejected.field(), Some(field), "{rejected}");
        }
    }
}
