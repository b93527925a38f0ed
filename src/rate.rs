//! Token buckets for admission control, lock-free.
//!
//! A bucket of `burst` tokens refilled at `rate` per second is kept as one number, the GCRA's
//! *theoretical arrival time* (TAT): the instant the bucket would be full again if nothing else
//! came. A request at `now` is admitted when `max(TAT, now) - now` (the debt it would join) is at
//! most `(burst - 1)` refill intervals, and then moves the TAT on by one interval. One atomic
//! word and a compare-and-swap per request, no timer and no refill task; the loom model below
//! checks that concurrent requests never take more than the bucket holds.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::build_error::BuildError;
use crate::sync::{AtomicU64, Mutex, Ordering};

/// A bucket's shape: refill interval and how far ahead of now the TAT may run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    interval_ns: u64,
    tolerance_ns: u64,
}

impl Shape {
    /// `per_second` tokens a second, at most `burst` at once.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming `field` for a rate that is not a positive finite number, or a
    /// burst of 0.
    pub(crate) fn new(
        per_second: f64,
        burst: u32,
        field: &'static str,
    ) -> Result<Self, BuildError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(BuildError::invalid(
                field,
                per_second,
                "the rate must be above 0 per second",
            ));
        }
        if burst == 0 {
            return Err(BuildError::invalid(field, burst, "the burst must be at least 1"));
        }
        let interval_ns = (1e9 / per_second).round().max(1.0) as u64;
        Ok(Self { interval_ns, tolerance_ns: interval_ns.saturating_mul(u64::from(burst) - 1) })
    }

    /// The GCRA step: the new TAT if a request at `now` fits, or how long until it would.
    fn step(self, tat: u64, now: u64) -> Result<u64, Duration> {
        let start = tat.max(now);
        let debt = start - now;
        if debt > self.tolerance_ns {
            return Err(Duration::from_nanos(debt - self.tolerance_ns));
        }
        Ok(start + self.interval_ns)
    }
}

/// One shared bucket.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    shape: Shape,
    /// The TAT, in nanoseconds since `origin`.
    tat: AtomicU64,
    origin: Instant,
}

impl TokenBucket {
    pub(crate) fn new(shape: Shape) -> Self {
        Self { shape, tat: AtomicU64::new(0), origin: Instant::now() }
    }

    /// Takes a token now, or says how long until one is there.
    pub(crate) fn try_take(&self) -> Result<(), Duration> {
        self.try_take_at(nanos_since(self.origin))
    }

    /// Takes a token at `now` (nanoseconds since the bucket's origin).
    pub(crate) fn try_take_at(&self, now: u64) -> Result<(), Duration> {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let next = self.shape.step(tat, now)?;
            match self.tat.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

fn nanos_since(origin: Instant) -> u64 {
    crate::time::nanos(origin.elapsed())
}

/// A bucket per key (a user, a tenant, a source address), made on first use. Full buckets are
/// forgotten when the map grows, so keys seen once do not stay forever.
#[derive(Debug)]
pub(crate) struct KeyedBuckets {
    shape: Shape,
    tats: Mutex<HashMap<u64, u64>>,
    origin: Instant,
}

/// Keys kept before the full buckets are swept out.
const SWEEP_ABOVE: usize = 4096;

impl KeyedBuckets {
    pub(crate) fn new(shape: Shape) -> Self {
        Self { shape, tats: Mutex::new(HashMap::new()), origin: Instant::now() }
    }

    /// Takes a token from `key`'s bucket now, or says how long until one is there.
    pub(crate) fn try_take(&self, key: u64) -> Result<(), Duration> {
        let now = nanos_since(self.origin);
        let mut tats = self.tats.lock();
        if tats.len() >= SWEEP_ABOVE {
            // A TAT in the past is a full bucket: the same as no entry.
            tats.retain(|_, tat| *tat > now);
        }
        let tat = tats.entry(key).or_insert(0);
        *tat = self.shape.step(*tat, now)?;
        Ok(())
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let bucket = TokenBucket::new(Shape::new(10.0, 3, "rate").unwrap());
        // 10/s is one token every 100 ms; 3 at once.
        for _ in 0..3 {
            bucket.try_take_at(0).unwrap();
        }
        assert_eq!(bucket.try_take_at(0), Err(Duration::from_millis(100)));
        assert_eq!(bucket.try_take_at(50_000_000), Err(Duration::from_millis(50)));
        bucket.try_take_at(100_000_000).unwrap();
        // Idle for a long while refills to the burst, not beyond.
        let later = 10_000_000_000;
        for _ in 0..3 {
            bucket.try_take_at(later).unwrap();
        }
        assert!(bucket.try_take_at(later).is_err());
    }

    #[test]
    fn keys_have_buckets_of_their_own() {
        let buckets = KeyedBuckets::new(Shape::new(1.0, 1, "rate").unwrap());
        buckets.try_take(1).unwrap();
        assert!(buckets.try_take(1).is_err());
        buckets.try_take(2).unwrap();
    }

    #[test]
    fn bad_shapes_are_rejected() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Shape::new(rate, 1, "rate_limit").unwrap_err().field(), Some("rate_limit"));
        }
        assert_eq!(Shape::new(1.0, 0, "rate_limit").unwrap_err().field(), Some("rate_limit"));
    }
}

#[cfg(all(test, millpond_loom))]
mod loom_models {
    use super::*;
    use crate::sync::Arc;

    /// Three threads ask a bucket of two at the same instant: exactly two get a token, whatever
    /// the interleaving of their compare-and-swaps.
    #[test]
    fn concurrent_takes_never_over_admit() {
        loom::model(|| {
            let bucket = Arc::new(TokenBucket {
                shape: Shape::new(1.0, 2, "rate").unwrap(),
                tat: AtomicU64::new(0),
                origin: Instant::now(),
            });
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let bucket = Arc::clone(&bucket);
                    loom::thread::spawn(move || bucket.try_take_at(5).is_ok())
                })
                .collect();
            let mine = bucket.try_take_at(5).is_ok();
            let admitted = threads.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count()
                + usize::from(mine);
            assert_eq!(admitted, 2);
        });
    }
}
