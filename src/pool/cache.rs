//! Thread-affine idle slots in front of the pool's shared idle set.
//!
//! A pool whose callers take and return resources without waiting spends most of its time moving
//! cache lines between cores: the pool lock, the idle queue, the counters, the `Arc` count. This
//! cache gives each thread (by a per-thread hint, so threads may share a shard) one slot of its
//! own: a resource returned on a thread waits there for the next `get()` on that thread. Each
//! shard also owns a handle to the pool in an allocation of its own, which the guards it serves
//! clone, so the reference counting of the fast path stays on the shard's cache lines too. It is
//! HikariCP's thread-local list, made safe for async tasks that migrate between threads: any
//! thread may use any shard; affinity only makes it fast.
//!
//! # Fairness and closing: the demand flag
//!
//! A resource must never sit in a slot while a caller waits for one, nor stay in a slot after the
//! pool closed. The engine raises `demand` under the pool lock *before* it queues a caller or
//! closes, and then spills every shard into the shared idle set, locking each shard in turn. A
//! returner reads `demand` while it holds its shard's lock and declines to cache when it is
//! raised. For any shard, either the returner's critical section comes first, and the spill that
//! follows finds its resource, or the spill's comes first, and the returner (synchronising with it
//! through the shard mutex) sees the raised flag. No fence or `SeqCst` is needed: the shard mutex
//! orders both sides. While the flag is up every shard stays empty, so later waiters skip the
//! spill. The engine lowers the flag once nobody waits; a stale raised flag only sends returns
//! down the shared path.

use std::time::Duration;

use super::engine::Entry;
use super::metrics::{DurationHistogram, Metrics};
use crate::sync::{AtomicUsize, CachePadded, Mutex, Ordering, thread_index};

/// Raised while callers are queued.
pub(crate) const DEMAND_WAITERS: usize = 1;
/// Raised once the pool is closed.
pub(crate) const DEMAND_CLOSED: usize = 2;
/// Raised while the pool holds more than `max_size` (after a shrink), so returns are closed.
pub(crate) const DEMAND_SHRINK: usize = 4;

/// What the engine needs from a cache in front of it.
pub(crate) trait LocalIdle<R> {
    /// Publishes the demand flags; see the module docs for the ordering argument.
    fn set_demand(&self, demand: usize);
    /// Moves every cached resource out, into `sink`.
    fn spill(&self, sink: &mut dyn FnMut(Entry<R>));
    /// How many resources are cached, without moving any.
    fn count(&self) -> usize;
}

/// Counters and timings recorded on the thread that saw them, merged into the pool's metrics on
/// demand: recording them under the pool lock made every checkout bounce the histogram's cache
/// lines between cores.
#[derive(Default)]
struct ShardStats {
    gets_direct: u64,
    gets_waited: u64,
    hold: DurationHistogram,
    wait: DurationHistogram,
}

impl ShardStats {
    /// Records a checkout that ended: how long it was held, and how long its `get()` queued.
    fn checkout_ended(&mut self, held: Duration, waited: Option<Duration>) {
        self.hold.record(held);
        match waited {
            Some(waited) => {
                self.gets_waited += 1;
                self.wait.record(waited);
            }
            None => self.gets_direct += 1,
        }
    }
}

struct Slot<T, H> {
    value: Option<T>,
    /// This shard's handle to the pool; taken away when the pool closes (it points back at the
    /// pool, so keeping it would keep the pool alive).
    handle: Option<H>,
    stats: ShardStats,
}

/// One shard, on cache lines of its own so neighbouring shards do not false-share.
type Shard<T, H> = CachePadded<Mutex<Slot<T, H>>>;

/// How a return went.
pub(crate) enum Put<T> {
    /// Cached in the caller's shard.
    Cached,
    /// Not cached: someone waits, the pool closed, or the slot was taken. Use the shared path.
    Declined(T),
}

pub(crate) struct IdleCache<T, H> {
    shards: Box<[Shard<T, H>]>,
    mask: usize,
    demand: AtomicUsize,
    /// Whether values are cached at all; when not, the shards only hand out pool handles.
    caching: bool,
}

/// The default shard count: a few per core, so threads seldom share one.
pub(crate) fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(4, |cores| cores.get() * 4).min(64)
}

impl<T, H: Clone> IdleCache<T, H> {
    /// A cache with at least `shards` shards (rounded up to a power of two); with `caching` off
    /// it only hands out per-shard pool handles.
    pub(crate) fn new(shards: usize, caching: bool) -> Self {
        let count = shards.max(1).next_power_of_two();
        let shards = (0..count)
            .map(|_| {
                CachePadded(Mutex::new(Slot {
                    value: None,
                    handle: None,
                    stats: ShardStats::default(),
                }))
            })
            .collect();
        Self { shards, mask: count - 1, demand: AtomicUsize::new(0), caching }
    }

    /// Gives every shard its handle (once the pool they point to exists).
    pub(crate) fn install_handles(&self, mut handle: impl FnMut() -> H) {
        for shard in &self.shards {
            shard.lock().handle = Some(handle());
        }
    }

    /// Drops every shard's handle, so the pool can be freed once its guards are gone.
    pub(crate) fn remove_handles(&self) {
        for shard in &self.shards {
            let handle = shard.lock().handle.take();
            drop(handle);
        }
    }

    fn home(&self) -> &Shard<T, H> {
        &self.shards[thread_index() & self.mask]
    }

    /// Takes the value cached in this thread's shard, if any, and a clone of the shard's handle
    /// (none once the pool closed): one lock for both, as every `get()` needs the handle.
    pub(crate) fn take(&self) -> (Option<T>, Option<H>) {
        let mut guard = self.home().lock();
        let slot = &mut *guard;
        let Some(handle) = &slot.handle else {
            return (None, None);
        };
        let handle = handle.clone();
        (slot.value.take(), Some(handle))
    }

    /// Records how long a value was held (and how long its `get()` queued), and caches it in
    /// this thread's shard unless caching is off or there is demand for it elsewhere.
    pub(crate) fn put(&self, value: T, held: Duration, waited: Option<Duration>) -> Put<T> {
        let mut slot = self.home().lock();
        slot.stats.checkout_ended(held, waited);
        // Relaxed: the shard mutex orders this load against the engine's spill (module docs).
        if !self.caching || slot.value.is_some() || self.demand.load(Ordering::Relaxed) != 0 {
            return Put::Declined(value);
        }
        slot.value = Some(value);
        Put::Cached
    }

    /// Records a checkout whose resource does not come back to the cache path (closed on
    /// return, or detached).
    pub(crate) fn checkout_ended(&self, held: Duration, waited: Option<Duration>) {
        self.home().lock().stats.checkout_ended(held, waited);
    }

    /// The cache as the engine sees it, when it caches values.
    pub(crate) fn as_local_idle<R>(&self) -> Option<&dyn LocalIdle<R>>
    where
        Self: LocalIdle<R>,
    {
        self.caching.then_some(self as &dyn LocalIdle<R>)
    }

    /// Adds the shards' counters into `metrics`.
    pub(crate) fn merge_stats(&self, metrics: &mut Metrics) {
        for shard in &self.shards {
            let slot = shard.lock();
            metrics.gets_direct += slot.stats.gets_direct;
            metrics.gets_waited += slot.stats.gets_waited;
            metrics.hold_time.merge(&slot.stats.hold);
            metrics.wait_time.merge(&slot.stats.wait);
        }
    }
}

impl<R, H> LocalIdle<R> for IdleCache<Entry<R>, H> {
    fn set_demand(&self, demand: usize) {
        // Relaxed: every reader loads it under a shard mutex that the engine locks after this
        // store (during the spill that follows a raise), which orders the two.
        self.demand.store(demand, Ordering::Relaxed);
    }

    fn spill(&self, sink: &mut dyn FnMut(Entry<R>)) {
        for shard in &self.shards {
            if let Some(entry) = shard.lock().value.take() {
                sink(entry);
            }
        }
    }

    fn count(&self) -> usize {
        self.shards.iter().filter(|shard| shard.lock().value.is_some()).count()
    }
}
