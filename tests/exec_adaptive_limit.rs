//! A worker pool under an adaptive concurrency limit: no more tasks run at once than the limit
//! allows, whatever the number of workers; a task the limiter turns away is shed; outcomes
//! reach the limiter.
#![allow(clippy::disallowed_types)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use millpond::exec::{TaskError, WorkerPool};
use millpond::limit::{AdaptiveLimiter, Aimd};
use tokio::sync::Semaphore;

/// A limit that stays at `limit` (AIMD pinned between `limit` and `limit`).
fn pinned(limit: usize) -> AdaptiveLimiter {
    AdaptiveLimiter::builder(Aimd::new().min_limit(limit).initial_limit(limit).max_limit(limit))
        .fifo()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_tasks_run_at_once_than_the_limit() {
    let limiter = pinned(3);
    let pool = WorkerPool::builder().workers(16).adaptive_limit(limiter.clone()).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let mut handles = Vec::new();
    for _ in 0..12 {
        let (running, most, gate) = (running.clone(), most.clone(), gate.clone());
        let task = async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            running.fetch_sub(1, Ordering::SeqCst);
        };
        handles.push(pool.submit(task).await.unwrap());
    }
    // Three tasks start; the others wait for room, however many workers are free.
    // A task counts in flight when its worker takes room, and as running once it is polled.
    while limiter.status().in_flight < 3
        || limiter.status().queued < 9
        || running.load(Ordering::SeqCst) < 3
    {
        tokio::task::yield_now().await;
    }
    assert_eq!(running.load(Ordering::SeqCst), 3);
    assert_eq!(limiter.status().in_flight, 3, "no fourth admitted meanwhile");
    gate.add_permits(12);
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 3);
    // A handle resolves inside its task's last poll; the worker records the success just after.
    while limiter.status().in_flight > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(limiter.status().succeeded, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_the_limiter_turns_away_is_shed_and_a_panic_is_a_failure() {
    let limiter = AdaptiveLimiter::builder(Aimd::new().min_limit(1).initial_limit(1).max_limit(1))
        .max_queue(0)
        .build()
        .unwrap();
    let pool = WorkerPool::builder().workers(4).adaptive_limit(limiter.clone()).build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let held = {
        let gate = gate.clone();
        pool.submit(async move { gate.acquire().await.unwrap().forget() }).await.unwrap()
    };
    while limiter.status().in_flight < 1 {
        tokio::task::yield_now().await;
    }
    let turned_away = pool.submit(async {}).await.unwrap();
    assert!(matches!(turned_away.await, Err(TaskError::Shed)));
    assert_eq!(pool.stats().shed, 1);
    gate.add_permits(1);
    held.await.unwrap();
    // The handle resolves inside the task's last poll; the worker gives the room back just
    // after, on its own thread.
    while limiter.status().in_flight > 0 {
        tokio::task::yield_now().await;
    }

    let panicked = pool.submit(async { panic!("on purpose") }).await.unwrap();
    assert!(matches!(panicked.await, Err(TaskError::Panicked(_))), "it ran, and panicked");
    // The handle hears of the panic first; the worker reports to the limiter as it drops the
    // task, on its own thread.
    while limiter.status().in_flight > 0 {
        tokio::task::yield_now().await;
    }
    let status = limiter.status();
    assert_eq!((status.succeeded, status.failed, status.rejected_queue_full), (1, 1, 1));
}
