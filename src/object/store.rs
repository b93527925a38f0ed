//! The engine of the object pool: a bounded shared store and the per-thread caches in front of it.
//!
//! # The bound
//!
//! Idle values live in two places: the *shelf*, one `Vec` behind a mutex shared by every thread,
//! and each thread's [`LocalCache`], which only its own thread touches (so the hot path takes no
//! lock and writes no shared cache line). `max_idle` must hold for their sum, yet a thread cannot
//! see the other threads' caches. So every cache owns a *reservation*: `reserved` room inside
//! `max_idle` that only it may fill, granted and returned under the shelf lock. The invariant,
//! checked on every locked step in debug builds and in the loom models, is
//!
//! ```text
//! shelf.len() + Σ reservation  <=  max_idle,        cache.len() <= cache.reservation
//! ```
//!
//! which bounds all idle values by `max_idle` without counting them on the hot path. A cache with
//! free reserved room takes a returned value without asking anyone; when its room is used up it
//! spills half of its values onto the shelf (room moves with them) and asks for more, and when it
//! runs dry it refills half of its target from the shelf in one locked step.
//!
//! # Releasing values
//!
//! A value leaves the pool only through [`Store::discard`], which keeps the `live` count honest.
//! A thread that exits hands its cache to the shelf ([`LocalCache::detach`]), so no idle value is
//! stranded with it. `trim` cannot reach into other threads' caches, so it bumps an *epoch*; each
//! cache compares it on its next use and, when it changed, flushes into the shelf under the trim's
//! target (the same lazy hand-back Go's `sync.Pool` does at each collection).

use crate::sync::{Arc, AtomicU64, AtomicUsize, CachePadded, Mutex, Ordering};

/// The pool's bounds, fixed at build.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_idle: usize,
    /// The most values one thread's cache holds.
    pub(crate) thread_cache: usize,
    pub(crate) max_total: Option<usize>,
}

/// What a thread's cache publishes for `status()`: its idle count and its reuse count packed in
/// one word, written only by its owner with a plain store (no read-modify-write, one store per
/// operation on the hot path) and read by anyone.
#[derive(Debug, Default)]
pub(crate) struct CacheStats(AtomicU64);

/// Bits of [`CacheStats`] that hold the idle count; the builder caps `thread_cache` below it.
const IDLE_BITS: u32 = 16;

/// The largest thread cache [`CacheStats`] can describe.
pub(crate) const MAX_THREAD_CACHE: usize = (1 << IDLE_BITS) - 1;

impl CacheStats {
    #[inline]
    fn publish(&self, idle: usize, reused: u64) {
        self.0.store(reused << IDLE_BITS | idle as u64, Ordering::Relaxed);
    }

    /// `(idle, reused)`.
    fn read(&self) -> (usize, u64) {
        let word = self.0.load(Ordering::Relaxed);
        ((word & MAX_THREAD_CACHE as u64) as usize, word >> IDLE_BITS)
    }
}

/// The shared side of the pool.
#[derive(Debug)]
pub(crate) struct Store<T> {
    limits: Limits,
    shelf: Mutex<Shelf<T>>,
    /// Bumped by `trim` (under the shelf lock); caches compare it on every use.
    epoch: CachePadded<AtomicU64>,
    /// Tracked values alive: idle anywhere or checked out.
    live: AtomicUsize,
    created: AtomicU64,
    discarded: AtomicU64,
}

#[derive(Debug)]
struct Shelf<T> {
    /// Least recently returned first, so trimming drops the coldest values.
    values: Vec<T>,
    /// Σ of every cache's reservation.
    reserved: usize,
    /// The smallest `values.len()` since the last `release_unused`: that many values sat on the
    /// shelf untouched for the whole period.
    low_water: usize,
    /// The idle target of the latest `trim`, applied by caches when they see its epoch.
    trim_target: usize,
    caches: Vec<Arc<CacheStats>>,
    /// Reuse counted by caches that have gone, and by checkouts made without a cache.
    retired_reused: u64,
}

impl<T> Shelf<T> {
    /// The bound, asserted in debug builds and in the loom models (which run optimised).
    #[inline]
    fn check(&self, limits: &Limits) {
        #[cfg(not(any(debug_assertions, millpond_loom)))]
        let _ = (self, limits);
        #[cfg(any(debug_assertions, millpond_loom))]
        assert!(
            self.values.len() + self.reserved <= limits.max_idle,
            "idle bound broken: {} on the shelf + {} reserved > {}",
            self.values.len(),
            self.reserved,
            limits.max_idle
        );
    }

    /// Takes the `count` least recently returned values off the shelf, for dropping.
    fn take_oldest(&mut self, count: usize) -> Vec<T> {
        let taken = self.values.drain(..count.min(self.values.len())).collect();
        self.low_water = self.low_water.min(self.values.len());
        taken
    }

    fn take_top(&mut self) -> Option<T> {
        let value = self.values.pop();
        self.low_water = self.low_water.min(self.values.len());
        value
    }
}

/// A snapshot of the store's counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) idle: usize,
    pub(crate) live: usize,
    pub(crate) created: u64,
    pub(crate) reused: u64,
    pub(crate) discarded: u64,
}

impl<T> Store<T> {
    pub(crate) fn new(limits: Limits, initial: Vec<T>) -> Self {
        let count = initial.len();
        let mut values = Vec::with_capacity(limits.max_idle.min(1024).max(count));
        values.extend(initial);
        Self {
            limits,
            shelf: Mutex::new(Shelf {
                values,
                reserved: 0,
                low_water: count,
                trim_target: limits.max_idle,
                caches: Vec::new(),
                retired_reused: 0,
            }),
            epoch: CachePadded(AtomicU64::new(0)),
            live: AtomicUsize::new(count),
            created: AtomicU64::new(count as u64),
            discarded: AtomicU64::new(0),
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts a value about to be created. Returns `false`, counting nothing, when `max_total`
    /// values are already alive and `bounded` says to respect it.
    pub(crate) fn admit(&self, bounded: bool) -> bool {
        match self.limits.max_total {
            Some(max) if bounded => {
                // Compare-and-swap, not add-then-undo: an undone add could make a concurrent
                // caller see the bound reached when it was not.
                let mut live = self.live.load(Ordering::Acquire);
                loop {
                    if live >= max {
                        return false;
                    }
                    match self.live.compare_exchange_weak(
                        live,
                        live + 1,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break,
                        Err(actual) => live = actual,
                    }
                }
            }
            _ => {
                self.live.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Undoes an [`admit`](Self::admit) whose creation never produced a value.
    pub(crate) fn unadmit(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.created.fetch_sub(1, Ordering::Relaxed);
    }

    /// Stops tracking a value that leaves the pool without being dropped by it (`take`).
    pub(crate) fn forget(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// Drops a tracked value, counting it.
    pub(crate) fn discard(&self, value: T) {
        self.count_discarded(1);
        drop(value);
    }

    /// Takes an idle value from the shelf directly, for a thread with no cache (during its
    /// thread-local teardown, or re-entered from a value's own `Drop`).
    pub(crate) fn take_uncached(&self) -> Option<T> {
        let mut shelf = self.shelf.lock();
        let value = shelf.take_top();
        if value.is_some() {
            shelf.retired_reused += 1;
        }
        value
    }

    /// Puts a value on the shelf directly, for a thread with no cache. Gives the value back when
    /// the pool already keeps `max_idle`.
    pub(crate) fn put_uncached(&self, value: T) -> Result<(), T> {
        let mut shelf = self.shelf.lock();
        if shelf.values.len() + shelf.reserved < self.limits.max_idle {
            shelf.values.push(value);
            shelf.check(&self.limits);
            Ok(())
        } else {
            Err(value)
        }
    }

    /// Releases idle values until at most `target` stay on the shelf, and asks every thread's
    /// cache to hand its values back under the same target on its next use. Returns the values
    /// to drop, so the caller drops them outside the lock.
    pub(crate) fn trim(&self, target: usize) -> Vec<T> {
        let mut shelf = self.shelf.lock();
        shelf.trim_target = target;
        // Release: a cache that sees the new epoch also sees the target written before it.
        self.epoch.fetch_add(1, Ordering::Release);
        let excess = shelf.values.len().saturating_sub(target);
        let dropped = shelf.take_oldest(excess);
        drop(shelf);
        self.count_discarded(dropped.len());
        dropped
    }

    /// Releases the values that sat on the shelf untouched since the previous call, keeping
    /// `keep` at least, and asks caches to move their values to the shelf so that the next call
    /// judges them too.
    pub(crate) fn release_unused(&self, keep: usize) -> Vec<T> {
        let mut shelf = self.shelf.lock();
        let unused = shelf.low_water.min(shelf.values.len().saturating_sub(keep));
        let dropped = shelf.take_oldest(unused);
        shelf.low_water = shelf.values.len();
        shelf.trim_target = self.limits.max_idle;
        self.epoch.fetch_add(1, Ordering::Release);
        drop(shelf);
        self.count_discarded(dropped.len());
        dropped
    }

    fn count_discarded(&self, count: usize) {
        if count > 0 {
            self.live.fetch_sub(count, Ordering::AcqRel);
            self.discarded.fetch_add(count as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        let shelf = self.shelf.lock();
        let mut idle = shelf.values.len();
        let mut reused = shelf.retired_reused;
        for cache in &shelf.caches {
            let (cache_idle, cache_reused) = cache.read();
            idle += cache_idle;
            reused += cache_reused;
        }
        Counts {
            idle,
            live: self.live.load(Ordering::Acquire),
            created: self.created.load(Ordering::Relaxed),
            reused,
            discarded: self.discarded.load(Ordering::Relaxed),
        }
    }

    /// The number of values on the shelf and the room reserved by caches, for the models.
    #[cfg(all(test, millpond_loom))]
    pub(crate) fn shelf_state(&self) -> (usize, usize) {
        let shelf = self.shelf.lock();
        (shelf.values.len(), shelf.reserved)
    }
}

/// One thread's cache of idle values. Only its thread touches it, so it needs no lock; every
/// step that moves values or room between it and the shelf takes the shelf lock.
#[derive(Debug)]
pub(crate) struct LocalCache<T> {
    values: Vec<T>,
    /// Room inside `max_idle` this cache may fill without asking (counted in `Shelf::reserved`).
    reservation: usize,
    epoch: u64,
    reused: u64,
    stats: Arc<CacheStats>,
    /// Handed back by [`detach`](Self::detach): empty, and no longer counted by `status()`.
    detached: bool,
}

/// What became of a value handed to [`LocalCache::put`].
#[must_use]
pub(crate) enum Put<T> {
    Kept,
    /// The pool already keeps `max_idle` values: the caller discards this one.
    Full(T),
}

impl<T> LocalCache<T> {
    /// A new, empty cache, registered with `store` for `status()`.
    pub(crate) fn attach(store: &Store<T>) -> Self {
        let stats = Arc::new(CacheStats::default());
        let mut shelf = store.shelf.lock();
        shelf.caches.push(Arc::clone(&stats));
        Self {
            values: Vec::with_capacity(store.limits.thread_cache),
            reservation: 0,
            // The current epoch: a cache has nothing to hand back from earlier trims.
            epoch: store.epoch.load(Ordering::Acquire),
            reused: 0,
            stats,
            detached: false,
        }
    }

    /// Whether [`detach`](Self::detach) handed this cache back; it must not be used again.
    #[inline]
    pub(crate) fn is_detached(&self) -> bool {
        self.detached
    }

    /// Takes an idle value: this thread's most recently returned one, else a batch from the shelf.
    #[inline]
    pub(crate) fn take(&mut self, store: &Store<T>) -> Option<T> {
        self.follow_epoch(store);
        let value = match self.values.pop() {
            Some(value) => Some(value),
            None => self.refill(store),
        };
        if value.is_some() {
            self.reused += 1;
            self.stats.publish(self.values.len(), self.reused);
        }
        value
    }

    /// Keeps a returned value, in this cache when it has room, else on the shelf.
    #[inline]
    pub(crate) fn put(&mut self, store: &Store<T>, value: T) -> Put<T> {
        self.follow_epoch(store);
        let put = if self.values.len() < self.reservation {
            self.values.push(value);
            Put::Kept
        } else {
            self.put_slow(store, value)
        };
        self.stats.publish(self.values.len(), self.reused);
        put
    }

    /// Hands every value and all reserved room back to the shelf, as a thread does when it exits.
    /// The cache is left empty and unregistered: [`is_detached`](Self::is_detached).
    pub(crate) fn detach(&mut self, store: &Store<T>) {
        if self.detached {
            return;
        }
        self.detached = true;
        let mut shelf = store.shelf.lock();
        // Moving values and room together keeps the invariant: len <= reservation.
        shelf.values.append(&mut self.values);
        shelf.reserved -= std::mem::take(&mut self.reservation);
        shelf.retired_reused += std::mem::take(&mut self.reused);
        shelf.caches.retain(|stats| !Arc::ptr_eq(stats, &self.stats));
        shelf.check(&store.limits);
    }

    /// A trim happened since this cache last looked: move its values to the shelf, keeping at
    /// most the trim's target there, and give up the reserved room.
    ///
    /// Values beyond the target are dropped here, outside the shelf lock. The caller still
    /// borrows this thread's cache: a value whose `Drop` uses the same pool then finds the cache
    /// busy and takes the pool's uncached path.
    #[inline]
    pub(crate) fn follow_epoch(&mut self, store: &Store<T>) {
        let epoch = store.epoch.load(Ordering::Acquire);
        if epoch != self.epoch {
            drop(self.flush(store, epoch));
        }
    }

    #[cold]
    fn flush(&mut self, store: &Store<T>, epoch: u64) -> Vec<T> {
        self.epoch = epoch;
        let mut shelf = store.shelf.lock();
        shelf.values.append(&mut self.values);
        shelf.reserved -= self.reservation;
        self.reservation = 0;
        let excess = shelf.values.len().saturating_sub(shelf.trim_target);
        let dropped = shelf.take_oldest(excess);
        shelf.check(&store.limits);
        self.stats.publish(0, self.reused);
        drop(shelf);
        store.count_discarded(dropped.len());
        dropped
    }

    #[cold]
    fn refill(&mut self, store: &Store<T>) -> Option<T> {
        let mut shelf = store.shelf.lock();
        let half = store.limits.thread_cache.div_ceil(2);
        if half == 0 {
            // Thread caches are off: serve straight from the shelf.
            return shelf.take_top();
        }
        let batch = shelf.values.len().min(half);
        if batch == 0 {
            return None;
        }
        let from = shelf.values.len() - batch;
        self.values.extend(shelf.values.drain(from..));
        shelf.low_water = shelf.low_water.min(shelf.values.len());
        // The values bring their room with them: the shelf shrank by `batch`, so the
        // reservation may grow by as much without breaking the bound.
        if self.reservation < batch {
            shelf.reserved += batch - self.reservation;
            self.reservation = batch;
        }
        shelf.check(&store.limits);
        let value = self.values.pop();
        self.publish_locked();
        value
    }

    #[cold]
    fn put_slow(&mut self, store: &Store<T>, value: T) -> Put<T> {
        let target = store.limits.thread_cache;
        let mut shelf = store.shelf.lock();
        if self.values.len() >= target && target > 1 {
            // Full at its target: spill the older half, with its room, so the next returns on
            // this thread (often a thread that only returns) stay lock-free for a while.
            let half = self.values.len() / 2;
            shelf.values.extend(self.values.drain(..half));
            self.reservation -= half;
            shelf.reserved -= half;
        }
        let room = store.limits.max_idle - shelf.values.len() - shelf.reserved;
        let grow = room.min(target.saturating_sub(self.reservation));
        let put = if grow > 0 {
            self.reservation += grow;
            shelf.reserved += grow;
            self.values.push(value);
            Put::Kept
        } else if room > 0 {
            shelf.values.push(value);
            Put::Kept
        } else {
            Put::Full(value)
        };
        shelf.check(&store.limits);
        self.publish_locked();
        put
    }

    /// Publishes this cache's count while the caller still holds the shelf lock, so that
    /// `status()`, which sums under the same lock, never counts a value both on the shelf and
    /// here, and the sum stays within `max_idle`.
    fn publish_locked(&self) {
        self.stats.publish(self.values.len(), self.reused);
    }

    #[cfg(all(test, millpond_loom))]
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }
}
