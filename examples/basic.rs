//! A pool of simulated connections under a burst of concurrent requests, printing the pool's
//! status and metrics as it goes.
//!
//! Run with `cargo run --example basic`.

// The crate-internal sync facade rule (clippy.toml) is for library code, not for users.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use millpond::pool::{Manager, Pool};

/// Stands in for a database driver: connecting takes a few milliseconds.
struct Database {
    next_id: AtomicU64,
}

struct Connection {
    id: u64,
    queries: u64,
}

impl Connection {
    async fn query(&mut self) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.queries += 1;
    }
}

#[derive(Debug)]
struct ConnectError;

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused")
    }
}

impl std::error::Error for ConnectError {}

impl Manager for Database {
    type Resource = Connection;
    type Error = ConnectError;

    async fn create(&self) -> Result<Connection, ConnectError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Connection { id: self.next_id.fetch_add(1, Ordering::Relaxed), queries: 0 })
    }

    fn is_reusable(&self, conn: &mut Connection) -> bool {
        // Retire connections after a number of queries, as some servers require.
        conn.queries < 500
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder(Database { next_id: AtomicU64::new(0) })
        .max_size(8)
        .min_idle(2)
        .acquire_timeout(Duration::from_secs(5))
        .build()?;

    let requests: Vec<_> = (0..64)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    let mut conn = pool.get().await?;
                    conn.query().await;
                }
                Ok::<_, millpond::pool::Error<ConnectError>>(())
            })
        })
        .collect();

    let reporter = tokio::spawn({
        let pool = pool.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let status = pool.status();
                println!(
                    "size {:>2}  idle {:>2}  in use {:>2}  creating {}  waiting {:>2}",
                    status.size, status.idle, status.in_use, status.creating, status.waiters
                );
            }
        }
    });

    for request in requests {
        request.await??;
    }
    reporter.abort();

    let metrics = pool.metrics();
    let conn = pool.get().await?;
    println!("\n{} checkouts served by {} connections", 64 * 50, metrics.created);
    println!("a connection in use now: #{} with {} queries", conn.id, conn.queries);
    println!(
        "get() wait: p50 {:?}, p99 {:?}, max {:?} ({} of them waited)",
        metrics.wait_time.quantile(0.5),
        metrics.wait_time.quantile(0.99),
        metrics.wait_time.max(),
        metrics.gets_waited,
    );
    println!(
        "hold time: mean {:?}, p99 {:?}",
        metrics.hold_time.mean(),
        metrics.hold_time.quantile(0.99)
    );
    Ok(())
}
