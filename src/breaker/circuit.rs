//! [`CircuitBreaker`]: the breaker state machine around calls a user makes, with rate rules.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::machine::{Breaker, Permit};
use super::window::Window;
use crate::build_error::BuildError;
use crate::sync::Mutex;

/// Protects callers from a failing dependency; from [`CircuitBreaker::builder`].
///
/// **Closed**, calls go through and their outcomes are counted over a sliding window. When a
/// rule trips (the failure rate, the slow-call rate, or a run of consecutive failures), it
/// **opens**: calls are refused at once with [`BreakerError::Open`] for `open_for`. Then one
/// call goes through as a probe (**half-open**); its success closes the breaker, its failure
/// opens it again.
///
/// Shared by reference (or in an `Arc`) among the tasks that call the dependency.
pub struct CircuitBreaker {
    rules: Rules,
    state: Mutex<Inner>,
}

#[derive(Debug, Clone)]
struct Rules {
    failure_rate: Option<f64>,
    slow: Option<(Duration, f64)>,
    minimum_calls: u32,
}

#[derive(Debug)]
struct Inner {
    machine: Breaker,
    window: Window,
    probe_out: bool,
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
}

/// What [`CircuitBreaker::call`] reports.
#[derive(Debug)]
pub enum BreakerError<E> {
    /// The breaker is open: the call was not made.
    Open {
        /// Time until a probe is let through (zero while a probe is out: try again shortly).
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
    probe: bool,
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

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.state.lock().probe_out = false;
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
        let in_flight = usize::from(inner.probe_out);
        match inner.machine.permit(now, in_flight) {
            Permit::Any => Ok(self.permit(now, false)),
            Permit::Probe => {
                inner.probe_out = true;
                Ok(self.permit(now, true))
            }
            Permit::Refused => Err(inner
                .machine
                .reopens_at()
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))),
        }
    }

    fn permit(&self, started: Instant, probe: bool) -> CallPermit<'_> {
        CallPermit { breaker: self, started, probe, reported: false }
    }

    /// Where the breaker stands now.
    pub fn state(&self) -> BreakerState {
        let now = Instant::now();
        let inner = self.state.lock();
        match inner.machine.reopens_at() {
            Some(at) if now < at => BreakerState::Open { retry_in: at - now },
            Some(_) => BreakerState::HalfOpen,
            None if inner.machine.is_tripped() => BreakerState::HalfOpen,
            None => BreakerState::Closed,
        }
    }

    fn record(&self, started: Instant, probe: bool, failed: bool) {
        let now = Instant::now();
        let slow = self.rules.slow.is_some_and(|(threshold, _)| now - started > threshold);
        let mut inner = self.state.lock();
        let Inner { machine, window, probe_out } = &mut *inner;
        if probe {
            *probe_out = false;
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
        if tripped_by_run || self.rules.rates_trip(window) {
            if !tripped_by_run {
                machine.trip(now);
            }
            window.clear(now);
        }
    }
}

impl Rules {
    /// Whether the window's calls break a rate rule.
    fn rates_trip(&self, window: &Window) -> bool {
        let totals = window.totals();
        if totals.calls < self.minimum_calls {
            return false;
        }
        let calls = f64::from(totals.calls);
        let failing =
            self.failure_rate.is_some_and(|rate| f64::from(totals.failures) / calls >= rate);
        let slow = self.slow.is_some_and(|(_, rate)| f64::from(totals.slow) / calls >= rate);
        failing || slow
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
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct CircuitBreakerBuilder {
    failure_rate: Option<f64>,
    slow: Option<(Duration, f64)>,
    consecutive_failures: Option<u32>,
    minimum_calls: u32,
    window: Duration,
    open_for: Duration,
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

    /// Checks the rules and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field: a rate outside `(0, 1]`, a zero threshold, window,
    /// `open_for`, `minimum_calls` or `consecutive_failures`, or no rule at all.
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
        let now = Instant::now();
        Ok(CircuitBreaker {
            rules: Rules {
                failure_rate: self.failure_rate,
                slow: self.slow,
                minimum_calls: self.minimum_calls,
            },
            state: Mutex::new(Inner {
                machine: Breaker::new(self.consecutive_failures, self.open_for),
                window: Window::new(self.window, now),
                probe_out: false,
            }),
        })
    }
}
