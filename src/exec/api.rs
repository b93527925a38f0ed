//! The public [`WorkerPool`] type.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::admission::Priority;
use super::builder::WorkerPoolBuilder;
use super::error::{Degraded, SubmitError};
use super::handle::{TaskHandle, tracked};
use super::inner::{Inner, Refused};
use super::job::Job;
use super::queues::Reserved;
use super::stats::Stats;
use super::worker;
use super::worker_count::MAX_WORKERS;
use crate::BuildError;
use crate::sync::Arc;
use crate::trace::Outcome;

/// A bounded pool of workers running submitted futures: the goroutine pool of tokio.
///
/// At most `max_workers` tasks run at once and at most `queue_capacity` wait, so a burst of work
/// waits (or is refused) instead of exhausting memory or the service behind it. Each worker is a
/// tokio task that runs one submitted future at a time; a panicking task is caught and reported,
/// and its worker carries on.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use millpond::balance::Balance;
/// use millpond::exec::{Scheduler, WorkerPool};
///
/// let pool = WorkerPool::builder()
///     .workers(8)
///     .queue_capacity(1024)
///     .scheduler(Scheduler::per_worker(Balance::PowerOfTwo))
///     .build()?;
/// let handle = pool.submit(async { 6 * 7 }).await?; // waits for queue space
/// assert_eq!(handle.await?, 42);                     // Err if it panicked or was aborted
/// pool.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct WorkerPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool").field("stats", &self.stats()).finish()
    }
}

impl WorkerPool {
    /// Starts configuring a pool.
    pub fn builder() -> WorkerPoolBuilder {
        WorkerPoolBuilder::default()
    }

    /// The shared state, for the unit test of a worker's size.
    #[cfg(all(test, not(millpond_loom)))]
    pub(crate) fn inner_for_probe(&self) -> &Arc<Inner> {
        &self.inner
    }

    pub(super) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Queues a task, waiting for room while the queue is full, and returns its handle.
    ///
    /// # Errors
    ///
    /// The task comes back in [`SubmitError::RateLimited`] at once, before any wait for room,
    /// when the pool's [`rate_limit`](super::WorkerPoolBuilder::rate_limit) refuses it; in
    /// [`SubmitError::Closed`] when the pool is shut down; and in
    /// [`SubmitError::WouldDeadlock`] when a task of this pool would wait for room in it. If the
    /// runtime the pool was built on has shut down, the workers restart on the caller's runtime
    /// (and run what was left queued); [`SubmitError::RuntimeGone`] when there is none.
    ///
    /// # Cancel safety
    ///
    /// Cancelling the wait drops the task unqueued and gives its place in line to the next
    /// submitter. The rate-limit token the submit took before it waited is not given back (nor
    /// is one taken by a submit that then fails).
    pub async fn submit<F>(&self, task: F) -> Result<TaskHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.submit_with(Priority::High, task).await
    }

    /// Runs `task` at `priority` and returns its output; if the pool refuses it (overloaded, full,
    /// over a rate limit, closed) or sheds it before it starts, runs `fallback` instead, with
    /// the reason: the degraded path a service takes under load (a cached answer, a default,
    /// a smaller query).
    ///
    /// ```
    /// use millpond::exec::{Priority, WorkerPool};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = WorkerPool::builder().build()?;
    /// let answer = pool
    ///     .run_or_else(Priority::Low, async { 42 }, |_why| async { 0 })
    ///     .await?;
    /// assert_eq!(answer, 42);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`TaskError::Panicked`](super::TaskError::Panicked) or
    /// [`TaskError::Aborted`](super::TaskError::Aborted) when the task ran and did not finish:
    /// those are not load, and the fallback does not hide them.
    ///
    /// # Cancel safety
    ///
    /// As `submit` while it waits for room; once the task is queued, dropping this future
    /// leaves the task to run (its output is dropped), as dropping a handle does.
    pub async fn run_or_else<F, Fb, G>(
        &self,
        priority: Priority,
        task: F,
        fallback: Fb,
    ) -> Result<F::Output, super::TaskError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        Fb: FnOnce(Degraded) -> G,
        G: Future<Output = F::Output>,
    {
        match self.submit_with(priority, task).await {
            Ok(handle) => match handle.await {
                Err(super::TaskError::Shed) => Ok(fallback(Degraded::Shed).await),
                finished => finished,
            },
            Err(refused) => Ok(fallback(Degraded::Refused(refused.split().1)).await),
        }
    }

    /// Like [`submit`](Self::submit), for a task of `priority`. While the pool is overloaded
    /// (see [`WorkerPoolBuilder::overload_queue_len`](super::WorkerPoolBuilder::overload_queue_len)),
    /// low-priority tasks are refused, and those already queued are shed when a worker reaches
    /// them; normal-priority ones too once the pool is twice over its limits (see
    /// [`Priority`]); high-priority tasks never are.
    ///
    /// # Errors
    ///
    /// As `submit`, plus [`SubmitError::Overloaded`] for a task the pool's degradation level
    /// refuses.
    ///
    /// # Cancel safety
    ///
    /// As `submit`.
    pub async fn submit_with<F>(
        &self,
        priority: Priority,
        task: F,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let traced = self.submit_span();
        let lane = self.inner.reserve(None, priority, None).await;
        self.enqueue(traced, lane, task, self.with_handle(false, priority))
    }

    /// Like [`try_submit`](Self::try_submit), for a task of `priority`.
    ///
    /// # Errors
    ///
    /// As `try_submit`, plus [`SubmitError::Overloaded`] for a low-priority task under overload.
    pub fn try_submit_with<F>(
        &self,
        priority: Priority,
        task: F,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let traced = self.submit_span();
        let lane = self.inner.try_reserve(None, priority);
        self.enqueue(traced, lane, task, self.with_handle(false, priority))
    }

    /// Queues a task if there is room right now; never waits.
    ///
    /// # Errors
    ///
    /// The task comes back in [`SubmitError::Full`], [`SubmitError::Closed`], or
    /// [`SubmitError::RateLimited`] when the pool's
    /// [`rate_limit`](super::WorkerPoolBuilder::rate_limit) refuses it; in
    /// [`SubmitError::RuntimeGone`] when the pool's runtime has shut down and this call runs
    /// outside any tokio runtime (inside one, the workers restart there).
    pub fn try_submit<F>(&self, task: F) -> Result<TaskHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.try_submit_with(Priority::High, task)
    }

    /// Like [`submit`](Self::submit), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As `submit`, plus [`SubmitError::Timeout`] when no room came in time.
    ///
    /// # Cancel safety
    ///
    /// As `submit`.
    pub async fn submit_timeout<F>(
        &self,
        task: F,
        timeout: Duration,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let traced = self.submit_span();
        let lane = self.inner.reserve(None, Priority::High, Some(timeout)).await;
        self.enqueue(traced, lane, task, self.with_handle(false, Priority::High))
    }

    /// Queues a task that must run after every earlier task with the same `key` (a user id, an
    /// account, a connection). With per-worker queues all tasks of a key go to one worker, in
    /// order, and are never stolen; while that worker's queue is full the submit waits rather
    /// than reorder. With the shared queue, keys are not ordered (tasks start in submission
    /// order but may overlap): use per-worker queues when order matters.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit), plus [`SubmitError::RateLimited`], also at once, when this
    /// key's [`rate_limit_per_key`](super::WorkerPoolBuilder::rate_limit_per_key) bucket is
    /// empty, or (with the `redis` feature) when the
    /// [`shared_rate_limit_per_key`](super::WorkerPoolBuilder::shared_rate_limit_per_key)
    /// limiter refuses it: that check awaits a round trip to Redis, within the limiter's
    /// timeout. When Redis could not answer and the limiter fails closed, the task comes back
    /// in `SubmitError::RateLimiterUnavailable` instead, with the cause.
    ///
    /// # Cancel safety
    ///
    /// As `submit`.
    pub async fn submit_keyed<F>(
        &self,
        key: u64,
        task: F,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let traced = self.submit_span();
        #[cfg(feature = "redis")]
        if let Err(cause) = self.inner.admission.admit_shared(key).await {
            self.inner.reject(Refused::RateLimited);
            let refused = match cause {
                Some(cause) => SubmitError::RateLimiterUnavailable(task, cause),
                None => SubmitError::RateLimited(task),
            };
            return Self::traced(traced, Err(refused));
        }
        let lane = self.inner.reserve(Some(key), Priority::High, None).await;
        self.enqueue(traced, lane, task, self.with_handle(true, Priority::High))
    }

    /// Queues a task without a handle, waiting for room: the cheapest way to run a task. Its
    /// output is dropped; a panic is counted and goes to the panic hook.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Cancel safety
    ///
    /// As `submit`.
    pub async fn execute<F>(&self, task: F) -> Result<(), SubmitError<F>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let traced = self.submit_span();
        let lane = self.inner.reserve(None, Priority::High, None).await;
        self.enqueue(traced, lane, task, |task| (Job::new(task, false), ()))
    }

    /// Like [`execute`](Self::execute), but never waits.
    ///
    /// # Errors
    ///
    /// As [`try_submit`](Self::try_submit): the task comes back in [`SubmitError::Full`],
    /// [`SubmitError::Closed`], [`SubmitError::RateLimited`], or [`SubmitError::RuntimeGone`].
    pub fn try_execute<F>(&self, task: F) -> Result<(), SubmitError<F>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let traced = self.submit_span();
        let lane = self.inner.try_reserve(None, Priority::High);
        self.enqueue(traced, lane, task, |task| (Job::new(task, false), ()))
    }

    /// Like [`submit_keyed`](Self::submit_keyed), but never waits: the task is queued if its
    /// key's worker has room right now (per-worker queues) or the queue has (shared queue).
    ///
    /// # Errors
    ///
    /// As [`try_submit`](Self::try_submit), plus [`SubmitError::RateLimited`] when this key's
    /// [`rate_limit_per_key`](super::WorkerPoolBuilder::rate_limit_per_key) bucket is empty.
    /// A full queue of the key's worker gives [`SubmitError::Full`] even while other workers
    /// have room: a keyed task never goes to another worker.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::balance::Balance;
    /// use millpond::exec::{Scheduler, SubmitError, WorkerPool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = WorkerPool::builder()
    ///     .workers(2)
    ///     .queue_capacity(2)
    ///     .scheduler(Scheduler::per_worker(Balance::RoundRobin))
    ///     .build()?;
    /// let account = 42;
    /// let first = pool.try_submit_keyed(account, async { "debit" })?;
    /// // The account's worker has room for one task: the next one comes back.
    /// match pool.try_submit_keyed(account, async { "credit" }) {
    ///     Err(SubmitError::Full(task)) => assert_eq!(task.await, "credit"),
    ///     other => panic!("expected a full queue, got {}", other.is_ok()),
    /// }
    /// assert_eq!(first.await?, "debit");
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_submit_keyed<F>(
        &self,
        key: u64,
        task: F,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let traced = self.submit_span();
        let lane = self.inner.try_reserve(Some(key), Priority::High);
        self.enqueue(traced, lane, task, self.with_handle(true, Priority::High))
    }

    /// Like [`submit_keyed`](Self::submit_keyed), waiting at most `timeout` for room in the
    /// key's queue.
    ///
    /// # Errors
    ///
    /// As `submit_keyed`, plus [`SubmitError::Timeout`] when no room came in time.
    ///
    /// # Cancel safety
    ///
    /// As [`submit`](Self::submit).
    pub async fn submit_keyed_timeout<F>(
        &self,
        key: u64,
        task: F,
        timeout: Duration,
    ) -> Result<TaskHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let traced = self.submit_span();
        let lane = self.inner.reserve(Some(key), Priority::High, Some(timeout)).await;
        self.enqueue(traced, lane, task, self.with_handle(true, Priority::High))
    }

    /// Builds a tracked job and its handle; the job can tell the handle it was shed when the
    /// pool may shed.
    fn with_handle<F>(
        &self,
        keyed: bool,
        priority: Priority,
    ) -> impl FnOnce(F) -> (Job, TaskHandle<F::Output>) + use<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let sheddable = self.inner.admission.may_shed();
        let pool = self.inner.id;
        move |task| {
            let (task, handle) = tracked(task, pool);
            let mut job = Job::of(task, keyed);
            job.priority = priority;
            if sheddable {
                job.shed = Some(handle.shed_hook());
            }
            (job, handle)
        }
    }

    /// The `worker_pool.submit` span of one submit, when a subscriber wants it (`crate::trace`).
    fn submit_span(&self) -> Option<Outcome> {
        let span = tracing::trace_span!(
            "worker_pool.submit",
            pool = %self.inner.name,
            outcome = tracing::field::Empty,
        );
        (!span.is_disabled()).then(|| Outcome::new(span))
    }

    /// Queues `task` into the room `lane` reserved, as the job `make` builds from it; gives the
    /// task back, untouched, when the reservation was refused. Ends the submit's span.
    fn enqueue<F, R>(
        &self,
        traced: Option<Outcome>,
        lane: Result<Reserved, Refused>,
        task: F,
        make: impl FnOnce(F) -> (Job, R),
    ) -> Result<R, SubmitError<F>> {
        let submitted = match lane {
            Ok(lane) => {
                let (job, result) = make(task);
                self.inner.commit(lane, job);
                Ok(result)
            }
            Err(why) => Err(why.with(task)),
        };
        Self::traced(traced, submitted)
    }

    /// Ends the submit's span, if it has one, with the outcome of `submitted`.
    fn traced<F, R>(
        traced: Option<Outcome>,
        submitted: Result<R, SubmitError<F>>,
    ) -> Result<R, SubmitError<F>> {
        if let Some(traced) = traced {
            traced.finish(submitted.as_ref().map_or_else(SubmitError::outcome, |_| "ok"));
        }
        submitted
    }

    /// Changes the number of workers.
    ///
    /// * **Shared queue**: the pool's `max_workers` becomes `max_workers`, and its minimum at
    ///   most that. New workers start at once when the minimum rises; surplus workers exit after
    ///   their current task, idle ones at once.
    /// * **Per-worker queues**: the pool has `max_workers` workers, each with its queue, from
    ///   now on. A grow starts the new workers at once and the balancer spreads new tasks over
    ///   them; a shrink retires the last workers: their queues take no new tasks, and each runs
    ///   what its queue still holds before it exits, so no queued task is lost. The capacity is
    ///   split again between the queues in use, but a queue never holds more than it was made
    ///   with, so a pool shrunk below its built size queues fewer tasks than `queue_capacity`.
    ///
    /// **Keyed order across a resize.** A key's worker is chosen by rendezvous hashing
    /// ([`KeyHash`](crate::balance::KeyHash)), so a resize moves only the keys whose worker
    /// changes (about one in `max(old, new)` per worker added or removed). Until every keyed task
    /// queued before the resize has finished, a [`submit_keyed`](Self::submit_keyed) for a
    /// moved key waits (and [`try_submit_keyed`](Self::try_submit_keyed) gets
    /// [`SubmitError::Full`]), so a key's tasks still run one after the other in submission
    /// order; keys that did not move go on at once. A resize asked for while that wait is on
    /// takes effect when it ends.
    ///
    /// After [`shutdown`](Self::shutdown), a resize changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::balance::Balance;
    /// use millpond::exec::{Scheduler, WorkerPool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = WorkerPool::builder()
    ///     .workers(2)
    ///     .scheduler(Scheduler::per_worker(Balance::PowerOfTwo))
    ///     .build()?;
    /// pool.resize(8)?;
    /// assert_eq!(pool.stats().workers, 8);
    /// let handle = pool.submit_keyed(42, async { "in order" }).await?;
    /// assert_eq!(handle.await?, "in order");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming `max_workers` when it is 0 or above 2,097,151, or when the pool
    /// uses per-worker queues with a weighted strategy, whose weights are one per worker.
    pub fn resize(&self, max_workers: usize) -> Result<(), BuildError> {
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
        if let Some(why) = self.inner.fixed() {
            return Err(BuildError::invalid("max_workers", max_workers, why));
        }
        self.inner.resize(max_workers);
        Ok(())
    }

    /// Stops taking tasks and waits until every queued task has run and every worker exited.
    /// Submits waiting for room fail with [`SubmitError::Closed`].
    ///
    /// Called from a task of this pool, it stops intake and returns without waiting (the caller
    /// is one of the workers it would wait for).
    ///
    /// # Cancel safety
    ///
    /// Cancelling the wait does not undo the shutdown; the workers finish in the background.
    pub async fn shutdown(&self) {
        self.inner.close();
        if !worker::in_pool(self.inner.id) {
            self.inner.all_exited().await;
        }
    }

    /// Like [`shutdown`](Self::shutdown), but after `timeout` the tasks still queued are dropped
    /// and the running ones aborted; their handles resolve to
    /// [`TaskError::Aborted`](super::TaskError::Aborted). Returns `true` when everything finished
    /// in time.
    ///
    /// # Cancel safety
    ///
    /// As `shutdown`.
    pub async fn shutdown_timeout(&self, timeout: Duration) -> bool {
        self.inner.close();
        if worker::in_pool(self.inner.id) {
            return false;
        }
        if tokio::time::timeout(timeout, self.inner.all_exited()).await.is_ok() {
            return true;
        }
        drop(self.inner.queues.kill());
        self.inner.abort_workers();
        self.inner.all_exited().await;
        false
    }

    /// Whether the pool stopped taking tasks.
    pub fn is_shut_down(&self) -> bool {
        self.inner.is_closed()
    }

    /// The worker pool's name, set with
    /// [`WorkerPoolBuilder::name`](super::WorkerPoolBuilder::name) (`"millpond"` by default).
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::exec::WorkerPool;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let workers = WorkerPool::builder().workers(1).build()?;
    /// assert_eq!(workers.name(), "millpond");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Sends the worker pool's figures to the installed [`metrics`] recorder (the `metrics`
    /// feature), each with the attribute `millpond.worker_pool.name` set to [`name`](Self::name).
    ///
    /// OpenTelemetry has no names for worker pools; these follow the database-client style:
    ///
    /// | name | kind | from [`Stats`] |
    /// |---|---|---|
    /// | `millpond.worker_pool.workers`, `.busy`, `.idle`, `.queued` | gauges | `workers`, `busy`, `idle`, `queued` |
    /// | `millpond.worker_pool.completed`, `.panicked`, `.rejected`, `.shed` | counters | the same fields |
    /// | `millpond.worker_pool.queue_wait`, `.run_time` | histograms, seconds | `queue_wait`, `run_time` |
    ///
    /// As with [`Pool::publish_metrics`](crate::pool::Pool::publish_metrics), nothing is
    /// recorded per task: a publish reads [`stats`](Self::stats), sets the gauges, and sends the
    /// counters and the histograms only what changed since the previous publish; each histogram
    /// value is its bucket's middle (within 25%). Figures reach the recorder only when this runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::exec::WorkerPool;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let workers = WorkerPool::builder().workers(1).name("thumbnails").build()?;
    /// workers.submit(async {}).await?.await?;
    /// workers.publish_metrics();
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        super::publish::publish(self, &self.inner.name, &self.inner.published);
    }

    /// A snapshot of the workers, queues and counters.
    pub fn stats(&self) -> Stats {
        let lanes = self.inner.queues.lane_count();
        let occupancy: Vec<(usize, usize)> =
            (0..lanes).map(|lane| self.inner.queues.lane(lane).occupancy()).collect();
        let queued: usize = occupancy.iter().map(|(queued, _)| *queued).sum();
        // Lanes a shrink retired count in `queued` while they drain, not in the list.
        let active = self.inner.queues.active_lanes().min(lanes);
        let queued_per_worker: Vec<usize> =
            occupancy[..active].iter().map(|(queued, _)| *queued).collect();
        let idle: usize = occupancy.iter().map(|(_, idle)| *idle).sum();
        let workers = self.inner.live();
        let totals = self.inner.shards.merged();
        Stats {
            workers,
            degradation: self.inner.admission.degradation(|| self.inner.queues.queued()),
            busy: workers.saturating_sub(idle),
            idle: idle.min(workers),
            queued,
            queued_per_worker: if active > 1 { queued_per_worker } else { Vec::new() },
            completed: totals.completed,
            panicked: totals.panicked,
            rejected: self.inner.rejected(),
            shed: self.inner.admission.shed_count(),
            queue_wait: totals.queue_wait,
            run_time: totals.run_time,
        }
    }
}

impl Drop for WorkerPool {
    /// Stops intake; the workers finish the queued tasks in the background and exit.
    fn drop(&mut self) {
        self.inner.close();
    }
}
