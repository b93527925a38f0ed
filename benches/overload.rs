//! A spike: a worker pool fed at three times its capacity for a few seconds, 10 % of the tasks
//! high-priority. Reports the high-priority tasks' latency (submit to finish) and what happened
//! to the rest, without and with overload protection.
//!
//! The pool has 4 workers and each task sleeps 1 ms. The bench first measures how many such
//! tasks the pool finishes a second (timer granularity included), then feeds three times that,
//! a batch every millisecond, with `try_submit_with`, so a refused task is counted, not waited
//! for.
//!
//! `cargo bench --bench overload` prints the table recorded in `docs/benchmarks.md`.
#![allow(clippy::disallowed_types)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millpond::exec::{Priority, TaskError, WorkerPool, WorkerPoolBuilder};

const WORKERS: usize = 4;
const SPIKE: Duration = Duration::from_secs(3);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Tasks a second the pool finishes when it always has work.
fn capacity() -> f64 {
    const TASKS: usize = 4_000;
    runtime().block_on(async {
        let pool = WorkerPool::builder().workers(WORKERS).queue_capacity(TASKS).build().unwrap();
        let started = Instant::now();
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                // The sleep starts when the task does (a `sleep` future made here would not).
                pool.try_submit(async { tokio::time::sleep(Duration::from_millis(1)).await })
                    .unwrap()
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        TASKS as f64 / started.elapsed().as_secs_f64()
    })
}

#[derive(Default)]
struct Tally {
    high_latency: Vec<Duration>,
    high_refused: usize,
    low_done: usize,
    low_refused: usize,
    low_shed: usize,
    high_shed: usize,
}

fn run(name: &str, per_tick: usize, builder: WorkerPoolBuilder) {
    let runtime = runtime();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    runtime.block_on(async {
        let pool = builder.workers(WORKERS).queue_capacity(2048).build().unwrap();
        let mut handles = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        let mut sent = 0_usize;
        while started.elapsed() < SPIKE {
            ticker.tick().await;
            for _ in 0..per_tick {
                sent += 1;
                let priority = if sent % 10 == 0 { Priority::High } else { Priority::Low };
                let submitted = Instant::now();
                let task = async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    submitted.elapsed()
                };
                match pool.try_submit_with(priority, task) {
                    Ok(handle) => handles.push((priority, handle)),
                    Err(_) => {
                        let mut tally = tally.lock().unwrap();
                        match priority {
                            Priority::High => tally.high_refused += 1,
                            Priority::Low | Priority::Normal => tally.low_refused += 1,
                        }
                    }
                }
            }
        }
        for (priority, handle) in handles {
            let outcome = handle.await;
            let mut tally = tally.lock().unwrap();
            match (priority, outcome) {
                (Priority::High, Ok(latency)) => tally.high_latency.push(latency),
                (Priority::Low | Priority::Normal, Ok(_)) => tally.low_done += 1,
                (Priority::High, Err(TaskError::Shed)) => tally.high_shed += 1,
                (Priority::Low | Priority::Normal, Err(TaskError::Shed)) => tally.low_shed += 1,
                (_, Err(err)) => panic!("a task failed: {err}"),
            }
        }
    });
    let wall = started.elapsed();
    let mut tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    tally.high_latency.sort_unstable();
    let quantile = |q: f64| {
        let latencies = &tally.high_latency;
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "| {name} | {:.1?} | {:.1?} | {:.1?} | {} | {} | {} | {} | {} | {:.1} s |",
        quantile(0.5),
        quantile(0.99),
        tally.high_latency.last().copied().unwrap_or_default(),
        tally.high_latency.len(),
        tally.high_refused + tally.high_shed,
        tally.low_done,
        tally.low_refused,
        tally.low_shed,
        wall.as_secs_f64(),
    );
}

fn main() {
    let capacity = capacity();
    let per_tick = (3.0 * capacity / 1000.0).round().max(1.0) as usize;
    println!(
        "Spike: {WORKERS} workers × 1 ms tasks finish {capacity:.0} tasks/s; {per_tick} tasks/ms \
         offered for {SPIKE:?} ({:.1}× capacity), 10 % high priority",
        per_tick as f64 * 1000.0 / capacity
    );
    println!(
        "| pool | high p50 | high p99 | high max | high done | high refused or shed | low done \
         | low refused | low shed | wall |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    run("FIFO, no protection", per_tick, WorkerPool::builder());
    run("overload_queue_len(64)", per_tick, WorkerPool::builder().overload_queue_len(64));
    run(
        "overload_queue_wait(10 ms)",
        per_tick,
        WorkerPool::builder().overload_queue_wait(Duration::from_millis(10)),
    );
    run(
        "overload_queue_len(64) + max_queue_wait(50 ms)",
        per_tick,
        WorkerPool::builder().overload_queue_len(64).max_queue_wait(Duration::from_millis(50)),
    );
}
