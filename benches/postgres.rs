//! PostgreSQL pools against a real server that the bench starts itself: 64 tasks run a prepared
//! `SELECT 1`, with pools of 8 and 16 connections, for millpond (an exclusive `get()`, and its
//! multiplexed view, which lends a connection to up to 16 tasks at once), deadpool-postgres and
//! bb8-postgres, beside the no-pool ceiling (as many bare clients as the pool would have
//! connections, shared round-robin: tokio-postgres pipelines the queries of every task that
//! shares a client, which no pool that lends a connection to one task at a time can do).
//!
//! Every contender runs the same query on a statement prepared once per connection, with checks
//! on checkout off: millpond `check_on_get(false)`, deadpool `RecyclingMethod::Fast`, bb8
//! `test_on_check_out(false)`. bb8-postgres has no statement cache, so its manager is wrapped to
//! prepare the statement when it connects.
//!
//! Criterion measures queries per second. A fairness pass then runs each contender for a fixed
//! window and prints queries/s, the p50/p99/max latency of one query (checkout included) and
//! the least-served task's share of the fair share (1.00 = even, 0 = a task was starved).
//!
//! The cost of each `SessionReset` policy is measured apart (`pg_session_reset_64_tasks`): the
//! same 64 tasks over 8 millpond connections, each checkout either running the prepared query
//! only (a clean session) or a `SET statement_timeout` first (a dirty one), under `Off`,
//! `Precise` (the default), `DiscardAll` and a `Custom("RESET ALL")`.
//!
//! `cargo bench --bench postgres --features postgres`; needs the PostgreSQL server binaries
//! (found as the tests find them: `PG_BIN`, `pg_config`, `/usr/lib/postgresql/*/bin`).
#![allow(clippy::disallowed_types)]

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::postgres as server;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use millpond::postgres::{PgManager, PgPool, SessionReset};
use server::PgServer;
use tokio::runtime::Runtime;
use tokio_postgres::{Client, Config, NoTls, Statement};

const TASKS: usize = 64;
const POOL_SIZES: [usize; 2] = [8, 16];
const QUERY: &str = "SELECT 1";

trait Contender: Clone + Send + Sync + 'static {
    const NAME: &'static str;
    /// A pool of `size` connections, warmed up.
    fn build(config: Config, size: usize) -> impl Future<Output = Self> + Send;
    /// One query: check out, run the prepared statement, give back.
    fn select_one(&self) -> impl Future<Output = ()> + Send;
}

// --- millpond -----------------------------------------------------------------------------------

#[derive(Clone)]
struct Millpond(PgPool);

impl Contender for Millpond {
    const NAME: &'static str = "millpond";

    async fn build(config: Config, size: usize) -> Self {
        let pool = millpond::pool::Pool::builder(PgManager::new(config))
            .max_size(size)
            .check_on_get(false)
            .build()
            .unwrap();
        Self(pool)
    }

    async fn select_one(&self) {
        let conn = self.0.get().await.unwrap();
        let statement = conn.prepare_cached(QUERY).await.unwrap();
        conn.query_one(&statement, &[]).await.unwrap();
    }
}

/// millpond's multiplexed view: each connection lent to up to 16 tasks at once, which
/// tokio-postgres pipelines.
#[derive(Clone)]
struct MillpondShared(millpond::pool::Multiplexed<PgManager>);

impl Contender for MillpondShared {
    const NAME: &'static str = "millpond multiplexed";

    async fn build(config: Config, size: usize) -> Self {
        let Millpond(pool) = Millpond::build(config, size).await;
        Self(pool.multiplexed(16).unwrap())
    }

    async fn select_one(&self) {
        let conn = self.0.get().await.unwrap();
        let statement = conn.prepare_cached(QUERY).await.unwrap();
        conn.query_one(&statement, &[]).await.unwrap();
    }
}

// --- deadpool-postgres ----------------------------------------------------------------------------

#[derive(Clone)]
struct Deadpool(deadpool_postgres::Pool);

impl Contender for Deadpool {
    const NAME: &'static str = "deadpool-postgres";

    async fn build(config: Config, size: usize) -> Self {
        let manager = deadpool_postgres::Manager::from_config(
            config,
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        Self(deadpool_postgres::Pool::builder(manager).max_size(size).build().unwrap())
    }

    async fn select_one(&self) {
        let conn = self.0.get().await.unwrap();
        let statement = conn.prepare_cached(QUERY).await.unwrap();
        conn.query_one(&statement, &[]).await.unwrap();
    }
}

// --- bb8-postgres ---------------------------------------------------------------------------------

/// bb8-postgres's manager, preparing the query once per connection.
struct Prepared(bb8_postgres::PostgresConnectionManager<NoTls>);

impl bb8::ManageConnection for Prepared {
    type Connection = (Client, Statement);
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<(Client, Statement), tokio_postgres::Error> {
        let client = self.0.connect().await?;
        let statement = client.prepare(QUERY).await?;
        Ok((client, statement))
    }

    async fn is_valid(&self, conn: &mut (Client, Statement)) -> Result<(), tokio_postgres::Error> {
        self.0.is_valid(&mut conn.0).await
    }

    fn has_broken(&self, conn: &mut (Client, Statement)) -> bool {
        self.0.has_broken(&mut conn.0)
    }
}

#[derive(Clone)]
struct Bb8(bb8::Pool<Prepared>);

impl Contender for Bb8 {
    const NAME: &'static str = "bb8-postgres";

    async fn build(config: Config, size: usize) -> Self {
        let manager = Prepared(bb8_postgres::PostgresConnectionManager::new(config, NoTls));
        let pool = bb8::Pool::builder()
            .max_size(size as u32)
            .test_on_check_out(false)
            .build(manager)
            .await
            .unwrap();
        Self(pool)
    }

    async fn select_one(&self) {
        let conn = self.0.get().await.unwrap();
        conn.0.query_one(&conn.1, &[]).await.unwrap();
    }
}

// --- no pool: shared clients ----------------------------------------------------------------------

/// `size` bare clients shared round-robin by every task: the pipelining ceiling.
#[derive(Clone)]
struct Shared(Arc<(Vec<(Client, Statement)>, AtomicUsize)>);

impl Contender for Shared {
    const NAME: &'static str = "no pool (shared clients)";

    async fn build(config: Config, size: usize) -> Self {
        let mut clients = Vec::with_capacity(size);
        for _ in 0..size {
            let (client, connection) = config.connect(NoTls).await.unwrap();
            tokio::spawn(connection);
            let statement = client.prepare(QUERY).await.unwrap();
            clients.push((client, statement));
        }
        Self(Arc::new((clients, AtomicUsize::new(0))))
    }

    async fn select_one(&self) {
        let (clients, next) = &*self.0;
        let (client, statement) = &clients[next.fetch_add(1, Ordering::Relaxed) % clients.len()];
        client.query_one(statement, &[]).await.unwrap();
    }
}

// --- session reset policies ----------------------------------------------------------------------

/// The pool size of the reset benchmark.
const RESET_POOL_SIZE: usize = 8;

/// What each checkout of the reset benchmark leaves in the session.
#[derive(Clone, Copy, Debug)]
enum Leaves {
    /// Nothing: the prepared query only.
    Nothing,
    /// A setting: `SET statement_timeout`, then the prepared query.
    Setting,
}

fn reset_policies() -> [(&'static str, SessionReset); 4] {
    [
        ("off", SessionReset::Off),
        ("precise", SessionReset::Precise),
        ("discard_all", SessionReset::DiscardAll),
        ("custom_reset_all", SessionReset::Custom("RESET ALL".into())),
    ]
}

async fn reset_pool(config: Config, reset: SessionReset) -> PgPool {
    millpond::pool::Pool::builder(PgManager::new(config).session_reset(reset))
        .max_size(RESET_POOL_SIZE)
        .check_on_get(false)
        .build()
        .unwrap()
}

/// One checkout of the reset benchmark.
async fn checkout_leaving(pool: &PgPool, leaves: Leaves) {
    let conn = pool.get().await.unwrap();
    if let Leaves::Setting = leaves {
        conn.batch_execute("SET statement_timeout = '5s'").await.unwrap();
    }
    let statement = conn.prepare_cached(QUERY).await.unwrap();
    conn.query_one(&statement, &[]).await.unwrap();
}

/// Runs `checkouts` checkouts spread over the tasks; returns the time they took.
async fn run_reset_batch(pool: &PgPool, leaves: Leaves, checkouts: u64) -> Duration {
    let left = Arc::new(AtomicUsize::new(checkouts as usize));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (pool, left) = (pool.clone(), Arc::clone(&left));
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    checkout_leaving(&pool, leaves).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn bench_reset_policies(criterion: &mut Criterion, server: &PgServer) {
    let rt = runtime();
    let mut group =
        criterion.benchmark_group(format!("pg_session_reset_64_tasks/pool_{RESET_POOL_SIZE}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, reset) in reset_policies() {
        for leaves in [Leaves::Nothing, Leaves::Setting] {
            let pool = rt.block_on(async {
                let pool = reset_pool(server.config(name), reset.clone()).await;
                run_reset_batch(&pool, leaves, 1_000).await;
                pool
            });
            let id = format!("{name}/leaves_{leaves:?}").to_lowercase();
            group.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.to_async(&rt).iter_custom(|checkouts| {
                    let pool = pool.clone();
                    async move { run_reset_batch(&pool, leaves, checkouts).await }
                });
            });
            drop(pool);
        }
    }
    group.finish();
}

// --- harness --------------------------------------------------------------------------------------

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Runs `queries` queries spread over the tasks; returns the time they took.
async fn run_batch<C: Contender>(pool: &C, queries: u64) -> Duration {
    let left = Arc::new(AtomicUsize::new(queries as usize));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (pool, left) = (pool.clone(), Arc::clone(&left));
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    pool.select_one().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn bench_contender<C: Contender>(criterion: &mut Criterion, server: &PgServer, size: usize) {
    let rt = runtime();
    let pool = rt.block_on(async {
        let pool = C::build(server.config(C::NAME), size).await;
        run_batch(&pool, 1_000).await;
        pool
    });
    let mut group = criterion.benchmark_group(format!("pg_select1_64_tasks/pool_{size}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function(BenchmarkId::from_parameter(C::NAME), |b| {
        b.to_async(&rt).iter_custom(|queries| {
            let pool = pool.clone();
            async move { run_batch(&pool, queries).await }
        });
    });
    group.finish();
    drop(pool);
}

struct Fairness {
    queries_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    least_served_share: f64,
}

fn fairness<C: Contender>(server: &PgServer, size: usize, window: Duration) -> Fairness {
    runtime().block_on(async {
        let pool = C::build(server.config(C::NAME), size).await;
        run_batch(&pool, 2_000).await;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (pool, stop) = (pool.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(1 << 12);
                    while !stop.load(Ordering::Relaxed) {
                        let began = Instant::now();
                        pool.select_one().await;
                        latencies.push(began.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        tokio::time::sleep(window).await;
        stop.store(true, Ordering::Relaxed);
        let mut per_task = Vec::new();
        let mut latencies = Vec::new();
        for task in tasks {
            let task_latencies = task.await.unwrap();
            per_task.push(task_latencies.len());
            latencies.extend(task_latencies);
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let total: usize = per_task.iter().sum();
        let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        Fairness {
            queries_per_sec: total as f64 / elapsed.as_secs_f64(),
            p50: quantile(0.50),
            p99: quantile(0.99),
            max: *latencies.last().unwrap(),
            least_served_share: *per_task.iter().min().unwrap() as f64
                / (total as f64 / TASKS as f64),
        }
    })
}

fn fairness_report(server: &PgServer) {
    let window = Duration::from_secs(3);
    println!("\nFairness pass ({window:?} window per contender, {TASKS} tasks)");
    println!(
        "| pool size | contender | queries/s | latency p50 | p99 | max | least-served share |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for size in POOL_SIZES {
        let rows = [
            (Millpond::NAME, fairness::<Millpond>(server, size, window)),
            (MillpondShared::NAME, fairness::<MillpondShared>(server, size, window)),
            (Deadpool::NAME, fairness::<Deadpool>(server, size, window)),
            (Bb8::NAME, fairness::<Bb8>(server, size, window)),
            (Shared::NAME, fairness::<Shared>(server, size, window)),
        ];
        for (name, row) in rows {
            println!(
                "| {size} | {name} | {:.0} | {:.2?} | {:.2?} | {:.2?} | {:.2} |",
                row.queries_per_sec, row.p50, row.p99, row.max, row.least_served_share
            );
        }
    }
}

fn main() {
    let Some(server) = PgServer::start() else { return };
    let mut criterion = Criterion::default().configure_from_args();
    for size in POOL_SIZES {
        bench_contender::<Millpond>(&mut criterion, &server, size);
        bench_contender::<MillpondShared>(&mut criterion, &server, size);
        bench_contender::<Deadpool>(&mut criterion, &server, size);
        bench_contender::<Bb8>(&mut criterion, &server, size);
        bench_contender::<Shared>(&mut criterion, &server, size);
    }
    bench_reset_policies(&mut criterion, &server);
    criterion.final_summary();
    fairness_report(&server);
}
