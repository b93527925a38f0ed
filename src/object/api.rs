//! The public [`ObjectPool`] type.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use super::builder::ObjectPoolBuilder;
use super::guard::{Object, OwnedObject};
use super::registry::Caches;
use super::status::Status;
use super::store::{Limits, Put, Store};
use crate::sync::Arc;

type Create<T> = Box<dyn Fn() -> T + Send + Sync>;
type Reset<T> = Box<dyn Fn(&mut T) + Send + Sync>;
type IsReusable<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

pub(super) struct Hooks<T> {
    pub(super) create: Create<T>,
    pub(super) reset: Option<Reset<T>>,
    pub(super) is_reusable: Option<IsReusable<T>>,
}

/// A thread-safe pool of reusable values: buffers, encoders, parsers, scratch space.
///
/// [`get`](Self::get) hands out an idle value, or creates one when none is idle; it never blocks
/// and never fails. Dropping the guard runs the reset hook and keeps the value for the next
/// caller, up to [`max_idle`](ObjectPoolBuilder::max_idle).
///
/// Each thread keeps a few idle values of its own ([`thread_cache`](ObjectPoolBuilder::thread_cache)),
/// so a checkout and return on the same thread touch no lock and no shared cache line; a bounded
/// shared store behind them balances values between threads. Values cached by a thread that
/// exits go back to the shared store. Dropping the pool drops every value it keeps at once,
/// those cached by other threads included.
///
/// # Examples
///
/// ```
/// use millpond::object::ObjectPool;
///
/// let buffers = ObjectPool::builder(|| Vec::<u8>::with_capacity(4096))
///     .reset(|buffer| buffer.clear())
///     .is_reusable(|buffer| buffer.capacity() <= 64 * 1024)
///     .max_idle(256)
///     .min_idle(16)
///     .build()?;
///
/// let mut buffer = buffers.get();
/// buffer.extend_from_slice(b"hello");
/// drop(buffer); // cleared and kept
///
/// let buffer = buffers.get();
/// assert!(buffer.is_empty());
/// assert_eq!(buffers.status().created, 16);
/// # Ok::<(), millpond::BuildError>(())
/// ```
pub struct ObjectPool<T: Send + 'static> {
    /// Values are kept boxed: a checkout and a return move one pointer, whatever the size of
    /// `T`, and a value never moves in memory while the pool holds it.
    ///
    /// The threads' caches belong to the pool: dropping it drops every value it keeps.
    caches: Arc<Caches<Box<T>>>,
    hooks: Hooks<T>,
    min_idle: usize,
}

impl<T: Send + 'static> Drop for ObjectPool<T> {
    fn drop(&mut self) {
        // The values go with the pool's handle, on this thread: not with a handle an exiting
        // thread upgraded meanwhile, inside its thread-local teardown (`registry.rs`).
        self.caches.close_exits();
    }
}

impl<T: Send + 'static> fmt::Debug for ObjectPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool")
            .field("limits", self.caches.store.limits())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> ObjectPool<T> {
    /// Starts configuring a pool whose values are made by `create`.
    pub fn builder(create: impl Fn() -> T + Send + Sync + 'static) -> ObjectPoolBuilder<T> {
        ObjectPoolBuilder::new(create)
    }

    /// A pool with the default bounds and no reset hook.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::object::ObjectPool;
    ///
    /// let pool = ObjectPool::with_create(String::new);
    /// pool.get().push_str("scratch");
    /// ```
    pub fn with_create(create: impl Fn() -> T + Send + Sync + 'static) -> Self {
        let limits = Limits {
            max_idle: super::DEFAULT_MAX_IDLE,
            thread_cache: super::DEFAULT_THREAD_CACHE,
            max_total: None,
        };
        Self::new(Hooks { create: Box::new(create), reset: None, is_reusable: None }, limits, 0)
    }

    pub(super) fn new(hooks: Hooks<T>, limits: Limits, min_idle: usize) -> Self {
        let initial = (0..min_idle).map(|_| Box::new((hooks.create)())).collect();
        Self { caches: Arc::new(Caches::new(Store::new(limits, initial))), hooks, min_idle }
    }

    /// Checks out an idle value, or creates one. Never blocks.
    ///
    /// When [`max_total`](ObjectPoolBuilder::max_total) values are already out, the value is
    /// created outside the pool's count and dropped instead of kept when it comes back; use
    /// [`try_get`](Self::try_get) to respect the bound instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::object::ObjectPool;
    ///
    /// let pool = ObjectPool::builder(Vec::<u32>::new).reset(Vec::clear).build()?;
    /// let mut scratch = pool.get();
    /// scratch.push(7);
    /// # Ok::<(), millpond::BuildError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If the create function panics. The pool stays consistent.
    #[inline]
    pub fn get(&self) -> Object<'_, T> {
        let (value, tracked) = self.checkout();
        Object::new(self, value, tracked)
    }

    /// Like [`get`](Self::get), but the guard owns a handle to the pool, so it can be kept beyond
    /// the borrow, moved to another task, or stored.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use millpond::object::{ObjectPool, OwnedObject};
    ///
    /// let pool = Arc::new(ObjectPool::with_create(String::new));
    /// let name: OwnedObject<String> = pool.get_owned();
    /// std::thread::spawn(move || drop(name)).join().unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// If the create function panics.
    pub fn get_owned(self: &Arc<Self>) -> OwnedObject<T> {
        let (value, tracked) = self.checkout();
        OwnedObject::new(Arc::clone(self), value, tracked)
    }

    /// Checks out an idle value, or creates one if fewer than
    /// [`max_total`](ObjectPoolBuilder::max_total) values are alive; `None` otherwise. Without a
    /// `max_total` it always returns a value.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::object::ObjectPool;
    ///
    /// let pool = ObjectPool::builder(|| [0u8; 64]).max_total(1).build()?;
    /// let first = pool.try_get().expect("one value may be alive");
    /// assert!(pool.try_get().is_none());
    /// drop(first);
    /// assert!(pool.try_get().is_some());
    /// # Ok::<(), millpond::BuildError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If the create function panics.
    pub fn try_get(&self) -> Option<Object<'_, T>> {
        let value = self.take_idle().or_else(|| self.create_tracked())?;
        Some(Object::new(self, value, true))
    }

    /// Like [`try_get`](Self::try_get), with an owned guard as [`get_owned`](Self::get_owned).
    ///
    /// # Panics
    ///
    /// If the create function panics.
    pub fn try_get_owned(self: &Arc<Self>) -> Option<OwnedObject<T>> {
        let value = self.take_idle().or_else(|| self.create_tracked())?;
        Some(OwnedObject::new(Arc::clone(self), value, true))
    }

    /// Drops idle values until at most `keep` remain, starting with the least recently used.
    ///
    /// Values in this thread's cache are counted at once. Other threads' caches cannot be reached
    /// from here: each hands its values back under the same target on its next use of the pool,
    /// or when its thread exits.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::object::ObjectPool;
    ///
    /// let pool = ObjectPool::builder(|| vec![0u8; 1024]).min_idle(32).build()?;
    /// pool.trim(4);
    /// assert_eq!(pool.status().idle, 4);
    /// # Ok::<(), millpond::BuildError>(())
    /// ```
    pub fn trim(&self, keep: usize) {
        drop(self.caches.store.trim(keep));
        self.follow_trim_here();
    }

    /// Drops the idle values that no checkout needed since the previous call, keeping at least
    /// `min_idle`. Call it periodically (say every 30 seconds) and a pool that grew for a burst
    /// gives the memory back once the burst is over, while a steadily used pool keeps its values.
    ///
    /// A value counts as unneeded when it stayed in the shared store for the whole period; each
    /// call also moves the threads' cached values to the shared store (on their next use), so
    /// values that no thread takes back are released by the call after.
    ///
    /// # Examples
    ///
    /// ```
    /// use millpond::object::ObjectPool;
    ///
    /// let pool = ObjectPool::builder(|| vec![0u8; 1024]).min_idle(2).build()?;
    /// let burst: Vec<_> = (0..100).map(|_| pool.get()).collect();
    /// drop(burst);
    /// // Three idle periods: the first moves cached values to the shared store, the next ones
    /// // find them unused.
    /// for _ in 0..3 {
    ///     pool.release_unused();
    /// }
    /// assert_eq!(pool.status().idle, 2);
    /// # Ok::<(), millpond::BuildError>(())
    /// ```
    pub fn release_unused(&self) {
        drop(self.caches.store.release_unused(self.min_idle));
        self.follow_trim_here();
    }

    /// Counts of idle, live, created, reused and discarded values.
    pub fn status(&self) -> Status {
        let counts = self.caches.store.counts();
        Status {
            idle: counts.idle,
            live: counts.live,
            in_use: counts.live.saturating_sub(counts.idle),
            created: counts.created,
            reused: counts.reused,
            discarded: counts.discarded,
        }
    }

    fn follow_trim_here(&self) {
        // No cache on this thread (teardown): there is nothing here to hand back.
        let _ = self.caches.with_cache((), |cache, ()| {
            cache.follow_epoch(&self.caches.store);
        });
    }

    /// An idle value, or a new one; `true` when the pool tracks it.
    #[inline]
    fn checkout(&self) -> (Box<T>, bool) {
        match self.take_idle() {
            Some(value) => (value, true),
            None => self.create_any(),
        }
    }

    #[inline]
    fn take_idle(&self) -> Option<Box<T>> {
        match self.caches.with_cache((), |cache, ()| cache.take(&self.caches.store)) {
            Ok(value) => value,
            Err(()) => self.caches.store.take_uncached(),
        }
    }

    #[cold]
    fn create_any(&self) -> (Box<T>, bool) {
        match self.create_tracked() {
            Some(value) => (value, true),
            None => (Box::new((self.hooks.create)()), false),
        }
    }

    #[cold]
    fn create_tracked(&self) -> Option<Box<T>> {
        if !self.caches.store.admit(true) {
            return None;
        }
        match catch_unwind(AssertUnwindSafe(|| (self.hooks.create)())) {
            Ok(value) => Some(Box::new(value)),
            Err(panic) => {
                self.caches.store.unadmit();
                resume_unwind(panic)
            }
        }
    }

    /// Takes back a value from a guard: checks it, resets it and keeps it, or drops it.
    #[inline]
    pub(super) fn recycle(&self, mut value: Box<T>, tracked: bool) {
        if !tracked {
            return;
        }
        let hooks = &self.hooks;
        let verdict = catch_unwind(AssertUnwindSafe(|| {
            let reusable = hooks.is_reusable.as_ref().is_none_or(|is_reusable| is_reusable(&value));
            if let (true, Some(reset)) = (reusable, &hooks.reset) {
                reset(&mut value);
            }
            reusable
        }));
        match verdict {
            Ok(true) => {}
            Ok(false) => return self.caches.store.discard(value),
            Err(_) => {
                tracing::error!(
                    "an object pool's reset or is_reusable hook panicked; value dropped"
                );
                return self.caches.store.discard(value);
            }
        }
        let put =
            self.caches.with_cache(value, |cache, value| cache.put(&self.caches.store, value));
        match put {
            Ok(Put::Kept) => {}
            Ok(Put::Full(value)) => self.caches.store.discard(value),
            Err(value) => {
                if let Err(value) = self.caches.store.put_uncached(value) {
                    self.caches.store.discard(value);
                }
            }
        }
    }

    /// Stops tracking a value that a guard hands to its user for good.
    pub(super) fn detach(&self, tracked: bool) {
        if tracked {
            self.caches.store.forget();
        }
    }
}
