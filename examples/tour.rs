//! A tour of millpond's main job: a connection pool under a concurrent workload, with CPU-side
//! work on a worker pool, and the pools' live status while it runs.
//!
//! ```sh
//! cargo run --release --example tour --features sqlite,postgres
//! DATABASE_URL=postgres://user@localhost/db cargo run --release --example tour --features sqlite,postgres
//! ```
//!
//! Without `DATABASE_URL` it uses a SQLite database in a temporary folder, so there is nothing to
//! install. The workload is a small bank: 96 clients move money between 1,000 accounts in
//! transactions and read balances; every transfer's receipt is signed on a worker pool (CPU
//! work that must not stall the clients' I/O). At the end the money is counted: transfers
//! move it, never create or lose it.

// The crate's own code takes its atomics from its sync facade (for loom); an example is user code.
#![allow(clippy::disallowed_types)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use millpond::exec::WorkerPool;
use millpond::pool::{Metrics, Pool, Status};
use millpond::postgres::{PgManager, PgPool};
use millpond::sqlite::{SqliteManager, SqlitePool};

const ACCOUNTS: i64 = 1_000;
const OPENING_BALANCE: i64 = 1_000;
const CLIENTS: usize = 96;
const OPERATIONS_PER_CLIENT: usize = 500;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The database behind the tour: the same workload on either pool.
#[derive(Clone)]
enum Bank {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Bank {
    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        }
    }

    fn status(&self) -> Status {
        match self {
            Self::Sqlite(pool) => pool.status(),
            Self::Postgres(pool) => pool.status(),
        }
    }

    fn metrics(&self) -> Metrics {
        match self {
            Self::Sqlite(pool) => pool.metrics(),
            Self::Postgres(pool) => pool.metrics(),
        }
    }

    /// Creates the accounts table with every account at its opening balance.
    async fn open(&self) -> Result<(), Failure> {
        match self {
            Self::Sqlite(pool) => {
                let conn = pool.get().await?;
                conn.interact(|conn| {
                    let tx = conn.transaction()?;
                    tx.execute_batch(
                        "DROP TABLE IF EXISTS accounts;
                         CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
                    )?;
                    for id in 0..ACCOUNTS {
                        tx.execute("INSERT INTO accounts VALUES (?1, ?2)", (id, OPENING_BALANCE))?;
                    }
                    tx.commit()
                })
                .await??;
            }
            Self::Postgres(pool) => {
                let conn = pool.get().await?;
                conn.batch_execute(&format!(
                    "DROP TABLE IF EXISTS millpond_tour_accounts;
                     CREATE TABLE millpond_tour_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
                     INSERT INTO millpond_tour_accounts
                         SELECT id, {OPENING_BALANCE} FROM generate_series(0, {}) AS id",
                    ACCOUNTS - 1
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// Moves `amount` from one account to another in one transaction, if the first can pay.
    async fn transfer(&self, from: i64, to: i64, amount: i64) -> Result<bool, Failure> {
        match self {
            Self::Sqlite(pool) => {
                let conn = pool.get().await?;
                let moved = conn
                    .interact(move |conn| {
                        // IMMEDIATE takes the write lock up front, so two transfers never both
                        // read and then fail to upgrade to writing.
                        let tx = conn.transaction_with_behavior(
                            millpond::sqlite::rusqlite::TransactionBehavior::Immediate,
                        )?;
                        let paid = tx.execute(
                            "UPDATE accounts SET balance = balance - ?1 WHERE id = ?2 AND balance >= ?1",
                            (amount, from),
                        )?;
                        if paid == 1 {
                            tx.execute(
                                "UPDATE accounts SET balance = balance + ?1 WHERE id = ?2",
                                (amount, to),
                            )?;
                        }
                        tx.commit()?;
                        Ok::<_, millpond::sqlite::rusqlite::Error>(paid == 1)
                    })
                    .await??;
                Ok(moved)
            }
            Self::Postgres(pool) => {
                let mut conn = pool.get().await?;
                let withdraw = conn
                    .prepare_cached(
                        "UPDATE millpond_tour_accounts SET balance = balance - $1 \
                         WHERE id = $2 AND balance >= $1",
                    )
                    .await?;
                let deposit = conn
                    .prepare_cached(
                        "UPDATE millpond_tour_accounts SET balance = balance + $1 WHERE id = $2",
                    )
                    .await?;
                // Lock the two rows in id order, so concurrent transfers cannot deadlock.
                let lock = conn
                    .prepare_cached(
                        "SELECT 1 FROM millpond_tour_accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE",
                    )
                    .await?;
                let tx = conn.transaction().await?;
                tx.query(&lock, &[&from, &to]).await?;
                let paid = tx.execute(&withdraw, &[&amount, &from]).await?;
                if paid == 1 {
                    tx.execute(&deposit, &[&amount, &to]).await?;
                }
                tx.commit().await?;
                Ok(paid == 1)
            }
        }
    }

    /// One account's balance.
    async fn balance(&self, id: i64) -> Result<i64, Failure> {
        match self {
            Self::Sqlite(pool) => {
                let conn = pool.get().await?;
                Ok(conn
                    .interact(move |conn| {
                        conn.prepare_cached("SELECT balance FROM accounts WHERE id = ?1")?
                            .query_row([id], |row| row.get(0))
                    })
                    .await??)
            }
            Self::Postgres(pool) => {
                let conn = pool.get().await?;
                let statement = conn
                    .prepare_cached("SELECT balance FROM millpond_tour_accounts WHERE id = $1")
                    .await?;
                Ok(conn.query_one(&statement, &[&id]).await?.get(0))
            }
        }
    }

    /// All the money in the bank.
    async fn total(&self) -> Result<i64, Failure> {
        match self {
            Self::Sqlite(pool) => {
                let conn = pool.get().await?;
                Ok(conn
                    .interact(|conn| {
                        conn.query_row("SELECT sum(balance) FROM accounts", [], |row| row.get(0))
                    })
                    .await??)
            }
            Self::Postgres(pool) => {
                let conn = pool.get().await?;
                let row = conn
                    .query_one("SELECT sum(balance)::bigint FROM millpond_tour_accounts", &[])
                    .await?;
                Ok(row.get(0))
            }
        }
    }
}

/// Signs a receipt: CPU work standing in for rendering, hashing or compressing (FNV-1a, 20k
/// rounds, a few tens of microseconds).
fn sign(receipt: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for round in 0..20_000_u64 {
        for byte in receipt.bytes() {
            hash = (hash ^ u64::from(byte) ^ round).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// What the clients have done so far.
#[derive(Default)]
struct Progress {
    transfers: AtomicU64,
    declined: AtomicU64,
    reads: AtomicU64,
    signed: AtomicU64,
}

fn report(bank: &Bank, workers: &WorkerPool, progress: &Progress, elapsed: Duration) {
    let status = bank.status();
    let metrics = bank.metrics();
    let stats = workers.stats();
    println!(
        "{:>5.1}s  transfers {:>6} (declined {:>4})  reads {:>6}  signed {:>6} | pool: {}/{} open, \
         {} in use, {} waiting, wait p50 {:?} p99 {:?} | workers: {} busy, {} queued",
        elapsed.as_secs_f64(),
        progress.transfers.load(Ordering::Relaxed),
        progress.declined.load(Ordering::Relaxed),
        progress.reads.load(Ordering::Relaxed),
        progress.signed.load(Ordering::Relaxed),
        status.size,
        status.max_size,
        status.in_use,
        status.waiters,
        metrics.wait_time.quantile(0.5),
        metrics.wait_time.quantile(0.99),
        stats.busy,
        stats.queued,
    );
}

async fn connect() -> Result<(Bank, Option<tempdir::Scratch>), Failure> {
    let max_size = 12;
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let manager: PgManager = url.parse()?;
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .min_idle(2)
            .acquire_timeout(Duration::from_secs(10))
            .build()?;
        return Ok((Bank::Postgres(pool), None));
    }
    let scratch = tempdir::Scratch::new()?;
    let pool = Pool::builder(SqliteManager::file(scratch.path().join("bank.db")))
        .max_size(max_size)
        .min_idle(2)
        .acquire_timeout(Duration::from_secs(10))
        .build()?;
    Ok((Bank::Sqlite(pool), Some(scratch)))
}

/// A temporary folder removed on drop (the example avoids extra dependencies).
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Scratch(PathBuf);

    impl Scratch {
        pub fn new() -> std::io::Result<Self> {
            let dir = std::env::temp_dir().join(format!("millpond-tour-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            Ok(Self(dir))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let (bank, scratch) = connect().await?;
    match &scratch {
        Some(dir) => println!("millpond tour on {} in {}", bank.name(), dir.path().display()),
        None => println!("millpond tour on {} (DATABASE_URL)", bank.name()),
    }
    bank.open().await?;
    println!(
        "{ACCOUNTS} accounts opened with {OPENING_BALANCE} each; {CLIENTS} clients × \
         {OPERATIONS_PER_CLIENT} operations (1 in 4 a transfer)\n"
    );

    // CPU work gets a bounded pool of its own, so a burst of it queues instead of taking every
    // runtime thread away from the clients' I/O.
    let workers = Arc::new(WorkerPool::builder().workers(2).queue_capacity(256).build()?);
    let progress = Arc::new(Progress::default());
    let started = Instant::now();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (bank, workers, progress) = (bank.clone(), workers.clone(), progress.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(client as u64);
                for _ in 0..OPERATIONS_PER_CLIENT {
                    let from = rng.i64(0..ACCOUNTS);
                    if rng.u8(0..4) == 0 {
                        let to = (from + rng.i64(1..ACCOUNTS)) % ACCOUNTS;
                        let amount = rng.i64(1..100);
                        if bank.transfer(from, to, amount).await? {
                            progress.transfers.fetch_add(1, Ordering::Relaxed);
                            let receipt = format!("{from}->{to}:{amount}");
                            let signing = workers.submit(async move { sign(&receipt) }).await?;
                            signing.await?;
                            progress.signed.fetch_add(1, Ordering::Relaxed);
                        } else {
                            progress.declined.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        bank.balance(from).await?;
                        progress.reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok::<_, Failure>(())
            })
        })
        .collect();

    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.tick().await;
    let mut all_done = futures::future::join_all(clients);
    loop {
        tokio::select! {
            results = &mut all_done => {
                for result in results {
                    result??;
                }
                break;
            }
            _ = ticker.tick() => report(&bank, &workers, &progress, started.elapsed()),
        }
    }
    let elapsed = started.elapsed();
    report(&bank, &workers, &progress, elapsed);
    workers.shutdown().await;

    let total = bank.total().await?;
    let metrics = bank.metrics();
    let checkouts = metrics.gets_direct + metrics.gets_waited;
    let operations = (CLIENTS * OPERATIONS_PER_CLIENT) as f64;
    println!("\nsummary");
    println!(
        "  {} operations in {:.2} s: {:.0} operations/s",
        operations,
        elapsed.as_secs_f64(),
        operations / elapsed.as_secs_f64()
    );
    println!(
        "  {checkouts} checkouts served by {} connections ({:.0} uses each); {} checkouts \
         waited, wait p50 {:?}, p99 {:?}, max {:?}",
        metrics.created,
        checkouts as f64 / metrics.created.max(1) as f64,
        metrics.gets_waited,
        metrics.wait_time.quantile(0.5),
        metrics.wait_time.quantile(0.99),
        metrics.wait_time.max(),
    );
    println!(
        "  receipts signed on the worker pool: {}, queue wait p99 {:?}",
        progress.signed.load(Ordering::Relaxed),
        workers.stats().queue_wait.quantile(0.99),
    );
    let expected = ACCOUNTS * OPENING_BALANCE;
    println!("  money in the bank: {total} (opened with {expected})");
    if total != expected {
        return Err(format!("money was created or lost: {total} != {expected}").into());
    }
    Ok(())
}
