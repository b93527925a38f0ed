//! Adaptive against static concurrency limits, on a simulated backend whose capacity halves and
//! recovers.
//!
//! The backend serves `capacity` calls at once in 10 ms each. Past that it thrashes: a call
//! that arrives with `n > capacity` in flight takes `10 ms × (n / capacity)^1.5`, so the backend
//! finishes fewer calls a second the more it is given, and it finishes calls whose callers gave
//! up (as a database runs a query whose client went away). Callers arrive at 15,000 a second (1.5 ×
//! what the backend can serve at full capacity, 3 × at half) and give up after 100 ms (a timeout
//! around the call: the limiter counts it as a loss). Three phases of 10 s: capacity 100, 50,
//! 100. Each contender is an `AdaptiveLimiter` with default queue settings; the static ones use a
//! fixed algorithm. Then the same again on a backend with noisy service times.
//!
//! Everything runs on tokio's paused clock with seeded random draws, so the figures are of the
//! algorithms, not of this machine, and the same every run: `cargo bench --bench limits` prints
//! the tables recorded in `docs/benchmarks.md`, and
//! `LIMITS_CSV=target/limits.csv cargo bench --bench limits` then `python3 docs/plot_limits.py`
//! draws `docs/limits-over-time.png`.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

#[path = "support/limits.rs"]
mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use millpond::limit::{AdaptiveLimiter, Aimd, Gradient2};
use support::Fixed;
use tokio::time::Instant;

const BASE: Duration = Duration::from_millis(10);
const ARRIVALS_PER_MS: u32 = 15;
const CLIENT_TIMEOUT: Duration = Duration::from_millis(100);
const PHASE: Duration = Duration::from_secs(10);
const CAPACITIES: [usize; 3] = [100, 50, 100];
/// How long after a capacity change the "settled" p99 starts counting.
const SETTLING: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Backend {
    in_flight: Cell<usize>,
    capacity: Cell<usize>,
    /// Whether service times are noisy: 5 % of calls take three times as long, the others
    /// 0.7 to 1.3 times (a mean of 1.1), as a real backend's pauses, cache misses and
    /// neighbours make them.
    noisy: bool,
}

impl Backend {
    /// A call. Like a real server, the backend finishes a call whose caller gave up: the work
    /// runs in its own task, and dropping the returned future only stops waiting for it.
    fn call(self: &Rc<Self>) -> impl std::future::Future<Output = ()> + use<> {
        let n = self.in_flight.get() + 1;
        self.in_flight.set(n);
        let load = (n as f64 / self.capacity.get() as f64).max(1.0);
        let noise = match (self.noisy, fastrand::f64()) {
            (false, _) => 1.0,
            (true, draw) if draw < 0.05 => 3.0,
            (true, draw) => 0.7 + 0.6 * draw,
        };
        let backend = self.clone();
        let work = tokio::task::spawn_local(async move {
            tokio::time::sleep(BASE.mul_f64(load.powf(1.5) * noise)).await;
            backend.in_flight.set(backend.in_flight.get() - 1);
        });
        async move {
            let _ = work.await;
        }
    }
}

#[derive(Default)]
struct PhaseFigures {
    succeeded: u64,
    rejected: u64,
    timed_out: u64,
    latencies: Vec<Duration>,
    /// The latencies of the calls that arrived after the phase's first [`SETTLING`].
    settled: Vec<Duration>,
    /// The limit every 10 ms.
    limits: Vec<usize>,
    /// Calls answered in each 100 ms of the phase (by when they were answered).
    answered: Vec<u32>,
}

impl PhaseFigures {
    fn percentile(&mut self, p: f64) -> Duration {
        support::percentile(&mut self.latencies, p)
    }

    /// Seconds from the phase's start until the limit first comes within 25 % of its median
    /// over the phase's last second (the median, so a probe's dip does not move the mark).
    fn convergence(&self) -> f64 {
        let mut tail = self.limits[self.limits.len().saturating_sub(100)..].to_vec();
        tail.sort_unstable();
        let Some(&median) = tail.get(tail.len() / 2) else { return 0.0 };
        let median = median as f64;
        let near = |limit: &usize| (*limit as f64 - median).abs() <= 0.25 * median;
        self.limits.iter().position(near).map_or(f64::NAN, |index| index as f64 * 0.01)
    }
}

fn simulate(limiter: AdaptiveLimiter, noisy: bool) -> Vec<PhaseFigures> {
    // The limiter's probe jitter and the backend's noise draw from this thread's generator:
    // seeded, every run of the bench is the same.
    fastrand::seed(0x6d69_6c6c_706f_6e64);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let backend = Rc::new(Backend { noisy, ..Backend::default() });
        let phases: Rc<RefCell<Vec<PhaseFigures>>> = Rc::default();
        for (index, capacity) in CAPACITIES.into_iter().enumerate() {
            backend.capacity.set(capacity);
            phases.borrow_mut().push(PhaseFigures::default());
            let phase_start = Instant::now();
            let ends = phase_start + PHASE;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut ticks = 0u64;
            while Instant::now() < ends {
                tick.tick().await;
                ticks += 1;
                if ticks % 10 == 0 {
                    phases.borrow_mut()[index].limits.push(limiter.status().limit);
                }
                for _ in 0..ARRIVALS_PER_MS {
                    let (limiter, backend, phases) =
                        (limiter.clone(), backend.clone(), phases.clone());
                    tokio::task::spawn_local(async move {
                        let arrived = Instant::now();
                        let call = limiter.run(async { backend.call().await });
                        let result = tokio::time::timeout(CLIENT_TIMEOUT, call).await;
                        let mut phases = phases.borrow_mut();
                        let figures = &mut phases[index];
                        match result {
                            Ok(Ok(())) => {
                                figures.succeeded += 1;
                                let bucket =
                                    ((Instant::now() - phase_start).as_millis() / 100) as usize;
                                if figures.answered.len() <= bucket {
                                    figures.answered.resize(bucket + 1, 0);
                                }
                                figures.answered[bucket] += 1;
                                figures.latencies.push(arrived.elapsed());
                                if arrived - phase_start >= SETTLING {
                                    figures.settled.push(arrived.elapsed());
                                }
                            }
                            Ok(Err(_)) => figures.rejected += 1,
                            Err(_) => figures.timed_out += 1,
                        }
                    });
                }
            }
        }
        // Let the last callers finish or time out.
        tokio::time::sleep(CLIENT_TIMEOUT * 2).await;
        Rc::try_unwrap(phases).ok().unwrap().into_inner()
    })
}

/// Appends a contender's limit (every 10 ms) and goodput (every 100 ms) to the CSV at `path`,
/// for `docs/plot_limits.py`: `contender,series,seconds,value`.
fn write_series(path: &str, name: &str, phases: &[PhaseFigures]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for (index, figures) in phases.iter().enumerate() {
        let start = index as f64 * PHASE.as_secs_f64();
        for (tick, limit) in figures.limits.iter().enumerate() {
            writeln!(file, "\"{name}\",limit,{:.2},{limit}", start + tick as f64 * 0.01).unwrap();
        }
        // The last bucket is cut short by the phase's end (and its stragglers).
        let whole = figures.answered.len().min(PHASE.as_millis() as usize / 100);
        for (bucket, answered) in figures.answered[..whole].iter().enumerate() {
            let per_second = f64::from(*answered) * 10.0;
            writeln!(file, "\"{name}\",goodput,{:.1},{per_second}", start + bucket as f64 * 0.1)
                .unwrap();
        }
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` asks for a list; there are no criterion benches here.
    }
    // `cargo bench --bench limits -- Gradient2` runs the contenders whose name holds a word.
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    // `LIMITS_CSV=target/limits.csv` also writes every contender's limit and goodput over time,
    // which `python3 docs/plot_limits.py` draws.
    let csv = std::env::var("LIMITS_CSV").ok();
    if let Some(path) = &csv {
        std::fs::write(path, "contender,series,seconds,value\n").unwrap();
    }
    for noisy in [false, true] {
        if noisy {
            println!("\nThe same with noisy service times:\n");
        }
        run(&contenders(), noisy, filter.as_deref(), csv.as_deref().filter(|_| !noisy));
    }
}

fn contenders() -> Vec<(&'static str, AdaptiveLimiter)> {
    vec![
        ("static 25", fixed(25)),
        ("static 50", fixed(50)),
        ("static 100", fixed(100)),
        ("static 200", fixed(200)),
        ("static 400", fixed(400)),
        ("AIMD (defaults)", AdaptiveLimiter::builder(Aimd::new()).build().unwrap()),
        (
            "AIMD (max 1000)",
            AdaptiveLimiter::builder(Aimd::new().max_limit(1_000)).build().unwrap(),
        ),
        (
            "Gradient2 (max 1000)",
            AdaptiveLimiter::builder(Gradient2::new().max_limit(1_000)).build().unwrap(),
        ),
        (
            "Gradient2 (max 1000, tolerance 1.2)",
            AdaptiveLimiter::builder(Gradient2::new().max_limit(1_000).tolerance(1.2))
                .build()
                .unwrap(),
        ),
        (
            "Gradient2 (max 1000, tolerance 1.1)",
            AdaptiveLimiter::builder(Gradient2::new().max_limit(1_000).tolerance(1.1))
                .build()
                .unwrap(),
        ),
    ]
}

fn run(
    contenders: &[(&str, AdaptiveLimiter)],
    noisy: bool,
    filter: Option<&str>,
    csv: Option<&str>,
) {
    println!(
        "| contender | phase (capacity) | goodput/s | p50 | p99 | p99 after 1 s | rejected | timed out | limit at end | converged after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, limiter) in contenders {
        if filter.is_some_and(|word| !name.contains(word)) {
            continue;
        }
        let phases = simulate(limiter.clone(), noisy);
        if let Some(path) = csv {
            write_series(path, name, &phases);
        }
        for (index, mut figures) in phases.into_iter().enumerate() {
            let goodput = figures.succeeded as f64 / PHASE.as_secs_f64();
            let (p50, p99) = (figures.percentile(0.5), figures.percentile(0.99));
            let settled_p99 = support::percentile(&mut figures.settled, 0.99);
            println!(
                "| {name} | {} ({}) | {goodput:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {} | {:.2} s |",
                index + 1,
                CAPACITIES[index],
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                settled_p99.as_secs_f64() * 1e3,
                figures.rejected,
                figures.timed_out,
                figures.limits.last().copied().unwrap_or(0),
                figures.convergence(),
            );
        }
    }
}

fn fixed(limit: usize) -> AdaptiveLimiter {
    AdaptiveLimiter::builder(Fixed(limit)).build().unwrap()
}
