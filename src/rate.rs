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

/// The slowest refill a bucket takes: one token a century. Slower rates are refused; they mean
/// a mistake (a rate per year written per second), and their interval would not leave room in a
/// nanosecond clock for the arithmetic.
const MAX_INTERVAL_NS: u64 = 100 * 365 * 24 * 3600 * 1_000_000_000;

/// A bucket's shape: refill interval and how far ahead of now the TAT may run.
///
/// Both are at most [`MAX_INTERVAL_NS`] (below 2^62), so `start + interval` fits in a `u64` for
/// the first three centuries of a bucket's life; past that a request is refused, never wrapped
/// into an admission.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    interval_ns: u64,
    tolerance_ns: u64,
}

impl Shape {
    /// `per_second` tokens a second, at most `burst` at once.
    ///
    /// The interval between tokens is rounded up to a whole nanosecond, the clock's grain: rates
    /// above about 10^7 a second come out a little lower (6·10^8 acts as 5·10^8, anything above
    /// 10^9 as 10^9). A burst that would take more than a century to refill holds a century's
    /// worth. Both only ever admit less than asked, never more.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming `field` and the value for a rate that is not a finite number
    /// of at least one token a century, or a burst of 0.
    pub(crate) fn new(
        per_second: f64,
        burst: u32,
        field: &'static str,
    ) -> Result<Self, BuildError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(BuildError::invalid(
                field,
                per_second,
                "the rate must be a finite number of tokens a second, above 0",
            ));
        }
        if burst == 0 {
            return Err(BuildError::invalid(field, burst, "the burst must be at least 1"));
        }
        // Rounded up: a shorter interval than the rate's would admit more than asked.
        let interval = (1e9 / per_second).ceil().max(1.0);
        // Also catches an infinite quotient (a subnormal rate).
        if interval > MAX_INTERVAL_NS as f64 {
            return Err(BuildError::invalid(
                field,
                per_second,
                "the rate must be at least one token every 100 years",
            ));
        }
        // In 1..=MAX_INTERVAL_NS, checked above.
        let interval_ns = interval as u64;
        let tolerance_ns = interval_ns.saturating_mul(u64::from(burst) - 1).min(MAX_INTERVAL_NS);
        Ok(Self { interval_ns, tolerance_ns })
    }

    /// The GCRA step: the new TAT if a request at `now` fits, or how long until it would.
    fn step(self, tat: u64, now: u64) -> Result<u64, Duration> {
        let start = tat.max(now);
        let debt = start - now;
        if debt > self.tolerance_ns {
            return Err(Duration::from_nanos(debt - self.tolerance_ns));
        }
        // Overflows only centuries after the origin; a saturated TAT would read as a full
        // bucket at `now == u64::MAX`, so refuse instead.
        start.checked_add(self.interval_ns).ok_or(Duration::MAX)
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
    map: Mutex<KeyedMap>,
    origin: Instant,
}

#[derive(Debug)]
struct KeyedMap {
    tats: HashMap<u64, u64>,
    /// The size at which the next sweep runs: twice what the last one left, and at least
    /// [`SWEEP_ABOVE`]. Sweeping at a fixed size instead would, once that many keys were live,
    /// scan them all on every call and free nothing; doubling makes each sweep pay for the
    /// inserts since the last one, so a call costs O(1) amortised, and the map holds at most
    /// twice the live keys (or `SWEEP_ABOVE`).
    sweep_at: usize,
    /// Sweeps run so far, for the tests of the amortised bound.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the tests"))]
    sweeps: u64,
}

/// Keys kept before the full buckets are first swept out.
const SWEEP_ABOVE: usize = 4096;

impl KeyedBuckets {
    pub(crate) fn new(shape: Shape) -> Self {
        let map = KeyedMap { tats: HashMap::new(), sweep_at: SWEEP_ABOVE, sweeps: 0 };
        Self { shape, map: Mutex::new(map), origin: Instant::now() }
    }

    /// Takes a token from `key`'s bucket now, or says how long until one is there.
    pub(crate) fn try_take(&self, key: u64) -> Result<(), Duration> {
        self.try_take_at(key, nanos_since(self.origin))
    }

    /// Takes a token from `key`'s bucket at `now` (nanoseconds since the origin).
    fn try_take_at(&self, key: u64, now: u64) -> Result<(), Duration> {
        let mut map = self.map.lock();
        if map.tats.len() >= map.sweep_at {
            // A TAT in the past is a full bucket: the same as no entry.
            map.tats.retain(|_, tat| *tat > now);
            map.sweep_at = map.tats.len().saturating_mul(2).max(SWEEP_ABOVE);
            map.sweeps += 1;
        }
        let tat = map.tats.entry(key).or_insert(0);
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
    fn many_live_keys_are_swept_a_logarithmic_number_of_times() {
        // One token an hour: every key taken stays live (its bucket not full) for the test.
        let buckets = KeyedBuckets::new(Shape::new(1.0 / 3600.0, 1, "rate").unwrap());
        let keys = 100_000;
        for key in 0..keys {
            assert!(buckets.try_take_at(key, 1_000).is_ok());
        }
        let map = buckets.map.lock();
        assert_eq!(map.tats.len(), 100_000);
        // 4,096, then doubling: 8,192 ... 65,536 (five sweeps), where a fixed threshold would
        // have swept on each of the last 95,904 calls.
        assert!(map.sweeps <= 5, "{} sweeps", map.sweeps);
    }

    #[test]
    fn full_buckets_are_forgotten_as_the_map_grows() {
        let buckets = KeyedBuckets::new(Shape::new(1000.0, 1, "rate").unwrap());
        // 10,000 keys, each taken once at t = 0 (full again 1 ms later).
        for key in 0..10_000 {
            assert!(buckets.try_take_at(key, 0).is_ok());
        }
        // A second later every one of them is full: the next sweep forgets them all.
        for key in 10_000..30_000 {
            assert!(buckets.try_take_at(key, 1_000_000_000).is_ok());
        }
        let map = buckets.map.lock();
        assert_eq!(map.tats.len(), 20_000);
        assert!(map.tats.keys().all(|key| *key >= 10_000));
    }

    #[test]
    fn bad_shapes_are_rejected_naming_the_field_and_value() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e-12, 1e-300] {
            let err = Shape::new(rate, 1, "rate_limit").unwrap_err();
            assert_eq!(err.field(), Some("rate_limit"));
            assert!(err.to_string().contains(&format!("({rate:?})")), "{err}");
        }
        let err = Shape::new(1.0, 0, "rate_limit_per_key").unwrap_err();
        assert_eq!(err.field(), Some("rate_limit_per_key"));
        assert!(err.to_string().contains("(0)"), "{err}");
    }

    /// One token a century and one at once: the second request waits, in debug (no overflow
    /// panic) and in release (no wrapped TAT admitting everything).
    #[test]
    fn the_slowest_rate_admits_its_burst_and_then_waits() {
        let per_century = 1.0 / (100.0 * 365.0 * 24.0 * 3600.0);
        let bucket = TokenBucket::new(Shape::new(per_century, 1, "rate").unwrap());
        bucket.try_take_at(0).unwrap();
        for now in [0, 1, 1_000_000_000, MAX_INTERVAL_NS / 2] {
            assert!(bucket.try_take_at(now).is_err(), "admitted again at {now}");
        }
        bucket.try_take_at(MAX_INTERVAL_NS).unwrap();
        // Where the next TAT would not fit, refused rather than wrapped into an admission.
        assert!(bucket.try_take_at(u64::MAX).is_err());
    }

    #[test]
    fn extreme_but_valid_shapes_saturate_on_the_safe_side() {
        // 1e300 a second acts as one a nanosecond.
        let bucket = TokenBucket::new(Shape::new(1e300, 1, "rate").unwrap());
        bucket.try_take_at(5).unwrap();
        assert!(bucket.try_take_at(5).is_err());
        bucket.try_take_at(6).unwrap();
        // A burst of u32::MAX at one a second holds a century's worth, and no more than asked.
        let shape = Shape::new(1.0, u32::MAX, "rate").unwrap();
        assert_eq!(shape.tolerance_ns, MAX_INTERVAL_NS);
        let bucket = TokenBucket::new(shape);
        for _ in 0..1000 {
            bucket.try_take_at(u64::MAX - 1).unwrap_err();
        }
    }

    proptest::proptest! {
        /// Whatever the rate and burst, building never panics, and a bucket that was built never
        /// admits more than `burst + rate × elapsed` (+1 for rounding) over any run of requests.
        #[test]
        fn no_shape_panics_or_admits_more_than_it_should(
            rate in proptest::prop_oneof![
                proptest::num::f64::ANY,
                proptest::num::f64::POSITIVE | proptest::num::f64::SUBNORMAL,
                proptest::sample::select(vec![1e-12, 3.2e-9, 3.1e-9, 0.7e9, 1e9, 1.5e9, 1e300]),
                1e-3f64..1e10,
            ],
            burst in proptest::prop_oneof![
                proptest::sample::select(vec![0u32, 1, 2, u32::MAX]),
                proptest::num::u32::ANY,
                1u32..50,
            ],
            start in proptest::prop_oneof![
                proptest::sample::select(vec![0u64, u64::MAX / 2, u64::MAX - 1, u64::MAX]),
                proptest::num::u64::ANY,
            ],
            steps in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::sample::select(vec![0u64, 1, u64::MAX]),
                        0u64..10_000_000_000,
                        proptest::num::u64::ANY,
                    ],
                    1usize..20,
                ),
                1..50,
            ),
        ) {
            let shape = match Shape::new(rate, burst, "rate_limit") {
                Ok(shape) => shape,
                Err(err) => {
                    proptest::prop_assert_eq!(err.field(), Some("rate_limit"));
                    let slow = rate * 100.0 * 365.0 * 24.0 * 3600.0 <= 1.0 + 1e-9;
                    proptest::prop_assert!(burst == 0 || !rate.is_finite() || slow, "{}", err);
                    return Ok(());
                }
            };
            let bucket = TokenBucket::new(shape);
            let mut now = start;
            let mut admitted = 0u64;
            for (gap, requests) in steps {
                now = now.saturating_add(gap);
                for _ in 0..requests {
                    admitted += u64::from(bucket.try_take_at(now).is_ok());
                }
            }
            let elapsed = (now - start) as f64 / 1e9;
            let bound = f64::from(burst) + rate * elapsed + 1.0;
            proptest::prop_assert!(
                admitted as f64 <= bound,
                "{} admitted, bound {}", admitted, bound
            );
        }
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
