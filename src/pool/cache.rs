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

use tokio::time::Instant;

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

/// One checkout in this many, on average, has its hold time measured with a clock read of its
/// own when it ends; the others are counted with the last measured one. A clock read costs about
/// as much as the rest of a cached checkout (docs/benchmarks.md), and a histogram needs only a
/// sample of the values, not each one.
const HOLD_SAMPLE_PERIOD: u32 = 16;

/// Counters and timings recorded on the thread that saw them, merged into the pool's metrics on
/// demand: recording them under the pool lock made every checkout bounce the histogram's cache
/// lines between cores.
#[derive(Default)]
struct ShardStats {
    gets_direct: u64,
    gets_waited: u64,
    hold: DurationHistogram,
    /// Checkouts ended since the last one whose hold was measured; they count as that one's
    /// value when the stats are merged, so the histogram's count stays exact.
    unmeasured: u64,
    last_hold: Duration,
    /// Checkouts to end before the next measured one. Starts at zero, so the first is measured.
    countdown: u32,
    wait: DurationHistogram,
}

impl ShardStats {
    /// Records a checkout that ended: how long it was held, and how long its `get()` queued.
    fn checkout_ended(&mut self, held: Duration, waited: Option<Duration>) {
        self.hold.record(held);
        self.count_get(waited);
    }

    fn count_get(&mut self, waited: Option<Duration>) {
        match waited {
            Some(waited) => {
                self.gets_waited += 1;
                self.wait.record(waited);
            }
            None => self.gets_direct += 1,
        }
    }

    /// Whether the checkout ending now is one whose hold is measured.
    fn measure_this_one(&mut self) -> bool {
        if self.countdown > 0 {
            self.countdown -= 1;
            return false;
        }
        // A jittered period, so a caller whose checkouts alternate in step with the period
        // cannot have only one kind of them measured.
        self.countdown = fastrand::u32(HOLD_SAMPLE_PERIOD / 2..HOLD_SAMPLE_PERIOD * 3 / 2);
        true
    }

    fn merge_into(&self, metrics: &mut Metrics) {
        metrics.gets_direct += self.gets_direct;
        metrics.gets_waited += self.gets_waited;
        metrics.hold_time.merge(&self.hold);
        metrics.hold_time.record_n(self.last_hold, self.unmeasured);
        metrics.wait_time.merge(&self.wait);
    }
}

struct Slot<T, H> {
    value: Option<T>,
    /// This shard's handle to the pool; taken away when the pool closes (it points back at the
    /// pool, so keeping it would keep the pool alive).
    handle: Option<H>,
    /// The latest clock reading taken on this shard: by a `get()` that took from it, a measured
    /// return, or the maintenance tick. A return that reads no clock stamps the resource with it
    /// (never later than the true time, so a check or an idle close can only come early).
    recent: Option<Instant>,
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
                    recent: None,
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
    /// (none once the pool closed): one lock for both, as every `get()` needs the handle. `now`
    /// is the caller's clock reading, kept as the shard's latest.
    pub(crate) fn take(&self, now: Instant) -> (Option<T>, Option<H>) {
        let mut guard = self.home().lock();
        let slot = &mut *guard;
        advance(&mut slot.recent, now);
        let Some(handle) = &slot.handle else {
            return (None, None);
        };
        let handle = handle.clone();
        (slot.value.take(), Some(handle))
    }

    /// Ends a checkout that began at `acquired_at` (its `get()` queued for `waited`): stamps the
    /// value with the time through `settle`, which says whether it may be cached, records the
    /// checkout, and caches the value in this thread's shard unless caching is off, the slot is
    /// taken, or there is demand for it elsewhere.
    ///
    /// The stamp is a fresh clock reading for about one return in [`HOLD_SAMPLE_PERIOD`] (whose
    /// hold time it measures) and the shard's latest reading for the rest, never earlier than
    /// `acquired_at`. A declined value was stamped the same way; a caller that hands it on reads
    /// the clock itself.
    pub(crate) fn put(
        &self,
        mut value: T,
        acquired_at: Instant,
        waited: Option<Duration>,
        settle: impl FnOnce(&mut T, Instant) -> bool,
    ) -> Put<T> {
        let mut guard = self.home().lock();
        let slot = &mut *guard;
        let now = if slot.stats.measure_this_one() {
            let now = Instant::now();
            advance(&mut slot.recent, now);
            let held = now.saturating_duration_since(acquired_at);
            slot.stats.hold.record_n(held, slot.stats.unmeasured + 1);
            slot.stats.unmeasured = 0;
            slot.stats.last_hold = held;
            now
        } else {
            slot.stats.unmeasured += 1;
            slot.recent.map_or(acquired_at, |recent| recent.max(acquired_at))
        };
        slot.stats.count_get(waited);
        let cacheable = settle(&mut value, now);
        // Relaxed: the shard mutex orders this load against the engine's spill (module docs).
        if !cacheable
            || !self.caching
            || slot.value.is_some()
            || self.demand.load(Ordering::Relaxed) != 0
        {
            return Put::Declined(value);
        }
        slot.value = Some(value);
        Put::Cached
    }

    /// Whether callers queue or the pool closed, as last published: a hint for a returner to go
    /// straight to the pool's idle set. Only `put` decides whether a value may be cached.
    pub(crate) fn in_demand(&self) -> bool {
        // Relaxed: a hint; a stale answer costs a detour, never a wrong hand-out.
        self.caching && self.demand.load(Ordering::Relaxed) != 0
    }

    /// Raises every shard's latest clock reading to `now` (the maintenance tick), so a return on a
    /// thread that took nothing for a while is stamped no more than a tick early.
    pub(crate) fn refresh(&self, now: Instant) {
        for shard in &self.shards {
            advance(&mut shard.lock().recent, now);
        }
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
            shard.lock().stats.merge_into(metrics);
        }
    }
}

/// Moves a shard's latest reading forward to `now`, never back.
fn advance(recent: &mut Option<Instant>, now: Instant) {
    if recent.is_none_or(|recent| recent < now) {
        *recent = Some(now);
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
