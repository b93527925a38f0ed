//! Live status and cumulative metrics of a pool.

pub use crate::histogram::DurationHistogram;

/// A consistent snapshot of a pool's occupancy, from [`Pool::status`](super::Pool::status).
///
/// All fields are read under one lock, so they always add up:
/// `size == idle + in_use + creating`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The configured upper bound on `size`.
    pub max_size: usize,
    /// Slots taken: live resources plus creations in flight. Never above `max_size`, except
    /// briefly after [`Pool::resize`](super::Pool::resize) shrank the pool while resources were out.
    pub size: usize,
    /// Resources ready to be handed out.
    pub idle: usize,
    /// Resources checked out (including ones handed to a queued caller that has not collected
    /// them yet), or being checked or kept alive by the pool.
    pub in_use: usize,
    /// Creations in flight (including those backing off before a retry).
    pub creating: usize,
    /// Callers queued in `get()`.
    pub waiters: usize,
}

/// How many resources the pool closed, by [`CloseReason`](super::CloseReason).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedCounts {
    /// Failed `is_reusable` or `check`.
    pub broken: u64,
    /// Idle longer than the idle timeout.
    pub idle_timeout: u64,
    /// Past their maximum lifetime.
    pub lifetime: u64,
    /// Above `max_idle` on return, or above `max_size` after a shrink.
    pub excess: u64,
    /// Evicted by `retain`.
    pub evicted: u64,
    /// Closed with the pool.
    pub pool_closed: u64,
}

/// Cumulative counters and timings, from [`Pool::metrics`](super::Pool::metrics).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Checkouts served at once from the idle set, counted when they end (the resource comes
    /// back or is detached), so resources still out are not in it yet.
    pub gets_direct: u64,
    /// Checkouts served after queueing, counted when they end like `gets_direct`.
    pub gets_waited: u64,
    /// `get()` calls that hit their acquire timeout.
    pub gets_timed_out: u64,
    /// `get()` futures dropped while queued (or after a resource was handed to them but before
    /// they collected it; the resource went on to the next caller).
    pub gets_cancelled: u64,
    /// `get()` calls refused because the circuit breaker was open.
    pub gets_unavailable: u64,
    /// Resources created.
    pub created: u64,
    /// Failed creation attempts (errors, timeouts and panics).
    pub create_failures: u64,
    /// Resources closed, by reason.
    pub closed: ClosedCounts,
    /// Time spent queued by checkouts that had to wait (recorded when they end).
    pub wait_time: DurationHistogram,
    /// Time resources were held by callers (recorded when they end).
    ///
    /// Every checkout is counted, but a checkout whose resource goes back to the returning
    /// thread's cache has its hold measured only about one time in 16 (a clock read costs as
    /// much as the rest of such a checkout); each unmeasured one counts with the value of the
    /// last measured one on its thread. Returns that take another path are all measured.
    pub hold_time: DurationHistogram,
    /// Time successful creations took.
    pub create_time: DurationHistogram,
}
