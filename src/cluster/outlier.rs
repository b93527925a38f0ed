//! Outlier ejection: judging backends by how their calls went, not only by whether connections
//! can be made.
//!
//! A backend whose connections open fine can still fail its queries or answer ten times slower
//! than its peers (a bad disk, a replica far behind, a noisy neighbour). Calls report their
//! outcome through their connection ([`ClusterConn::report_success`] and
//! [`ClusterConn::report_failure`]), or the manager counts them itself
//! ([`Manager::take_traffic`]: the PostgreSQL manager reads failures and latencies off the
//! protocol), and a backend is ejected, Envoy's way:
//!
//! - after `consecutive_failures` failed calls in a row (5), at once;
//! - at the end of each `interval` (10 s), if its success rate is below the mean of the
//!   backends' by more than `stdev_factor` (1.9) standard deviations, among at least
//!   `minimum_backends` (5) backends with `request_volume` (100) calls each;
//! - at the end of each interval, if its mean latency is more than `latency_factor` (3) times
//!   the median of the others', among backends with `request_volume` calls (off by default).
//!
//! An ejection lasts `base_ejection` (30 s) times the number of times the backend was ejected,
//! at most `max_ejection` (300 s), and at most `max_ejected_percent` (10 %) of the backends are
//! out this way at once (at least one, but never the last one in rotation). An ejected backend
//! is skipped by every pick, as one out of rotation is; it comes back when its time is up.
//!
//! [`ClusterConn::report_success`]: super::ClusterConn::report_success
//! [`ClusterConn::report_failure`]: super::ClusterConn::report_failure
//! [`Manager::take_traffic`]: crate::pool::Manager::take_traffic

use std::time::Duration;

use tokio::time::Instant;

use crate::BuildError;

/// Settings of outlier ejection, for [`ClusterBuilder::outlier_detection`](super::ClusterBuilder::outlier_detection).
/// The defaults are Envoy's.
///
/// ```
/// use millpond::cluster::OutlierDetection;
/// use std::time::Duration;
///
/// let detection = OutlierDetection::new()
///     .consecutive_failures(3)
///     .latency_factor(4.0)
///     .base_ejection(Duration::from_secs(10));
/// # let _ = detection;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct OutlierDetection {
    consecutive_failures: Option<u32>,
    interval: Duration,
    base_ejection: Duration,
    max_ejection: Duration,
    max_ejected_percent: u32,
    minimum_backends: usize,
    request_volume: u64,
    stdev_factor: Option<f64>,
    latency_factor: Option<f64>,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self::new()
    }
}

impl OutlierDetection {
    /// Envoy's defaults: 5 failures in a row, success-rate ejection at 1.9 standard deviations
    /// over 5 backends with 100 calls each, every 10 s; ejections of 30 s × their count, at
    /// most 300 s, at most 10 % of the backends. Latency ejection is off.
    pub fn new() -> Self {
        Self {
            consecutive_failures: Some(5),
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 10,
            minimum_backends: 5,
            request_volume: 100,
            stdev_factor: Some(1.9),
            latency_factor: None,
        }
    }

    /// Ejects a backend after this many failed calls in a row (5).
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = Some(failures);
        self
    }

    /// Never ejects for a run of failures.
    pub fn no_consecutive_failures(mut self) -> Self {
        self.consecutive_failures = None;
        self
    }

    /// How often success rates and latencies are compared (10 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The first ejection's length (30 s); the n-th lasts n times as long.
    pub fn base_ejection(mut self, ejection: Duration) -> Self {
        self.base_ejection = ejection;
        self
    }

    /// The longest ejection (300 s).
    pub fn max_ejection(mut self, ejection: Duration) -> Self {
        self.max_ejection = ejection;
        self
    }

    /// The share of backends that may be ejected at once, in percent (10; at least one is
    /// always ejectable, but never the last backend in rotation).
    pub fn max_ejected_percent(mut self, percent: u32) -> Self {
        self.max_ejected_percent = percent;
        self
    }

    /// How many backends, each with `request_volume` calls in the interval, the success rate
    /// and latency comparisons need (5).
    pub fn minimum_backends(mut self, backends: usize) -> Self {
        self.minimum_backends = backends;
        self
    }

    /// Calls a backend needs in an interval to be judged by rate or latency (100).
    pub fn request_volume(mut self, calls: u64) -> Self {
        self.request_volume = calls;
        self
    }

    /// Ejects a backend whose success rate is below the mean by more than this many standard
    /// deviations (1.9); `None` turns success-rate ejection off.
    pub fn success_rate_stdev(mut self, factor: Option<f64>) -> Self {
        self.stdev_factor = factor;
        self
    }

    /// Ejects a backend whose mean latency is more than `factor` times the median of the
    /// others' (off by default).
    pub fn latency_factor(mut self, factor: f64) -> Self {
        self.latency_factor = Some(factor);
        self
    }

    /// These settings with those a configuration file gives laid over them.
    #[cfg(feature = "serde")]
    pub(crate) fn apply(mut self, config: &crate::config::OutlierConfig) -> Self {
        fn set<T: Copy>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        let crate::config::OutlierConfig {
            consecutive_failures,
            interval,
            base_ejection,
            max_ejection,
            max_ejected_percent,
            minimum_backends,
            request_volume,
            success_rate_stdev,
            latency_factor,
        } = *config;
        set(&mut self.consecutive_failures, consecutive_failures);
        set(&mut self.interval, interval);
        set(&mut self.base_ejection, base_ejection);
        set(&mut self.max_ejection, max_ejection);
        set(&mut self.max_ejected_percent, max_ejected_percent);
        set(&mut self.minimum_backends, minimum_backends);
        set(&mut self.request_volume, request_volume);
        set(&mut self.stdev_factor, success_rate_stdev);
        set(&mut self.latency_factor, latency_factor);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let field = |name: &'static str, value: &dyn std::fmt::Debug, reason: &str| {
            Err(BuildError::invalid(name, format!("{value:?}"), reason)
                .nested_in("outlier_detection"))
        };
        if self.consecutive_failures == Some(0) {
            return field("consecutive_failures", &0, "must be at least 1");
        }
        for (name, value) in [
            ("interval", self.interval),
            ("base_ejection", self.base_ejection),
            ("max_ejection", self.max_ejection),
        ] {
            if value.is_zero() {
                return field(name, &value, "must be above 0");
            }
        }
        if self.max_ejection < self.base_ejection {
            return field("max_ejection", &self.max_ejection, "must be at least base_ejection");
        }
        if self.max_ejected_percent > 100 {
            return field("max_ejected_percent", &self.max_ejected_percent, "must be at most 100");
        }
        if self.minimum_backends < 2 {
            return field("minimum_backends", &self.minimum_backends, "must be at least 2");
        }
        if let Some(factor) =
            self.stdev_factor.filter(|factor| !(factor.is_finite() && *factor > 0.0))
        {
            return field("success_rate_stdev", &factor, "must be above 0");
        }
        if let Some(factor) =
            self.latency_factor.filter(|factor| !(factor.is_finite() && *factor > 1.0))
        {
            return field("latency_factor", &factor, "must be above 1");
        }
        Ok(())
    }
}

/// Whether backend `i` is out of rotation for its health: read only when a verdict needs it, so
/// that a report costs no allocation.
pub(crate) type Down<'a> = &'a dyn Fn(usize) -> bool;

/// Calls on one backend, as a manager counts them during a checkout.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counts {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    /// Successes whose latency is in `time`.
    pub(crate) timed: u64,
    pub(crate) time: Duration,
}

/// One backend's calls in the current interval, and its ejection.
#[derive(Debug, Default, Clone)]
struct Record {
    failures_in_a_row: u32,
    successes: u64,
    failures: u64,
    latency_sum: f64,
    /// Successes that came with a latency.
    timed: u64,
    ejected_until: Option<Instant>,
    ejections: u32,
}

impl Record {
    fn calls(&self) -> u64 {
        self.successes + self.failures
    }
}

/// The detector: every backend's record, under the cluster's outlier lock.
#[derive(Debug)]
pub(crate) struct Outliers {
    settings: OutlierDetection,
    records: Vec<Record>,
    interval_ends: Instant,
}

/// What a call's report or a tick changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Backends ejected now.
    pub(crate) ejected: Vec<usize>,
    /// Backends whose ejection ended now.
    pub(crate) returned: Vec<usize>,
}

impl Outliers {
    pub(crate) fn new(settings: OutlierDetection, backends: usize, now: Instant) -> Self {
        let interval_ends = crate::time::after(now, settings.interval);
        Self { settings, records: vec![Record::default(); backends], interval_ends }
    }

    #[cfg(all(test, not(millpond_loom)))]
    pub(crate) fn is_ejected(&self, backend: usize) -> bool {
        self.records[backend].ejected_until.is_some()
    }

    pub(crate) fn ejections(&self, backend: usize) -> u32 {
        self.records[backend].ejections
    }

    /// A call on `backend` ended: `latency` for a success, `None` for a failure. `down(i)`
    /// says whether backend `i` is out of rotation for its health.
    pub(crate) fn report(
        &mut self,
        backend: usize,
        latency: Option<Duration>,
        now: Instant,
        down: Down<'_>,
    ) -> Changes {
        let success = u64::from(latency.is_some());
        let counts = Counts {
            successes: success,
            failures: 1 - success,
            timed: success,
            time: latency.unwrap_or_default(),
        };
        self.report_counts(backend, counts, now, down)
    }

    /// Calls on `backend` counted by its manager: successes and failures in an unknown order,
    /// so a batch with any success ends a run of failures rather than extending it.
    pub(crate) fn report_counts(
        &mut self,
        backend: usize,
        counts: Counts,
        now: Instant,
        down: Down<'_>,
    ) -> Changes {
        let Counts { successes, failures, timed, time } = counts;
        let record = &mut self.records[backend];
        if timed > 0 {
            record.timed += timed;
            record.latency_sum += time.as_secs_f64();
        }
        record.successes += successes;
        record.failures += failures;
        if successes > 0 {
            record.failures_in_a_row = 0;
        } else {
            let failures = u32::try_from(failures).unwrap_or(u32::MAX);
            record.failures_in_a_row = record.failures_in_a_row.saturating_add(failures);
        }
        self.judge_run(backend, now, down)
    }

    /// Ejects `backend` if its run of failures reached the limit.
    fn judge_run(&mut self, backend: usize, now: Instant, down: Down<'_>) -> Changes {
        let mut changes = Changes::default();
        let run = self.records[backend].failures_in_a_row;
        if self.settings.consecutive_failures.is_some_and(|limit| run >= limit) {
            self.records[backend].failures_in_a_row = 0;
            self.eject(backend, now, down, &mut changes);
        }
        changes
    }

    /// Ends ejections whose time is up and, at the end of an interval, compares the backends.
    pub(crate) fn tick(&mut self, now: Instant, down: Down<'_>) -> Changes {
        let mut changes = Changes::default();
        for (index, record) in self.records.iter_mut().enumerate() {
            if record.ejected_until.is_some_and(|until| now >= until) {
                record.ejected_until = None;
                changes.returned.push(index);
            }
        }
        if now >= self.interval_ends {
            self.compare(now, down, &mut changes);
            for record in &mut self.records {
                (record.successes, record.failures, record.latency_sum, record.timed) =
                    (0, 0, 0.0, 0);
            }
            self.interval_ends = crate::time::after(now, self.settings.interval);
        }
        changes
    }

    /// Success-rate and latency outliers among the backends with enough calls.
    fn compare(&mut self, now: Instant, down: Down<'_>, changes: &mut Changes) {
        let judged: Vec<usize> = (0..self.records.len())
            .filter(|&i| !down(i) && self.records[i].ejected_until.is_none())
            .filter(|&i| self.records[i].calls() >= self.settings.request_volume)
            .collect();
        if judged.len() < self.settings.minimum_backends {
            return;
        }
        let mut outliers = Vec::new();
        if let Some(factor) = self.settings.stdev_factor {
            #[allow(clippy::cast_precision_loss)]
            let rate = |i: usize| self.records[i].successes as f64 / self.records[i].calls() as f64;
            #[allow(clippy::cast_precision_loss)]
            let count = judged.len() as f64;
            let mean = judged.iter().map(|&i| rate(i)).sum::<f64>() / count;
            let variance = judged.iter().map(|&i| (rate(i) - mean).powi(2)).sum::<f64>() / count;
            let threshold = mean - factor * variance.sqrt();
            outliers.extend(judged.iter().copied().filter(|&i| rate(i) < threshold));
        }
        if let Some(factor) = self.settings.latency_factor {
            let latency = |i: usize| {
                let record = &self.records[i];
                #[allow(clippy::cast_precision_loss)]
                let timed = record.timed.max(1) as f64;
                record.latency_sum / timed
            };
            // Only backends whose calls reported a latency are compared on it.
            let timed: Vec<usize> =
                judged.iter().copied().filter(|&i| self.records[i].timed > 0).collect();
            for &i in timed.iter().filter(|_| timed.len() >= 2) {
                let mut others: Vec<f64> =
                    timed.iter().filter(|&&j| j != i).map(|&j| latency(j)).collect();
                others.sort_by(f64::total_cmp);
                let median = others[others.len() / 2];
                if latency(i) > factor * median && !outliers.contains(&i) {
                    outliers.push(i);
                }
            }
        }
        for backend in outliers {
            self.eject(backend, now, down, changes);
        }
    }

    fn eject(&mut self, backend: usize, now: Instant, down: Down<'_>, changes: &mut Changes) {
        if self.records[backend].ejected_until.is_some() {
            return;
        }
        let total = self.records.len();
        let ejected = self.records.iter().filter(|record| record.ejected_until.is_some()).count();
        let cap = (total * self.settings.max_ejected_percent as usize / 100).max(1);
        let in_rotation =
            (0..total).filter(|&i| !down(i) && self.records[i].ejected_until.is_none()).count();
        if ejected >= cap || in_rotation <= 1 {
            return;
        }
        let record = &mut self.records[backend];
        record.ejections += 1;
        let length = self
            .settings
            .base_ejection
            .saturating_mul(record.ejections)
            .min(self.settings.max_ejection);
        record.ejected_until = Some(crate::time::after(now, length));
        changes.ejected.push(backend);
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn detector(backends: usize, settings: OutlierDetection) -> (Outliers, Instant) {
        let now = Instant::now();
        (Outliers::new(settings, backends, now), now)
    }

    #[test]
    fn a_run_of_failures_ejects_for_longer_each_time_up_to_the_cap() {
        let settings = OutlierDetection::new().max_ejected_percent(50);
        let (mut outliers, start) = detector(3, settings);
        let down = |_: usize| false;
        for _ in 0..4 {
            assert_eq!(outliers.report(0, None, start, &down), Changes::default());
        }
        assert_eq!(outliers.report(0, None, start, &down).ejected, vec![0]);
        assert!(outliers.is_ejected(0));
        assert!(outliers.tick(start + 29 * S, &down).returned.is_empty());
        assert_eq!(outliers.tick(start + 30 * S, &down).returned, vec![0]);
        // The second ejection lasts twice as long; the eleventh is capped at 300 s.
        for _ in 0..5 {
            outliers.report(0, None, start + 30 * S, &down);
        }
        assert!(outliers.tick(start + 89 * S, &down).returned.is_empty());
        assert_eq!(outliers.tick(start + 90 * S, &down).returned, vec![0]);
        outliers.records[0].ejections = 10;
        for _ in 0..5 {
            outliers.report(0, None, start + 90 * S, &down);
        }
        assert_eq!(outliers.records[0].ejected_until, Some(start + 390 * S));
    }

    #[test]
    fn never_more_than_the_cap_and_never_the_last_backend() {
        let (mut outliers, now) = detector(2, OutlierDetection::new().consecutive_failures(1));
        let down = |_: usize| false;
        assert_eq!(
            outliers.report(0, None, now, &down).ejected,
            vec![0],
            "10 % of 2 rounds up to 1"
        );
        assert!(
            outliers.report(1, None, now, &down).ejected.is_empty(),
            "the cap, and the last one"
        );
        let (mut outliers, now) = detector(2, OutlierDetection::new().consecutive_failures(1));
        assert!(
            outliers.report(0, None, now, &|i: usize| i == 1).ejected.is_empty(),
            "the other is out of rotation: this one is the last"
        );
    }

    #[test]
    fn a_success_rate_far_below_the_others_ejects_at_the_interval() {
        let settings = OutlierDetection::new().no_consecutive_failures().request_volume(100);
        let (mut outliers, start) = detector(6, settings);
        let down = |_: usize| false;
        for backend in 0..6 {
            let failures = if backend == 5 { 40 } else { backend as u64 };
            for call in 0..100 {
                let latency = (call >= failures).then_some(MS);
                outliers.report(backend, latency, start, &down);
            }
        }
        assert!(outliers.tick(start + 9 * S, &down).ejected.is_empty(), "judged at the interval");
        assert_eq!(outliers.tick(start + 10 * S, &down).ejected, vec![5]);
    }

    #[test]
    fn a_latency_far_above_the_median_ejects_and_small_volumes_are_not_judged() {
        let settings = OutlierDetection::new()
            .request_volume(10)
            .minimum_backends(3)
            .latency_factor(3.0)
            .max_ejected_percent(50);
        let (mut outliers, start) = detector(4, settings);
        let down = |_: usize| false;
        for backend in 0..4 {
            let latency = if backend == 2 { 50 * MS } else { 10 * MS };
            let calls = if backend == 3 { 5 } else { 10 };
            for _ in 0..calls {
                outliers.report(backend, Some(latency), start, &down);
            }
        }
        assert_eq!(outliers.tick(start + 10 * S, &down).ejected, vec![2]);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |settings: OutlierDetection| settings.validate().unwrap_err().path();
        assert_eq!(
            field(OutlierDetection::new().consecutive_failures(0)).as_deref(),
            Some("outlier_detection.consecutive_failures")
        );
        assert_eq!(
            field(OutlierDetection::new().latency_factor(0.5)).as_deref(),
            Some("outlier_detection.latency_factor")
        );
        assert!(OutlierDetection::new().validate().is_ok());
    }
}
