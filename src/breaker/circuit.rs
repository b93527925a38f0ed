//! [`CircuitBreaker`]: the breaker state machine around calls a user makes, with rate rules.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::machine::{Breaker, Permit};
use super::window::{RateRules, Window};
use crate::build_error::BuildError;
use crate::sync::Mutex;

/// Protects callers from a failing dependency; from [`CircuitBreaker::builder`].
///
/// **Closed**, calls go through and their outcomes are counted over a sliding window. When a
/// rule trips (the failure rate, the slow-call rate, or a run of consecutive failures), it
/// **opens**: calls are refused at once with [`BreakerError::Open`] for `open_for`. Then one
/// call goes through as a probe (**half-open**); its success closes the breaker, its failure
/// opens it again. A probe that has not ended after `probe_timeout` counts as failed, so a
/// trial call that hangs forever cannot leave the breaker stuck half-open.
///
/// Any other signal can open it too: [`trip`](Self::trip) opens it as a failing rule would,
/// and [`hold_open`](Self::hold_open) keeps it open until [`release`](Self::release) (a CPU
/// past its threshold, an operator's switch).
///
/// Shared by reference (or in an `Arc`) among the tasks that call the dependency.
pub struct CircuitBreaker {
    rules: RateRules,
    probe_timeout: Duration,
    state: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    machine: Breaker,
    window: Window,
    /// The probe out now, if any.
    probe: Option<Probe>,
    /// Numbers the probes, so that a probe given up on cannot report over its successor.
    probes: u64,
    held_open: bool,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    id: u64,
    started: Instant,
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused; a probe is let through after `retry_in`.
    Open {
        /// Time left until the probe.
        retry_in: Duration,
    },
    /// A probe is being let through, or is out; its outcome decides.
    HalfOpen,
    /// Held open by [`CircuitBreaker::hold_open`] until [`CircuitBreaker::release`].
    HeldOpen,
}

/// What [`CircuitBreaker::call`] reports.
#[derive(Debug)]
pub enum BreakerError<E> {
    /// The breaker is open: the call was not made.
    Open {
        /// Time until a probe is let through (zero while a probe is out: try again shortly;
        /// `Duration::MAX` while the breaker is held open).
        retry_in: Duration,
    },
    /// The call was made and failed.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { retry_in } => {
                write!(f, "circuit open: call refused (retry in {retry_in:?})")
            }
            Self::Failed(err) => write!(f, "{err}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BreakerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open { .. } => None,
            Self::Failed(err) => Some(err),
        }
    }
}

/// Leave to make one call: report how it went with [`succeeded`](Self::succeeded) or
/// [`failed`](Self::failed). Dropped without a verdict (the call was cancelled), it counts as
/// neither, and a probe's turn passes to the next caller.
#[must_use = "report the call's outcome, or the breaker learns nothing from it"]
pub struct CallPermit<'a> {
    breaker: &'a CircuitBreaker,
    started: Instant,
    /// The probe's number, if this call is one.
    probe: Option<u64>,
    reported: bool,
}

impl CallPermit<'_> {
    /// The call succeeded (a slow success still counts toward the slow-call rate).
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.record(self.started, self.probe, false);
    }

    /// The call failed.
    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.record(self.started, self.probe, true);
    }
}

impl fmt::Debug for CallPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallPermit")
            .field("started", &self.started)
            .field("probe", &self.probe.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        if let (false, Some(id)) = (self.reported, self.probe) {
            let mut inner = self.breaker.state.lock();
            if inner.probe.is_some_and(|probe| probe.id == id) {
                inner.probe = None;
            }
        }
    }
}

impl CircuitBreaker {
    /// Starts configuring a breaker.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }

    /// Runs `call` if the breaker lets it, and counts its outcome.
    ///
    /// # Errors
    ///
    /// [`BreakerError::Open`] without running `call` while the breaker is open;
    /// [`BreakerError::Failed`] with the call's own error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe for the breaker's state, but a call dropped before it ends counts as
    /// neither a success nor a failure, and a dropped probe passes its turn to the next caller.
    /// So a timeout wrapped *around* `call` never trips the breaker. Put it inside, with the
    /// elapsed timeout as the call's error:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use millpond::breaker::CircuitBreaker;
    /// # async fn fetch() -> Result<u32, &'static str> { Ok(1) }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let breaker = CircuitBreaker::builder().build().unwrap();
    /// let limit = Duration::from_secs(2);
    /// let value = breaker
    ///     .call(async { tokio::time::timeout(limit, fetch()).await.unwrap_or(Err("timed out")) })
    ///     .await;
    /// # assert_eq!(value.unwrap(), 1);
    /// # }
    /// ```
    pub async fn call<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, BreakerError<E>> {
        let permit = self.try_acquire().map_err(|retry_in| BreakerError::Open { retry_in })?;
        let outcome = call.await;
        match &outcome {
            Ok(_) => permit.succeeded(),
            Err(_) => permit.failed(),
        }
        outcome.map_err(BreakerError::Failed)
    }

    /// Asks to make one call, for callers that report its outcome themselves.
    ///
    /// # Errors
    ///
    /// The time until a probe is let through, while the breaker is open.
    pub fn try_acquire(&self) -> Result<CallPermit<'_>, Duration> {
        let now = Instant::now();
        let mut inner = self.state.lock();
        if inner.held_open {
            return Err(Duration::MAX);
        }
        self.give_up_on_a_hung_probe(&mut inner, now);
        let in_flight = usize::from(inner.probe.is_some());
        match inner.machine.permit(now, in_flight) {
            Permit::Any => Ok(self.permit(now, None)),
            Permit::Probe => {
                inner.probes += 1;
                let id = inner.probes;
                inner.probe = Some(Probe { id, started: now });
                Ok(self.permit(now, Some(id)))
            }
            Permit::Refused => Err(inner
                .machine
                .reopens_at()
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))),
        }
    }

    /// A probe out for `probe_timeout` counts as failed: the breaker opens again and lets a
    /// new probe through after its cool-down, and the old one's report, if it ever comes, is
    /// ignored.
    fn give_up_on_a_hung_probe(&self, inner: &mut Inner, now: Instant) {
        if let Some(probe) = inner.probe {
            if crate::time::elapsed(probe.started, self.probe_timeout, now) {
                inner.probe = None;
                inner.machine.trip(now);
                inner.window.clear(now);
            }
        }
    }

    fn permit(&self, started: Instant, probe: Option<u64>) -> CallPermit<'_> {
        CallPermit { breaker: self, started, probe, reported: false }
    }

    /// Where the breaker stands now.
    pub fn state(&self) -> BreakerState {
        let now = Instant::now();
        let mut inner = self.state.lock();
        if inner.held_open {
            return BreakerState::HeldOpen;
        }
        self.give_up_on_a_hung_probe(&mut inner, now);
        match inner.machine.reopens_at() {
            Some(at) if now < at => BreakerState::Open { retry_in: at - now },
            Some(_) => BreakerState::HalfOpen,
            None if inner.machine.is_tripped() => BreakerState::HalfOpen,
            None => BreakerState::Closed,
        }
    }

    /// Opens the breaker now, as a tripped rule would: calls are refused for `open_for`, then a
    /// probe decides. For a signal the breaker cannot see itself (a load signal, a health check).
    pub fn trip(&self) {
        let now = Instant::now();
        let mut inner = self.state.lock();
        inner.probe = None;
        inner.machine.trip(now);
        inner.window.clear(now);
    }

    /// Refuses every call until [`release`](Self::release), with `retry_in` of
    /// `Duration::MAX`. Outcomes of calls already running are still counted.
    pub fn hold_open(&self) {
        self.state.lock().held_open = true;
    }

    /// Ends [`hold_open`](Self::hold_open): the breaker is where its own rules left it.
    pub fn release(&self) {
        self.state.lock().held_open = false;
    }

    fn record(&self, started: Instant, probe: Option<u64>, failed: bool) {
        let now = Instant::now();
        let slow = self.rules.is_slow(now - started);
        let mut inner = self.state.lock();
        let Inner { machine, window, probe: current, .. } = &mut *inner;
        if let Some(id) = probe {
            if current.is_none_or(|current| current.id != id) {
                return; // given up on (or superseded by a trip): its verdict is already in
            }
            *current = None;
            if failed || slow {
                machine.on_failure(now);
            } else {
                machine.on_success();
            }
            window.clear(now);
            return;
        }
        if machine.is_tripped() {
            // A call let through before the trip, ending after it: its verdict is already in.
            if failed {
                machine.on_failure(now);
            }
            return;
        }
        window.record(now, failed, slow);
        let tripped_by_run = if failed {
            machine.on_failure(now)
        } else {
            machine.on_success();
            false
        };
        if tripped_by_run || self.rules.trip(window) {
            if !tripped_by_run {
                machine.trip(now);
            }
            window.clear(now);
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .field("rules", &self.rules)
            .finish()
    }
}

/// Configures a [`CircuitBreaker`].
///
/// | setting | default |
/// |---|---|
/// | [`failure_rate`](Self::failure_rate) | 0.5 |
/// | [`slow_calls`](Self::slow_calls) | off |
/// | [`consecutive_failures`](Self::consecutive_failures) | off |
/// | [`minimum_calls`](Self::minimum_calls) | 10 |
/// | [`window`](Self::window) | 10 s |
/// | [`open_for`](Self::open_for) | 5 s |
/// | [`probe_timeout`](Self::probe_timeout) | 30 s |
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct CircuitBreakerBuilder {
    failure_rate: Option<f64>,
    slow: Option<(Duration, f64)>,
    consecutive_failures: Option<u32>,
    minimum_calls: u32,
    window: Duration,
    open_for: Duration,
    probe_timeout: Duration,
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        Self {
            failure_rate: Some(0.5),
            slow: None,
            consecutive_failures: None,
            minimum_calls: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(30),
        }
    }
}

impl CircuitBreakerBuilder {
    /// Opens when at least this share of the window's calls failed (in `(0, 1]`).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = Some(rate);
        self
    }

    /// Turns the failure-rate rule off, to open on the other rules only.
    pub fn no_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// Opens when at least `rate` of the window's calls took longer than `threshold`.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.slow = Some((threshold, rate));
        self
    }

    /// Opens after this many failures in a row, whatever the window holds.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = Some(failures);
        self
    }

    /// Calls the window must hold before the rate rules judge it.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// How far back the rate rules look.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long the breaker stays open before it lets a probe through.
    pub fn open_for(mut self, open_for: Duration) -> Self {
        self.open_for = open_for;
        self
    }

    /// How long a probe may run before it counts as failed (30 s). Without a bound, a trial
    /// call that never ends (a hung connection) keeps the breaker half-open, refusing every
    /// other call, for good: resilience4j's most reported breaker bug.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Checks the rules and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field: a rate outside `(0, 1]`, a zero threshold, window,
    /// `open_for`, `probe_timeout`, `minimum_calls` or `consecutive_failures`, or no rule at all.
    pub fn build(self) -> Result<CircuitBreaker, BuildError> {
        let rate_ok = |rate: f64| rate > 0.0 && rate <= 1.0;
        if let Some(rate) = self.failure_rate.filter(|rate| !rate_ok(*rate)) {
            return Err(BuildError::invalid("failure_rate", rate, "must be in (0, 1]"));
        }
        if let Some((threshold, rate)) = self.slow {
            if threshold.is_zero() {
                return Err(BuildError::invalid(
                    "slow_calls",
                    threshold,
                    "the threshold must be above 0",
                ));
            }
            if !rate_ok(rate) {
                return Err(BuildError::invalid("slow_calls", rate, "the rate must be in (0, 1]"));
            }
        }
        if self.consecutive_failures == Some(0) {
            return Err(BuildError::invalid("consecutive_failures", 0, "must be at least 1"));
        }
        if self.failure_rate.is_none() && self.slow.is_none() && self.consecutive_failures.is_none()
        {
            return Err(BuildError::invalid(
                "failure_rate",
                "off",
                "no rule is left to open the breaker",
            ));
        }
        if self.minimum_calls == 0 {
            return Err(BuildError::invalid("minimum_calls", 0, "must be at least 1"));
        }
        if self.window.is_zero() {
            return Err(BuildError::invalid("window", self.window, "must be above 0"));
        }
        if self.open_for.is_zero() {
            return Err(BuildError::invalid("open_for", self.open_for, "must be above 0"));
        }
        if self.probe_timeout.is_zero() {
            return Err(BuildError::invalid(
                "probe_timeout",
                self.probe_timeout,
                "must be above 0",
            ));
        }
        let now = Instant::now();
        Ok(CircuitBreaker {
            rules: RateRules {
                failure_rate: self.failure_rate,
                slow: self.slow,
                minimum_calls: self.minimum_calls,
            },
            probe_timeout: self.probe_timeout,
            state: Mutex::new(Inner {
                machine: Breaker::new(self.consecutive_failures, self.open_for),
                window: Window::new(self.window, now),
                probe: None,
                probes: 0,
                held_open: false,
            }),
        })
    }
}
