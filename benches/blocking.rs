//! The blocking pool beside `tokio::task::spawn_blocking`, the `threadpool` crate and
//! `rayon::spawn`, with the same jobs for each.
//!
//! Each batch is 100,000 no-op closures submitted from one producer thread, on as many pool
//! threads as the machine has CPUs (2 on the benchmark machine) for every contender. Every job
//! ends by counting down one shared latch, which the producer waits on, so each contender is
//! timed from the first submit to the last job finished. Criterion's throughput line is jobs/s.
//!
//! millpond runs with its defaults except the queue, which holds the whole batch: the other
//! contenders' queues are unbounded, and a default queue (1,024) would refuse most of a flood.
//! Two more millpond lines show the alternatives: `spawn` with a handle per job (joined at the
//! end), and the default queue with `RejectionPolicy::CallerRuns`, where the producer runs a job
//! itself whenever the queue is full (backpressure, as in Java).
//!
//! Note on `rayon::spawn`: a job that panics aborts the whole process by default (rayon's
//! `panic_handler` can change that); the no-op jobs here never panic.
//!
//! After criterion, an interleaved pass runs every contender once per round for 7 rounds and
//! prints each one's median jobs/s, which a busy machine skews less than back-to-back runs.
//!
//! `BLOCKING_BENCH_ONLY=name` keeps only the contenders whose name contains `name`.
//!
//! Run with `cargo bench --bench blocking -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use millpond::blocking::{BlockingPool, RejectionPolicy};

const JOBS: usize = 100_000;

/// Counts jobs down; the producer waits for zero.
struct Latch {
    remaining: AtomicUsize,
    zero: Mutex<bool>,
    reached: Condvar,
}

impl Latch {
    fn new(count: usize) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicUsize::new(count),
            zero: Mutex::new(false),
            reached: Condvar::new(),
        })
    }

    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.zero.lock().unwrap() = true;
            self.reached.notify_all();
        }
    }

    fn wait(&self) {
        let mut zero = self.zero.lock().unwrap();
        while !*zero {
            zero = self.reached.wait(zero).unwrap();
        }
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// One contender: a name and a batch runner (submits `JOBS` no-op jobs and waits for them all).
struct Contender {
    name: &'static str,
    run: Box<dyn Fn()>,
}

fn contenders() -> Vec<Contender> {
    let threads = threads();
    let mut all = Vec::new();

    let pool =
        Arc::new(BlockingPool::builder().threads(threads).queue_capacity(JOBS).build().unwrap());
    let execute = Arc::clone(&pool);
    all.push(Contender {
        name: "millpond_execute",
        run: Box::new(move || {
            let latch = Latch::new(JOBS);
            for _ in 0..JOBS {
                let latch = Arc::clone(&latch);
                execute.execute(move || latch.done()).unwrap();
            }
            latch.wait();
        }),
    });
    all.push(Contender {
        name: "millpond_spawn_join",
        run: Box::new(move || {
            let handles: Vec<_> = (0..JOBS).map(|n| pool.spawn(move || n).unwrap()).collect();
            for handle in handles {
                handle.join().unwrap();
            }
        }),
    });

    let caller_runs = BlockingPool::builder()
        .threads(threads)
        .rejection_policy(RejectionPolicy::CallerRuns)
        .build()
        .unwrap();
    all.push(Contender {
        name: "millpond_caller_runs_q1024",
        run: Box::new(move || {
            let latch = Latch::new(JOBS);
            for _ in 0..JOBS {
                let latch = Arc::clone(&latch);
                caller_runs.execute(move || latch.done()).unwrap();
            }
            latch.wait();
        }),
    });

    let threadpool = threadpool::ThreadPool::new(threads);
    all.push(Contender {
        name: "threadpool_execute",
        run: Box::new(move || {
            let latch = Latch::new(JOBS);
            for _ in 0..JOBS {
                let latch = Arc::clone(&latch);
                threadpool.execute(move || latch.done());
            }
            latch.wait();
        }),
    });

    let rayon = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    all.push(Contender {
        name: "rayon_spawn",
        run: Box::new(move || {
            let latch = Latch::new(JOBS);
            for _ in 0..JOBS {
                let latch = Arc::clone(&latch);
                rayon.spawn(move || latch.done());
            }
            latch.wait();
        }),
    });

    // spawn_blocking's threads are capped at the same count; the producer is a task on the
    // runtime, as it must be to call spawn_blocking.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(threads)
        .thread_keep_alive(Duration::from_secs(10))
        .build()
        .unwrap();
    all.push(Contender {
        name: "tokio_spawn_blocking",
        run: Box::new(move || {
            let latch = Latch::new(JOBS);
            let producer = Arc::clone(&latch);
            runtime.block_on(async move {
                for _ in 0..JOBS {
                    let latch = Arc::clone(&producer);
                    drop(tokio::task::spawn_blocking(move || latch.done()));
                }
            });
            latch.wait();
        }),
    });
    all
}

fn bench(c: &mut Criterion, contenders: &[Contender]) {
    let mut group = c.benchmark_group("blocking_noop_100k");
    group.throughput(Throughput::Elements(JOBS as u64));
    group.sample_size(10);
    for contender in contenders {
        group.bench_function(contender.name, |b| b.iter(|| (contender.run)()));
    }
    group.finish();
}

/// Runs every contender once per round, in turn, for `ROUNDS` rounds, and prints each one's
/// median jobs/s: interleaving spreads the machine's noise (other builds) over all of them.
fn interleaved(contenders: &[Contender]) {
    const ROUNDS: usize = 7;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for _ in 0..ROUNDS {
        for (contender, rates) in contenders.iter().zip(&mut rates) {
            let start = Instant::now();
            (contender.run)();
            rates.push(JOBS as f64 / start.elapsed().as_secs_f64());
        }
    }
    println!(
        "\ninterleaved pass: median of {ROUNDS} rounds, {JOBS} no-op jobs, {} threads",
        threads()
    );
    for (contender, rates) in contenders.iter().zip(&mut rates) {
        rates.sort_by(f64::total_cmp);
        println!("  {:<40} {:>6.2} M jobs/s", contender.name, rates[ROUNDS / 2] / 1e6);
    }
}

fn main() {
    // `BLOCKING_BENCH_ONLY=threadpool` keeps the contenders whose name contains it (for
    // profiling one at a time).
    let only = std::env::var("BLOCKING_BENCH_ONLY").unwrap_or_default();
    let contenders: Vec<_> =
        contenders().into_iter().filter(|contender| contender.name.contains(&*only)).collect();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &contenders);
    criterion.final_summary();
    interleaved(&contenders);
}
