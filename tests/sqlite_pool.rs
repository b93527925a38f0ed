//! The SQLite manager: concurrent writers on a WAL file, one shared in-memory database, and what
//! the next user gets after a panic, an open transaction or an abandoned call.

#![cfg(feature = "sqlite")]
#![allow(clippy::disallowed_types)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use millpond::pool::Pool;
use millpond::sqlite::{InteractError, SqliteManager, SqlitePool};

/// A fresh folder for one test's database files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "millpond-sqlite-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn count(pool: &SqlitePool, table: &'static str) -> i64 {
    let conn = pool.get().await.unwrap();
    conn.interact(move |conn| {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))
    })
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_a_file_queue_instead_of_failing_busy() {
    let scratch = Scratch::new();
    let pool =
        Pool::builder(SqliteManager::file(scratch.0.join("app.db"))).max_size(8).build().unwrap();
    let conn = pool.get().await.unwrap();
    let (mode, synchronous, busy_timeout): (String, i64, i64) = conn
        .interact(|conn| {
            conn.execute_batch("CREATE TABLE events (task INTEGER, n INTEGER)")?;
            Ok::<_, rusqlite::Error>((
                conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?,
                conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?,
                conn.query_row("PRAGMA busy_timeout", [], |row| row.get(0))?,
            ))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(synchronous, 1, "synchronous=NORMAL");
    assert_eq!(busy_timeout, 5000, "a 5 s busy timeout, in milliseconds");
    drop(conn);

    let writers: Vec<_> = (0..16)
        .map(|task| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for n in 0..50 {
                    let conn = pool.get().await.unwrap();
                    conn.interact(move |conn| {
                        conn.execute("INSERT INTO events VALUES (?1, ?2)", (task, n))
                    })
                    .await
                    .unwrap()
                    .expect("a writer waits for the lock instead of failing with SQLITE_BUSY");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(count(&pool, "events").await, 16 * 50);
    assert!(pool.metrics().created <= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_one_database_for_the_whole_pool_and_outlives_its_connections() {
    let pool = Pool::builder(SqliteManager::new(":memory:").unwrap()).max_size(2).build().unwrap();
    let first = pool.get().await.unwrap();
    let second = pool.get().await.unwrap();
    first
        .interact(|conn| conn.execute_batch("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1)"))
        .await
        .unwrap()
        .unwrap();
    let seen: i64 = second
        .interact(|conn| conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, 1, "a second connection sees the first one's table");
    drop((first, second));

    // Every connection closed: the database is still there for the next one.
    assert_eq!(pool.retain(|_, _| false), 2);
    assert_eq!(pool.status().size, 0);
    assert_eq!(count(&pool, "t").await, 1);

    // Two managers are two databases.
    let other = Pool::builder(SqliteManager::memory().unwrap()).build().unwrap();
    let missing = other
        .get()
        .await
        .unwrap()
        .interact(|conn| conn.query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0)))
        .await
        .unwrap();
    assert!(missing.is_err(), "another manager's memory database is separate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_or_a_panic_is_rolled_back_before_the_next_user() {
    let pool = Pool::builder(SqliteManager::memory().unwrap()).max_size(1).build().unwrap();
    let conn = pool.get().await.unwrap();
    conn.interact(|conn| conn.execute_batch("CREATE TABLE t (n INTEGER)")).await.unwrap().unwrap();
    conn.interact(|conn| conn.execute_batch("BEGIN; INSERT INTO t VALUES (1)"))
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    assert_eq!(count(&pool, "t").await, 0, "the open transaction was rolled back");

    let conn = pool.get().await.unwrap();
    let panicked = conn
        .interact(|conn| {
            conn.execute_batch("BEGIN; INSERT INTO t VALUES (2)").unwrap();
            panic!("the caller's code failed mid-transaction");
        })
        .await;
    assert!(
        matches!(panicked, Err(InteractError::Panicked(ref message)) if message.contains("mid-transaction"))
    );
    drop(conn);
    assert_eq!(count(&pool, "t").await, 0, "the panicked transaction was rolled back");
    assert_eq!(pool.metrics().created, 1, "rolled back, not reopened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_under_an_abandoned_call_is_not_reused() {
    let pool = Pool::builder(SqliteManager::memory().unwrap()).max_size(1).build().unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, call_started) = tokio::sync::oneshot::channel::<()>();
    let conn = pool.get().await.unwrap();
    let call = conn.interact(move |_| {
        started.send(()).unwrap();
        released.recv().unwrap();
    });
    tokio::select! {
        _ = call => panic!("the call cannot finish before it is released"),
        _ = call_started => {}
    }
    assert!(conn.is_busy());
    drop(conn);

    // The next user gets a connection it can use now, not one blocked under the call.
    let conn = tokio::time::timeout(Duration::from_secs(10), pool.get()).await.unwrap().unwrap();
    conn.interact(|conn| conn.execute_batch("SELECT 1")).await.unwrap().unwrap();
    release.send(()).unwrap();
    assert_eq!(pool.metrics().closed.broken, 1);
    assert_eq!(pool.metrics().created, 2);
}
