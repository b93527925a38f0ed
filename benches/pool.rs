//! Checkout throughput and fairness of millpond's pool beside deadpool, bb8, qp, mobc and a
//! `Semaphore + Mutex<Vec>` floor, with the same no-op resource and the same work for each.
//!
//! Scenarios (issue #2):
//! * (a) 2 tasks, pool 16, multi-thread runtime with 2 workers;
//! * (b) 64 tasks, pool 4, `yield_now` while holding;
//! * (c) 256 tasks, pool 2, `yield_now` while holding;
//! * (d) current-thread runtime, 32 tasks, pool 8.
//!
//! Criterion measures checkouts per second. After it, a fairness pass runs (b) and (c) for a
//! fixed window per contender and prints the p50/p99/max wait of `get()` and the least-served
//! task's share of the fair share (1.00 = perfectly even). Run with `cargo bench --bench pool`.
#![allow(clippy::disallowed_types)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;

/// The pooled resource: a small struct with a counter, identical for every contender.
#[derive(Default)]
struct Counter {
    hits: u64,
}

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

trait Contender: Clone + Send + Sync + 'static {
    const NAME: &'static str;
    /// Whether a run may never end (then it is run under a deadline first, and skipped if it
    /// misses it).
    const MAY_HANG: bool = false;
    /// Builds a pool of `size`; called inside the runtime.
    fn build(size: usize) -> Self;
    /// One checkout: get, bump the counter, optionally yield while holding, give back.
    fn checkout(&self, yield_while_holding: bool) -> impl Future<Output = ()> + Send;
    /// The same, returning how long `get()` waited (for the fairness pass only, so the clock
    /// reads do not weigh on the throughput figures).
    fn timed_checkout(&self, yield_while_holding: bool) -> impl Future<Output = Duration> + Send;
}

async fn hold(counter: &mut Counter, yield_while_holding: bool) {
    counter.hits += 1;
    if yield_while_holding {
        tokio::task::yield_now().await;
    }
}

/// The checkout of a pool whose `get()` (or the method named) gives a guard that derefs to
/// `Counter`: the same code for every pool.
macro_rules! guard_checkout {
    () => {
        guard_checkout!(get);
    };
    ($get:ident) => {
        async fn checkout(&self, yield_while_holding: bool) {
            let mut counter = self.0.$get().await.unwrap();
            hold(&mut counter, yield_while_holding).await;
        }

        async fn timed_checkout(&self, yield_while_holding: bool) -> Duration {
            let started = Instant::now();
            let mut counter = self.0.$get().await.unwrap();
            let waited = started.elapsed();
            hold(&mut counter, yield_while_holding).await;
            waited
        }
    };
}

// --- millpond ---------------------------------------------------------------------------------

struct MillpondManager;

impl millpond::pool::Manager for MillpondManager {
    type Resource = Counter;
    type Error = Never;

    async fn create(&self) -> Result<Counter, Never> {
        Ok(Counter::default())
    }
}

#[derive(Clone)]
struct Millpond(millpond::pool::Pool<MillpondManager>);

impl Contender for Millpond {
    const NAME: &'static str = "millpond";

    fn build(size: usize) -> Self {
        Self(millpond::pool::Pool::builder(MillpondManager).max_size(size).build().unwrap())
    }

    guard_checkout!();
}

/// millpond with a monitor beside the load: a task reads `status()` and `metrics()` every 100 ms,
/// as a service exporting pool gauges and histograms would. The poll must not cost the checkouts
/// their fast path.
#[derive(Clone)]
struct MillpondPolled(millpond::pool::Pool<MillpondManager>);

impl Contender for MillpondPolled {
    const NAME: &'static str = "millpond + poller";

    fn build(size: usize) -> Self {
        let pool = Millpond::build(size).0;
        let polled = pool.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                std::hint::black_box(polled.status());
                std::hint::black_box(polled.metrics());
            }
        });
        Self(pool)
    }

    guard_checkout!();
}

// --- deadpool ---------------------------------------------------------------------------------

struct DeadpoolManager;

impl deadpool::managed::Manager for DeadpoolManager {
    type Type = Counter;
    type Error = Never;

    async fn create(&self) -> Result<Counter, Never> {
        Ok(Counter::default())
    }

    async fn recycle(
        &self,
        _counter: &mut Counter,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Never> {
        Ok(())
    }
}

#[derive(Clone)]
struct Deadpool(deadpool::managed::Pool<DeadpoolManager>);

impl Contender for Deadpool {
    const NAME: &'static str = "deadpool";

    fn build(size: usize) -> Self {
        Self(deadpool::managed::Pool::builder(DeadpoolManager).max_size(size).build().unwrap())
    }

    guard_checkout!();
}

// --- bb8 --------------------------------------------------------------------------------------

struct Bb8Manager;

impl bb8::ManageConnection for Bb8Manager {
    type Connection = Counter;
    type Error = Never;

    async fn connect(&self) -> Result<Counter, Never> {
        Ok(Counter::default())
    }

    async fn is_valid(&self, _counter: &mut Counter) -> Result<(), Never> {
        Ok(())
    }

    fn has_broken(&self, _counter: &mut Counter) -> bool {
        false
    }
}

#[derive(Clone)]
struct Bb8(bb8::Pool<Bb8Manager>);

impl Contender for Bb8 {
    const NAME: &'static str = "bb8";

    fn build(size: usize) -> Self {
        Self(bb8::Pool::builder().max_size(size as u32).build_unchecked(Bb8Manager))
    }

    guard_checkout!();
}

// --- qp ---------------------------------------------------------------------------------------

struct QpManager;

#[qp::async_trait]
impl qp::resource::Manage for QpManager {
    type Output = Counter;
    type Error = Never;

    async fn try_create(&self) -> Result<Counter, Never> {
        Ok(Counter::default())
    }
}

#[derive(Clone)]
struct Qp(qp::Pool<QpManager>);

impl Contender for Qp {
    const NAME: &'static str = "qp";
    // qp's waiters can be left asleep when every checkout is a hand-off between tasks; a batch
    // that has not ended after this long is recorded as hung.
    const MAY_HANG: bool = true;

    fn build(size: usize) -> Self {
        Self(qp::Pool::new(QpManager, size))
    }

    guard_checkout!(acquire);
}

// --- mobc -------------------------------------------------------------------------------------

struct MobcManager;

#[mobc::async_trait]
impl mobc::Manager for MobcManager {
    type Connection = Counter;
    type Error = Never;

    async fn connect(&self) -> Result<Counter, Never> {
        Ok(Counter::default())
    }

    async fn check(&self, counter: Counter) -> Result<Counter, Never> {
        Ok(counter)
    }
}

#[derive(Clone)]
struct Mobc(mobc::Pool<MobcManager>);

impl Contender for Mobc {
    const NAME: &'static str = "mobc";

    fn build(size: usize) -> Self {
        // Its pool size is `max_open`; `max_idle` (2 by default) is raised to match, or every
        // return above two idle connections would close one.
        let size = size as u64;
        Self(mobc::Pool::builder().max_open(size).max_idle(size).build(MobcManager))
    }

    guard_checkout!();
}

// --- the floor: a semaphore over a locked Vec -------------------------------------------------

#[derive(Clone)]
struct Floor {
    permits: Arc<tokio::sync::Semaphore>,
    items: Arc<parking_lot::Mutex<Vec<Counter>>>,
}

impl Contender for Floor {
    const NAME: &'static str = "semaphore+mutex";

    fn build(size: usize) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(size)),
            items: Arc::new(parking_lot::Mutex::new(Vec::with_capacity(size))),
        }
    }

    async fn checkout(&self, yield_while_holding: bool) {
        let permit = self.permits.acquire().await.unwrap();
        let mut counter = self.items.lock().pop().unwrap_or_default();
        hold(&mut counter, yield_while_holding).await;
        self.items.lock().push(counter);
        drop(permit);
    }

    async fn timed_checkout(&self, yield_while_holding: bool) -> Duration {
        let started = Instant::now();
        let permit = self.permits.acquire().await.unwrap();
        let mut counter = self.items.lock().pop().unwrap_or_default();
        let waited = started.elapsed();
        hold(&mut counter, yield_while_holding).await;
        self.items.lock().push(counter);
        drop(permit);
        waited
    }
}

// --- the ceiling: no pool at all -------------------------------------------------------------

/// Every task owns its resource: no limit, no sharing, no waiting. Nothing a pool does can beat
/// this; it shows how much of each figure is the runtime's own scheduling.
#[derive(Clone)]
struct NoPool;

impl Contender for NoPool {
    const NAME: &'static str = "no pool (ceiling)";

    fn build(_size: usize) -> Self {
        Self
    }

    async fn checkout(&self, yield_while_holding: bool) {
        let mut counter = Counter::default();
        hold(std::hint::black_box(&mut counter), yield_while_holding).await;
    }

    async fn timed_checkout(&self, yield_while_holding: bool) -> Duration {
        self.checkout(yield_while_holding).await;
        Duration::ZERO
    }
}

// --- scenarios --------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    tasks: usize,
    pool_size: usize,
    yield_while_holding: bool,
    multi_thread: bool,
    /// Checkouts per criterion iteration, split evenly over the tasks.
    checkouts: usize,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "a_2tasks_pool16_mt",
        tasks: 2,
        pool_size: 16,
        yield_while_holding: false,
        multi_thread: true,
        checkouts: 10_000,
    },
    Scenario {
        name: "b_64tasks_pool4_yield",
        tasks: 64,
        pool_size: 4,
        yield_while_holding: true,
        multi_thread: true,
        checkouts: 12_800,
    },
    Scenario {
        name: "c_256tasks_pool2_yield",
        tasks: 256,
        pool_size: 2,
        yield_while_holding: true,
        multi_thread: true,
        checkouts: 12_800,
    },
    Scenario {
        name: "d_32tasks_pool8_current_thread",
        tasks: 32,
        pool_size: 8,
        yield_while_holding: false,
        multi_thread: false,
        checkouts: 9_600,
    },
];

fn runtime(multi_thread: bool) -> Runtime {
    if multi_thread {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }
}

async fn run_batch<C: Contender>(pool: &C, scenario: Scenario) {
    let per_task = scenario.checkouts / scenario.tasks;
    let tasks: Vec<_> = (0..scenario.tasks)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    pool.checkout(scenario.yield_while_holding).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// How long a batch of a contender that may hang gets before it is recorded as hung.
const HANG_LIMIT: Duration = Duration::from_secs(10);

/// Runs one batch of a contender that may hang under [`HANG_LIMIT`]; `false` (and a line on
/// stderr) if it did not end.
fn finishes<C: Contender>(scenario: Scenario) -> bool {
    if !C::MAY_HANG {
        return true;
    }
    let rt = runtime(scenario.multi_thread);
    let finished = rt.block_on(async {
        let pool = C::build(scenario.pool_size);
        tokio::time::timeout(HANG_LIMIT, run_batch(&pool, scenario)).await.is_ok()
    });
    // Hung tasks are left to the runtime; do not wait for them.
    rt.shutdown_background();
    if !finished {
        eprintln!(
            "pool/{}/{}: HUNG (a batch of {} checkouts did not end within {HANG_LIMIT:?}); \
             not measured",
            scenario.name,
            C::NAME,
            scenario.checkouts
        );
    }
    finished
}

fn bench_contender<C: Contender>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    scenario: Scenario,
) {
    if !finishes::<C>(scenario) {
        return;
    }
    let rt = runtime(scenario.multi_thread);
    let pool = rt.block_on(async { C::build(scenario.pool_size) });
    group.bench_function(BenchmarkId::from_parameter(C::NAME), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let pool = pool.clone();
            async move {
                let started = Instant::now();
                for _ in 0..iters {
                    run_batch(&pool, scenario).await;
                }
                started.elapsed()
            }
        });
    });
}

fn throughput(c: &mut Criterion) {
    for scenario in SCENARIOS {
        let mut group = c.benchmark_group(format!("pool/{}", scenario.name));
        group.throughput(Throughput::Elements(scenario.checkouts as u64));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        group.sample_size(20);
        bench_contender::<Millpond>(&mut group, scenario);
        bench_contender::<MillpondPolled>(&mut group, scenario);
        bench_contender::<Deadpool>(&mut group, scenario);
        bench_contender::<Bb8>(&mut group, scenario);
        bench_contender::<Qp>(&mut group, scenario);
        bench_contender::<Mobc>(&mut group, scenario);
        bench_contender::<Floor>(&mut group, scenario);
        bench_contender::<NoPool>(&mut group, scenario);
        group.finish();
    }
}

// --- fairness pass ----------------------------------------------------------------------------

struct Fairness {
    checkouts_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    least_served_share: f64,
}

fn fairness<C: Contender>(scenario: Scenario, window: Duration) -> Fairness {
    let rt = runtime(scenario.multi_thread);
    rt.block_on(async {
        let pool = C::build(scenario.pool_size);
        // Warm the pool up so creation is not part of the window.
        run_batch(&pool, Scenario { checkouts: scenario.tasks * 4, ..scenario }).await;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..scenario.tasks)
            .map(|_| {
                let pool = pool.clone();
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut waits = Vec::with_capacity(1 << 14);
                    while !stop.load(Ordering::Relaxed) {
                        waits.push(pool.timed_checkout(scenario.yield_while_holding).await);
                    }
                    waits
                })
            })
            .collect();
        tokio::time::sleep(window).await;
        stop.store(true, Ordering::Relaxed);
        let mut per_task = Vec::new();
        let mut waits = Vec::new();
        for task in tasks {
            let task_waits = task.await.unwrap();
            per_task.push(task_waits.len());
            waits.extend(task_waits);
        }
        let elapsed = started.elapsed();
        waits.sort_unstable();
        let total: usize = per_task.iter().sum();
        let fair_share = total as f64 / scenario.tasks as f64;
        let quantile = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize];
        Fairness {
            checkouts_per_sec: total as f64 / elapsed.as_secs_f64(),
            p50: quantile(0.50),
            p99: quantile(0.99),
            max: *waits.last().unwrap(),
            least_served_share: *per_task.iter().min().unwrap() as f64 / fair_share,
        }
    })
}

fn fairness_report() {
    let window = Duration::from_secs(2);
    println!("\nFairness pass ({window:?} window per contender)");
    println!("| scenario | pool | checkouts/s | get() wait p50 | p99 | max | least-served share |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for scenario in [SCENARIOS[1], SCENARIOS[2]] {
        let rows = [
            (Millpond::NAME, fairness::<Millpond>(scenario, window)),
            (MillpondPolled::NAME, fairness::<MillpondPolled>(scenario, window)),
            (Deadpool::NAME, fairness::<Deadpool>(scenario, window)),
            (Bb8::NAME, fairness::<Bb8>(scenario, window)),
            (Mobc::NAME, fairness::<Mobc>(scenario, window)),
            (Floor::NAME, fairness::<Floor>(scenario, window)),
        ];
        for (name, row) in rows {
            println!(
                "| {} | {name} | {:.0} | {:.1?} | {:.1?} | {:.1?} | {:.2} |",
                scenario.name,
                row.checkouts_per_sec,
                row.p50,
                row.p99,
                row.max,
                row.least_served_share
            );
        }
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    throughput(&mut criterion);
    criterion.final_summary();
    let skip_fairness = ["--list", "--test", "--profile-time"];
    if std::env::args().all(|arg| !skip_fairness.contains(&arg.as_str())) {
        fairness_report();
    }
}
