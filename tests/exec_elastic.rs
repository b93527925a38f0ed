//! Elastic worker pools on a paused clock: growth under load, shrinking after the idle timeout,
//! and resizing at run time.

use std::time::Duration;

use millpond::exec::WorkerPool;
use tokio::sync::Barrier;

/// Runs `count` tasks that can only finish together, so they need `count` workers at once.
async fn run_together(pool: &WorkerPool, count: usize) {
    let barrier = std::sync::Arc::new(Barrier::new(count));
    let mut handles = Vec::new();
    for _ in 0..count {
        let barrier = std::sync::Arc::clone(&barrier);
        handles.push(pool.submit(async move { barrier.wait().await }).await.unwrap());
    }
    for handle in handles {
        handle.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn workers_start_under_load_and_exit_after_the_idle_timeout() {
    let pool = WorkerPool::builder()
        .min_workers(1)
        .max_workers(4)
        .idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(pool.stats().workers, 1);
    run_together(&pool, 4).await;
    assert_eq!(pool.stats().workers, 4);

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(pool.stats().workers, 4, "not idle long enough yet");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pool.stats().workers, 1, "back to min_workers");
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn resize_grows_and_shrinks_a_running_pool() {
    let pool = WorkerPool::builder().workers(2).build().unwrap();
    pool.resize(6).unwrap();
    // The maximum rose; workers start as load needs them.
    run_together(&pool, 6).await;
    assert_eq!(pool.stats().workers, 6);
    pool.resize(1).unwrap();
    // On the paused clock a sleep returns only once every task has run until it is idle: the
    // interrupted workers have retired by then. No time passes for them to use.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(pool.stats().workers, 1, "idle surplus workers exit at once");
    let handle = pool.submit(async { 1 }).await.unwrap();
    assert_eq!(handle.await.unwrap(), 1);
    pool.shutdown().await;
}
