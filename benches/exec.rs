//! Worker pools beside `tokio::spawn`, `tokio::spawn` + `Semaphore`, `buffer_unordered`,
//! tokio-task-pool and a hand-written async-channel worker loop, with the same tasks for each.
//!
//! Scenarios (issue #3), on a multi-thread runtime with 2 workers; the producer runs as a task
//! on the runtime, like a request handler would:
//! * (a) 1,000,000 no-op tasks, concurrency limit 64: tasks per second;
//! * (b) 100,000 tasks, 90 % spinning about 1 µs and 10 % about 200 µs of CPU, limit 64: wall time
//!   and p99 queueing delay (from the task's creation by the producer to its start);
//! * (c) 10,000 tasks sleeping 10 ms, limit 1,000: wall time and peak heap;
//! * (b paced), in the report pass only: (b) submitted at 64 tasks per millisecond, about two
//!   thirds of what the pools sustain here, where a pool has slack and balancing can matter.
//!
//! Every task ends by counting down one shared latch, which the producer awaits, so each
//! contender is timed from the first task created to the last task finished. millpond runs with
//! `max_workers` = the limit and its default queue capacity (128, or one slot per worker for
//! per-worker queues with more workers), once with the shared queue
//! and once per strategy of the per-worker scheduler, with and without stealing; and twice more
//! ("q=limit") with a queue only as deep as the limit, since queueing delay is mostly queue depth
//! (the semaphore-based contenders queue nothing).
//!
//! Criterion measures the wall time of a whole batch (its throughput line is tasks/s). After it,
//! a report pass runs each contender once more for (b) and (c) and prints the p99 queueing delay
//! and the peak heap (from a counting allocator that is only switched on for that pass). Run with
//! `cargo bench --bench exec`.
#![allow(clippy::disallowed_types)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use millpond::balance::Balance;
use millpond::exec::{DEFAULT_QUEUE_CAPACITY, Scheduler, WorkerPool};
use tokio::runtime::Runtime;
use tokio::sync::{Notify, Semaphore};

/// Counts live heap bytes and their peak while `COUNTING` is on (off during criterion's runs, so
/// the shared counter does not weigh on the timings).
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed since counting began (blocks older than that, freed while
/// counting, push it down, so the peak is, if anything, understated by them).
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only observe.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            let size = layout.size() as isize;
            let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Counts tasks down; the producer waits for zero.
struct Latch {
    remaining: AtomicUsize,
    zero: Notify,
}

impl Latch {
    fn new(count: usize) -> Arc<Self> {
        Arc::new(Self { remaining: AtomicUsize::new(count), zero: Notify::new() })
    }

    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.zero.notify_one();
        }
    }

    async fn wait(&self) {
        while self.remaining.load(Ordering::Acquire) != 0 {
            self.zero.notified().await;
        }
    }
}

#[derive(Clone, Copy)]
enum Work {
    /// (a): nothing.
    Noop,
    /// (b): spin on the CPU; every tenth task long.
    Cpu { short_spins: u64, long_spins: u64 },
    /// (c): sleep.
    Sleep(Duration),
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    tasks: usize,
    limit: usize,
    work: Work,
    /// Tasks submitted per millisecond, in bursts; 0 submits as fast as the pool takes them.
    per_ms: usize,
}

/// Holds the producer to `per_ms` tasks per millisecond: before every burst it sleeps until the
/// burst is due.
async fn pace(start: tokio::time::Instant, index: usize, per_ms: usize) {
    if per_ms > 0 && index % per_ms == 0 {
        tokio::time::sleep_until(start + Duration::from_millis((index / per_ms) as u64)).await;
    }
}

/// What each task records: its queueing delay in microseconds, by task number.
struct Delays(Vec<AtomicU32>);

impl Delays {
    fn new(tasks: usize) -> Arc<Self> {
        Arc::new(Self((0..tasks).map(|_| AtomicU32::new(0)).collect()))
    }

    fn p99(&self) -> Duration {
        let mut micros: Vec<u32> = self.0.iter().map(|d| d.load(Ordering::Relaxed)).collect();
        micros.sort_unstable();
        Duration::from_micros(u64::from(micros[micros.len() * 99 / 100]))
    }
}

fn spin(spins: u64) {
    let mut x = 0u64;
    for i in 0..spins {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    std::hint::black_box(x);
}

/// Spins per microsecond on this machine.
fn calibrate() -> u64 {
    let spins = 20_000_000;
    let start = Instant::now();
    spin(spins);
    let micros = start.elapsed().as_micros().max(1) as u64;
    (spins / micros).max(1)
}

/// Task `index` of the scenario: records its queueing delay when `delays` is given, works, counts
/// down.
fn task(
    work: Work,
    index: usize,
    latch: &Arc<Latch>,
    delays: Option<&Arc<Delays>>,
) -> impl Future<Output = ()> + Send + 'static {
    let latch = Arc::clone(latch);
    let delays = delays.map(Arc::clone);
    let created = delays.as_ref().map(|_| Instant::now());
    async move {
        if let (Some(delays), Some(created)) = (&delays, created) {
            let waited = created.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            delays.0[index].store(waited, Ordering::Relaxed);
        }
        match work {
            Work::Noop => {}
            Work::Cpu { short_spins, long_spins } => {
                spin(if index % 10 == 9 { long_spins } else { short_spins });
            }
            Work::Sleep(duration) => tokio::time::sleep(duration).await,
        }
        latch.done();
    }
}

#[derive(Clone)]
enum Contender {
    Millpond {
        name: &'static str,
        scheduler: Scheduler,
        shallow: bool,
    },
    TokioSpawn,
    SpawnSemaphore,
    BufferUnordered,
    TaskPool,
    /// `limit` tokio tasks looping on `recv().await` of one bounded async-channel as deep as
    /// millpond's default queue: the hand-written baseline a worker pool has to beat.
    ChannelLoop,
}

impl Contender {
    fn all() -> Vec<Self> {
        let per_worker = |name, balance, stealing| Self::Millpond {
            name,
            scheduler: Scheduler::per_worker(balance).stealing(stealing),
            shallow: false,
        };
        vec![
            Self::Millpond {
                name: "millpond shared",
                scheduler: Scheduler::shared_queue(),
                shallow: false,
            },
            per_worker("millpond rr", Balance::RoundRobin, false),
            per_worker("millpond rr+steal", Balance::RoundRobin, true),
            per_worker("millpond least", Balance::LeastLoaded, false),
            per_worker("millpond least+steal", Balance::LeastLoaded, true),
            per_worker("millpond p2c", Balance::PowerOfTwo, false),
            per_worker("millpond p2c+steal", Balance::PowerOfTwo, true),
            Self::Millpond {
                name: "millpond shared q=limit",
                scheduler: Scheduler::shared_queue(),
                shallow: true,
            },
            Self::Millpond {
                name: "millpond p2c+steal q=limit",
                scheduler: Scheduler::per_worker(Balance::PowerOfTwo).stealing(true),
                shallow: true,
            },
            Self::TokioSpawn,
            Self::SpawnSemaphore,
            Self::BufferUnordered,
            Self::TaskPool,
            Self::ChannelLoop,
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Millpond { name, .. } => name,
            Self::TokioSpawn => "tokio::spawn",
            Self::SpawnSemaphore => "spawn+semaphore",
            Self::BufferUnordered => "buffer_unordered",
            Self::TaskPool => "tokio-task-pool",
            Self::ChannelLoop => "async-channel loop",
        }
    }

    /// Runs the whole scenario once; returns its wall time.
    async fn run(self, scenario: Scenario, delays: Option<Arc<Delays>>) -> Duration {
        let Scenario { tasks, limit, work, per_ms, .. } = scenario;
        let latch = Latch::new(tasks);
        let delays = delays.as_ref();
        let start = Instant::now();
        let paced_from = tokio::time::Instant::now();
        match self {
            Self::Millpond { scheduler, shallow, .. } => {
                let builder = WorkerPool::builder().workers(limit).scheduler(scheduler);
                // The default queue unless the run asks for one as deep as the limit.
                let builder = if shallow { builder.queue_capacity(limit) } else { builder };
                let pool = builder.build().expect("valid configuration");
                for index in 0..tasks {
                    pace(paced_from, index, per_ms).await;
                    pool.execute(task(work, index, &latch, delays)).await.expect("pool is open");
                }
                latch.wait().await;
                let elapsed = start.elapsed();
                pool.shutdown().await;
                return elapsed;
            }
            Self::TokioSpawn => {
                for index in 0..tasks {
                    pace(paced_from, index, per_ms).await;
                    drop(tokio::spawn(task(work, index, &latch, delays)));
                }
            }
            Self::SpawnSemaphore => {
                let permits = Arc::new(Semaphore::new(limit));
                for index in 0..tasks {
                    pace(paced_from, index, per_ms).await;
                    let permit = Arc::clone(&permits).acquire_owned().await.expect("never closed");
                    let task = task(work, index, &latch, delays);
                    drop(tokio::spawn(async move {
                        task.await;
                        drop(permit);
                    }));
                }
            }
            Self::BufferUnordered => {
                futures::stream::iter((0..tasks).map(|index| task(work, index, &latch, delays)))
                    .buffer_unordered(limit)
                    .for_each(|()| async {})
                    .await;
            }
            Self::ChannelLoop => {
                type Boxed = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
                let (jobs, queue) = async_channel::bounded::<Boxed>(DEFAULT_QUEUE_CAPACITY);
                let workers: Vec<_> = (0..limit)
                    .map(|_| {
                        let queue = queue.clone();
                        tokio::spawn(async move {
                            while let Ok(job) = queue.recv().await {
                                job.await;
                            }
                        })
                    })
                    .collect();
                for index in 0..tasks {
                    pace(paced_from, index, per_ms).await;
                    jobs.send(Box::pin(task(work, index, &latch, delays))).await.expect("open");
                }
                latch.wait().await;
                let elapsed = start.elapsed();
                jobs.close();
                for worker in workers {
                    worker.await.expect("worker");
                }
                return elapsed;
            }
            Self::TaskPool => {
                let pool = tokio_task_pool::Pool::bounded(limit);
                for index in 0..tasks {
                    pace(paced_from, index, per_ms).await;
                    drop(pool.spawn(task(work, index, &latch, delays)).await.expect("spawned"));
                }
            }
        }
        latch.wait().await;
        start.elapsed()
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs the scenario on the runtime, with the producer as a task of its own.
fn run_on(
    rt: &Runtime,
    contender: &Contender,
    scenario: Scenario,
    delays: Option<Arc<Delays>>,
) -> Duration {
    let contender = contender.clone();
    rt.block_on(
        async move { tokio::spawn(contender.run(scenario, delays)).await.expect("producer") },
    )
}

fn scenarios(spins_per_micro: u64) -> [Scenario; 3] {
    [
        Scenario {
            name: "a_1M_noop_limit64",
            tasks: 1_000_000,
            limit: 64,
            work: Work::Noop,
            per_ms: 0,
        },
        Scenario {
            name: "b_100k_cpu_limit64",
            tasks: 100_000,
            limit: 64,
            work: Work::Cpu { short_spins: spins_per_micro, long_spins: 200 * spins_per_micro },
            per_ms: 0,
        },
        Scenario {
            name: "c_10k_sleep10ms_limit1000",
            tasks: 10_000,
            limit: 1_000,
            work: Work::Sleep(Duration::from_millis(10)),
            per_ms: 0,
        },
    ]
}

fn throughput(criterion: &mut Criterion, rt: &Runtime, scenarios: &[Scenario]) {
    for scenario in scenarios {
        let mut group = criterion.benchmark_group(format!("exec_{}", scenario.name));
        group.throughput(Throughput::Elements(scenario.tasks as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if scenario.tasks >= 1_000_000 {
            8
        } else {
            5
        }));
        for contender in Contender::all() {
            group.bench_function(BenchmarkId::from_parameter(contender.name()), |b| {
                b.iter_custom(|iters| {
                    (0..iters).map(|_| run_on(rt, &contender, *scenario, None)).sum()
                });
            });
        }
        group.finish();
    }
}

fn report(rt: &Runtime, scenarios: &[Scenario]) {
    let [_, cpu, sleep] = *scenarios else { return };
    // (b) again at about two thirds of the pool's capacity (it runs (b) at about 95,000 tasks/s
    // here), where a pool has slack and the strategies can differ.
    let paced = Scenario { name: "b_paced", per_ms: PACED_PER_MS, ..cpu };
    println!("\nReport pass: one run per contender");
    println!(
        "| contender | (b) wall | (b) p99 queueing delay | (b paced) p99 queueing delay | \
         (c) wall | (c) peak heap |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for contender in Contender::all() {
        let delays = Delays::new(cpu.tasks);
        let cpu_wall = run_on(rt, &contender, cpu, Some(Arc::clone(&delays)));
        let paced_p99 = if matches!(contender, Contender::BufferUnordered) {
            // Its tasks come from a stream it polls itself: no producer to pace.
            "–".to_owned()
        } else {
            let paced_delays = Delays::new(paced.tasks);
            run_on(rt, &contender, paced, Some(Arc::clone(&paced_delays)));
            format!("{:.2?}", paced_delays.p99())
        };
        LIVE.store(0, Ordering::SeqCst);
        PEAK.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        let sleep_wall = run_on(rt, &contender, sleep, None);
        COUNTING.store(false, Ordering::SeqCst);
        let peak = PEAK.load(Ordering::SeqCst).max(0);
        println!(
            "| {} | {:.0?} | {:.2?} | {paced_p99} | {:.1?} | {:.1} KiB |",
            contender.name(),
            cpu_wall,
            delays.p99(),
            sleep_wall,
            peak as f64 / 1024.0
        );
    }
}

/// Tasks per millisecond in the paced run of (b).
const PACED_PER_MS: usize = 64;

fn main() {
    let spins_per_micro = calibrate();
    let scenarios = scenarios(spins_per_micro);
    let rt = runtime();
    let mut criterion = Criterion::default().configure_from_args();
    throughput(&mut criterion, &rt, &scenarios);
    criterion.final_summary();
    let skip_report = ["--list", "--test", "--profile-time"];
    if std::env::args().all(|arg| !skip_report.contains(&arg.as_str())) {
        report(&rt, &scenarios);
    }
}
