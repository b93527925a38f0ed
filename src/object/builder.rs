//! Configuration of an [`ObjectPool`], validated by [`ObjectPoolBuilder::build`].

use std::fmt;

use super::api::{Hooks, ObjectPool};
use super::store::{Limits, MAX_THREAD_CACHE};
use crate::BuildError;

/// How many idle values a pool keeps when [`ObjectPoolBuilder::max_idle`] is not set.
pub const DEFAULT_MAX_IDLE: usize = 256;

/// How many idle values each thread keeps at hand when [`ObjectPoolBuilder::thread_cache`] is not
/// set.
pub const DEFAULT_THREAD_CACHE: usize = 8;

/// Builds an [`ObjectPool`]; made by [`ObjectPool::builder`].
///
/// Every setter is optional; [`build`](Self::build) checks the combination.
#[must_use = "a builder does nothing until `build()` is called"]
pub struct ObjectPoolBuilder<T> {
    hooks: Hooks<T>,
    max_idle: Option<usize>,
    min_idle: usize,
    max_total: Option<usize>,
    thread_cache: usize,
}

impl<T> fmt::Debug for ObjectPoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPoolBuilder")
            .field("max_idle", &self.max_idle)
            .field("min_idle", &self.min_idle)
            .field("max_total", &self.max_total)
            .field("thread_cache", &self.thread_cache)
            .field("reset", &self.hooks.reset.is_some())
            .field("is_reusable", &self.hooks.is_reusable.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> ObjectPoolBuilder<T> {
    pub(super) fn new(create: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            hooks: Hooks { create: Box::new(create), reset: None, is_reusable: None },
            max_idle: None,
            min_idle: 0,
            max_total: None,
            thread_cache: DEFAULT_THREAD_CACHE,
        }
    }

    /// Runs on every value returned to the pool before it is kept, so that nothing one user left
    /// in it reaches the next (clear a buffer, reset an encoder).
    ///
    /// A `reset` that panics discards the value it was given; the panic is logged, not
    /// propagated, so it cannot abort a thread that was already unwinding.
    pub fn reset(mut self, reset: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.hooks.reset = Some(Box::new(reset));
        self
    }

    /// Decides, before `reset`, whether a returned value is worth keeping; `false` drops it. Use
    /// it to refuse values that grew too large, such as a 4 KiB buffer that became 64 MiB.
    pub fn is_reusable(mut self, is_reusable: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.hooks.is_reusable = Some(Box::new(is_reusable));
        self
    }

    /// The most idle values the pool keeps, counting those in every thread's cache; returns
    /// beyond it are dropped. Default [`DEFAULT_MAX_IDLE`], or `max_total` if that is smaller.
    pub fn max_idle(mut self, max_idle: usize) -> Self {
        self.max_idle = Some(max_idle);
        self
    }

    /// How many values `build()` creates up front, and the fewest that
    /// [`release_unused`](ObjectPool::release_unused) keeps. Default 0.
    pub fn min_idle(mut self, min_idle: usize) -> Self {
        self.min_idle = min_idle;
        self
    }

    /// Bounds the values the pool tracks, idle and in use together. When it is reached,
    /// [`try_get`](ObjectPool::try_get) returns `None` and [`get`](ObjectPool::get) creates a
    /// value outside the pool, dropped rather than kept when it comes back. Default: no bound.
    pub fn max_total(mut self, max_total: usize) -> Self {
        self.max_total = Some(max_total);
        self
    }

    /// How many idle values each thread keeps at hand, reached without a lock. They count
    /// towards `max_idle`. 0 sends every checkout and return through the shared store.
    /// Default [`DEFAULT_THREAD_CACHE`].
    pub fn thread_cache(mut self, thread_cache: usize) -> Self {
        self.thread_cache = thread_cache;
        self
    }

    /// Checks the configuration, creates `min_idle` values and returns the pool.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field when `max_idle` or `max_total` is 0, when `min_idle`
    /// exceeds `max_idle` or `max_total`, when an explicit `max_idle` exceeds `max_total`, or
    /// when `thread_cache` exceeds 65 535.
    ///
    /// # Panics
    ///
    /// If the create function panics while making the `min_idle` values.
    pub fn build(self) -> Result<ObjectPool<T>, BuildError> {
        if self.max_total == Some(0) {
            return Err(BuildError::invalid(
                "max_total",
                0,
                "must be at least 1: a pool bounded at 0 could hand out nothing",
            ));
        }
        let max_idle = match (self.max_idle, self.max_total) {
            (Some(0), _) => {
                return Err(BuildError::invalid(
                    "max_idle",
                    0,
                    "must be at least 1: a pool that keeps nothing reuses nothing",
                ));
            }
            (Some(max_idle), Some(max_total)) if max_idle > max_total => {
                return Err(BuildError::invalid(
                    "max_idle",
                    max_idle,
                    format!("cannot exceed max_total ({max_total})"),
                ));
            }
            (Some(max_idle), _) => max_idle,
            (None, max_total) => DEFAULT_MAX_IDLE.min(max_total.unwrap_or(usize::MAX)),
        };
        if self.min_idle > max_idle {
            return Err(BuildError::invalid(
                "min_idle",
                self.min_idle,
                format!("cannot exceed max_idle ({max_idle})"),
            ));
        }
        if self.thread_cache > MAX_THREAD_CACHE {
            return Err(BuildError::invalid(
                "thread_cache",
                self.thread_cache,
                format!("cannot exceed {MAX_THREAD_CACHE}: a thread cache is a small front cache"),
            ));
        }
        let limits = Limits {
            max_idle,
            thread_cache: self.thread_cache.min(max_idle),
            max_total: self.max_total,
        };
        Ok(ObjectPool::new(self.hooks, limits, self.min_idle))
    }
}
