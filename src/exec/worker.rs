//! A worker: a tokio task that takes jobs from its queue and runs them one at a time.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::inner::Inner;
use super::job::{Job, Work};
use super::lane::{Stash, TryPop, Turn};
use super::queues::Next;
use tokio::time::Instant;

use crate::limit::{AdaptiveLimiter, Outcome, Permit};
use crate::sync::Arc;

thread_local! {
    /// The pool whose task this thread is polling right now, if any: how a submit recognises
    /// that it comes from inside the pool it would wait on.
    static CURRENT_POOL: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Whether the caller is one of pool `id`'s own tasks.
pub(crate) fn in_pool(id: u64) -> bool {
    CURRENT_POOL.with(|current| current.get() == Some(id))
}

/// Runs a job's future marked as inside the pool, catching a panic.
struct InPool {
    pool: u64,
    future: Pin<Box<dyn Work>>,
}

impl Future for InPool {
    type Output = Result<(), Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let pool = self.pool;
        let future = self.future.as_mut();
        let previous = CURRENT_POOL.with(|current| current.replace(Some(pool)));
        let polled = catch_unwind(AssertUnwindSafe(|| future.poll(cx)));
        CURRENT_POOL.with(|current| current.set(previous));
        match polled {
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Keeps the count of live workers right however the worker ends: drained, retired, its task
/// aborted by a shutdown past its deadline, or dropped by a runtime that shut down (then a new
/// worker takes its place on the pool's new runtime, if it has one).
struct Alive {
    inner: Arc<Inner>,
    lane: usize,
    /// Cleared when the worker already took itself off the count (retiring).
    counted: bool,
    /// Set when the worker loop returned (drained or retired), as opposed to being dropped.
    finished: bool,
    /// The job it runs, as [`Running`]: marked done if the worker is dropped with it, since a
    /// keyed job left counted would hold a resize's drain open for good.
    running: Running,
}

/// The lane and keyed counter of a worker's running job in one word (a worker's future lives as
/// long as the pool, in every worker): the lane shifted past a two-bit tag, 0 when no job runs,
/// 1 for a job not counted as keyed, 2 and 3 for the keyed counters 0 and 1.
#[derive(Debug, Clone, Copy, Default)]
struct Running(usize);

impl Running {
    fn of(lane: usize, counted: Option<u8>) -> Self {
        Self(lane << 2 | counted.map_or(1, |parity| 2 + usize::from(parity & 1)))
    }

    fn take(&mut self) -> Option<(usize, Option<u8>)> {
        let word = std::mem::take(&mut self.0);
        match word & 3 {
            0 => None,
            1 => Some((word >> 2, None)),
            tag => Some((word >> 2, Some(u8::from(tag == 3)))),
        }
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        if let Some((lane, counted)) = self.running.take() {
            self.inner.queues.done(lane, counted);
        }
        if !self.finished && self.counted {
            self.inner.replace_worker(self.lane);
        } else {
            self.inner.worker_exited(self.counted);
        }
    }
}

/// The worker loop for lane `lane` (always 0 with the shared queue).
pub(crate) fn run(inner: Arc<Inner>, lane: usize) -> impl Future<Output = ()> + Send {
    // Counted from the spawn, not from the first poll: a runtime that shuts down before it ever
    // polled the worker still takes it off the count.
    let mut alive = Alive {
        inner: Arc::clone(&inner),
        lane,
        counted: true,
        finished: false,
        running: Running::default(),
    };
    async move {
        work(inner, &mut alive, lane).await;
        alive.finished = true;
        drop(alive);
    }
}

async fn work(inner: Arc<Inner>, alive: &mut Alive, lane: usize) {
    let mut turn = Turn::default();
    // Jobs this worker stole beyond the one it ran at once (per-worker stealing only).
    let mut stash = Stash::new();
    loop {
        // The busy path takes a job without arming a timer.
        let job = match inner.queues.try_next(lane, &mut turn, &mut stash) {
            TryPop::Job(job) => job,
            // A per-worker lane a resize retired, or a shut-down pool: drained, the worker
            // leaves, unless a resize reopened its lane meanwhile.
            TryPop::Closed if inner.queues.leave(lane) => return,
            TryPop::Closed => continue,
            TryPop::Empty => {
                let next = inner.queues.next_job(lane, &mut turn, &mut stash);
                // Only a worker the pool may lose waits with a deadline. Its timer is boxed: in
                // the worker's own future it would take room in every worker of every pool,
                // elastic or not, for the whole of its life.
                let next = if inner.may_shrink() {
                    match Box::pin(tokio::time::timeout(inner.idle_timeout, next)).await {
                        Ok(next) => next,
                        Err(_idle) => Next::Interrupted,
                    }
                } else {
                    next.await
                };
                match next {
                    Next::Job(job) => job,
                    Next::Closed if inner.queues.leave(lane) => return,
                    Next::Closed => continue,
                    Next::Interrupted => {
                        if inner.retire_idle(lane) {
                            alive.counted = false;
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        // Kept in `alive` rather than in locals: the worker's future holds it once.
        alive.running = Running::of(job.lane, job.counted);
        // Room under the adaptive limit, if the pool has one. Boxed, with the job inside, so
        // that neither the job nor the wait takes room in every worker's future.
        let job = match &inner.admission.limiter {
            None => Some(job),
            Some(limiter) => Box::pin(admit(&inner, limiter, job)).await,
        };
        if let Some((running, started, waited)) = job.and_then(|job| start(&inner, job)) {
            let outcome = running.await;
            finish(&inner, started, waited, outcome);
        }
        if let Some((committed_to, counted)) = alive.running.take() {
            inner.queues.done(committed_to, counted);
        }
        // A worker with a full queue would otherwise never return to its runtime, leaving the
        // tasks queued behind it on its thread (the submitter it just woke, in the thread's LIFO
        // slot, which no other thread may steal from) to wait until its queue runs dry. tokio's
        // budget yields once every 128 jobs: on the skewed workload of `benches/exec.rs` the
        // wall went from 1.2–1.3 s to 0.92–1.1 s.
        tokio::task::consume_budget().await;
        if inner.retire_surplus() {
            alive.counted = false;
            return;
        }
    }
}

/// Waits for room under the adaptive limit for `job`: the job, now carrying its permit, or
/// `None` when the limiter turned it away (then it is shed).
async fn admit(inner: &Inner, limiter: &AdaptiveLimiter, mut job: Job) -> Option<Job> {
    match limiter.acquire().await {
        Ok(permit) => {
            // The permit rides in the job's own future, not in the worker's: a worker's future
            // lives as long as the pool, in every worker, limiter or not.
            job.future =
                Box::pin(Limited { work: job.future, permit: Some(permit), panicked: false });
            Some(job)
        }
        Err(_) => {
            inner.admission.count_shed();
            if let Some(handle) = &job.shed {
                handle.shed();
            }
            None
        }
    }
}

/// A job holding room under the adaptive limit: a success when it finishes, a failure when it
/// panics, nothing when it is dropped unfinished (an abort, a runtime gone).
struct Limited {
    work: Pin<Box<dyn Work>>,
    permit: Option<Permit>,
    panicked: bool,
}

impl Future for Limited {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Still set if the poll below unwinds: the worker catches the panic and drops us.
        self.panicked = true;
        let polled = self.work.as_mut().poll(cx);
        self.panicked = false;
        if polled.is_ready() {
            if let Some(permit) = self.permit.take() {
                permit.success();
            }
        }
        polled
    }
}

impl Work for Limited {
    fn handle_waker(&self) -> Option<std::task::Waker> {
        self.work.handle_waker()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        if let (Some(permit), true) = (self.permit.take(), self.panicked) {
            permit.record(Outcome::Failure);
        }
    }
}

/// Starts `job`: `None` when it is shed instead, else the future that runs it, its start and how
/// long it waited. Plain functions around the one await, rather than an `async fn`, so that the
/// worker's future holds only what lives across that await (a job's fields would otherwise
/// take room in every worker for its whole life).
fn start(inner: &Inner, job: Job) -> Option<(InPool, Instant, Duration)> {
    let started = Instant::now();
    let waited = started.saturating_duration_since(job.queued_at);
    if inner.admission.should_shed(&job, waited, || inner.queues.queued()) {
        if let Some(handle) = &job.shed {
            handle.shed();
        }
        return None;
    }
    Some((InPool { pool: inner.id, future: job.future }, started, waited))
}

/// Counts a job that ran, and reports its panic.
fn finish(
    inner: &Inner,
    started: Instant,
    waited: Duration,
    outcome: Result<(), Box<dyn Any + Send>>,
) {
    let ran = started.elapsed();
    {
        let mut shard = inner.shards.local().lock();
        shard.queue_wait.record(waited);
        shard.run_time.record(ran);
        shard.completed += 1;
        shard.panicked += u64::from(outcome.is_err());
    }
    if let Err(panic) = outcome {
        inner.report_panic(&*panic);
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    /// A pool of a thousand workers holds a thousand of these for as long as it lives: what is
    /// in them (an idle timer, a job's fields kept across the await that runs it) costs memory
    /// in every pool (`docs/benchmarks.md`, the sleep workload's peak heap).
    #[test]
    fn a_worker_future_stays_small() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let pool = crate::exec::WorkerPool::builder().workers(1).build().unwrap();
            let worker = super::run(crate::sync::Arc::clone(pool.inner_for_probe()), 0);
            let size = std::mem::size_of_val(&worker);
            // Never polled: its drop would count out a worker that was never counted in.
            std::mem::forget(worker);
            assert!(size <= 320, "a worker's future grew to {size} bytes");
        });
    }
}
