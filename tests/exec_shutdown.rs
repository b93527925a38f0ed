//! Worker pool shutdown: queued work finishes, a deadline aborts what is left, and every pending
//! submit and handle resolves.
#![allow(clippy::disallowed_types)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use millpond::balance::Balance;
use millpond::exec::{Scheduler, TaskError, WorkerPool};
use tokio::sync::oneshot;

fn schedulers() -> Vec<Scheduler> {
    vec![Scheduler::shared_queue(), Scheduler::per_worker(Balance::LeastLoaded).stealing(true)]
}

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_every_queued_task() {
    for scheduler in schedulers() {
        let pool = WorkerPool::builder()
            .workers(2)
            .queue_capacity(64)
            .scheduler(scheduler)
            .build()
            .unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..50 {
            let done = Arc::clone(&done);
            handles.push(
                pool.submit(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                })
                .await
                .unwrap(),
            );
        }
        pool.shutdown().await;
        assert_eq!(done.load(Ordering::SeqCst), 50);
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(pool.stats().workers, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_aborts_what_is_left_and_every_handle_resolves() {
    for scheduler in schedulers() {
        let pool = Arc::new(
            WorkerPool::builder()
                .workers(2)
                .queue_capacity(4)
                .scheduler(scheduler)
                .build()
                .unwrap(),
        );
        let mut handles = Vec::new();
        for _ in 0..6 {
            // Two run (forever), four wait in the queue.
            handles.push(pool.submit(std::future::pending::<()>()).await.unwrap());
        }
        // A submitter waiting for room when the shutdown starts.
        let waiting = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.submit(async {}).await.map(drop).map_err(|err| err.is_closed()) }
        });
        tokio::task::yield_now().await;
        let finished = pool.shutdown_timeout(Duration::from_secs(1)).await;
        assert!(!finished, "two tasks never end");
        assert_eq!(waiting.await.unwrap(), Err(true), "the waiting submit was refused");
        for handle in handles {
            assert_eq!(handle.await.unwrap_err(), TaskError::Aborted);
        }
        assert_eq!(pool.stats().workers, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_returns_true_when_work_ends_in_time() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let handle = pool.submit(tokio::time::sleep(Duration::from_millis(100))).await.unwrap();
    assert!(pool.shutdown_timeout(Duration::from_secs(1)).await);
    handle.await.unwrap();
}

#[tokio::test]
async fn dropping_the_pool_lets_queued_work_finish() {
    let pool = WorkerPool::builder().workers(1).queue_capacity(8).build().unwrap();
    let (release, blocker) = oneshot::channel::<()>();
    let first = pool.submit(async move { blocker.await.unwrap() }).await.unwrap();
    let second = pool.submit(async { 2 }).await.unwrap();
    drop(pool);
    release.send(()).unwrap();
    first.await.unwrap();
    assert_eq!(second.await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_bounded_pool_holds_at_most_capacity_plus_workers_tasks() {
    struct Counted(Arc<AtomicUsize>);
    impl Counted {
        fn new(alive: &Arc<AtomicUsize>, peak: &Arc<AtomicUsize>) -> Self {
            let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            Self(Arc::clone(alive))
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    for scheduler in schedulers() {
        let (capacity, workers) = (8, 2);
        let pool = WorkerPool::builder()
            .workers(workers)
            .queue_capacity(capacity)
            .scheduler(scheduler)
            .build()
            .unwrap();
        let alive = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        for _ in 0..1_000 {
            // The task's state exists only once it is created here, after the previous submit
            // returned: a producer that waits holds one task at most.
            let guard = Counted::new(&alive, &peak);
            pool.execute(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(guard);
            })
            .await
            .unwrap();
        }
        pool.shutdown().await;
        assert_eq!(alive.load(Ordering::SeqCst), 0);
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= capacity + workers + 1, "peak {peak} tasks alive");
        assert!(peak >= capacity, "the queue filled up: peak {peak}");
    }
}
