//! Redis pools against a real server that the bench starts itself: 64 tasks, each doing round
//! trips on its own key (one op = a `SET` of the task's key, then a `GET` of it), with pools of
//! 8 and 16 connections, for millpond (an exclusive `get()`, and its multiplexed view, which
//! lends a connection to up to 16 tasks at once), deadpool-redis and bb8-redis, beside redis-rs's
//! own `ConnectionManager` and, as a floor, one `MultiplexedConnection` shared by every task with
//! no pool at all. The last two are one connection whatever the pool size; they run in both
//! groups so that each group compares every contender in the same conditions.
//!
//! Every contender is at its default settings except the pool size. Those defaults differ in
//! what a checkout costs: deadpool-redis recycles a connection with an `UNWATCH` + `PING`
//! pipeline on every checkout, bb8 `PING`s it (`test_on_check_out` defaults to true), millpond
//! checks only a connection idle for longer than its check window (500 ms), which never happens
//! under this load.
//!
//! Criterion measures ops (a `SET` and a `GET`) per second.
//!
//! `cargo bench --bench redis --features redis`; needs `redis-server` (found as the tests find
//! it: `REDIS_SERVER`, `PATH`, `/usr/bin`).
#![allow(clippy::disallowed_types)]

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::redis as server;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use millpond::redis::{RedisManager, RedisPool};
use redis::Cmd;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use server::RedisServer;
use tokio::runtime::Runtime;

const TASKS: usize = 64;
const POOL_SIZES: [usize; 2] = [8, 16];
/// The value every `SET` writes: 32 bytes.
const VALUE: &str = "millpond-bench-value-32-bytes-ok";

/// The two commands of one op on `key`, built afresh for each op, as an application would.
fn set(key: &str) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(VALUE);
    cmd
}

fn get(key: &str) -> Cmd {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    cmd
}

/// One op on a connection of the redis crate: `SET key`, then `GET key`.
async fn set_then_get(conn: &mut impl redis::aio::ConnectionLike, key: &str) {
    set(key).query_async::<()>(conn).await.unwrap();
    let value: String = get(key).query_async(conn).await.unwrap();
    debug_assert_eq!(value, VALUE);
}

trait Contender: Clone + Send + Sync + 'static {
    const NAME: &'static str;
    /// A pool of `size` connections (or the pool-less connection).
    fn build(url: String, size: usize) -> impl Future<Output = Self> + Send;
    /// One op: check out, `SET key`, `GET key`, give back.
    fn op(&self, key: &str) -> impl Future<Output = ()> + Send;
}

// --- millpond -----------------------------------------------------------------------------------

#[derive(Clone)]
struct Millpond(RedisPool);

impl Contender for Millpond {
    const NAME: &'static str = "millpond";

    async fn build(url: String, size: usize) -> Self {
        let manager = RedisManager::new(url).unwrap();
        Self(millpond::pool::Pool::builder(manager).max_size(size).build().unwrap())
    }

    async fn op(&self, key: &str) {
        let conn = self.0.get().await.unwrap();
        conn.query::<()>(&set(key)).await.unwrap();
        let value: String = conn.query(&get(key)).await.unwrap();
        debug_assert_eq!(value, VALUE);
    }
}

/// millpond's multiplexed view: each connection lent to up to 16 tasks at once, whose commands
/// the redis crate pipelines.
#[derive(Clone)]
struct MillpondShared(millpond::pool::Multiplexed<RedisManager>);

impl Contender for MillpondShared {
    const NAME: &'static str = "millpond multiplexed";

    async fn build(url: String, size: usize) -> Self {
        let Millpond(pool) = Millpond::build(url, size).await;
        Self(pool.multiplexed(16).unwrap())
    }

    async fn op(&self, key: &str) {
        let conn = self.0.get().await.unwrap();
        conn.query::<()>(&set(key)).await.unwrap();
        let value: String = conn.query(&get(key)).await.unwrap();
        debug_assert_eq!(value, VALUE);
    }
}

// --- deadpool-redis -----------------------------------------------------------------------------

#[derive(Clone)]
struct Deadpool(deadpool_redis::Pool);

impl Contender for Deadpool {
    const NAME: &'static str = "deadpool-redis";

    async fn build(url: String, size: usize) -> Self {
        let manager = deadpool_redis::Manager::new(url).unwrap();
        Self(deadpool_redis::Pool::builder(manager).max_size(size).build().unwrap())
    }

    async fn op(&self, key: &str) {
        let mut conn = self.0.get().await.unwrap();
        set_then_get(&mut *conn, key).await;
    }
}

// --- bb8-redis ----------------------------------------------------------------------------------

#[derive(Clone)]
struct Bb8(bb8::Pool<bb8_redis::RedisConnectionManager>);

impl Contender for Bb8 {
    const NAME: &'static str = "bb8-redis";

    async fn build(url: String, size: usize) -> Self {
        let manager = bb8_redis::RedisConnectionManager::new(url).unwrap();
        Self(bb8::Pool::builder().max_size(size as u32).build(manager).await.unwrap())
    }

    async fn op(&self, key: &str) {
        let mut conn = self.0.get().await.unwrap();
        set_then_get(&mut *conn, key).await;
    }
}

// --- redis-rs's ConnectionManager -----------------------------------------------------------------

/// One auto-reconnecting multiplexed connection, cloned for each op as its documentation
/// suggests; the pool size does not apply.
#[derive(Clone)]
struct Manager(ConnectionManager);

impl Contender for Manager {
    const NAME: &'static str = "redis ConnectionManager";

    async fn build(url: String, _size: usize) -> Self {
        let client = redis::Client::open(url).unwrap();
        Self(ConnectionManager::new(client).await.unwrap())
    }

    async fn op(&self, key: &str) {
        let mut conn = self.0.clone();
        set_then_get(&mut conn, key).await;
    }
}

// --- no pool: one shared multiplexed connection -------------------------------------------------

/// One `MultiplexedConnection` shared by every task (cloned for each op): the floor.
#[derive(Clone)]
struct Shared(MultiplexedConnection);

impl Contender for Shared {
    const NAME: &'static str = "no pool (one MultiplexedConnection)";

    async fn build(url: String, _size: usize) -> Self {
        let client = redis::Client::open(url).unwrap();
        Self(client.get_multiplexed_async_connection().await.unwrap())
    }

    async fn op(&self, key: &str) {
        let mut conn = self.0.clone();
        set_then_get(&mut conn, key).await;
    }
}

// --- harness --------------------------------------------------------------------------------------

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Runs `ops` ops spread over the tasks, each task on its own key; returns the time they took.
async fn run_batch<C: Contender>(pool: &C, ops: u64) -> Duration {
    let left = Arc::new(AtomicUsize::new(ops as usize));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (pool, left) = (pool.clone(), Arc::clone(&left));
            let key = format!("millpond-bench:{task}");
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    pool.op(&key).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn bench_contender<C: Contender>(criterion: &mut Criterion, server: &RedisServer, size: usize) {
    let rt = runtime();
    let pool = rt.block_on(async {
        let pool = C::build(server.url(), size).await;
        run_batch(&pool, 1_000).await;
        pool
    });
    let mut group = criterion.benchmark_group(format!("redis_set_get_64_tasks/pool_{size}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function(BenchmarkId::from_parameter(C::NAME), |b| {
        b.to_async(&rt).iter_custom(|ops| {
            let pool = pool.clone();
            async move { run_batch(&pool, ops).await }
        });
    });
    group.finish();
    drop(pool);
}

fn main() {
    let Some(server) = RedisServer::start() else { return };
    let mut criterion = Criterion::default().configure_from_args();
    for size in POOL_SIZES {
        bench_contender::<Millpond>(&mut criterion, &server, size);
        bench_contender::<MillpondShared>(&mut criterion, &server, size);
        bench_contender::<Deadpool>(&mut criterion, &server, size);
        bench_contender::<Bb8>(&mut criterion, &server, size);
        bench_contender::<Manager>(&mut criterion, &server, size);
        bench_contender::<Shared>(&mut criterion, &server, size);
    }
    criterion.final_summary();
}
