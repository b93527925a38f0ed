//! Settings for a pool and a worker pool read from `examples/config.toml`, with environment
//! variables on top, through the `config` crate.
//!
//! Run with `cargo run --features serde --example config`, and override any key from the
//! environment: `APP__POOL__MAX_SIZE=32 APP__POOL__ACQUIRE_TIMEOUT=250ms cargo run ...`.

use std::time::Duration;

use millpond::config::{PoolConfig, WorkerPoolConfig};
use millpond::pool::Manager;
use serde::Deserialize;

/// The application's settings: each section is one of millpond's configuration structs.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    pool: PoolConfig,
    workers: WorkerPoolConfig,
}

/// Stands in for a database driver.
struct Database;

impl Manager for Database {
    type Resource = u64;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u64, std::io::Error> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(fastrand::u64(..))
    }
}

#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.toml");
    let settings: Settings = config::Config::builder()
        .add_source(config::File::with_name(file))
        .add_source(config::Environment::with_prefix("APP").separator("__").try_parsing(true))
        .build()?
        .try_deserialize()?;
    println!("pool settings: {:?}", settings.pool);
    println!("worker pool settings: {:?}", settings.workers);

    // A value the pool cannot run is refused here, naming its key: `pool.max_size`.
    let pool = settings.pool.builder(Database).build().map_err(|err| err.nested_in("pool"))?;
    let workers = settings.workers.builder().build().map_err(|err| err.nested_in("workers"))?;

    let conn = pool.get().await?;
    println!("checked out connection {}", *conn);
    drop(conn);
    let status = pool.status();
    println!("pool: max_size {}, {} open, {} idle", status.max_size, status.size, status.idle);

    let answer = workers.submit(async { 6 * 7 }).await?.await?;
    let stats = workers.stats();
    println!(
        "worker pool: {} workers, {} queues, ran a task that returned {answer}",
        stats.workers,
        stats.queued_per_worker.len().max(1)
    );
    Ok(())
}
