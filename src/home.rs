//! The runtime a pool's background tasks run on, and the move to another when it shuts down.
//!
//! A pool takes the runtime current at `build()` for its tasks (creations, maintenance, waiter
//! expiry, workers, a cluster's health probe). A runtime that shuts down drops every task it holds without running it
//! further, and a task spawned on it later is dropped at once: a pool whose runtime went away
//! has no background work at all. That is what a `static` pool shared between `#[tokio::test]`s
//! meets, each test having a runtime of its own.
//!
//! tokio has no way to ask a [`Handle`] whether its runtime is still there, so the pool's own
//! tasks tell: every task is spawned inside a [`Watched`] wrapper, and a wrapper dropped before
//! its task finished means the runtime dropped it (the pools never abort their tasks, except a
//! worker pool past its shutdown deadline, which is closed by then). The next caller that needs
//! background work sees the mark and moves the pool to its own runtime ([`Home::rehome`]).
//!
//! A caller already waiting on that work when the runtime goes would not call again: so callers
//! that start waiting leave their runtime in reserve ([`Home::stand_by`]), and the drop that
//! marks the home moves it to the most recent of them at once. Callers that wait without having
//! left a runtime (a `get()` queued behind a deadline already armed, a task handle) are covered
//! the other way round: when the mark finds no live runtime in reserve, the owner wakes them
//! ([`Home::on_stranded`]), and a woken waiter moves the pool to its own runtime as it polls. A
//! task handle holds no reference to its pool, only the pool's id, so a worker pool also lists
//! its home with the process under that id ([`Home::leave_for_rescue`]), and a handle that finds
//! its result not yet in moves its own pool's home, and no other, to its own runtime
//! ([`rescue_stranded`]); until a home is listed that costs the handle one relaxed load. Moving
//! another pool's home there would strand that pool anew on a runtime its own waiters may not
//! drive.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::sync::{Arc, AtomicU64, Mutex, Ordering, Weak, process};

/// How many callers' runtimes a home keeps in reserve.
const STANDBY: usize = 4;

/// The runtime a pool spawns on.
pub(crate) struct Home {
    runtime: Mutex<Handle>,
    /// The generation of `runtime` (bumped by every move) shifted left by one, with the low bit
    /// set once a task of that generation was dropped unfinished: the runtime is gone.
    ///
    /// The generation keeps a late drop from an old runtime from condemning the new one.
    state: AtomicU64,
    /// The runtimes of recent callers that wait on background work, most recent last: where the
    /// pool moves at once when its runtime goes, so that those callers are not left waiting on
    /// work that no longer runs (a `#[tokio::test]` waiting on a pool built by another test
    /// that just ended).
    standby: Mutex<Vec<Handle>>,
    /// Starts the owner's long-lived tasks on the runtime just moved to.
    restart: Mutex<Option<Restart>>,
    /// Wakes the owner's waiters when the runtime went and there was no live one to move to.
    stranded: Mutex<Option<Restart>>,
}

/// Whether [`STRANDED`] may list a home: what a pending task handle reads.
static ANY_STRANDED: process::AtomicBool = process::AtomicBool::new(false);

/// Homes whose runtime went with no live runtime to move to, whose waiters cannot reach them
/// (task handles), by the id of the pool that owns each: the first such waiter of that pool that
/// polls inside a runtime moves it there.
static STRANDED: process::Mutex<Vec<(u64, Weak<Home>)>> = process::Mutex::new(Vec::new());

/// Moves the home that the pool `owner` listed with [`Home::leave_for_rescue`] to the caller's
/// runtime, if it has one. For waiters with no reference to their pool; one relaxed load while
/// no home is listed.
#[inline]
pub(crate) fn rescue_stranded(owner: u64) {
    // Relaxed: a waiter woken by `on_stranded` is woken after the flag was raised, and the wake
    // orders the two; a waiter polled for another reason sees it on a later poll.
    if ANY_STRANDED.load(Ordering::Relaxed) {
        rescue_listed(owner);
    }
}

#[cold]
fn rescue_listed(owner: u64) {
    if Handle::try_current().is_err() {
        return;
    }
    let mine: Vec<Weak<Home>> = {
        let mut listed = STRANDED.lock();
        let mut mine = Vec::new();
        listed.retain(|(id, home)| {
            if *id == owner {
                mine.push(home.clone());
            }
            *id != owner && home.strong_count() > 0
        });
        ANY_STRANDED.store(!listed.is_empty(), Ordering::Relaxed);
        mine
    };
    for home in mine.iter().filter_map(Weak::upgrade) {
        if home.rehome() == Rehome::Moved {
            tracing::debug!(
                "millpond: a worker pool's runtime shut down; a task handle moved its workers to \
                 the runtime awaiting it"
            );
        }
    }
}

type Restart = Arc<dyn Fn() + Send + Sync>;

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
        Arc::new(Self {
            runtime: Mutex::new(runtime),
            state: AtomicU64::new(0),
            standby: Mutex::new(Vec::new()),
            restart: Mutex::new(None),
            stranded: Mutex::new(None),
        })
    }

    /// Sets what a move runs on the new runtime. The owner holds the home, so `restart` should
    /// hold the owner weakly.
    pub(crate) fn on_move(&self, restart: impl Fn() + Send + Sync + 'static) {
        *self.restart.lock() = Some(Arc::new(restart));
    }

    /// Sets what runs when the runtime went and no live runtime was in reserve: the owner wakes
    /// the callers waiting on its background work, whose next poll moves it (through
    /// [`rehome`](Self::rehome)) to their own runtime. Runs inside the drop of a task, on the
    /// thread shutting the runtime down, with no lock of the home held. As for
    /// [`on_move`](Self::on_move), `stranded` should hold the owner weakly.
    pub(crate) fn on_stranded(&self, stranded: impl Fn() + Send + Sync + 'static) {
        *self.stranded.lock() = Some(Arc::new(stranded));
    }

    /// Lists this home with the process under the id of the pool that owns it, for that pool's
    /// waiters that cannot reach it ([`rescue_stranded`]). Homes already freed are pruned on the
    /// way.
    pub(crate) fn leave_for_rescue(self: &Arc<Self>, owner: u64) {
        let mut listed = STRANDED.lock();
        listed.retain(|(_, home)| home.strong_count() > 0);
        if !listed.iter().any(|(_, home)| std::ptr::eq(home.as_ptr(), Arc::as_ptr(self))) {
            listed.push((owner, Arc::downgrade(self)));
        }
        // Raised under the lock, before the owner wakes its waiters: see `rescue_stranded`.
        ANY_STRANDED.store(true, Ordering::Relaxed);
    }

    /// Whether a task of the current runtime was dropped unfinished. One atomic load.
    #[inline]
    pub(crate) fn is_gone(&self) -> bool {
        // Acquire: pairs with the mark's release, so a caller that sees it also sees what the
        // dropped tasks gave up on their way out (a worker off the count, a slot freed).
        self.state.load(Ordering::Acquire) & GONE != 0
    }

    /// Spawns `task` on the pool's runtime; if the runtime drops it unfinished, the home is
    /// marked gone (and moves to a standby runtime, if it knows one).
    pub(crate) fn spawn<F>(self: &Arc<Self>, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (runtime, generation) = {
            let runtime = self.runtime.lock();
            (runtime.clone(), self.state.load(Ordering::Acquire) & !GONE)
        };
        // Spawned outside the lock: a task dropped inside `spawn` (the runtime is already gone)
        // marks the home, which may move it, which takes the lock.
        let watched = Watched { task: Some(task), home: Arc::clone(self), generation };
        runtime.spawn(watched)
    }

    /// Keeps the caller's runtime in reserve, for a move when the pool's runtime goes. For
    /// callers that will wait on the pool's background work.
    pub(crate) fn stand_by(&self) {
        if let Ok(current) = Handle::try_current() {
            let mut standby = self.standby.lock();
            if standby.len() == STANDBY {
                standby.remove(0);
            }
            standby.push(current);
        }
    }

    /// If the runtime is gone, moves the pool to the caller's runtime and starts its
    /// long-lived tasks there.
    pub(crate) fn rehome(self: &Arc<Self>) -> Rehome {
        let state = self.state.load(Ordering::Acquire);
        if state & GONE == 0 {
            return Rehome::Stayed;
        }
        let Ok(current) = Handle::try_current() else {
            return Rehome::Stranded;
        };
        if self.move_to(current, state) { Rehome::Moved } else { Rehome::Stayed }
    }

    /// Moves from the runtime of `state`, which must still be current and gone, to `runtime`.
    fn move_to(&self, runtime: Handle, state: u64) -> bool {
        {
            let mut current = self.runtime.lock();
            if self.state.load(Ordering::Acquire) != state {
                // Someone else moved it first.
                return false;
            }
            *current = runtime;
            self.state.store((state & !GONE) + 2, Ordering::Release);
        }
        // Outside every lock: the restarted tasks may be dropped at once (a standby runtime that
        // is gone too), which marks the home again and moves on to the next standby.
        let restart = self.restart.lock().clone();
        if let Some(restart) = restart {
            restart();
        }
        true
    }

    fn mark_gone(&self, generation: u64) {
        // Only the generation that spawned the task: a task of an earlier runtime dropped late
        // says nothing about the current one. Release: pairs with `is_gone`.
        let marked = self
            .state
            .compare_exchange(generation, generation | GONE, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        if !marked {
            return;
        }
        tracing::debug!("millpond: a pool's tokio runtime shut down");
        // Each standby is tried once: one that is gone too is dropped from the list, and its
        // restarted tasks, dropped at once, come back here for the next.
        let standby = self.standby.lock().pop();
        if let Some(standby) = standby {
            // A standby that is gone too drops the restarted tasks at once, which comes back here
            // for the next one, and to the waiters below once none is left. (An owner with no
            // task to restart leaves its next caller to find the runtime gone.)
            self.move_to(standby, generation | GONE);
            return;
        }
        let stranded = self.stranded.lock().clone();
        if let Some(stranded) = stranded {
            stranded();
        }
    }
}

pin_project! {
    /// A pool task that reports being dropped before it finished. Generic rather than boxed, so
    /// the task stays inside tokio's own allocation (a worker pool keeps one task per worker).
    struct Watched<F> {
        // `None` once the task finished.
        #[pin]
        task: Option<F>,
        home: Arc<Home>,
        generation: u64,
    }

    impl<F> PinnedDrop for Watched<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.task.is_some() {
                // The mark first, and with it the move to a standby runtime if there is one, so
                // that what the task does as it is dropped can already use the new runtime: a
                // worker starts its replacement there, on its own lane. What the task gives back
                // (a reserved slot, a place on the worker count) is still given back before the
                // restarted tasks get to run, as they run on another runtime's threads only once
                // spawned and woken.
                this.home.mark_gone(*this.generation);
                this.task.set(None);
            }
        }
    }
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(task) = this.task.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        match catch_unwind(AssertUnwindSafe(|| task.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.task.set(None);
                Poll::Ready(())
            }
            Err(panic) => {
                // A task that panicked was not dropped by its runtime: it must not read as one.
                this.task.set(None);
                resume_unwind(panic)
            }
        }
    }
}
