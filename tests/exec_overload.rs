//! Worker pools under overload, on tokio's paused clock: rate limits at submit, stale tasks
//! shed, and low-priority work refused and shed while the pool is over its limits, then
//! admitted again.

#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millpond::exec::{Priority, SubmitError, TaskError, WorkerPool};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Occupies the pool's only worker, once it has started, until the returned sender is used
/// (or dropped).
async fn block_worker(pool: &WorkerPool) -> oneshot::Sender<()> {
    let (release, released) = oneshot::channel::<()>();
    let (started, running) = oneshot::channel::<()>();
    pool.try_execute(async move {
        let _ = started.send(());
        let _ = released.await;
    })
    .expect("the blocker is admitted");
    running.await.expect("the blocker starts");
    release
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_refuses_beyond_the_burst_and_refills_at_the_rate() {
    let pool = WorkerPool::builder().workers(1).rate_limit(10.0, 3).build().unwrap();
    for _ in 0..3 {
        pool.try_execute(async {}).unwrap();
    }
    let refused = pool.try_submit(async { 7 }).unwrap_err();
    assert!(refused.is_rate_limited(), "{refused}");
    let task = refused.into_inner();
    tokio::time::advance(Duration::from_millis(100)).await;
    let handle = pool.try_submit(task).expect("one token came back after 100 ms");
    assert_eq!(handle.await.unwrap(), 7);
    assert_eq!(pool.stats().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_rate() {
    let pool = WorkerPool::builder()
        .workers(1)
        .queue_capacity(2)
        .rate_limit_per_key(1.0, 2)
        .build()
        .unwrap();
    let release = block_worker(&pool).await;
    drop(pool.submit_keyed(1, async {}).await.unwrap());
    drop(pool.submit_keyed(1, async {}).await.unwrap());
    // The queue is full as well: the refusal comes at once, not after waiting for room.
    let start = Instant::now();
    let refused = tokio::time::timeout(Duration::from_secs(1), pool.submit_keyed(1, async {}))
        .await
        .expect("refused without waiting for room");
    assert!(matches!(refused, Err(SubmitError::RateLimited(_))));
    assert_eq!(start.elapsed(), Duration::ZERO);
    release.send(()).unwrap();
    drop(pool.submit_keyed(2, async {}).await.expect("another key is not held back"));
    drop(pool.submit(async {}).await.expect("tasks without a key are not limited per key"));
}

#[tokio::test(start_paused = true)]
async fn a_task_that_waited_too_long_is_shed_not_run() {
    let pool =
        WorkerPool::builder().workers(1).max_queue_wait(Duration::from_millis(50)).build().unwrap();
    let release = block_worker(&pool).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let stale = pool
        .submit({
            let ran = Arc::clone(&ran);
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
            }
        })
        .await
        .unwrap();
    tokio::time::advance(Duration::from_millis(60)).await;
    release.send(()).unwrap();
    assert_eq!(stale.await.unwrap_err(), TaskError::Shed);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(pool.stats().shed, 1);

    // A task that did not wait long runs.
    assert_eq!(pool.submit(async { 1 }).await.unwrap().await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn low_priority_work_gives_way_under_overload_and_comes_back_after() {
    let pool =
        WorkerPool::builder().workers(1).queue_capacity(16).overload_queue_len(2).build().unwrap();
    let release = block_worker(&pool).await;
    // Queued before the overload: shed when the worker reaches it while still overloaded.
    let early_low = pool.submit_with(Priority::Low, async { "low" }).await.unwrap();
    let high: Vec<_> = (0..3).map(|n| pool.try_submit(async move { n }).unwrap()).collect();

    // 4 queued > 2: low priority is refused, high priority is not.
    let refused = pool.try_submit_with(Priority::Low, async { "late low" }).unwrap_err();
    assert!(refused.is_overloaded(), "{refused}");
    let late_high =
        pool.try_submit_with(Priority::High, async { 3 }).expect("core work is admitted");

    release.send(()).unwrap();
    assert_eq!(early_low.await.unwrap_err(), TaskError::Shed);
    for (n, handle) in high.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap(), n);
    }
    assert_eq!(late_high.await.unwrap(), 3);

    // The queue drained: low priority is welcome again.
    let low = pool.submit_with(Priority::Low, async { "low again" }).await.unwrap();
    assert_eq!(low.await.unwrap(), "low again");
    let stats = pool.stats();
    assert_eq!((stats.shed, stats.rejected), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn low_priority_runs_in_order_without_overload() {
    let pool = WorkerPool::builder()
        .workers(1)
        .queue_capacity(256)
        .overload_queue_len(128)
        .build()
        .unwrap();
    let release = block_worker(&pool).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for n in 0..100_usize {
        let priority = if n % 2 == 0 { Priority::Low } else { Priority::High };
        let order = Arc::clone(&order);
        let task = async move { order.lock().unwrap().push(n) };
        handles.push(pool.try_submit_with(priority, task).expect("admitted under the limit"));
    }
    release.send(()).unwrap();
    for handle in handles {
        handle.await.expect("run, not shed");
    }
    assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>(), "first in, first out");
    let stats = pool.stats();
    assert_eq!((stats.shed, stats.rejected), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_standing_queue_counts_as_overload_too() {
    let pool = WorkerPool::builder()
        .workers(1)
        .overload_queue_wait(Duration::from_millis(20))
        .build()
        .unwrap();
    let release = block_worker(&pool).await;
    let waited = pool.submit(async {}).await.unwrap();
    let blocker_two = {
        let (tx, rx) = oneshot::channel::<()>();
        (
            pool.submit(async move {
                let _ = rx.await;
            })
            .await
            .unwrap(),
            tx,
        )
    };
    tokio::time::advance(Duration::from_millis(30)).await;
    release.send(()).unwrap();
    waited.await.unwrap();
    // Of the tasks started lately, one in three had waited 30 ms: the p99 is above 20 ms.
    assert!(pool.try_submit_with(Priority::Low, async {}).unwrap_err().is_overloaded());
    blocker_two.1.send(()).unwrap();
    blocker_two.0.await.unwrap();
    // The waits age out of the tail's window (100–200 ms): the overload is over.
    tokio::time::advance(Duration::from_millis(250)).await;
    pool.try_submit_with(Priority::Low, async {}).expect("admitted again").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bad_admission_settings_are_rejected_naming_the_field() {
    let field = |builder: millpond::exec::WorkerPoolBuilder| builder.build().unwrap_err().field();
    assert_eq!(field(WorkerPool::builder().rate_limit(0.0, 1)), Some("rate_limit"));
    assert_eq!(field(WorkerPool::builder().rate_limit(10.0, 0)), Some("rate_limit"));
    // Rates too slow to represent are refused at build, not left to overflow at submit.
    let slow = WorkerPool::builder().rate_limit(1e-12, 1).build().unwrap_err();
    assert_eq!(slow.field(), Some("rate_limit"));
    assert!(slow.to_string().contains("1e-12"), "{slow}");
    assert_eq!(
        field(WorkerPool::builder().rate_limit_per_key(f64::NAN, 1)),
        Some("rate_limit_per_key")
    );
    assert_eq!(field(WorkerPool::builder().max_queue_wait(Duration::ZERO)), Some("max_queue_wait"));
    assert_eq!(
        field(WorkerPool::builder().queue_capacity(8).overload_queue_len(8)),
        Some("overload_queue_len")
    );
    assert_eq!(field(WorkerPool::builder().overload_queue_len(0)), Some("overload_queue_len"));
    assert_eq!(
        field(
            WorkerPool::builder()
                .max_queue_wait(Duration::from_millis(10))
                .overload_queue_wait(Duration::from_millis(20))
        ),
        Some("overload_queue_wait")
    );
}

/// Three priorities, two degradation levels: past the queue threshold Low is refused; past
/// twice the threshold Normal too; High never. The fallback runs for what is refused or shed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_work_is_refused_only_twice_over_the_limit_and_falls_back() {
    use millpond::exec::Degraded;
    let pool =
        WorkerPool::builder().workers(1).queue_capacity(64).overload_queue_len(4).build().unwrap();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let blocker = {
        let gate = gate.clone();
        pool.submit(async move { gate.acquire().await.unwrap().forget() }).await.unwrap()
    };
    let mut queued = Vec::new();
    let fill_to = |count: usize, queued: &mut Vec<_>| {
        while pool.stats().queued < count {
            queued.push(pool.try_submit(async {}).unwrap());
        }
    };
    fill_to(3, &mut queued);
    assert_eq!(pool.stats().degradation, 0);
    fill_to(5, &mut queued);
    assert_eq!(pool.stats().degradation, 1);
    assert!(matches!(
        pool.submit_with(Priority::Low, async {}).await,
        Err(SubmitError::Overloaded(_))
    ));
    queued.push(
        pool.submit_with(Priority::Normal, async {}).await.expect("Normal passes at level 1"),
    );
    fill_to(9, &mut queued);
    assert_eq!(pool.stats().degradation, 2);
    assert!(matches!(
        pool.submit_with(Priority::Normal, async {}).await,
        Err(SubmitError::Overloaded(_))
    ));
    queued.push(pool.submit_with(Priority::High, async {}).await.expect("High always passes"));
    let degraded = pool
        .run_or_else(Priority::Normal, async { "fresh" }, |why| async move {
            assert!(matches!(why, Degraded::Refused(SubmitError::Overloaded(()))), "{why:?}");
            "cached"
        })
        .await
        .unwrap();
    assert_eq!(degraded, "cached");
    gate.add_permits(1);
    blocker.await.unwrap();
    for handle in queued {
        handle.await.unwrap();
    }
    assert_eq!(pool.stats().degradation, 0);
    let fresh = pool.run_or_else(Priority::Normal, async { "fresh" }, |_| async { "cached" }).await;
    assert_eq!(fresh.unwrap(), "fresh");
}
