//! Admission control: rate limits at submit, and overload protection that sheds low-priority
//! and stale work so the rest keeps its latency.
//!
//! - **Rate limits** (token buckets, `crate::rate`): one for the whole pool and one per key,
//!   checked before a submit takes queue room; a refused task comes back in
//!   `SubmitError::RateLimited`. With the `redis` feature, a per-key limit shared by every
//!   instance of a service (`crate::redis::RateLimiter`) is checked by `submit_keyed` before
//!   the others: it is the one check that awaits (a round trip, unless its short-circuit
//!   knows the key is refused), so it runs before any queue room is reserved.
//! - **An adaptive limit** (`crate::limit`): a worker takes room under it before it starts a
//!   task, so that the number of tasks running follows what the backend they call can take;
//!   a task it turns away is shed like stale work.
//! - **Stale work.** A task that waited in the queue longer than `max_queue_wait` is dropped
//!   when a worker reaches it, before it runs; its handle says `TaskError::Shed`. During a spike
//!   that work is usually no longer wanted, and running it only lengthens the spike.
//! - **Priorities.** While the pool is overloaded (more than `overload_queue_len` tasks queued,
//!   a queue-wait p99 above `overload_queue_wait`: more than 1 % of the tasks started in the
//!   last 100–200 ms waited longer, or a CPU usage past `overload_cpu`'s threshold), low-priority submits are refused with
//!   `SubmitError::Overloaded` and low-priority tasks already queued are shed when reached. High-priority work is never refused for load.
//!   The queue stays first in, first out, so under normal load a low-priority task waits no
//!   longer than a high-priority one: it is never starved, only shed when the pool is over its
//!   limits, and admitted again as soon as it is back under them.

use std::time::Duration;

use tokio::time::Instant;

use super::inner::Refused;
use super::job::Job;
use crate::rate::{KeyedBuckets, TokenBucket};
use crate::sync::{AtomicU64, Ordering};

/// How much a task matters when the pool is overloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// Core work: never refused or shed for load (the default).
    #[default]
    High,
    /// Work that can wait for a quieter moment or be dropped: refused and shed first.
    Low,
}

/// When the pool counts as overloaded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overload {
    pub(crate) queue_len: Option<usize>,
    pub(crate) queue_wait: Option<Duration>,
    /// A CPU usage past a threshold.
    pub(crate) cpu: Option<(crate::load::CpuSampler, f64)>,
}

impl Overload {
    fn is_set(&self) -> bool {
        self.queue_len.is_some() || self.queue_wait.is_some() || self.cpu.is_some()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub(crate) rate: Option<TokenBucket>,
    pub(crate) per_key: Option<KeyedBuckets>,
    pub(crate) overload: Overload,
    pub(crate) max_queue_wait: Option<Duration>,
    /// How many tasks may run at once, moved by how they go (`adaptive_limit`).
    pub(crate) limiter: Option<crate::limit::AdaptiveLimiter>,
    /// A per-key limit kept in Redis, shared with other processes.
    #[cfg(feature = "redis")]
    pub(crate) shared_per_key: Option<crate::redis::RateLimiter>,
    /// The waits of the tasks workers started lately, against `overload.queue_wait`.
    tail: WaitTail,
    shed: AtomicU64,
}

impl Admission {
    pub(crate) fn new(
        rate: Option<TokenBucket>,
        per_key: Option<KeyedBuckets>,
        overload: Overload,
        max_queue_wait: Option<Duration>,
    ) -> Self {
        Self { rate, per_key, overload, max_queue_wait, ..Self::default() }
    }

    /// Whether queued jobs may be shed, so that they need a way to tell their handle.
    pub(crate) fn may_shed(&self) -> bool {
        self.max_queue_wait.is_some() || self.overload.is_set() || self.limiter.is_some()
    }

    /// Counts a job the adaptive limit turned away.
    pub(crate) fn count_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Lets a submit in, or says why not; `queued` counts the tasks waiting now.
    pub(crate) fn admit(
        &self,
        key: Option<u64>,
        priority: Priority,
        queued: impl FnOnce() -> usize,
    ) -> Result<(), Refused> {
        if priority == Priority::Low && self.is_overloaded(queued) {
            return Err(Refused::Overloaded);
        }
        if let (Some(buckets), Some(key)) = (&self.per_key, key) {
            buckets.try_take(key).map_err(|_| Refused::RateLimited)?;
        }
        if let Some(bucket) = &self.rate {
            bucket.try_take().map_err(|_| Refused::RateLimited)?;
        }
        Ok(())
    }

    /// Asks the shared per-key limit, if there is one, to admit `key`. Anything but an
    /// admission refuses the submit: `Err(None)` when the key is over its limit, `Err(Some)`
    /// with the cause when Redis could not answer and the limiter fails closed.
    #[cfg(feature = "redis")]
    pub(crate) async fn admit_shared(
        &self,
        key: u64,
    ) -> Result<(), Option<crate::redis::rate_limit::Unavailable>> {
        let Some(limiter) = &self.shared_per_key else { return Ok(()) };
        match limiter.check(key.to_string()).await {
            Ok(decision) if decision.is_allowed() => Ok(()),
            Err(crate::redis::rate_limit::Error::Unavailable(cause)) => Err(Some(cause)),
            _ => Err(None),
        }
    }

    fn is_overloaded(&self, queued: impl FnOnce() -> usize) -> bool {
        let waiting_too_long =
            self.overload.queue_wait.is_some() && self.tail.p99_above(Instant::now());
        let cpu_busy =
            self.overload.cpu.as_ref().is_some_and(|(cpu, threshold)| cpu.is_above(*threshold));
        waiting_too_long
            || cpu_busy
            || self.overload.queue_len.is_some_and(|limit| queued() > limit)
    }

    /// Decides, as a worker reaches `job` after it waited `waited`, whether to drop it unrun.
    pub(crate) fn should_shed(
        &self,
        job: &Job,
        waited: Duration,
        queued: impl FnOnce() -> usize,
    ) -> bool {
        if let Some(limit) = self.overload.queue_wait {
            self.tail.record(Instant::now(), waited > limit);
        }
        let stale = self.max_queue_wait.is_some_and(|limit| waited > limit);
        let shed = stale || (job.priority == Priority::Low && self.is_overloaded(queued));
        if shed {
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
        shed
    }

    pub(crate) fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// How long a window of the wait tail lasts; a verdict covers the current window and the last.
const TAIL_WINDOW: Duration = Duration::from_millis(100);

/// Counts, per 100 ms window, the tasks workers started and how many of them had waited past
/// the limit: more than 1 % over it means the queue-wait p99 is above it. One word per window
/// (window number, started, over), updated with one atomic add, or a compare-and-swap when a
/// window ends.
///
/// Threads read the clock before they count, so a thread can arrive with a window older than
/// the one another thread has since opened. It counts into the newer window rather than
/// rolling the word back (which would wipe that window's counts), and the word of an ended
/// window replaces `previous` only if no later one already has: every count lands in the
/// window it was taken in or a later one, never nowhere. (A thread that lost the CPU for more
/// than [`STALE_WINDOWS`] windows between the two, or a count landing 109 minutes after the
/// last one, when window numbers wrap, can still blur a window: it is a heuristic.) The loom
/// models in `loom_models.rs` check this.
#[derive(Debug)]
pub(super) struct WaitTail {
    origin: Instant,
    current: AtomicU64,
    previous: AtomicU64,
}

impl Default for WaitTail {
    fn default() -> Self {
        Self { origin: Instant::now(), current: AtomicU64::new(0), previous: AtomicU64::new(0) }
    }
}

/// Bits of a window's word: 16 of window number, 24 of tasks started, 24 of tasks over.
const COUNT_MASK: u64 = 0xff_ffff;
const WINDOW_MASK: u64 = 0xffff;

fn tail_word(window: u64, started: u64, over: u64) -> u64 {
    ((window & WINDOW_MASK) << 48) | ((started & COUNT_MASK) << 24) | (over & COUNT_MASK)
}

fn tail_fields(word: u64) -> (u64, u64, u64) {
    (word >> 48, (word >> 24) & COUNT_MASK, word & COUNT_MASK)
}

/// How many windows a thread's clock reading may lag behind the current word's window and still
/// count into it.
const STALE_WINDOWS: u64 = 16;

/// Whether window `later` comes after window `earlier` by at most [`STALE_WINDOWS`].
fn just_after(later: u64, earlier: u64) -> bool {
    (1..=STALE_WINDOWS).contains(&(later.wrapping_sub(earlier) & WINDOW_MASK))
}

impl WaitTail {
    fn window(&self, now: Instant) -> u64 {
        let elapsed = crate::time::nanos(now.saturating_duration_since(self.origin));
        (elapsed / crate::time::nanos(TAIL_WINDOW)) & WINDOW_MASK
    }

    pub(super) fn record(&self, now: Instant, over: bool) {
        let window = self.window(now);
        let mut word = self.current.load(Ordering::Acquire);
        loop {
            let (number, started, _) = tail_fields(word);
            if number == window || just_after(number, window) {
                // A window opened since cannot be replaced by this add: it only moves forward,
                // so the count lands there at worst.
                if started < COUNT_MASK {
                    self.current.fetch_add(tail_word(0, 1, u64::from(over)), Ordering::AcqRel);
                }
                return;
            }
            let fresh = tail_word(window, 1, u64::from(over));
            match self.current.compare_exchange_weak(
                word,
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // The window that just ended is the previous one only if it was the last;
                    // else the previous one was empty.
                    let ended = if (number + 1) & WINDOW_MASK == window {
                        word
                    } else {
                        tail_word(window.wrapping_sub(1), 0, 0)
                    };
                    self.retire(ended);
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Makes `ended` the previous window, unless a thread that opened a later window already
    /// stored a later one (it can get there first after a preemption).
    fn retire(&self, ended: u64) {
        let (number, ..) = tail_fields(ended);
        let mut previous = self.previous.load(Ordering::Acquire);
        loop {
            if just_after(tail_fields(previous).0, number) {
                return;
            }
            match self.previous.compare_exchange_weak(
                previous,
                ended,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => previous = actual,
            }
        }
    }

    /// `(started, over)` over this window and the last.
    pub(super) fn recent(&self, now: Instant) -> (u64, u64) {
        let window = self.window(now);
        let recent = |number: u64| number == window || (number + 1) & WINDOW_MASK == window;
        let (mut started, mut over) = (0, 0);
        for word in [self.current.load(Ordering::Acquire), self.previous.load(Ordering::Acquire)] {
            let (number, count, late) = tail_fields(word);
            if count > 0 && recent(number) {
                started += count;
                over += late;
            }
        }
        (started, over)
    }

    /// Whether more than 1 % of the tasks started in this window and the last waited too long.
    fn p99_above(&self, now: Instant) -> bool {
        let (started, over) = self.recent(now);
        over * 100 > started
    }

    /// A moment in the middle of window `window`, for the models.
    #[cfg(all(test, millpond_loom))]
    pub(super) fn at(&self, window: u32) -> Instant {
        self.origin + TAIL_WINDOW * window + TAIL_WINDOW / 2
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_tail_judges_the_last_two_windows_at_one_percent() {
        let tail = WaitTail::default();
        let at = |ms| tail.origin + Duration::from_millis(ms);
        for _ in 0..99 {
            tail.record(at(10), false);
        }
        tail.record(at(20), true);
        assert!(!tail.p99_above(at(20)), "1 in 100 is the p99, not above it");
        tail.record(at(120), true);
        assert!(tail.p99_above(at(150)), "2 in 101 over the last two windows");
        assert!(tail.p99_above(at(199)));
        assert!(!tail.p99_above(at(300)), "both windows have aged out");
        tail.record(at(510), false);
        assert!(!tail.p99_above(at(510)), "a window that is not the last one is forgotten");
    }
}
