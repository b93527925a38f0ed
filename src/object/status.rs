//! A snapshot of an [`ObjectPool`](super::ObjectPool)'s counts.

/// What [`ObjectPool::status`](super::ObjectPool::status) reports.
///
/// The counts are read one after another while other threads keep working, so under load they
/// can disagree by the few operations that ran in between; at rest they are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Status {
    /// Values kept for reuse, in the shared store and in every thread's cache.
    pub idle: usize,
    /// Values the pool tracks, idle or checked out: what `max_total` bounds.
    pub live: usize,
    /// Tracked values checked out right now.
    pub in_use: usize,
    /// Values made by the create function for the pool, `min_idle` included. Values made past
    /// `max_total` (by `get()`) are not counted.
    pub created: u64,
    /// Checkouts served with an idle value instead of a new one.
    pub reused: u64,
    /// Tracked values the pool dropped: returned past `max_idle`, refused by `is_reusable`, or
    /// released by `trim` and `release_unused`.
    pub discarded: u64,
}
