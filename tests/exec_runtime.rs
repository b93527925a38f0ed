//! A worker pool that outlives the runtime it was built on, as a `static` pool shared by
//! `#[tokio::test]`s does: its workers die with that runtime, the next submit starts them again
//! on its own runtime, and nothing hangs. A submit from outside any runtime gets its task back.
//!
//! Each test builds the pool on one runtime, drops that runtime, and uses the pool from another.
//! A generous `tokio::time::timeout` around each await only detects a hang (on the paused clock
//! it costs no real time); the assertions are about the outcome.

use std::future::Future;
use std::time::Duration;

use millpond::balance::Balance;
use millpond::exec::{Scheduler, TaskError, WorkerPool};
use tokio::runtime::{Builder, Runtime};

fn runtime() -> Runtime {
    Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

/// Runs `call` on `runtime`, failing the test if it has not finished after a minute of the
/// runtime's (paused) clock.
fn no_hang<T>(runtime: &Runtime, what: &str, call: impl Future<Output = T>) -> T {
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .unwrap_or_else(|_| panic!("{what} hung on a worker pool whose runtime is gone"))
    })
}

fn orphaned_pool(scheduler: Scheduler) -> WorkerPool {
    let first = runtime();
    let pool = first.block_on(async {
        WorkerPool::builder().workers(2).queue_capacity(4).scheduler(scheduler).build().unwrap()
    });
    drop(first);
    pool
}

#[test]
fn try_submit_runs_on_the_callers_runtime_when_the_pools_runtime_is_gone() {
    for scheduler in [Scheduler::SharedQueue, Scheduler::per_worker(Balance::RoundRobin)] {
        let pool = orphaned_pool(scheduler);
        let second = runtime();
        let handle = second.block_on(async { pool.try_submit(async { 7 }) }).unwrap();
        assert_eq!(no_hang(&second, "the task's handle", handle).unwrap(), 7);
        // Every lane has a worker again: more tasks than one worker's share all finish.
        let handles: Vec<_> = second.block_on(async {
            (0..4).map(|n| pool.try_submit(async move { n }).unwrap()).collect()
        });
        for (n, handle) in handles.into_iter().enumerate() {
            assert_eq!(no_hang(&second, "the task's handle", handle).unwrap(), n);
        }
        no_hang(&second, "shutdown", pool.shutdown());
    }
}

#[test]
fn waiting_submits_run_on_the_callers_runtime_when_the_pools_runtime_is_gone() {
    let pool = orphaned_pool(Scheduler::SharedQueue);
    let second = runtime();
    let outputs = no_hang(&second, "submit", async {
        let first = pool.submit(async { 1 }).await.unwrap();
        let second = pool.submit_timeout(async { 2 }, Duration::from_secs(1)).await.unwrap();
        pool.execute(async {}).await.unwrap();
        (first.await.unwrap(), second.await.unwrap())
    });
    assert_eq!(outputs, (1, 2));
    // Once more after the second runtime went too: the workers follow the submitters.
    drop(second);
    let third = runtime();
    let output = no_hang(&third, "submit", async { pool.submit(async { 3 }).await.unwrap().await });
    assert_eq!(output.unwrap(), 3);
}

#[test]
fn tasks_left_by_a_runtime_that_went_away_finish_or_say_why() {
    let first = runtime();
    let (pool, running, queued) = first.block_on(async {
        let pool = WorkerPool::builder().workers(1).queue_capacity(4).build().unwrap();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let running = pool
            .try_submit(async move {
                let _ = started_tx.send(());
                std::future::pending::<()>().await;
            })
            .unwrap();
        started_rx.await.unwrap();
        let queued = pool.try_submit(async { "queued" }).unwrap();
        (pool, running, queued)
    });
    drop(first);
    let second = runtime();
    let err = no_hang(&second, "a running task's handle", running).unwrap_err();
    assert_eq!(err, TaskError::Aborted, "its worker was dropped with the runtime");
    // The next submit restarts the worker, which runs what was left queued first.
    let next = second.block_on(async { pool.try_submit(async { "next" }) }).unwrap();
    assert_eq!(no_hang(&second, "a queued task's handle", queued).unwrap(), "queued");
    assert_eq!(no_hang(&second, "the next task's handle", next).unwrap(), "next");
}

#[test]
fn a_submit_from_outside_any_runtime_gets_its_task_back() {
    let pool = orphaned_pool(Scheduler::SharedQueue);
    let err = pool.try_submit(async { 5 }).unwrap_err();
    assert!(err.is_runtime_gone(), "{err:?}");
    assert!(err.to_string().contains("runtime"), "{err}");
    let err = pool.try_execute(async {}).unwrap_err();
    assert!(err.is_runtime_gone(), "{err:?}");
    // Inside a runtime, the same pool works again.
    let second = runtime();
    let handle = second.block_on(async { pool.try_submit(async { 5 }) }).unwrap();
    assert_eq!(no_hang(&second, "the task's handle", handle).unwrap(), 5);
}

#[test]
fn a_submit_waiting_for_room_when_the_pools_runtime_shuts_down_still_gets_in() {
    let first = runtime();
    let (pool, running) = first.block_on(async {
        let pool = WorkerPool::builder().workers(1).queue_capacity(1).build().unwrap();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let running = pool
            .try_submit(async move {
                let _ = started_tx.send(());
                std::future::pending::<()>().await;
            })
            .unwrap();
        started_rx.await.unwrap();
        (pool, running)
    });
    let queued = first.block_on(async { pool.try_submit(async { "queued" }) }).unwrap();
    let second = runtime();
    let mut waiting = Box::pin(pool.submit(async { "waited" }));
    // The queue is full and its only worker is busy on the first runtime, which never runs it.
    second.block_on(async { assert!(futures::poll!(&mut waiting).is_pending()) });
    drop(first);
    let handle = no_hang(&second, "a waiting submit", waiting).expect("room made by a new worker");
    assert_eq!(no_hang(&second, "the running task", running).unwrap_err(), TaskError::Aborted);
    assert_eq!(no_hang(&second, "the queued task", queued).unwrap(), "queued");
    assert_eq!(no_hang(&second, "the waiting task", handle).unwrap(), "waited");
}
