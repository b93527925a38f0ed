//! The sampler: reads a [`CpuSource`] at a fixed interval, smooths the usage, and acts on it.

use std::time::Duration;

use tokio::time::Instant;

use super::source::{self, CpuReading, CpuSource};
use crate::BuildError;
use crate::breaker::CircuitBreaker;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, Weak};

/// A smoothed CPU usage, sampled in the background, that can shed or refuse work past a
/// threshold (the seed's rule: protect the service when CPU passes 90 %).
///
/// It reads the process's cgroup (`cpu.stat` against `cpu.max`, in a container) or the
/// machine's `/proc/stat` every `interval` (500 ms), and smooths the readings with an
/// exponential average (`smoothing` 0.2: a step in load shows after about 2–3 s). Every CPU
/// signal of the systems we measure against smooths; one reading alone swings too much to act
/// on. Cloning gives another handle to the same sampler; it stops sampling when the last
/// handle is dropped.
///
/// What reads it:
/// - a worker pool, through [`WorkerPoolBuilder::overload_cpu`](crate::exec::WorkerPoolBuilder::overload_cpu):
///   low-priority work is refused and shed while the usage is past the threshold;
/// - a [`CircuitBreaker`], through [`hold_open_above`](Self::hold_open_above): every call is
///   refused while the usage is past the threshold, and again allowed once it has stayed
///   below it for the cooling time (1 s);
/// - anything else, through [`usage`](Self::usage) and [`is_above`](Self::is_above).
///
/// ```
/// use millpond::load::CpuSampler;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), millpond::BuildError> {
/// let cpu = CpuSampler::builder().build()?;
/// if cpu.is_above(0.9) {
///     // serve from the cache, skip the optional work...
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CpuSampler {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The smoothed usage, as `f64` bits.
    usage: AtomicU64,
    samples: AtomicU64,
    cooling: Duration,
    watches: Mutex<Vec<Watch>>,
}

#[derive(Debug)]
struct Watch {
    breaker: Arc<CircuitBreaker>,
    threshold: f64,
    holding: bool,
    below_since: Option<Instant>,
}

impl CpuSampler {
    /// Starts configuring a sampler.
    pub fn builder() -> CpuSamplerBuilder {
        CpuSamplerBuilder::default()
    }

    /// The smoothed share of the CPU in use, from 0 to 1 (0 until the first interval is over).
    pub fn usage(&self) -> f64 {
        f64::from_bits(self.shared.usage.load(Ordering::Relaxed))
    }

    /// Whether the smoothed usage is past `threshold` (a share, such as 0.9).
    pub fn is_above(&self, threshold: f64) -> bool {
        self.usage() > threshold
    }

    /// How many readings the usage is made of so far.
    pub fn samples(&self) -> u64 {
        self.shared.samples.load(Ordering::Relaxed)
    }

    /// Holds `breaker` open while the usage is past `threshold`, and releases it once the usage
    /// has stayed at or below it for the cooling time. Only a hold this sampler placed is
    /// released.
    pub fn hold_open_above(&self, breaker: Arc<CircuitBreaker>, threshold: f64) {
        self.shared.watches.lock().push(Watch {
            breaker,
            threshold,
            holding: false,
            below_since: None,
        });
    }
}

impl Shared {
    fn record(&self, usage: f64, smoothing: f64, now: Instant) {
        let samples = self.samples.fetch_add(1, Ordering::Relaxed);
        let previous = f64::from_bits(self.usage.load(Ordering::Relaxed));
        let smoothed = if samples == 0 { usage } else { previous + (usage - previous) * smoothing };
        self.usage.store(smoothed.to_bits(), Ordering::Relaxed);
        for watch in self.watches.lock().iter_mut() {
            if smoothed > watch.threshold {
                watch.below_since = None;
                if !watch.holding {
                    watch.holding = true;
                    watch.breaker.hold_open();
                }
            } else if watch.holding {
                let since = *watch.below_since.get_or_insert(now);
                if crate::time::elapsed(since, self.cooling, now) {
                    watch.holding = false;
                    watch.below_since = None;
                    watch.breaker.release();
                }
            }
        }
    }
}

/// Settings of a [`CpuSampler`], from [`CpuSampler::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CpuSamplerBuilder {
    interval: Duration,
    smoothing: f64,
    cooling: Duration,
    source: Option<Box<dyn CpuSource>>,
}

impl Default for CpuSamplerBuilder {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            smoothing: 0.2,
            cooling: Duration::from_secs(1),
            source: None,
        }
    }
}

impl CpuSamplerBuilder {
    /// How often the source is read (500 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How much of each reading enters the average, in `(0, 1]` (0.2); 1 for no smoothing.
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How long the usage must stay at or below a threshold before a breaker held open by
    /// [`hold_open_above`](CpuSampler::hold_open_above) is released (1 s), so that a usage
    /// hovering at the threshold does not flap it.
    pub fn cooling(mut self, cooling: Duration) -> Self {
        self.cooling = cooling;
        self
    }

    /// Reads `source` instead of the process's cgroup or the machine
    /// ([`ProcessCpu`](super::ProcessCpu) for this process alone, or a source of your own).
    pub fn source(mut self, source: impl CpuSource) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Checks the settings and starts sampling on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming a zero `interval`, a `smoothing` outside `(0, 1]`, or no tokio
    /// runtime to sample on ([`BuildError::is_no_runtime`]).
    pub fn build(self) -> Result<CpuSampler, BuildError> {
        if self.interval.is_zero() {
            return Err(BuildError::invalid("interval", self.interval, "must be above 0"));
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(BuildError::invalid("smoothing", self.smoothing, "must be in (0, 1]"));
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| BuildError::no_runtime())?;
        let shared = Arc::new(Shared {
            usage: AtomicU64::new(0.0_f64.to_bits()),
            samples: AtomicU64::new(0),
            cooling: self.cooling,
            watches: Mutex::new(Vec::new()),
        });
        let source = self.source.unwrap_or_else(source::detect);
        runtime.spawn(sample(Arc::downgrade(&shared), source, self.interval, self.smoothing));
        Ok(CpuSampler { shared })
    }
}

/// The sampling task: ends when the last [`CpuSampler`] handle is gone. A read is a small file
/// read, done inline: far below what a blocking-thread hand-off would cost.
async fn sample(
    shared: Weak<Shared>,
    mut source: Box<dyn CpuSource>,
    interval: Duration,
    smoothing: f64,
) {
    let cpus = source.cpus().max(f64::MIN_POSITIVE);
    let mut last: Option<(CpuReading, Instant)> = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Instant::now();
        let Ok(reading) = source.read() else { continue };
        if let Some((before, then)) = last {
            let used = reading.used.saturating_sub(before.used).as_secs_f64();
            let available = match (reading.available, before.available) {
                (Some(now_total), Some(then_total)) => {
                    now_total.saturating_sub(then_total).as_secs_f64()
                }
                _ => now.saturating_duration_since(then).as_secs_f64() * cpus,
            };
            if available > 0.0 {
                shared.record((used / available).clamp(0.0, 1.0), smoothing, now);
            }
        }
        last = Some((reading, now));
    }
}
