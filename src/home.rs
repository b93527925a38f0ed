//! The runtime a pool's background tasks run on, and the move to another when it shuts down.
//!
//! A pool takes the runtime current at `build()` for its tasks (creations, maintenance, waiter
//! expiry, workers). A runtime that shuts down drops every task it holds without running it
//! further, and a task spawned on it later is dropped at once: a pool whose runtime went away
//! has no background work at all. That is what a `static` pool shared between `#[tokio::test]`s
//! meets, each test having a runtime of its own.
//!
//! tokio has no way to ask a [`Handle`] whether its runtime is still there, so the pool's own
//! tasks tell: every task is spawned inside a [`Watched`] wrapper, and a wrapper dropped before
//! its task finished means the runtime dropped it (the pools never abort their tasks, except a
//! worker pool past its shutdown deadline, which is closed by then). The next caller that needs
//! background work sees the mark and moves the pool to its own runtime ([`Home::rehome`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// The runtime a pool spawns on.
pub(crate) struct Home {
    runtime: Mutex<Handle>,
    /// The generation of `runtime` (bumped by every move) shifted left by one, with the low bit
    /// set once a task of that generation was dropped unfinished: the runtime is gone.
    ///
    /// The generation keeps a late drop from an old runtime from condemning the new one.
    state: AtomicU64,
}

const GONE: u64 = 1;

/// What [`Home::rehome`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rehome {
    /// The runtime is alive (or another caller already moved the pool).
    Stayed,
    /// The runtime was gone; the pool now spawns on the caller's runtime.
    Moved,
    /// The runtime is gone and the caller runs outside any tokio runtime.
    Stranded,
}

impl Home {
    pub(crate) fn new(runtime: Handle) -> Arc<Self> {
        Arc::new(Self { runtime: Mutex::new(runtime), state: AtomicU64::new(0) })
    }

    /// Whether a task of the current runtime was dropped unfinished. One atomic load.
    #[inline]
    pub(crate) fn is_gone(&self) -> bool {
        // Acquire: pairs with the mark's release, so a caller that sees it also sees what the
        // dropped tasks gave up on their way out (a worker off the count, a slot freed).
        self.state.load(Ordering::Acquire) & GONE != 0
    }

    /// Spawns `task` on the pool's runtime; if the runtime drops it unfinished, the home is
    /// marked gone.
    pub(crate) fn spawn<F>(self: &Arc<Self>, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let runtime = self.runtime.lock();
        let generation = self.state.load(Ordering::Acquire) & !GONE;
        let watched = Watched { task: Some(Box::pin(task)), home: Arc::clone(self), generation };
        // Spawned under the lock so that a move cannot slip between reading the generation and
        // spawning; a task dropped inside `spawn` only touches `state`, never this lock.
        runtime.spawn(watched)
    }

    /// If the runtime is gone, moves the pool to the caller's and runs `restart` (under the
    /// home's lock, so only one caller does) to start the pool's long-lived tasks there.
    pub(crate) fn rehome(self: &Arc<Self>, restart: impl FnOnce()) -> Rehome {
        let mut runtime = self.runtime.lock();
        let state = self.state.load(Ordering::Acquire);
        if state & GONE == 0 {
            return Rehome::Stayed;
        }
        let Ok(current) = Handle::try_current() else {
            return Rehome::Stranded;
        };
        *runtime = current;
        self.state.store((state & !GONE) + 2, Ordering::Release);
        drop(runtime);
        restart();
        Rehome::Moved
    }

    fn mark_gone(&self, generation: u64) {
        // Only the generation that spawned the task: a task of an earlier runtime dropped late
        // says nothing about the current one. Release: pairs with `is_gone`.
        let _ = self.state.compare_exchange(
            generation,
            generation | GONE,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// A pool task that reports being dropped before it finished.
struct Watched {
    /// `None` once the task finished.
    task: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    home: Arc<Home>,
    generation: u64,
}

impl Future for Watched {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(task) = self.task.as_mut() else {
            return Poll::Ready(());
        };
        if task.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.task = None;
        Poll::Ready(())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // The task first, so that what it gives back on drop (a worker off the count, a
            // reserved slot) is done before anyone sees the mark and moves the pool.
            drop(task);
            self.home.mark_gone(self.generation);
        }
    }
}
