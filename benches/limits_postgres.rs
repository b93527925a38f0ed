//! Adaptive against static concurrency limits in front of a real PostgreSQL server whose CPU is
//! taken by a hog mid-run.
//!
//! The bench starts its own server (as the tests do), calibrates a CPU-bound query
//! (`SELECT sum(i) FROM generate_series(1, n) i`, about 5 ms on an idle server) and measures
//! the server's capacity at two queries at once. Callers then arrive at 1.5 times that rate and
//! give up after a second. Three phases: the server alone, the server sharing every core with a
//! busy-looping process (its capacity about halves), and alone again. Each contender is a
//! millpond pool of 64 connections with an adaptive limit (`Builder::adaptive_limit`); the static
//! ones use an algorithm that never moves. A call is `get()` then the query; one that times out
//! reports a loss (`Pooled::report(Outcome::Dropped)`).
//!
//! `cargo bench --bench limits_postgres --features postgres` prints the table recorded in
//! `docs/benchmarks.md` (about four minutes).
#![allow(clippy::disallowed_types, clippy::cast_precision_loss)]

#[path = "../tests/harness/mod.rs"]
mod harness;

#[path = "support/limits.rs"]
mod support;

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::postgres::PgServer;
use millpond::limit::{AdaptiveLimiter, Aimd, Gradient2, Outcome};
use millpond::postgres::{PgManager, PgPool};
use support::Fixed;
use tokio::time::Instant;

const PHASE: Duration = Duration::from_secs(8);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// Makes a contender's limiter, fresh for its run.
type MakeLimiter = Box<dyn Fn() -> AdaptiveLimiter>;

#[derive(Default)]
struct Figures {
    succeeded: u64,
    refused: u64,
    timed_out: u64,
    latencies: Vec<Duration>,
    limits: Vec<usize>,
}

impl Figures {
    fn percentile(&mut self, p: f64) -> Duration {
        support::percentile(&mut self.latencies, p)
    }
}

/// Busy-looping processes, one per core, until dropped.
struct Hog(Vec<Child>);

impl Hog {
    fn start() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self(
            (0..cpus)
                .map(|_| {
                    // Each loop checks that the bench still runs, so a bench killed before its
                    // `Drop` (Ctrl-C, `pkill`) does not leave the machine busy for good.
                    let bench = std::process::id();
                    Command::new("sh")
                        .arg("-c")
                        .arg(format!("while kill -0 {bench} 2>/dev/null; do :; done"))
                        .spawn()
                        .expect("sh")
                })
                .collect(),
        )
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn query(n: u64) -> String {
    format!("SELECT sum(i) FROM generate_series(1, {n}) i")
}

async fn pool(server: &PgServer, limiter: Option<AdaptiveLimiter>) -> PgPool {
    let mut builder = millpond::pool::Pool::builder(PgManager::new(server.config("limits")))
        .max_size(64)
        .min_idle(64)
        .check_on_get(false);
    if let Some(limiter) = limiter {
        builder = builder.adaptive_limit(limiter);
    }
    let pool = builder.build().unwrap();
    let warm: Vec<_> = futures::future::join_all((0..64).map(|_| pool.get())).await;
    drop(warm);
    pool
}

/// The `n` for which the query takes about 5 ms alone, and the queries a second the server
/// answers two at a time.
async fn calibrate(server: &PgServer) -> (u64, f64) {
    let pool = pool(server, None).await;
    let mut n = 100_000u64;
    for _ in 0..4 {
        let conn = pool.get().await.unwrap();
        let started = Instant::now();
        for _ in 0..10 {
            conn.simple_query(&query(n)).await.unwrap();
        }
        let each = started.elapsed().as_secs_f64() / 10.0;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        {
            n = ((n as f64) * 0.005 / each).max(1_000.0) as u64;
        }
    }
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (pool, done) = (pool.clone(), done.clone());
            tokio::spawn(async move {
                while started.elapsed() < Duration::from_secs(2) {
                    let conn = pool.get().await.unwrap();
                    conn.simple_query(&query(n)).await.unwrap();
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let rate = done.load(std::sync::atomic::Ordering::Relaxed) as f64 / 2.0;
    (n, rate)
}

async fn run(server: &PgServer, limiter: AdaptiveLimiter, n: u64, rate: f64) -> Vec<Figures> {
    let pool = pool(server, Some(limiter.clone())).await;
    let sql: Arc<str> = query(n).into();
    let mut phases = Vec::new();
    for phase in 0..3 {
        let hog = (phase == 1).then(Hog::start);
        let figures = Arc::new(Mutex::new(Figures::default()));
        let ends = Instant::now() + PHASE;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut owed = 0.0;
        let mut calls = Vec::new();
        let mut ticks = 0u64;
        while Instant::now() < ends {
            tick.tick().await;
            ticks += 1;
            if ticks % 10 == 0 {
                figures.lock().unwrap().limits.push(limiter.status().limit);
            }
            owed += rate / 1000.0;
            while owed >= 1.0 {
                owed -= 1.0;
                let (pool, sql, figures) = (pool.clone(), sql.clone(), figures.clone());
                calls.push(tokio::spawn(async move {
                    let arrived = Instant::now();
                    let deadline = arrived + CLIENT_TIMEOUT;
                    let outcome = match tokio::time::timeout_at(deadline, pool.get()).await {
                        Ok(Ok(mut conn)) => {
                            match tokio::time::timeout_at(deadline, conn.simple_query(&sql)).await {
                                Ok(Ok(_)) => Some(true),
                                Ok(Err(_)) => {
                                    conn.report(Outcome::Failure);
                                    Some(false)
                                }
                                Err(_) => {
                                    conn.report(Outcome::Dropped);
                                    None
                                }
                            }
                        }
                        Ok(Err(_)) => Some(false),
                        Err(_) => None,
                    };
                    let mut figures = figures.lock().unwrap();
                    match outcome {
                        Some(true) => {
                            figures.succeeded += 1;
                            figures.latencies.push(arrived.elapsed());
                        }
                        Some(false) => figures.refused += 1,
                        None => figures.timed_out += 1,
                    }
                }));
            }
        }
        for call in calls {
            call.await.unwrap();
        }
        drop(hog);
        phases.push(Arc::try_unwrap(figures).ok().unwrap().into_inner().unwrap());
    }
    pool.close();
    phases
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` asks for a list; there are no criterion benches here.
    }
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let Some(server) = PgServer::start() else { return };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (n, capacity) = runtime.block_on(calibrate(&server));
    let rate = capacity * 1.5;
    println!(
        "query: generate_series(1, {n}); capacity at 2 in flight: {capacity:.0}/s; offered: {rate:.0}/s\n"
    );
    let fixed = |limit| AdaptiveLimiter::builder(Fixed(limit)).build().unwrap();
    let contenders: Vec<(&str, MakeLimiter)> = vec![
        ("static 2", Box::new(move || fixed(2))),
        ("static 4", Box::new(move || fixed(4))),
        ("static 8", Box::new(move || fixed(8))),
        ("static 32", Box::new(move || fixed(32))),
        (
            "AIMD (1–64)",
            Box::new(|| {
                let aimd = Aimd::new().min_limit(1).initial_limit(4).max_limit(64);
                AdaptiveLimiter::builder(aimd).build().unwrap()
            }),
        ),
        (
            "Gradient2 (1–64)",
            Box::new(|| {
                let gradient = Gradient2::new().min_limit(1).initial_limit(4).max_limit(64);
                AdaptiveLimiter::builder(gradient).build().unwrap()
            }),
        ),
        (
            "Gradient2 (1–64, tolerance 1.1)",
            Box::new(|| {
                let gradient =
                    Gradient2::new().min_limit(1).initial_limit(4).max_limit(64).tolerance(1.1);
                AdaptiveLimiter::builder(gradient).build().unwrap()
            }),
        ),
    ];
    println!("| contender | phase | goodput/s | p50 | p99 | refused | timed out | median limit |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, make) in contenders {
        if filter.as_deref().is_some_and(|word| !name.contains(word)) {
            continue;
        }
        let phases = runtime.block_on(run(&server, make(), n, rate));
        for (index, mut figures) in phases.into_iter().enumerate() {
            let phase = ["alone", "CPU hog", "alone again"][index];
            let goodput = figures.succeeded as f64 / PHASE.as_secs_f64();
            let (p50, p99) = (figures.percentile(0.5), figures.percentile(0.99));
            figures.limits.sort_unstable();
            let median = figures.limits.get(figures.limits.len() / 2).copied().unwrap_or(0);
            println!(
                "| {name} | {phase} | {goodput:.0} | {:.1} ms | {:.1} ms | {} | {} | {median} |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                figures.refused,
                figures.timed_out,
            );
        }
    }
}
