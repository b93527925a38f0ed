//! How many workers a pool has and may have, and the decisions to start and retire them: the
//! atomic core that `inner.rs` spawns tokio tasks around, small enough for the loom models to
//! drive directly.
//!
//! # One word
//!
//! The live count, the minimum and the maximum share one atomic word, so every decision that
//! reads one and changes another is a single compare-and-swap, totally ordered against every
//! other:
//!
//! | bits    | field | changed by                                              |
//! |---------|-------|---------------------------------------------------------|
//! | 0..21   | live  | `grow` (+1), the retirements (-1), `exited` (-1)        |
//! | 21..42  | min   | `resize` (only ever lowered, to the new maximum)        |
//! | 42..63  | max   | `resize`                                                |
//!
//! With three separate atomics, a `grow` that read the old maximum could count a new worker
//! just after a `resize` lowered it and found no surplus to interrupt, and two concurrent
//! resizes could leave the minimum of one above the maximum of the other. In one word, a grow
//! either comes before the resize (which then sees the surplus) or sees the new maximum.
//!
//! Orderings: every read-modify-write is `AcqRel` and every load `Acquire`. The word publishes
//! no other memory (the queues have their own lock), but workers' exits pair with the shutdown
//! that waits for the count to reach zero, so the strong orderings cost nothing that matters on
//! these rare paths.

use crate::sync::{AtomicU64, Ordering};

/// The most workers a pool can have: what fits in a field of the word.
pub(crate) const MAX_WORKERS: usize = (1 << FIELD_BITS) - 1;

const FIELD_BITS: u32 = 21;
const FIELD: u64 = (1 << FIELD_BITS) - 1;
const MIN_SHIFT: u32 = FIELD_BITS;
const MAX_SHIFT: u32 = 2 * FIELD_BITS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    live: u64,
    min: u64,
    max: u64,
}

impl Fields {
    fn unpack(word: u64) -> Self {
        Self {
            live: word & FIELD,
            min: (word >> MIN_SHIFT) & FIELD,
            max: (word >> MAX_SHIFT) & FIELD,
        }
    }

    fn pack(self) -> u64 {
        self.live | (self.min << MIN_SHIFT) | (self.max << MAX_SHIFT)
    }
}

/// What a resize asks of the pool, once the word is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resized {
    /// Workers counted in that the caller must start.
    pub(crate) start: usize,
    /// More workers are alive than now allowed: parked ones must be woken to retire.
    pub(crate) interrupt: bool,
}

#[derive(Debug)]
pub(crate) struct WorkerCount {
    word: AtomicU64,
    /// Whether workers come and go: `min < max`, or a resize.
    elastic: bool,
}

fn field(count: usize) -> u64 {
    debug_assert!(count <= MAX_WORKERS, "the builder and `resize` bound worker counts");
    u64::try_from(count).unwrap_or(FIELD).min(FIELD)
}

fn count(field: u64) -> usize {
    // A field is at most 21 bits wide.
    usize::try_from(field).unwrap_or(usize::MAX)
}

impl WorkerCount {
    /// A count with `min` workers already counted in: the caller starts them.
    pub(crate) fn new(min: usize, max: usize, elastic: bool) -> Self {
        let fields = Fields { live: field(min), min: field(min), max: field(max) };
        Self { word: AtomicU64::new(fields.pack()), elastic }
    }

    fn load(&self) -> Fields {
        Fields::unpack(self.word.load(Ordering::Acquire))
    }

    /// Applies `change` to the word until it sticks; `None` from `change` leaves it as it is.
    /// Returns the fields the change was computed from, and whether it was applied.
    fn update(&self, mut change: impl FnMut(Fields) -> Option<Fields>) -> (Fields, bool) {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let fields = Fields::unpack(word);
            let Some(new) = change(fields) else {
                return (fields, false);
            };
            match self.word.compare_exchange_weak(
                word,
                new.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return (fields, true),
                Err(actual) => word = actual,
            }
        }
    }

    pub(crate) fn live(&self) -> usize {
        count(self.load().live)
    }

    pub(crate) fn is_elastic(&self) -> bool {
        self.elastic
    }

    /// Whether a worker may retire when idle: the pool is elastic and above its minimum.
    pub(crate) fn may_shrink(&self) -> bool {
        let fields = self.load();
        self.elastic && fields.live > fields.min
    }

    /// Counts one more worker if the pool is elastic and below its maximum; the caller then
    /// starts it.
    pub(crate) fn grow(&self) -> bool {
        self.elastic
            && self
                .update(|fields| {
                    (fields.live < fields.max).then_some(Fields { live: fields.live + 1, ..fields })
                })
                .1
    }

    /// Takes an idle worker off the count if the pool is elastic and above its minimum. The
    /// worker exits on `true`.
    ///
    /// The caller holds its queue's lock and has just seen the queue empty, so a job committed
    /// concurrently either comes first (and the worker stays to run it) or sees the worker gone
    /// from the count (and its submitter grows the pool): a job is never left without a worker.
    pub(crate) fn retire_idle(&self) -> bool {
        self.elastic
            && self
                .update(|fields| {
                    (fields.live > fields.min).then_some(Fields { live: fields.live - 1, ..fields })
                })
                .1
    }

    /// Takes a worker off the count if a resize left more than the maximum. The worker exits on
    /// `true`; the maximum that stay take the queued jobs.
    pub(crate) fn retire_surplus(&self) -> bool {
        self.update(|fields| {
            (fields.live > fields.max).then_some(Fields { live: fields.live - 1, ..fields })
        })
        .1
    }

    /// Counts in one more worker whatever the bounds: one for a per-worker lane that a resize
    /// put in use, whose pool counts the workers of its lanes rather than bounds. The caller
    /// starts it.
    pub(crate) fn join(&self) {
        // The live field stays below its width: a per-worker pool has at most one worker per
        // lane, and at most `MAX_WORKERS` lanes with work.
        self.word.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts in the workers missing below the minimum (after a runtime took them down); returns
    /// how many the caller must start.
    pub(crate) fn fill_to_min(&self) -> usize {
        let (before, filled) = self.update(|fields| {
            (fields.live < fields.min).then_some(Fields { live: fields.min, ..fields })
        });
        if filled { count(before.min - before.live) } else { 0 }
    }

    /// Sets a new maximum, lowering the minimum to it if needed.
    pub(crate) fn resize(&self, max: usize) -> Resized {
        let max = field(max);
        let resized = |fields: Fields| {
            let min = fields.min.min(max);
            Fields { live: fields.live.max(min), min, max }
        };
        let (before, _) = self.update(|fields| Some(resized(fields)));
        let after = resized(before);
        Resized { start: count(after.live - before.live), interrupt: after.live > after.max }
    }

    /// A worker has ended; `counted` when it was still on the count (it did not retire).
    /// Returns whether it was the last.
    pub(crate) fn exited(&self, counted: bool) -> bool {
        let live = if counted {
            // live >= 1 while a counted worker runs, so this only lowers the live field.
            Fields::unpack(self.word.fetch_sub(1, Ordering::AcqRel)).live - 1
        } else {
            self.load().live
        };
        live == 0
    }

    /// `(min, max)`, for the models.
    #[cfg(all(test, millpond_loom))]
    pub(crate) fn bounds(&self) -> (usize, usize) {
        let fields = self.load();
        (count(fields.min), count(fields.max))
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_at_their_limits() {
        let fields = Fields { live: FIELD, min: 0, max: FIELD };
        assert_eq!(Fields::unpack(fields.pack()), fields);
        let count = WorkerCount::new(MAX_WORKERS, MAX_WORKERS, true);
        assert_eq!(count.live(), MAX_WORKERS);
        assert!(!count.grow());
        assert!(!count.exited(true));
        assert_eq!(count.live(), MAX_WORKERS - 1);
    }

    #[test]
    fn resize_lowers_the_minimum_and_asks_for_an_interrupt_only_over_the_maximum() {
        let count = WorkerCount::new(2, 4, true);
        assert!(count.grow() && count.grow());
        assert!(!count.grow(), "at the maximum");
        assert_eq!(count.resize(3), Resized { start: 0, interrupt: true });
        assert!(count.retire_surplus());
        assert!(!count.retire_surplus(), "down to the new maximum");
        assert_eq!(count.resize(1), Resized { start: 0, interrupt: true });
        assert!(count.retire_idle() && count.retire_idle());
        assert!(!count.retire_idle(), "the minimum followed the maximum down to 1");
        assert_eq!(count.resize(4), Resized { start: 0, interrupt: false });
        assert_eq!(count.live(), 1);
    }
}
