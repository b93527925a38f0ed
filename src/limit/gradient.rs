//! Gradient2: the delay-based algorithm, with the fixes its users had to ask for.

use std::time::Duration;

use tokio::time::Instant;

use super::algorithm::{LimitAlgorithm, Outcome, Sample, validate_bounds, validate_ratio};
use crate::BuildError;

/// A delay-based limit: it compares each call's latency with a long-term average and shrinks
/// the limit as soon as calls take longer than `tolerance` times that average, before the
/// backend starts failing.
///
/// The rule is Netflix's `Gradient2Limit`: `gradient = clamp(tolerance × long / short, 0.5, 1)`,
/// `new = limit × gradient + queue`, smoothed as `limit × (1 − smoothing) + new × smoothing`
/// (here only when `new` is higher: see below),
/// where `short` is the mean latency of a window of calls (at least ten, spanning at least two
/// mean latencies: one decision per window) and `long` an exponential average over
/// `long_window` windows. The defaults are Netflix's: initial 20, between 20 and 200, smoothing 0.2, queue 4,
/// long window 600 windows, tolerance 1.5. An average rather than a minimum is the baseline
/// because a minimum drifts towards an impractically low latency and sheds too much.
///
/// What millpond adds, each a problem users of the original reported:
///
/// - **Drops lower the limit** (by `backoff`, 0.9). The original ignores them, and a dropped
///   call's near-zero latency then reads as a healthy backend.
/// - **No growth while calls queue.** The `queue` headroom is added only while the gradient
///   is 1 (latency within tolerance). The original adds it always, so under a mild overload
///   (a gradient near 0.8) small limits kept growing.
/// - **A jittered re-probe of the no-load latency.** The average is counted in calls, not in
///   time, so under load it follows latency up within a fraction of a second: a queued
///   latency soon looks normal, the gradient returns to 1 and the limit grows again, into
///   more queueing, without end. So every `probe_multiplier × limit` calls (jittered between
///   half and all of that, so that instances do not probe together) the limit drops to
///   `min_limit` until `probe_samples` calls admitted at that concurrency have finished; their
///   mean latency is the no-load latency, the baseline never counts above it, and the limit
///   returns to where it was. This is Envoy's minimum-latency probe (a mean, not a minimum),
///   at the cost of a short dip in concurrency; with it the limit settles where latency is
///   `tolerance` times the no-load latency. Probes are also at least half a `probe_interval`
///   (10 s) apart, so that at thousands of calls a second they do not come every second; and,
///   as in Envoy, a limit held at its floor for five decisions probes at once (free at the
///   floor), so that a backend that got slower for good is measured again instead of being
///   held at the floor against a no-load latency it no longer has.
/// - **Cuts at once.** Smoothing applies to growth only; a window whose latency is past the
///   tolerance sets the limit to its estimate (at most halving it, as the gradient's floor of
///   0.5 allows). Smoothed cuts took eight windows to follow a halving of the backend's
///   capacity, queueing callers all the while.
/// - **No decision on idle samples**: a call admitted while fewer than half the limit were in
///   flight changes nothing (as in the original).
///
/// ```
/// use millpond::limit::Gradient2;
///
/// let gradient = Gradient2::new().min_limit(2).max_limit(500).tolerance(2.0);
/// # let _ = gradient;
/// ```
#[derive(Debug, Clone)]
pub struct Gradient2 {
    initial: usize,
    min: usize,
    max: usize,
    smoothing: f64,
    queue: usize,
    long_window: u32,
    tolerance: f64,
    backoff: f64,
    probe_multiplier: u32,
    probe_samples: u32,
    probe_interval: Duration,
    /// Made from the settings at the first sample.
    state: Option<State>,
}

#[derive(Debug, Clone)]
struct State {
    limit: f64,
    /// The long-term average latency, in seconds.
    long: Average,
    /// The mean latency the last probe measured, in seconds.
    no_load: Option<f64>,
    /// Successful samples left until the next probe; 0 before the first sample.
    until_probe: u64,
    /// No probe before this (the last probe's end plus a jittered `probe_interval`).
    probe_not_before: Option<Instant>,
    /// Decisions in a row that left the limit at its floor.
    windows_at_floor: u32,
    probe: Option<Probe>,
    window: Window,
}

/// A probe of the no-load latency under way.
#[derive(Debug, Clone)]
struct Probe {
    /// The limit to return to.
    resume: f64,
    /// The latencies of calls admitted at the probe's concurrency, in seconds.
    sum: f64,
    count: u32,
}

/// An exponential moving average that starts as a plain mean over its first ten samples
/// (so one odd first call does not set the baseline for hundreds of calls).
#[derive(Debug, Clone)]
struct Average {
    value: f64,
    count: u32,
    window: u32,
}

const WARMUP: u32 = 10;

impl Average {
    fn new(window: u32) -> Self {
        Self { value: 0.0, count: 0, window }
    }

    fn add(&mut self, sample: f64) -> f64 {
        if self.count < WARMUP {
            self.count += 1;
            self.value += (sample - self.value) / f64::from(self.count);
        } else {
            let factor = 2.0 / (f64::from(self.window) + 1.0);
            self.value += (sample - self.value) * factor;
        }
        self.value
    }
}

/// Decisions at the floor in a row that call for a new probe (Envoy's 5).
const FLOOR_WINDOWS_BEFORE_PROBE: u32 = 5;

/// Latencies below this are treated as this: a zero latency would make the gradient infinite.
const FLOOR_SECS: f64 = 1e-6;

impl Default for Gradient2 {
    fn default() -> Self {
        Self::new()
    }
}

impl Gradient2 {
    /// Gradient2 with Netflix's defaults and millpond's fixes.
    pub fn new() -> Self {
        Self {
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            queue: 4,
            long_window: 600,
            tolerance: 1.5,
            backoff: 0.9,
            probe_multiplier: 100,
            probe_samples: 20,
            probe_interval: Duration::from_secs(10),
            state: None,
        }
    }

    /// The limit before the first sample (20).
    #[must_use]
    pub fn initial_limit(mut self, limit: usize) -> Self {
        self.initial = limit;
        self
    }

    /// The floor (20).
    #[must_use]
    pub fn min_limit(mut self, limit: usize) -> Self {
        self.min = limit;
        self
    }

    /// The ceiling (200).
    #[must_use]
    pub fn max_limit(mut self, limit: usize) -> Self {
        self.max = limit;
        self
    }

    /// How much of each higher estimate enters the limit (0.2), in `(0, 1]`. A lower estimate
    /// (latency past the tolerance) is taken at once.
    #[must_use]
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// The least headroom added above the estimate while latency is within tolerance (4); above
    /// a limit of 16 the headroom is √limit, as in Envoy. How fast the limit grows when there is
    /// room.
    #[must_use]
    pub fn queue_size(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// How many windows the long-term average spans (600).
    #[must_use]
    pub fn long_window(mut self, calls: u32) -> Self {
        self.long_window = calls;
        self
    }

    /// How much slower than the long-term average a call may be before the limit shrinks (1.5),
    /// at least 1.
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The factor a dropped call multiplies the limit by (0.9), in `[0.5, 1)`.
    #[must_use]
    pub fn backoff(mut self, ratio: f64) -> Self {
        self.backoff = ratio;
        self
    }

    /// Re-probe the no-load latency every `multiplier × limit` calls, jittered (100): about
    /// every 100 round trips, so the probe's dip costs about 1–2 % of the calls.
    #[must_use]
    pub fn probe_multiplier(mut self, multiplier: u32) -> Self {
        self.probe_multiplier = multiplier;
        self
    }

    /// How many calls admitted at `min_limit` a probe measures (20).
    #[must_use]
    pub fn probe_samples(mut self, calls: u32) -> Self {
        self.probe_samples = calls;
        self
    }

    /// The least time between the end of one probe and the start of the next, jittered between
    /// half and all of it (10 s). At high call rates the probes would otherwise come every
    /// second or so; each dip to `min_limit` turns a few hundred callers into waiters, enough to
    /// lift the p99 of the whole stream. `Duration::ZERO` leaves only `probe_multiplier`.
    #[must_use]
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    fn bounded(&self, limit: f64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        limit.clamp(self.min as f64, self.max as f64)
    }

    fn next_probe(&self, limit: f64) -> u64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let span = (f64::from(self.probe_multiplier) * limit) as u64;
        let span = span.max(1);
        if cfg!(millpond_loom) { span } else { fastrand::u64(span / 2..=span) }
    }

    fn probe_not_before(&self, now: Instant) -> Instant {
        let spacing = if cfg!(millpond_loom) || self.probe_interval.is_zero() {
            self.probe_interval
        } else {
            self.probe_interval.mul_f64(fastrand::f64().mul_add(0.5, 0.5))
        };
        crate::time::after(now, spacing)
    }

    fn start_probe(&self, state: &mut State) {
        #[allow(clippy::cast_precision_loss)]
        let floor = self.min as f64;
        state.probe = Some(Probe { resume: state.limit, sum: 0.0, count: 0 });
        state.limit = floor;
        state.window = Window::default();
        state.windows_at_floor = 0;
    }

    fn on_success(&self, state: &mut State, sample: &Sample) {
        let latency = sample.latency.as_secs_f64().max(FLOOR_SECS);
        if let Some(probe) = &mut state.probe {
            // Calls admitted before the probe ran at the old concurrency: not a no-load sample.
            if sample.in_flight <= self.min {
                probe.sum += latency;
                probe.count += 1;
            }
            if probe.count >= self.probe_samples {
                let no_load = probe.sum / f64::from(probe.count);
                state.no_load = Some(no_load);
                // The probe is the truth about the no-load latency both ways: an average still
                // above it is queueing, and one below it is from before the backend got slower.
                state.long.value = no_load;
                state.limit = probe.resume;
                state.probe = None;
                state.until_probe = self.next_probe(state.limit);
                state.probe_not_before = Some(self.probe_not_before(sample.now));
            }
            return;
        }
        if state.until_probe == 0 {
            state.until_probe = self.next_probe(state.limit);
        }
        // Counts down to 1, and waits there until the last probe is far enough behind.
        state.until_probe = state.until_probe.saturating_sub(1).max(1);
        let spaced = state.probe_not_before.is_none_or(|at| sample.now >= at);
        if state.until_probe == 1 && spaced {
            self.start_probe(state);
            return;
        }
        let Some((short, in_flight)) = state.window.add(latency, sample) else { return };
        let mut long = state.long.add(short);
        // After an overload the average is still high while calls are fast again: let it decay
        // faster than its window would, or the limit grows into the next overload blind.
        if long / short > 2.0 {
            long *= 0.95;
            state.long.value = long;
        }
        if in_flight.saturating_mul(2) < sample.limit {
            return; // app-limited: this window says nothing about more concurrency
        }
        let baseline = state.no_load.map_or(long, |no_load| long.min(no_load));
        let gradient = (self.tolerance * baseline / short).clamp(0.5, 1.0);
        // Envoy's headroom, √limit, so that a large limit does not take minutes to grow; never
        // less than `queue`.
        #[allow(clippy::cast_precision_loss)]
        let headroom =
            if gradient >= 1.0 { state.limit.sqrt().max(self.queue as f64) } else { 0.0 };
        let estimate = state.limit * gradient + headroom;
        // Up slowly, down at once: a window whose latency says the limit is too high has
        // already waited two round trips for the last decision to show, and every further
        // window spent above capacity queues more callers.
        let next = if estimate < state.limit {
            estimate
        } else {
            state.limit * (1.0 - self.smoothing) + estimate * self.smoothing
        };
        state.limit = self.bounded(next);
        // Envoy's rule: a limit held at its floor for five decisions may be judging by a stale
        // no-load latency (the backend got slower for good), so measure it again now. At the
        // floor the probe costs nothing.
        #[allow(clippy::cast_precision_loss)]
        let at_floor = state.limit <= self.min as f64;
        state.windows_at_floor = if at_floor { state.windows_at_floor + 1 } else { 0 };
        if state.windows_at_floor >= FLOOR_WINDOWS_BEFORE_PROBE && state.no_load.is_some() {
            self.start_probe(state);
        }
    }
}

/// Successes gathered into one decision. A limit moved on every call reacts to calls admitted
/// before its last move: it doubles within one round trip before the latency of the new calls
/// shows, then collapses. A window of at least ten calls spanning at least two mean latencies
/// lets each decision see the effect of the one before (Netflix runs Gradient2 behind a
/// `WindowedLimit` for the same reason).
#[derive(Debug, Clone, Default)]
struct Window {
    start: Option<tokio::time::Instant>,
    sum: f64,
    count: u32,
    max_in_flight: usize,
}

const WINDOW_CALLS: u32 = 10;

impl Window {
    /// Adds a call; when the window is complete, returns its mean latency and the most calls
    /// in flight at any admission in it, and starts the next.
    fn add(&mut self, latency: f64, sample: &Sample) -> Option<(f64, usize)> {
        let start = *self.start.get_or_insert(sample.now);
        self.sum += latency;
        self.count += 1;
        self.max_in_flight = self.max_in_flight.max(sample.in_flight);
        let mean = self.sum / f64::from(self.count);
        let span = sample.now.saturating_duration_since(start).as_secs_f64();
        if self.count < WINDOW_CALLS || span < 2.0 * mean {
            return None;
        }
        let done = (mean, self.max_in_flight);
        *self = Self::default();
        Some(done)
    }
}

impl LimitAlgorithm for Gradient2 {
    fn initial(&self) -> usize {
        self.initial
    }

    fn update(&mut self, sample: &Sample) -> usize {
        #[allow(clippy::cast_precision_loss)]
        let initial = self.initial as f64;
        let mut state = self.state.take().unwrap_or_else(|| State {
            limit: initial,
            long: Average::new(self.long_window),
            no_load: None,
            until_probe: 0,
            probe_not_before: None,
            windows_at_floor: 0,
            probe: None,
            window: Window::default(),
        });
        match sample.outcome {
            Outcome::Success => self.on_success(&mut state, sample),
            Outcome::Dropped => match &mut state.probe {
                Some(probe) => probe.resume = self.bounded(probe.resume * self.backoff),
                None => state.limit = self.bounded(state.limit * self.backoff),
            },
            Outcome::Failure => {}
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let limit = (state.limit as usize).max(1);
        self.state = Some(state);
        limit
    }

    fn validate(&self) -> Result<(), BuildError> {
        validate_bounds(self.initial, self.min, self.max)?;
        validate_ratio("smoothing", self.smoothing, f64::MIN_POSITIVE, 1.0, true)?;
        validate_ratio("backoff", self.backoff, 0.5, 1.0, false)?;
        if !(self.tolerance.is_finite() && self.tolerance >= 1.0) {
            return Err(BuildError::invalid("tolerance", self.tolerance, "must be at least 1"));
        }
        if self.long_window == 0 {
            return Err(BuildError::invalid("long_window", self.long_window, "must be at least 1"));
        }
        if self.probe_samples == 0 {
            return Err(BuildError::invalid(
                "probe_samples",
                self.probe_samples,
                "must be at least 1",
            ));
        }
        if self.probe_multiplier == 0 {
            return Err(BuildError::invalid(
                "probe_multiplier",
                self.probe_multiplier,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    /// Feeds calls to an algorithm one after another, the clock moving by each call's latency.
    struct Feed {
        gradient: Gradient2,
        now: Instant,
    }

    impl Feed {
        fn new(gradient: Gradient2) -> Self {
            Self { gradient, now: Instant::now() }
        }

        fn call(
            &mut self,
            outcome: Outcome,
            latency_ms: u64,
            in_flight: usize,
            limit: usize,
        ) -> usize {
            let latency = Duration::from_millis(latency_ms);
            self.now += latency;
            let sample = Sample { outcome, latency, in_flight, limit, now: self.now };
            self.gradient.update(&sample)
        }

        fn ok(&mut self, latency_ms: u64, in_flight: usize, limit: usize) -> usize {
            self.call(Outcome::Success, latency_ms, in_flight, limit)
        }

        fn state(&self) -> &State {
            self.gradient.state.as_ref().unwrap()
        }

        fn state_or_none(&self) -> Option<&State> {
            self.gradient.state.as_ref()
        }
    }

    #[test]
    fn grows_while_latency_holds_and_shrinks_when_it_quadruples() {
        // No probe within the test: its jittered start would pin the limit at the floor.
        let mut feed = Feed::new(Gradient2::new().probe_multiplier(1_000));
        let mut limit = feed.gradient.initial();
        for _ in 0..1_000 {
            limit = feed.ok(10, limit, limit);
        }
        assert!(limit > 60, "steady latency at full use grows the limit: {limit}");
        let grown = limit;
        for _ in 0..60 {
            limit = feed.ok(40, limit, limit);
        }
        assert!(limit < grown * 3 / 4, "four times the latency shrinks it: {grown} -> {limit}");
    }

    /// Growth is smoothed; a cut is not: one window at four times the latency halves the limit
    /// (the gradient's floor), where a smoothed cut would take a tenth off.
    #[test]
    fn one_slow_window_cuts_the_limit_at_once() {
        let gradient = Gradient2::new().initial_limit(100).max_limit(100).probe_multiplier(1_000);
        let mut feed = Feed::new(gradient);
        for _ in 0..200 {
            feed.ok(10, 100, 100);
        }
        assert_eq!(feed.state().limit, 100.0);
        let mut limit = 100;
        for _ in 0..10 {
            limit = feed.ok(40, 100, 100);
        }
        assert_eq!(limit, 50, "one window at 4 × the latency: gradient 0.5");
    }

    #[test]
    fn one_decision_per_window() {
        let mut feed = Feed::new(Gradient2::new());
        for _ in 0..9 {
            assert_eq!(feed.ok(10, 20, 20), 20, "a window needs ten calls");
        }
        feed.ok(10, 20, 20);
        assert!(feed.state().limit > 20.0, "the tenth closes it");
    }

    #[test]
    fn a_gradient_near_0_8_never_grows_a_small_limit() {
        // Latency at 1.9 × the average with tolerance 1.5 gives a gradient of about 0.79; the
        // original rule (`limit × 0.79 + 4`) grows any limit below 19 towards 19.
        let gradient = Gradient2::new().min_limit(1).initial_limit(5).probe_multiplier(1_000);
        let mut feed = Feed::new(gradient);
        let mut limit = 5;
        for _ in 0..20 {
            limit = feed.ok(10, limit, limit);
        }
        let before = feed.state().limit;
        for _ in 0..50 {
            // Keep the average pinned at 10 ms: this tests the rule, not the average's drift.
            let long = &mut feed.gradient.state.as_mut().unwrap().long;
            (long.value, long.count) = (0.010, WARMUP);
            limit = feed.ok(19, limit, limit);
        }
        let after = feed.state().limit;
        assert!(after <= before, "{before} -> {after}");
    }

    #[test]
    fn drops_cut_the_limit() {
        let mut feed = Feed::new(Gradient2::new().min_limit(1).initial_limit(100).max_limit(100));
        assert_eq!(feed.call(Outcome::Dropped, 0, 100, 100), 90);
    }

    #[test]
    fn idle_samples_change_nothing() {
        let mut feed = Feed::new(Gradient2::new());
        for _ in 0..100 {
            assert_eq!(feed.ok(10, 5, 20), 20);
        }
        for _ in 0..100 {
            assert_eq!(feed.ok(100, 5, 20), 20);
        }
    }

    /// At a high call rate `probe_multiplier × limit` calls pass in moments; the time floor
    /// keeps the probes apart.
    #[test]
    fn probes_are_at_least_half_the_probe_interval_apart() {
        let gradient = Gradient2::new().probe_multiplier(1).probe_interval(Duration::from_secs(1));
        let mut feed = Feed::new(gradient);
        let start = feed.now;
        let mut starts = Vec::new();
        let mut limit = feed.gradient.initial();
        while feed.now < start + Duration::from_secs(10) {
            let probing = feed.state_or_none().is_some_and(|state| state.probe.is_some());
            limit = feed.ok(1, limit, limit);
            if !probing && feed.state().probe.is_some() {
                starts.push(feed.now);
            }
        }
        let gaps: Vec<Duration> = starts.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert!(gaps.iter().all(|gap| *gap >= Duration::from_millis(500)), "{gaps:?}");
        assert!((9..=21).contains(&starts.len()), "{} probes in 10 s", starts.len());
    }

    /// Envoy's rule: a limit held at its floor re-measures the no-load latency at once, so a
    /// backend that got slower for good is not held at the floor until the next timed probe.
    #[test]
    fn a_limit_held_at_the_floor_probes_again_and_recovers() {
        let gradient = Gradient2::new()
            .min_limit(5)
            .initial_limit(50)
            .probe_multiplier(1)
            .probe_interval(Duration::MAX);
        let mut feed = Feed::new(gradient);
        let mut limit = 50;
        // The first probe measures 5 ms at the floor; the backend then answers in 5 ms.
        for _ in 0..200 {
            limit = feed.ok(5, limit, limit);
        }
        assert_eq!(feed.state().no_load.map(|s| (s * 1e3).round()), Some(5.0));
        // It gets slower for good: 50 ms at any concurrency. The limit falls to its floor,
        // and five decisions there start a probe that measures the new no-load latency.
        for _ in 0..2_000 {
            limit = feed.ok(50, limit, limit);
        }
        assert_eq!(feed.state().no_load.map(|s| (s * 1e3).round()), Some(50.0));
        assert!(limit > 20, "growing again from the floor: {limit}");
    }

    #[test]
    fn a_probe_measures_at_the_floor_caps_the_baseline_and_restores_the_limit() {
        let mut feed = Feed::new(Gradient2::new().initial_limit(100).probe_multiplier(1));
        // A long overload at 100 in flight: every call takes 50 ms, the average follows it.
        let mut limit = 100;
        let mut probes = 0;
        for _ in 0..500 {
            limit = feed.ok(50, 100, 100);
            if limit == 20 {
                probes += 1;
                // Calls admitted before the probe do not count as no-load samples.
                assert_eq!(feed.ok(50, 100, 20), 20);
                // At the floor the backend answers in 5 ms.
                for _ in 0..19 {
                    assert_eq!(feed.ok(5, 20, 20), 20, "still probing");
                }
                limit = feed.ok(5, 20, 20);
                assert!(limit > 20, "the probe ends and the limit returns: {limit}");
                break;
            }
        }
        assert_eq!(probes, 1, "a probe starts within one probe interval");
        let no_load = feed.state().no_load.unwrap();
        assert!((no_load - 0.005).abs() < 1e-9, "the probe's mean: {no_load}");
        // Back at the old concurrency, 50 ms calls now read as ten times the no-load latency.
        let before = limit;
        for _ in 0..10 {
            limit = feed.ok(50, limit, limit);
        }
        assert!(limit < before, "{before} -> {limit}");
    }
}
