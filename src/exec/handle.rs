//! The handle of a submitted task, and the wrapper that runs the task and fills it.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::error::TaskError;
use super::job::Work;
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};

/// What a task and its handle share.
struct Cell<T> {
    /// The id of the pool the task was submitted to, for a rescue of that pool alone
    /// (`home.rs`); an id rather than a reference, so a handle never keeps its pool alive.
    pool: u64,
    /// Set by `abort`; read by the task at every poll without taking the lock.
    aborted: AtomicUsize,
    state: Mutex<State<T>>,
}

struct State<T> {
    result: Option<Result<T, TaskError>>,
    /// The handle's waker, woken when the result is in.
    handle: Option<Waker>,
    /// The running task's waker, woken by `abort` so the task stops at once.
    task: Option<Waker>,
    /// Whether the result was stored (and possibly taken since).
    finished: bool,
}

impl<T> Cell<T> {
    fn finish(&self, result: Result<T, TaskError>) {
        let waker = {
            let mut state = self.state.lock();
            if state.finished {
                return;
            }
            state.finished = true;
            state.result = Some(result);
            state.task = None;
            state.handle.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire) != 0
    }
}

/// The result of a submitted task: await it for the task's output.
///
/// Dropping the handle does not cancel the task; it runs to completion and its output is
/// dropped. [`abort`](Self::abort) cancels it.
///
/// # Errors
///
/// The handle resolves to:
/// - [`TaskError::Panicked`] with the panic message when the task panicked;
/// - [`TaskError::Aborted`] when it was aborted, by [`abort`](Self::abort) or by a shutdown
///   whose deadline passed (or a pool dropped) before it finished;
/// - [`TaskError::Shed`] when it was dropped before it started: it waited in the queue past
///   `max_queue_wait`, or it was low-priority work queued when the pool became overloaded.
///
/// # Panics
///
/// Polling the handle again after it returned `Ready` panics, as for most futures.
#[must_use = "dropping a handle detaches the task; await it to get its output"]
pub struct TaskHandle<T> {
    cell: Arc<Cell<T>>,
}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle").field("finished", &self.is_finished()).finish()
    }
}

impl<T> TaskHandle<T> {
    /// Cancels the task. A queued task never starts; a running one is dropped at its next
    /// await. Either way the handle resolves to [`TaskError::Aborted`]. A task that already
    /// finished keeps its result.
    pub fn abort(&self) {
        self.cell.aborted.store(1, Ordering::Release);
        let waker = self.cell.state.lock().task.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the task has finished (completed, panicked or been aborted).
    pub fn is_finished(&self) -> bool {
        self.cell.state.lock().finished
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.cell.state.lock();
        if let Some(result) = state.result.take() {
            return Poll::Ready(result);
        }
        assert!(!state.finished, "a TaskHandle was polled after it returned its result");
        match &state.handle {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.handle = Some(cx.waker().clone()),
        }
        drop(state);
        // A worker pool whose runtime went with nowhere to move has no worker to run this task,
        // and the handle no reference to its pool: it moves its pool, found by id, to its own
        // runtime. One relaxed load until then; after the waker is in, so a result stored
        // meanwhile wakes it.
        crate::home::rescue_stranded(self.cell.pool);
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// A submitted task with a handle: runs the future, stores its output (or its panic) for the
    /// handle, stops when aborted, and tells the handle `Aborted` if it is dropped unfinished
    /// (drained by a shutdown past its deadline, or its worker aborted).
    pub(crate) struct Tracked<F: Future> {
        #[pin]
        future: F,
        cell: Arc<Cell<F::Output>>,
    }

    impl<F: Future> PinnedDrop for Tracked<F> {
        fn drop(this: Pin<&mut Self>) {
            this.cell.finish(Err(TaskError::Aborted));
        }
    }
}

/// Tells a task's handle it was shed, whatever its output type.
pub(crate) trait Shed: Send + Sync {
    fn shed(&self);
}

impl<T: Send> Shed for Cell<T> {
    fn shed(&self) {
        self.finish(Err(TaskError::Shed));
    }
}

impl<T: Send + 'static> TaskHandle<T> {
    /// What a worker calls to tell this handle its task was shed.
    pub(crate) fn shed_hook(&self) -> Arc<dyn Shed> {
        Arc::clone(&self.cell) as Arc<dyn Shed>
    }
}

/// Wraps `future` for submission to the pool with id `pool`, with the handle that will receive
/// its output.
pub(crate) fn tracked<F: Future>(future: F, pool: u64) -> (Tracked<F>, TaskHandle<F::Output>) {
    let cell = Arc::new(Cell {
        pool,
        aborted: AtomicUsize::new(0),
        state: Mutex::new(State { result: None, handle: None, task: None, finished: false }),
    });
    (Tracked { future, cell: Arc::clone(&cell) }, TaskHandle { cell })
}

impl<F> Work for Tracked<F>
where
    F: Future + Send,
    F::Output: Send,
{
    fn handle_waker(&self) -> Option<Waker> {
        self.cell.state.lock().handle.clone()
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.cell.is_aborted() {
            this.cell.finish(Err(TaskError::Aborted));
            return Poll::Ready(());
        }
        let future = this.future;
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Ready(output)) => {
                this.cell.finish(Ok(output));
                Poll::Ready(())
            }
            Ok(Poll::Pending) => {
                let mut state = this.cell.state.lock();
                match &state.task {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => state.task = Some(cx.waker().clone()),
                }
                drop(state);
                // An abort between the check above and the waker's registration found no waker
                // to wake: look again now that it is registered.
                if this.cell.is_aborted() {
                    this.cell.finish(Err(TaskError::Aborted));
                    return Poll::Ready(());
                }
                Poll::Pending
            }
            Err(panic) => {
                this.cell.finish(Err(TaskError::Panicked(crate::unwind::panic_message(&*panic))));
                // On to the worker, which counts it and calls the panic hook.
                resume_unwind(panic)
            }
        }
    }
}
