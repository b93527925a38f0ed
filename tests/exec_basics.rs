//! Worker pools: submitting, results, errors that give the task back, keyed order, panics,
//! abort, statistics and configuration.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millpond::balance::{Balance, Balancer, Loads};
use millpond::exec::{Scheduler, SubmitError, TaskError, WorkerPool};
use tokio::sync::oneshot;

fn schedulers() -> Vec<Scheduler> {
    vec![
        Scheduler::shared_queue(),
        Scheduler::per_worker(Balance::RoundRobin),
        Scheduler::per_worker(Balance::LeastLoaded).stealing(true),
        Scheduler::per_worker(Balance::PowerOfTwo),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_tasks_return_their_output() {
    for scheduler in schedulers() {
        let pool = WorkerPool::builder().workers(4).scheduler(scheduler).build().unwrap();
        let mut handles = Vec::new();
        for n in 0..100u64 {
            handles.push(pool.submit(async move { n * 2 }).await.unwrap());
        }
        for (n, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.await.unwrap(), n as u64 * 2);
        }
        pool.shutdown().await;
        let stats = pool.stats();
        assert_eq!(stats.completed, 100);
        assert_eq!(stats.workers, 0);
        assert_eq!(stats.queue_wait.count(), 100);
    }
}

#[tokio::test]
async fn try_submit_gives_the_task_back_when_full_or_closed() {
    let pool = WorkerPool::builder().workers(1).queue_capacity(1).build().unwrap();
    let (release, blocker) = oneshot::channel::<()>();
    let (started_tx, started) = oneshot::channel::<()>();
    let running = pool
        .submit(async move {
            started_tx.send(()).unwrap();
            blocker.await.unwrap();
        })
        .await
        .unwrap();
    started.await.unwrap(); // the worker is busy, the queue empty
    let queued = pool.try_submit(async { 1 }).unwrap();
    match pool.try_submit(async { 2 }) {
        Err(SubmitError::Full(task)) => assert_eq!(task.await, 2),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(pool.stats().rejected, 1);
    release.send(()).unwrap();
    running.await.unwrap();
    assert_eq!(queued.await.unwrap(), 1);
    pool.shutdown().await;
    let err = pool.try_submit(async { 3 }).unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert_eq!(err.into_inner().await, 3);
    assert!(pool.is_shut_down());
}

#[tokio::test(start_paused = true)]
async fn submit_waits_for_room_and_submit_timeout_gives_up() {
    let pool = WorkerPool::builder().workers(1).queue_capacity(1).build().unwrap();
    let (release, blocker) = oneshot::channel::<()>();
    let _running = pool.submit(async move { blocker.await.unwrap() }).await.unwrap();
    tokio::task::yield_now().await;
    let _queued = pool.submit(async {}).await.unwrap();
    let err = pool.submit_timeout(async { 5 }, Duration::from_millis(50)).await.unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(err.into_inner().await, 5);
    let pool = Arc::new(pool);
    let (submitted_tx, submitted) = oneshot::channel::<()>();
    let waiting = tokio::spawn({
        let waiter = Arc::clone(&pool);
        async move {
            let handle = waiter.submit(async { 6 }).await.unwrap();
            submitted_tx.send(()).unwrap();
            handle.await.unwrap()
        }
    });
    // The waiter runs until its submit blocks; nothing it could do would finish on its own now.
    tokio::task::yield_now().await;
    assert_eq!(pool.stats().queued, 1, "the queue is full and the waiter has not got in");
    release.send(()).unwrap();
    submitted.await.unwrap();
    let value = waiting.await.unwrap();
    assert_eq!(value, 6);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_task_does_not_hold_up_the_shared_queue() {
    let pool =
        WorkerPool::builder().workers(2).scheduler(Scheduler::shared_queue()).build().unwrap();
    let start = tokio::time::Instant::now();
    let slow = pool.submit(tokio::time::sleep(Duration::from_secs(10))).await.unwrap();
    let quick = pool.submit(async { 1 }).await.unwrap();
    assert_eq!(quick.await.unwrap(), 1);
    // The paused clock only moves when every task waits on it: behind the sleep, it would
    // read 10 s here.
    assert_eq!(start.elapsed(), Duration::ZERO, "the idle worker took the task behind the sleep");
    slow.await.unwrap();
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stats_report_the_queue_wait_tasks_had() {
    let pool = WorkerPool::builder().workers(1).queue_capacity(16).build().unwrap();
    let blocker = pool.submit(tokio::time::sleep(Duration::from_millis(50))).await.unwrap();
    let queued: Vec<_> = (0..10).map(|n| pool.try_submit(async move { n }).unwrap()).collect();
    blocker.await.unwrap();
    for handle in queued {
        handle.await.unwrap();
    }
    let wait = pool.stats().queue_wait;
    assert_eq!(wait.count(), 11);
    // Ten of the eleven waited exactly 50 ms behind the blocker; the histogram is within 25 %.
    let p99 = wait.quantile(0.99);
    assert!(
        (Duration::from_millis(50)..=Duration::from_micros(62_500)).contains(&p99),
        "p99 {p99:?}"
    );
    assert_eq!(wait.quantile(0.05), Duration::ZERO, "the blocker itself did not wait");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_tasks_run_in_order_per_key() {
    let pool = WorkerPool::builder()
        .workers(4)
        .queue_capacity(8)
        .scheduler(Scheduler::per_worker(Balance::PowerOfTwo).stealing(true))
        .build()
        .unwrap();
    let seen: Arc<Mutex<Vec<Vec<u32>>>> = Arc::new(Mutex::new(vec![Vec::new(); 5]));
    for step in 0..200u32 {
        let key = u64::from(step % 5);
        let seen = Arc::clone(&seen);
        let _detached = pool
            .submit_keyed(key, async move {
                if step % 7 == 0 {
                    tokio::task::yield_now().await;
                }
                seen.lock().unwrap()[key as usize].push(step);
            })
            .await
            .unwrap();
        // Unkeyed work in between, for the thieves.
        pool.execute(async { tokio::task::yield_now().await }).await.unwrap();
    }
    pool.shutdown().await;
    for (key, steps) in seen.lock().unwrap().iter().enumerate() {
        let expected: Vec<u32> = (0..200).filter(|step| step % 5 == key as u32).collect();
        assert_eq!(steps, &expected, "key {key} out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_is_reported_and_the_worker_survives() {
    let messages = Arc::new(Mutex::new(Vec::new()));
    let hook_messages = Arc::clone(&messages);
    let pool = WorkerPool::builder()
        .workers(1)
        .panic_hook(move |message| hook_messages.lock().unwrap().push(message.to_owned()))
        .build()
        .unwrap();
    let failed = pool.submit(async { panic!("boom") }).await.unwrap();
    assert_eq!(failed.await.unwrap_err(), TaskError::Panicked("boom".to_owned()));
    pool.execute(async { panic!("quiet") }).await.unwrap();
    let after = pool.submit(async { "still here" }).await.unwrap();
    assert_eq!(after.await.unwrap(), "still here");
    pool.shutdown().await;
    assert_eq!(*messages.lock().unwrap(), ["boom", "quiet"]);
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.completed), (2, 3));
}

#[tokio::test]
async fn abort_stops_queued_and_running_tasks_and_dropping_a_handle_does_not() {
    let pool = WorkerPool::builder().workers(1).queue_capacity(4).build().unwrap();
    let (_never, pending) = oneshot::channel::<()>();
    let (started_tx, started) = oneshot::channel::<()>();
    let ran = Arc::new(AtomicUsize::new(0));
    let running = pool
        .submit(async move {
            started_tx.send(()).unwrap();
            let _ = pending.await;
        })
        .await
        .unwrap();
    started.await.unwrap();
    let counter = Arc::clone(&ran);
    let queued = pool.submit(async move { counter.fetch_add(1, Ordering::SeqCst) }).await.unwrap();
    let counter = Arc::clone(&ran);
    let detached =
        pool.submit(async move { counter.fetch_add(10, Ordering::SeqCst) }).await.unwrap();
    drop(detached);
    queued.abort();
    running.abort();
    assert_eq!(running.await.unwrap_err(), TaskError::Aborted);
    assert_eq!(queued.await.unwrap_err(), TaskError::Aborted);
    pool.shutdown().await;
    assert_eq!(ran.load(Ordering::SeqCst), 10, "the aborted task never ran, the detached one did");
}

#[tokio::test]
async fn a_task_waiting_on_its_own_full_pool_is_refused() {
    let pool = Arc::new(WorkerPool::builder().workers(1).queue_capacity(1).build().unwrap());
    let inner = Arc::clone(&pool);
    let outcome = pool
        .submit(async move {
            let _queued = inner.try_submit(async {}).expect("room for one");
            // The queue is now full and this task is its only worker.
            match inner.submit(async {}).await {
                Err(err) => err.is_would_deadlock(),
                Ok(_) => false,
            }
        })
        .await
        .unwrap();
    assert!(outcome.await.unwrap());
    pool.shutdown().await;
}

/// Piles every unkeyed task on the first worker.
#[derive(Debug)]
struct FirstWorker;

impl Balancer for FirstWorker {
    fn pick(&self, _loads: &dyn Loads, _key: Option<u64>) -> usize {
        0
    }

    fn reads_loads(&self) -> bool {
        false
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_worker_steals_a_task_queued_behind_a_stuck_one() {
    let pool = WorkerPool::builder()
        .workers(2)
        .queue_capacity(4)
        .scheduler(Scheduler::per_worker(Balance::Custom(Arc::new(FirstWorker))).stealing(true))
        .build()
        .unwrap();
    let (release, stuck) = oneshot::channel::<()>();
    let (started_tx, started) = oneshot::channel::<()>();
    let stuck = pool
        .submit(async move {
            started_tx.send(()).unwrap();
            stuck.await.unwrap();
        })
        .await
        .unwrap();
    started.await.unwrap();
    // Queued on the first worker, behind a task that cannot finish until it has run: only the
    // second worker can run it, and only by stealing it. The paused clock jumps to the
    // deadline as soon as nothing can run, so a pool that never steals fails at once.
    let behind = pool.submit(async { 7 }).await.unwrap();
    let ran = tokio::time::timeout(Duration::from_secs(60), behind).await;
    assert_eq!(ran.expect("the idle worker never stole the queued task").unwrap(), 7);
    release.send(()).unwrap();
    stuck.await.unwrap();
    pool.shutdown().await;
}

#[tokio::test]
async fn invalid_configurations_name_their_field() {
    let cases = [
        (WorkerPool::builder().workers(0).build().unwrap_err(), "max_workers"),
        (WorkerPool::builder().max_workers(1 << 21).build().unwrap_err(), "max_workers"),
        (WorkerPool::builder().queue_capacity(0).build().unwrap_err(), "queue_capacity"),
        (WorkerPool::builder().min_workers(5).max_workers(2).build().unwrap_err(), "min_workers"),
        (
            WorkerPool::builder()
                .min_workers(1)
                .max_workers(4)
                .scheduler(Scheduler::per_worker(Balance::RoundRobin))
                .build()
                .unwrap_err(),
            "min_workers",
        ),
        (
            WorkerPool::builder()
                .workers(4)
                .queue_capacity(2)
                .scheduler(Scheduler::per_worker(Balance::RoundRobin))
                .build()
                .unwrap_err(),
            "queue_capacity",
        ),
        (
            WorkerPool::builder()
                .workers(2)
                .scheduler(Scheduler::per_worker(Balance::WeightedRoundRobin(vec![])))
                .build()
                .unwrap_err(),
            "weights",
        ),
        (
            WorkerPool::builder()
                .workers(2)
                .scheduler(Scheduler::per_worker(Balance::WeightedRandom(vec![0, 0])))
                .build()
                .unwrap_err(),
            "weights",
        ),
    ];
    for (error, field) in cases {
        assert_eq!(error.field(), Some(field), "{error}");
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[test]
fn building_outside_a_runtime_is_an_error() {
    assert!(WorkerPool::builder().build().unwrap_err().is_no_runtime());
}

#[tokio::test(start_paused = true)]
async fn keyed_submits_have_try_and_timeout_variants_that_give_the_task_back() {
    let pool = Arc::new(
        WorkerPool::builder()
            .workers(2)
            .queue_capacity(2)
            .scheduler(Scheduler::per_worker(Balance::RoundRobin))
            .build()
            .unwrap(),
    );
    // One key, so one worker with room for one queued task: block the worker, fill its queue.
    let key = 7;
    let (release, stuck) = oneshot::channel::<()>();
    let (started_tx, started) = oneshot::channel::<()>();
    let blocker = pool
        .try_submit_keyed(key, async move {
            started_tx.send(()).unwrap();
            stuck.await.unwrap();
        })
        .unwrap();
    started.await.unwrap();
    let queued = pool.try_submit_keyed(key, async { 1 }).unwrap();
    // The other worker is idle with an empty queue, but a keyed task never goes there.
    match pool.try_submit_keyed(key, async { 2 }) {
        Err(SubmitError::Full(task)) => assert_eq!(task.await, 2),
        other => panic!("expected Full, got ok = {}", other.is_ok()),
    }
    let start = tokio::time::Instant::now();
    match pool.submit_keyed_timeout(key, async { 3 }, Duration::from_millis(50)).await {
        Err(SubmitError::Timeout(task)) => assert_eq!(task.await, 3),
        other => panic!("expected Timeout, got ok = {}", other.is_ok()),
    }
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    // With room again, the timed submit gets in and runs after the earlier task of its key.
    let waiting = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move { pool.submit_keyed_timeout(key, async { 4 }, Duration::from_secs(60)).await }
    });
    release.send(()).unwrap();
    blocker.await.unwrap();
    assert_eq!(queued.await.unwrap(), 1);
    assert_eq!(waiting.await.unwrap().unwrap().await.unwrap(), 4);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_how_long_tasks_ran() {
    for scheduler in schedulers() {
        let pool = WorkerPool::builder().workers(2).scheduler(scheduler).build().unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                // The sleep starts when the task does, not when it is queued.
                pool.try_submit(async { tokio::time::sleep(Duration::from_millis(20)).await })
                    .unwrap()
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        // A handle resolves as its task ends, just before the worker records it; the workers
        // have recorded everything once they have exited.
        pool.shutdown().await;
        let stats = pool.stats();
        assert_eq!(stats.run_time.count(), 4);
        // Each slept at least 20 ms; the histogram is within 25 %.
        assert!(stats.run_time.quantile(0.01) >= Duration::from_millis(15), "{:?}", stats.run_time);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_worker_lets_other_tasks_on_its_thread_run() {
    let pool = WorkerPool::builder().workers(1).queue_capacity(1_000).build().unwrap();
    let other_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen_by = Arc::new(AtomicUsize::new(0));
    // A thousand tasks that are ready at once, queued before the worker first runs.
    let handles: Vec<_> = (0..1_000)
        .map(|_| {
            let (other_ran, seen_by) = (Arc::clone(&other_ran), Arc::clone(&seen_by));
            pool.try_submit(async move {
                if other_ran.load(Ordering::Relaxed) {
                    seen_by.fetch_add(1, Ordering::Relaxed);
                }
            })
            .unwrap()
        })
        .collect();
    let flag = Arc::clone(&other_ran);
    let other = tokio::spawn(async move { flag.store(true, Ordering::Relaxed) });
    for handle in handles {
        handle.await.unwrap();
    }
    other.await.unwrap();
    // A worker that never yielded would run all thousand before the other task got the thread.
    assert!(seen_by.load(Ordering::Relaxed) > 0, "the worker kept the thread for its whole queue");
    pool.shutdown().await;
}
