//! The public limiter: admission, waiting, permits and their outcomes.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::algorithm::Outcome;
use super::builder::AdaptiveLimiterBuilder;
use super::engine::{Cell, Engine, Grant, Left, Verdict};
use super::error::Rejected;
use crate::sync::{Arc, Mutex};
use crate::wait_list::WaiterKey;

/// A concurrency limit that finds the backend's capacity by itself.
///
/// It admits a call while fewer than `limit` are in flight, and moves `limit` from the outcome
/// of each call, with the [`LimitAlgorithm`](super::LimitAlgorithm) it was built with. Callers
/// that find no room wait in a bounded queue, each until its deadline. Cloning gives another
/// handle to the same limiter.
///
/// ```
/// use millpond::limit::{AdaptiveLimiter, Gradient2, Outcome};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = AdaptiveLimiter::builder(Gradient2::new()).build()?;
///
/// // Around any call: a finished call is a success, a cancelled one a loss.
/// let rows = limiter.run(async { 42 }).await?;
///
/// // Or with a permit, to say how the call went.
/// let permit = limiter.acquire().await?;
/// match query().await {
///     Ok(_) => permit.success(),
///     Err(Error::Timeout) => permit.dropped(),
///     Err(Error::NotFound) => permit.failure(),
/// }
/// # assert_eq!(rows, 42);
/// # Ok(())
/// # }
/// # enum Error { Timeout, NotFound }
/// # async fn query() -> Result<u32, Error> { Ok(1) }
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveLimiter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    engine: Mutex<Engine>,
    queue_timeout: Duration,
}

/// A snapshot of a limiter, from [`AdaptiveLimiter::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterStatus {
    /// The current limit.
    pub limit: usize,
    /// Calls admitted and not yet ended.
    pub in_flight: usize,
    /// Callers waiting for room.
    pub queued: usize,
    /// Whether the queue is standing (CoDel), so that the newest waiters are served first and
    /// stale ones turned away.
    pub overloaded: bool,
    /// Calls admitted since the limiter was built.
    pub admitted: u64,
    /// Calls turned away because the queue was full.
    pub rejected_queue_full: u64,
    /// Callers whose wait timed out.
    pub rejected_timed_out: u64,
    /// Stale callers turned away from a standing queue.
    pub rejected_shed: u64,
    /// Calls that ended as [`Outcome::Success`].
    pub succeeded: u64,
    /// Calls that ended as [`Outcome::Failure`].
    pub failed: u64,
    /// Calls that ended as [`Outcome::Dropped`].
    pub dropped: u64,
    /// Permits dropped without an outcome (no sample taken).
    pub ignored: u64,
}

impl AdaptiveLimiter {
    /// A builder for a limiter moved by `algorithm`
    /// ([`Gradient2`](super::Gradient2) or [`Aimd`](super::Aimd)).
    pub fn builder(algorithm: impl super::LimitAlgorithm) -> AdaptiveLimiterBuilder {
        AdaptiveLimiterBuilder::new(Box::new(algorithm))
    }

    pub(crate) fn from_parts(engine: Engine, queue_timeout: Duration) -> Self {
        Self { shared: Arc::new(Shared { engine: Mutex::new(engine), queue_timeout }) }
    }

    /// Admits a call if there is room now and nobody is waiting for it; never waits.
    pub fn try_acquire(&self) -> Option<Permit> {
        let now = Instant::now();
        let grant = self.shared.engine.lock().try_admit(now)?;
        Some(Permit::new(self.shared.clone(), grant))
    }

    /// Admits a call, waiting in the queue for room if needed, until the queue timeout.
    ///
    /// # Errors
    ///
    /// [`Rejected::QueueFull`] at once when the limit is reached and the queue is full;
    /// [`Rejected::TimedOut`] when the queue timeout passes; [`Rejected::Shed`] when the
    /// queue is standing and this caller has waited too long to still be served.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a caller dropped while waiting leaves the queue, and if room had just been
    /// handed to it, the room passes to the next waiter.
    ///
    /// # Panics
    ///
    /// When it has to wait with a finite queue timeout outside a tokio runtime with its timer
    /// enabled (tokio's `sleep` panics there).
    pub async fn acquire(&self) -> Result<Permit, Rejected> {
        let queued_at = Instant::now();
        let mut evicted = Vec::new();
        let queued = {
            let mut engine = self.shared.engine.lock();
            if let Some(grant) = engine.try_admit(queued_at) {
                return Ok(Permit::new(self.shared.clone(), grant));
            }
            let cell = Arc::new(Cell::default());
            match engine.enqueue(cell.clone(), queued_at, &mut evicted) {
                Some(key) => Ok((key, cell)),
                None => Err(Rejected::QueueFull { limit: engine.limit() }),
            }
        };
        evicted.into_iter().for_each(std::task::Waker::wake);
        let (key, cell) = queued?;
        let mut waiting = Waiting { shared: &self.shared, key, cell, queued_at, done: false };
        let deadline = (self.shared.queue_timeout < Duration::MAX)
            .then(|| crate::time::after(queued_at, self.shared.queue_timeout));
        let mut sleep = pin!(deadline.map(tokio::time::sleep_until));
        poll_fn(|cx| {
            if let Some(verdict) = waiting.cell.poll(cx.waker()) {
                return Poll::Ready(waiting.conclude(verdict));
            }
            match sleep.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(waiting.time_out()),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// Runs `call` under the limit; when it finishes it counts as a
    /// [success](Outcome::Success) with its latency.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), without running `call`.
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting, nothing is counted. Dropped while `call` runs (a timeout around
    /// `run`, a caller that went away), the call counts as [dropped](Outcome::Dropped): a loss
    /// that lowers the limit. To decide otherwise, use [`acquire`](Self::acquire) and a
    /// [`Permit`], which counts nothing when dropped.
    pub async fn run<F: Future>(&self, call: F) -> Result<F::Output, Rejected> {
        self.run_classified(call, |_| Outcome::Success).await
    }

    /// Runs `call` under the limit as [`run`](Self::run) does, or, when the limiter turns it
    /// away, `fallback` with the reason: the degraded path (a cached answer, a default).
    ///
    /// ```
    /// # use millpond::limit::{AdaptiveLimiter, Aimd};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), millpond::BuildError> {
    /// let limiter = AdaptiveLimiter::builder(Aimd::new()).max_queue(0).build()?;
    /// let price = limiter.run_or_else(async { 42 }, |_rejected| async { 40 }).await;
    /// assert_eq!(price, 42);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Self::run).
    pub async fn run_or_else<F, Fb, G>(&self, call: F, fallback: Fb) -> F::Output
    where
        F: Future,
        Fb: FnOnce(Rejected) -> G,
        G: Future<Output = F::Output>,
    {
        match self.acquire().await {
            Ok(permit) => {
                let mut running = DropsAsLoss(Some(permit));
                let output = call.await;
                if let Some(permit) = running.0.take() {
                    permit.success();
                }
                output
            }
            Err(rejected) => fallback(rejected).await,
        }
    }

    /// Runs `call` under the limit, and counts the outcome `classify` gives its output.
    ///
    /// ```
    /// # use millpond::limit::{AdaptiveLimiter, Aimd, Outcome};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let limiter = AdaptiveLimiter::builder(Aimd::new()).build()?;
    /// let reply: Result<u32, &str> = limiter
    ///     .run_classified(async { Err("503") }, |reply| match reply {
    ///         Ok(_) => Outcome::Success,
    ///         Err(code) if *code == "503" => Outcome::Dropped,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .await?;
    /// # assert!(reply.is_err());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), without running `call`.
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Self::run).
    pub async fn run_classified<F, C>(&self, call: F, classify: C) -> Result<F::Output, Rejected>
    where
        F: Future,
        C: FnOnce(&F::Output) -> Outcome,
    {
        let permit = self.acquire().await?;
        let mut running = DropsAsLoss(Some(permit));
        let output = call.await;
        let outcome = classify(&output);
        if let Some(permit) = running.0.take() {
            permit.record(outcome);
        }
        Ok(output)
    }

    /// The limit, the calls in flight and waiting, and running totals.
    pub fn status(&self) -> LimiterStatus {
        let engine = self.shared.engine.lock();
        let counts = engine.counts();
        LimiterStatus {
            limit: engine.limit(),
            in_flight: engine.in_flight(),
            queued: engine.queued(),
            overloaded: engine.overloaded(),
            admitted: counts.admitted,
            rejected_queue_full: counts.queue_full,
            rejected_timed_out: counts.timed_out,
            rejected_shed: counts.shed,
            succeeded: counts.succeeded,
            failed: counts.failed,
            dropped: counts.dropped,
            ignored: counts.ignored,
        }
    }
}

/// A caller in the queue. Dropping it leaves the queue, passing on room it was just handed.
struct Waiting<'a> {
    shared: &'a Arc<Shared>,
    key: WaiterKey,
    cell: Arc<Cell>,
    queued_at: Instant,
    done: bool,
}

impl Waiting<'_> {
    fn conclude(&mut self, verdict: Verdict) -> Result<Permit, Rejected> {
        self.done = true;
        match verdict {
            Verdict::Granted(grant) => Ok(Permit::new(self.shared.clone(), grant)),
            Verdict::Shed { waited } => Err(Rejected::Shed { waited }),
        }
    }

    fn time_out(&mut self) -> Result<Permit, Rejected> {
        let left = self.shared.engine.lock().leave(self.key, &self.cell, true);
        match left {
            // Served at the last moment: take it.
            Left::Served(verdict) => self.conclude(verdict),
            Left::Removed => {
                self.done = true;
                Err(Rejected::TimedOut { waited: self.queued_at.elapsed() })
            }
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut engine = self.shared.engine.lock();
        if let Left::Served(Verdict::Granted(grant)) = engine.leave(self.key, &self.cell, false) {
            let wakes = engine.release(&grant, None, Instant::now());
            drop(engine);
            wakes.into_iter().for_each(std::task::Waker::wake);
        }
    }
}

/// A call counted in flight. End it with [`success`](Self::success),
/// [`failure`](Self::failure) or [`dropped`](Self::dropped); dropping it without one frees the
/// room and takes no sample.
#[derive(Debug)]
#[must_use = "a permit holds room under the limit until it is ended or dropped"]
pub struct Permit {
    shared: Arc<Shared>,
    grant: Grant,
    ended: bool,
}

impl Permit {
    fn new(shared: Arc<Shared>, grant: Grant) -> Self {
        Self { shared, grant, ended: false }
    }

    /// The call did its work: its latency, from admission to now, is a sample.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// The call failed for a reason unrelated to load: counted, no sample.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// The call was lost to overload (timed out, refused, shed): the limit falls.
    pub fn dropped(self) {
        self.record(Outcome::Dropped);
    }

    /// Ends the call with `outcome`.
    pub fn record(mut self, outcome: Outcome) {
        self.end(Some(outcome));
    }

    /// How long ago the call was admitted.
    pub fn elapsed(&self) -> Duration {
        self.grant.admitted.elapsed()
    }

    fn end(&mut self, outcome: Option<Outcome>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let wakes = self.shared.engine.lock().release(&self.grant, outcome, Instant::now());
        wakes.into_iter().for_each(std::task::Waker::wake);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.end(None);
    }
}

/// Holds a running call's permit; dropped before the call ends, the call counts as a loss.
struct DropsAsLoss(Option<Permit>);

impl Drop for DropsAsLoss {
    fn drop(&mut self) {
        if let Some(permit) = self.0.take() {
            permit.dropped();
        }
    }
}
