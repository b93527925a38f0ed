//! The one place library code takes its synchronisation primitives from.
//!
//! Normal builds use `std` atomics and `Arc` with `parking_lot` mutexes (no poisoning, a fast
//! uncontended path). Under `--cfg millpond_loom` the same names resolve to loom's model-checked
//! types, so the engines' loom models exercise exactly the code users run.
//!
//! Mutexes and atomics are thin newtypes, so `clippy.toml` can forbid the originals everywhere
//! else (`disallowed-types`); `Arc` is a plain re-export (see below), so `.ci/run` greps for
//! direct `std::sync` imports instead.
//!
//! The cfg is crate-specific on purpose: plain `--cfg loom` would also switch tokio into its own
//! loom mode, which is not what our models test.
#![allow(clippy::disallowed_types)]

// `Arc` stays std's under loom too: the models check what sits behind the mutexes and atomics,
// and our code uses `&Arc<Self>` receivers, which loom's `Arc` cannot serve as.
pub(crate) use std::sync::{Arc, Weak};

// `OnceLock` stays std's under loom too (loom has none): it only publishes values built once,
// under the caller's own lock, and std's is verified on its own.
pub(crate) use std::sync::OnceLock;

#[cfg(not(millpond_loom))]
use parking_lot as mutex_impl;
#[cfg(not(millpond_loom))]
use std::sync::atomic as atomic_impl;

#[cfg(millpond_loom)]
use loom::sync as mutex_impl;
#[cfg(millpond_loom)]
use loom::sync::atomic as atomic_impl;

pub(crate) use std::sync::atomic::Ordering;

/// A memory fence, modelled under loom.
#[inline]
pub(crate) fn fence(order: Ordering) {
    atomic_impl::fence(order);
}

/// A mutex without poisoning: a panic while it is held cannot wedge the pool.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(mutex_impl::Mutex<T>);

pub(crate) type MutexGuard<'a, T> = mutex_impl::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    #[inline]
    pub(crate) fn new(value: T) -> Self {
        Self(mutex_impl::Mutex::new(value))
    }

    #[cfg(not(millpond_loom))]
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock()
    }

    #[cfg(millpond_loom)]
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        // A model only poisons a mutex when one of its threads panicked, which fails it anyway.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Locks the mutex if it is free now.
    #[cfg(not(millpond_loom))]
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.0.try_lock()
    }

    /// Locks the mutex if it is free now.
    #[cfg(millpond_loom)]
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.0.try_lock().ok()
    }

    /// Locks the mutex, waiting for it until `deadline` at most.
    #[cfg(not(millpond_loom))]
    #[inline]
    pub(crate) fn try_lock_until(&self, deadline: std::time::Instant) -> Option<MutexGuard<'_, T>> {
        self.0.try_lock_until(deadline)
    }

    /// Locks the mutex; loom has no timed locks, and a model has no clock to run out.
    #[cfg(millpond_loom)]
    #[inline]
    pub(crate) fn try_lock_until(
        &self,
        _deadline: std::time::Instant,
    ) -> Option<MutexGuard<'_, T>> {
        Some(self.lock())
    }
}

macro_rules! atomic_int {
    ($name:ident, $int:ty) => {
        #[derive(Debug, Default)]
        pub(crate) struct $name(atomic_impl::$name);

        #[allow(dead_code, reason = "each part of the crate uses a different subset")]
        impl $name {
            #[inline]
            pub(crate) fn new(value: $int) -> Self {
                Self(atomic_impl::$name::new(value))
            }

            #[inline]
            pub(crate) fn load(&self, order: Ordering) -> $int {
                self.0.load(order)
            }

            #[inline]
            pub(crate) fn store(&self, value: $int, order: Ordering) {
                self.0.store(value, order);
            }

            #[inline]
            pub(crate) fn fetch_add(&self, value: $int, order: Ordering) -> $int {
                self.0.fetch_add(value, order)
            }

            #[inline]
            pub(crate) fn fetch_sub(&self, value: $int, order: Ordering) -> $int {
                self.0.fetch_sub(value, order)
            }

            #[inline]
            pub(crate) fn swap(&self, value: $int, order: Ordering) -> $int {
                self.0.swap(value, order)
            }

            #[inline]
            pub(crate) fn fetch_or(&self, value: $int, order: Ordering) -> $int {
                self.0.fetch_or(value, order)
            }

            #[inline]
            pub(crate) fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.0.compare_exchange(current, new, success, failure)
            }

            pub(crate) fn fetch_and(&self, value: $int, order: Ordering) -> $int {
                self.0.fetch_and(value, order)
            }

            #[inline]
            pub(crate) fn compare_exchange_weak(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.0.compare_exchange_weak(current, new, success, failure)
            }
        }
    };
}

atomic_int!(AtomicUsize, usize);
atomic_int!(AtomicU64, u64);

/// A flag, modelled under loom.
#[derive(Debug, Default)]
pub(crate) struct AtomicBool(atomic_impl::AtomicBool);

impl AtomicBool {
    #[inline]
    pub(crate) fn new(value: bool) -> Self {
        Self(atomic_impl::AtomicBool::new(value))
    }

    #[inline]
    pub(crate) fn load(&self, order: Ordering) -> bool {
        self.0.load(order)
    }

    #[inline]
    pub(crate) fn store(&self, value: bool, order: Ordering) {
        self.0.store(value, order);
    }
}

/// Process-wide state, for `static`s: outside every model, as loom's types cannot live in a
/// `static`. Only for state whose races are harmless or serialised by its own lock.
pub(crate) mod process {
    use super::Ordering;

    /// A flag a `static` can hold.
    #[derive(Debug)]
    pub(crate) struct AtomicBool(std::sync::atomic::AtomicBool);

    impl AtomicBool {
        pub(crate) const fn new(value: bool) -> Self {
            Self(std::sync::atomic::AtomicBool::new(value))
        }

        #[inline]
        pub(crate) fn load(&self, order: Ordering) -> bool {
            self.0.load(order)
        }

        #[inline]
        pub(crate) fn store(&self, value: bool, order: Ordering) {
            self.0.store(value, order);
        }
    }

    /// A mutex a `static` can hold (`parking_lot`'s, whose `new` is `const`), in every build.
    pub(crate) type Mutex<T> = parking_lot::Mutex<T>;
}

/// Keeps a value on cache lines of its own, so that writes to it do not slow down readers of
/// its neighbours (false sharing). 128 bytes covers the adjacent-line prefetcher of x86 cores.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A small number for the calling thread, handed out in order of first use, so that the threads
/// of a runtime spread evenly over sharded structures. Not a thread id: only its spread matters.
pub(crate) fn thread_index() -> usize {
    use std::cell::Cell;
    // A process-wide counter outside every model: which shard a thread uses never affects
    // correctness, only speed.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
    }
    INDEX.with(|index| {
        index.get().unwrap_or_else(|| {
            // Relaxed: only distinctness matters; no memory is published through the counter.
            let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            index.set(Some(next));
            next
        })
    })
}

/// A number no other call in this process returns, for naming objects that outlive their
/// addresses (a freed pool's address can be reused; its id cannot).
pub(crate) fn unique_id() -> u64 {
    // Outside every model, like `thread_index`: ids are compared, never synchronised on.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Relaxed: only distinctness matters.
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Wakes every task waiting at the moment it is told to: tokio's `Notify`, or under loom a model
/// of the part of it the crate relies on (a `Notified` created before `notify_waiters` completes,
/// polled or not, is woken by it), so that models check how the crate uses it.
#[cfg(not(millpond_loom))]
#[cfg_attr(not(feature = "postgres"), allow(dead_code, reason = "used by the watcher"))]
pub(crate) type Notify = tokio::sync::Notify;
#[cfg(millpond_loom)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code, reason = "used by the watcher"))]
pub(crate) type Notify = loom_notify::Notify;

#[cfg(millpond_loom)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code, reason = "used by the watcher"))]
mod loom_notify {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    #[derive(Debug, Default)]
    struct State {
        /// How many times `notify_waiters` ran.
        generation: u64,
        waiters: Vec<Waker>,
    }

    #[derive(Debug, Default)]
    pub(crate) struct Notify(loom::sync::Mutex<State>);

    impl Notify {
        fn state(&self) -> loom::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        pub(crate) fn notified(&self) -> Notified<'_> {
            Notified { notify: self, generation: self.state().generation }
        }

        pub(crate) fn notify_waiters(&self) {
            let waiters = {
                let mut state = self.state();
                state.generation += 1;
                std::mem::take(&mut state.waiters)
            };
            waiters.into_iter().for_each(Waker::wake);
        }
    }

    pub(crate) struct Notified<'a> {
        notify: &'a Notify,
        generation: u64,
    }

    impl Future for Notified<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut state = self.notify.state();
            if state.generation != self.generation {
                return Poll::Ready(());
            }
            state.waiters.push(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// A list of parked tasks to notify: event-listener's `Event`, or under loom a model of the part
/// of it the crate relies on (listeners are notified in the order they started listening;
/// `notify_additional_relaxed(n)` notifies `n` listeners not yet notified; a listener dropped
/// after its notification, before it used it, passes it on), so that models check how the crate
/// uses it.
#[cfg(not(millpond_loom))]
pub(crate) use event_listener::{Event, EventListener};
#[cfg(millpond_loom)]
pub(crate) use loom_event::{Event, EventListener};

#[cfg(millpond_loom)]
mod loom_event {
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    #[derive(Debug)]
    struct Entry {
        id: u64,
        waker: Option<Waker>,
        notified: bool,
    }

    #[derive(Debug, Default)]
    struct State {
        next_id: u64,
        entries: VecDeque<Entry>,
    }

    type Shared = std::sync::Arc<loom::sync::Mutex<State>>;

    fn lock(shared: &Shared) -> loom::sync::MutexGuard<'_, State> {
        shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn notify(shared: &Shared, count: usize) -> usize {
        let woken: Vec<Waker> = {
            let mut state = lock(shared);
            state
                .entries
                .iter_mut()
                .filter(|entry| !entry.notified)
                .take(count)
                .filter_map(|entry| {
                    entry.notified = true;
                    entry.waker.take().or(Some(Waker::noop().clone()))
                })
                .collect()
        };
        let notified = woken.len();
        woken.into_iter().for_each(Waker::wake);
        notified
    }

    #[derive(Debug, Default)]
    pub(crate) struct Event(Shared);

    impl Event {
        pub(crate) fn new() -> Self {
            Self::default()
        }

        pub(crate) fn listen(&self) -> EventListener {
            let mut state = lock(&self.0);
            let id = state.next_id;
            state.next_id += 1;
            state.entries.push_back(Entry { id, waker: None, notified: false });
            EventListener { shared: std::sync::Arc::clone(&self.0), id }
        }

        pub(crate) fn notify_additional_relaxed(&self, count: usize) -> usize {
            notify(&self.0, count)
        }
    }

    #[derive(Debug)]
    pub(crate) struct EventListener {
        shared: Shared,
        id: u64,
    }

    impl Future for EventListener {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut state = lock(&self.shared);
            let Some(index) = state.entries.iter().position(|entry| entry.id == self.id) else {
                return Poll::Ready(());
            };
            if state.entries[index].notified {
                state.entries.remove(index);
                return Poll::Ready(());
            }
            state.entries[index].waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    impl Drop for EventListener {
        fn drop(&mut self) {
            let passed_on = {
                let mut state = lock(&self.shared);
                let index = state.entries.iter().position(|entry| entry.id == self.id);
                index
                    .and_then(|index| state.entries.remove(index))
                    .is_some_and(|entry| entry.notified)
            };
            if passed_on {
                notify(&self.shared, 1);
            }
        }
    }
}
