//! A fixed-size histogram of durations, shared by the pools' metrics and the worker pools' stats.

use std::fmt;
use std::time::Duration;

/// Sub-buckets per power of two: values land within 25% of their bucket's bounds.
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// A log-linear histogram of durations with microsecond resolution and 25% relative precision.
///
/// Fixed size (no allocation to record), cheap enough to update under the pool lock.
#[derive(Clone)]
pub struct DurationHistogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    sum_micros: u128,
    max_micros: u64,
}

impl Default for DurationHistogram {
    fn default() -> Self {
        Self { counts: Box::new([0; BUCKETS]), total: 0, sum_micros: 0, max_micros: 0 }
    }
}

impl DurationHistogram {
    fn bucket(micros: u64) -> usize {
        if micros < SUB {
            return micros as usize;
        }
        let exponent = 63 - micros.leading_zeros();
        let shift = exponent - SUB_BITS;
        let sub = (micros >> shift) & (SUB - 1);
        (SUB as usize) * (shift as usize + 1) + sub as usize
    }

    fn upper_bound(bucket: usize) -> u64 {
        if bucket < SUB as usize {
            return bucket as u64;
        }
        let shift = (bucket / SUB as usize - 1) as u32;
        let sub = (bucket % SUB as usize) as u64;
        let upper = u128::from(SUB + sub + 1) << shift;
        u64::try_from(upper - 1).unwrap_or(u64::MAX)
    }

    pub(crate) fn record(&mut self, value: Duration) {
        self.record_n(value, 1);
    }

    /// Records `value` as if it had been seen `times` times: a sample standing for the values
    /// around it that were not measured.
    pub(crate) fn record_n(&mut self, value: Duration, times: u64) {
        if times == 0 {
            return;
        }
        // Whole-u64 arithmetic: this runs on every checkout.
        let micros = value
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(value.subsec_micros()));
        self.counts[Self::bucket(micros)] += times;
        self.total += times;
        self.sum_micros += u128::from(micros) * u128::from(times);
        self.max_micros = self.max_micros.max(micros);
    }

    /// For each bucket that gained values since `earlier` (an older copy of this histogram), a
    /// value standing for the bucket (the middle of its bounds, never above the largest value
    /// seen; within 25% of every value in it) and how many values it gained.
    #[cfg(feature = "metrics")]
    pub(crate) fn bucket_deltas<'a>(
        &'a self,
        earlier: &'a Self,
    ) -> impl Iterator<Item = (Duration, u64)> + 'a {
        self.counts.iter().zip(earlier.counts.iter()).enumerate().filter_map(
            move |(bucket, (now, before))| {
                let gained = now.saturating_sub(*before);
                if gained == 0 {
                    return None;
                }
                let lower = if bucket == 0 { 0 } else { Self::upper_bound(bucket - 1) + 1 };
                let upper = Self::upper_bound(bucket);
                let middle = (lower + (upper - lower) / 2).min(self.max_micros.max(lower));
                Some((Duration::from_micros(middle), gained))
            },
        )
    }

    /// Adds every value recorded in `other`.
    pub(crate) fn merge(&mut self, other: &Self) {
        for (count, more) in self.counts.iter_mut().zip(other.counts.iter()) {
            *count += more;
        }
        self.total += other.total;
        self.sum_micros += other.sum_micros;
        self.max_micros = self.max_micros.max(other.max_micros);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest recorded value.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_micros)
    }

    /// The mean of the recorded values, or zero when empty.
    pub fn mean(&self) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let mean = self.sum_micros / u128::from(self.total);
        Duration::from_micros(u64::try_from(mean).unwrap_or(u64::MAX))
    }

    /// An upper estimate of the `q` quantile (`0.0..=1.0`, clamped), within 25% of the true value
    /// and never above [`max`](Self::max); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the q-quantile, at least the first value.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(Self::upper_bound(bucket).min(self.max_micros));
            }
        }
        self.max()
    }
}

impl fmt::Debug for DurationHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurationHistogram")
            .field("count", &self.total)
            .field("mean", &self.mean())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_bounds_it() {
        let mut value = 0u64;
        while value < u64::MAX / 3 {
            let bucket = DurationHistogram::bucket(value);
            assert!(bucket < BUCKETS);
            assert!(DurationHistogram::upper_bound(bucket) >= value, "{value}");
            if bucket > 0 {
                assert!(DurationHistogram::upper_bound(bucket - 1) < value, "{value}");
            }
            value = value + value / 4 + 1;
        }
    }

    #[test]
    fn quantiles_are_upper_estimates_within_a_quarter() {
        let mut histogram = DurationHistogram::default();
        for micros in 1..=1000 {
            histogram.record(Duration::from_micros(micros));
        }
        assert_eq!(histogram.count(), 1000);
        assert_eq!(histogram.max(), Duration::from_micros(1000));
        let p99 = histogram.quantile(0.99).as_micros();
        assert!((990..=1000).contains(&p99), "{p99}");
        let p50 = histogram.quantile(0.5).as_micros();
        assert!((500..=625).contains(&p50), "{p50}");
        assert_eq!(histogram.mean(), Duration::from_micros(500));
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn bucket_deltas_send_each_new_value_once_within_a_quarter() {
        let mut earlier = DurationHistogram::default();
        for micros in [3, 700, 12_000] {
            earlier.record(Duration::from_micros(micros));
        }
        let mut now = earlier.clone();
        let added = [1, 3, 700, 701, 12_000, 2_500_000];
        for micros in added {
            now.record(Duration::from_micros(micros));
        }
        let deltas: Vec<(Duration, u64)> = now.bucket_deltas(&earlier).collect();
        assert_eq!(deltas.iter().map(|(_, gained)| gained).sum::<u64>(), added.len() as u64);
        for micros in added {
            let value = Duration::from_micros(micros);
            let (middle, _) = deltas
                .iter()
                .find(|(middle, _)| {
                    DurationHistogram::bucket(middle.as_micros() as u64)
                        == DurationHistogram::bucket(micros)
                })
                .unwrap();
            let error = middle.as_secs_f64() / value.as_secs_f64();
            assert!((0.75..=1.25).contains(&error), "{micros}: {middle:?}");
        }
        assert_eq!(now.bucket_deltas(&now).count(), 0, "nothing new, nothing sent");
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let histogram = DurationHistogram::default();
        assert_eq!(histogram.quantile(0.99), Duration::ZERO);
        assert_eq!(histogram.mean(), Duration::ZERO);
    }
}
