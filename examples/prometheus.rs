//! A pool's, a worker pool's and a cluster's figures served to Prometheus: the application
//! installs `metrics-exporter-prometheus` as its `metrics` recorder, the pool publishes under the
//! OpenTelemetry database-client names (`db.client.connection.*`), the worker pool and the
//! cluster under `millpond.worker_pool.*` and `millpond.cluster.*`, and the handle renders the
//! text a scrape would get.
//!
//! Run with `cargo run --example prometheus --features metrics`.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use millpond::cluster::{Backend, Cluster};
use millpond::exec::WorkerPool;
use millpond::pool::{Manager, Pool};

/// Stands in for a database driver: connecting takes a few milliseconds.
struct Database;

impl Manager for Database {
    type Resource = Vec<u8>;
    type Error = std::io::Error;

    async fn create(&self) -> Result<Vec<u8>, std::io::Error> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(Vec::new())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Once per process, at start-up. A server would serve `handle.render()` on `/metrics`
    // (or use the exporter's own `http-listener` feature).
    let handle = PrometheusBuilder::new().install_recorder()?;

    let pool = Pool::builder(Database).name("orders-db").max_size(4).min_idle(1).build()?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get().await?;
            conn.extend_from_slice(b"SELECT 1");
            tokio::time::sleep(Duration::from_millis(3)).await;
            Ok::<_, millpond::pool::Error<std::io::Error>>(())
        }));
    }
    for task in tasks {
        task.await??;
    }

    // A worker pool running the requests, and a cluster of two replicas.
    let workers = WorkerPool::builder().name("requests").workers(4).build()?;
    for _ in 0..8 {
        workers.submit(async { tokio::time::sleep(Duration::from_millis(1)).await }).await?.await?;
    }
    let cluster = Cluster::builder()
        .name("reports")
        .backend(Backend::replica("replica-a", Pool::builder(Database).max_size(2)))
        .backend(Backend::replica("replica-b", Pool::builder(Database).max_size(2)))
        .build()?;
    drop(cluster.get().await?);

    // Just before a scrape, or every `maintenance_interval` with `Builder::publish_metrics(true)`.
    pool.publish_metrics();
    workers.publish_metrics();
    cluster.publish_metrics();
    print!("{}", handle.render());
    Ok(())
}
