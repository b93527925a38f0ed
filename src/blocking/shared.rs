//! The state every handle and thread of one pool shares, and the paths through it: submitting
//! (admission, the rejection policy, starting threads), running a job, shutting down.

use std::cell::Cell;
use std::thread;
use std::time::{Duration, Instant};

use super::builder::RejectionPolicy;
use super::error::{SubmitError, TaskError};
use super::handle::Sender;
use super::job::{Envelope, Task};
use super::queue::{Admit, Queue};
use super::stats::{Recorder, Stats};
use super::threads::Threads;
use crate::sync::{Arc, Ordering::Relaxed};
use crate::unwind::PanicHook;

/// The builder's settings that the pool keeps using.
pub(crate) struct Settings {
    pub(crate) keep_alive: Duration,
    pub(crate) policy: RejectionPolicy,
    pub(crate) panic_hook: Option<PanicHook>,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
}

pub(crate) struct Shared {
    /// Tells this pool's threads from others (see `on_own_thread`).
    id: u64,
    pub(crate) queue: Queue,
    pub(crate) threads: Threads,
    pub(crate) settings: Settings,
    pub(crate) recorder: Recorder,
}

thread_local! {
    /// The id of the pool whose worker this thread is; `u64::MAX` for other threads.
    static CURRENT_POOL: Cell<u64> = const { Cell::new(u64::MAX) };
}

impl Shared {
    pub(crate) fn new(capacity: usize, core: usize, max: usize, settings: Settings) -> Self {
        Self {
            id: crate::sync::unique_id(),
            queue: Queue::new(capacity),
            threads: Threads::new(core, max),
            settings,
            recorder: Recorder::new(),
        }
    }

    /// Queues `closure` (with the sender of its handle, if any), starting a thread if the work
    /// needs one; a full queue is handled by the rejection policy.
    pub(crate) fn submit<F, T>(
        self: &Arc<Self>,
        closure: F,
        sender: Option<Sender<T>>,
    ) -> Result<(), SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let mut counted = false;
        loop {
            match self.queue.reserve() {
                Admit::Reserved => break,
                Admit::Closed => {
                    self.recorder.rejected.fetch_add(1, Relaxed);
                    return Err(SubmitError::Shutdown(closure));
                }
                Admit::Full => {
                    if !counted {
                        counted = true;
                        self.recorder.rejected.fetch_add(1, Relaxed);
                    }
                    match self.settings.policy {
                        RejectionPolicy::Reject => return Err(SubmitError::Full(closure)),
                        RejectionPolicy::CallerRuns => {
                            self.recorder.ran_on_caller.fetch_add(1, Relaxed);
                            let job = Task { closure, sender, queued_at: None };
                            self.run(Box::new(job), false);
                            return Ok(());
                        }
                        RejectionPolicy::DropOldest => {
                            if let Some(oldest) = self.queue.evict_oldest() {
                                // Its place in the queue is ours now.
                                oldest.cancel(TaskError::Evicted);
                                self.recorder.evicted.fetch_add(1, Relaxed);
                                break;
                            }
                            // The places are held by submits about to push, or were just freed:
                            // let them move, and reserve again.
                            thread::yield_now();
                        }
                    }
                }
            }
        }
        if self.threads.claim_start(&self.queue) {
            if let Err(error) = self.start_thread() {
                if self.threads.unclaim() == 0 {
                    // No thread would ever run it: give the place and the closure back.
                    if self.queue.release() {
                        self.queue.wake_one();
                    }
                    // A shutdown woken as the count fell to 0 may have found this place still
                    // taken: it looks again now.
                    self.threads.wake_waiters();
                    return Err(SubmitError::Spawn(closure, error));
                }
                tracing::warn!(%error, "millpond: the blocking pool could not start a thread; its live threads will run the job");
            }
        }
        let queued_at = self.recorder.should_measure().then(Instant::now);
        self.queue.push(Box::new(Task { closure, sender, queued_at }));
        Ok(())
    }

    fn start_thread(self: &Arc<Self>) -> std::io::Result<()> {
        let mut builder = thread::Builder::new().name(self.settings.thread_name.clone());
        if let Some(size) = self.settings.stack_size {
            builder = builder.stack_size(size);
        }
        let shared = Arc::clone(self);
        let handle = builder.spawn(move || {
            CURRENT_POOL.with(|pool| pool.set(shared.id));
            super::worker::work(&shared);
        })?;
        self.threads.started(handle);
        Ok(())
    }

    /// Runs a job on the calling thread and records it. A queued job is timed if its submit
    /// stamped it (see `stats.rs`); a job run by its submitter (`queued` false) always is.
    pub(crate) fn run(&self, job: Envelope, queued: bool) {
        let queued_at = job.queued_at();
        let started = (!queued || queued_at.is_some()).then(Instant::now);
        let mut running = Some(self.recorder.start());
        job.run(&mut |panic| {
            let timing = started.map(|started| {
                let wait = queued_at.map(|queued_at| started.saturating_duration_since(queued_at));
                (wait, started.elapsed())
            });
            if let Some(running) = running.take() {
                running.finish(timing, panic.is_some());
            }
            if let Some(message) = panic {
                self.report_panic(message);
            }
        });
    }

    fn report_panic(&self, message: &str) {
        match &self.settings.panic_hook {
            Some(hook) => {
                crate::unwind::contain("blocking panic_hook", || hook(message));
            }
            None => tracing::warn!(panic = message, "millpond: a blocking job panicked"),
        }
    }

    /// Stops intake without waiting.
    pub(crate) fn close(&self) {
        if self.queue.close() {
            self.queue.wake_one();
        }
    }

    /// Stops intake, waits until every queued job has run and every thread has exited (or the
    /// deadline passes: then the jobs still queued are dropped), and joins the threads that
    /// have exited. True when everything finished in time.
    pub(crate) fn shutdown(&self, deadline: Option<Instant>) -> bool {
        self.close();
        if self.on_own_thread() {
            // A job of this pool cannot wait for its own thread to exit.
            return false;
        }
        let done = || self.queue.is_finished() && self.threads.live() == 0;
        if self.threads.wait_exit(deadline, done) {
            self.threads.join(true);
            return true;
        }
        while let Some(envelope) = self.queue.try_take() {
            self.queue.release();
            envelope.cancel(TaskError::Cancelled);
            self.recorder.cancelled.fetch_add(1, Relaxed);
        }
        // Draining may have consumed the wake-ups meant for idle threads: start them again.
        self.queue.wake_one();
        self.threads.join(false);
        false
    }

    fn on_own_thread(&self) -> bool {
        CURRENT_POOL.with(Cell::get) == self.id
    }

    pub(crate) fn stats(&self) -> Stats {
        let snapshot = self.recorder.snapshot();
        Stats {
            threads: self.threads.live(),
            idle: self.threads.idle(),
            running: snapshot.running,
            queued: self.queue.len(),
            completed: snapshot.completed,
            panicked: snapshot.panicked,
            rejected: self.recorder.rejected.load(Relaxed),
            ran_on_caller: self.recorder.ran_on_caller.load(Relaxed),
            evicted: self.recorder.evicted.load(Relaxed),
            cancelled: self.recorder.cancelled.load(Relaxed),
            queue_wait: snapshot.queue_wait,
            run_time: snapshot.run_time,
        }
    }
}
