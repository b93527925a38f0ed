//! A worker pool that outlives the runtime it was built on, as a `static` pool shared by
//! `#[tokio::test]`s does: its workers die with that runtime, the next submit starts them again
//! on its own runtime, and nothing hangs. A submit from outside any runtime gets its task back.
//!
//! Each test builds the pool on one runtime, drops that runtime, and uses the pool from another.
//! A generous `tokio::time::timeout` around each await only detects a hang (on the paused clock
//! it costs no real time); the assertions are about the outcome.

mod support;

use std::time::Duration;

use millpond::balance::Balance;
use millpond::exec::{Scheduler, TaskError, TaskHandle, WorkerPool};
use support::runtime::{no_hang, runtime};
use tokio::runtime::Runtime;

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

/// Submits a task that runs forever, once it has started on the pool's only worker.
async fn occupy_the_worker(pool: &WorkerPool) -> TaskHandle<()> {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let running = pool
        .try_submit(async move {
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        })
        .unwrap();
    started_rx.await.unwrap();
    running
}

/// A one-worker pool built on `runtime`, with a task running forever on its worker and one
/// queued behind it.
fn running_and_queued(
    runtime: &Runtime,
    scheduler: Scheduler,
) -> (WorkerPool, TaskHandle<()>, TaskHandle<&'static str>) {
    runtime.block_on(async {
        let pool = WorkerPool::builder()
            .workers(1)
            .queue_capacity(4)
            .scheduler(scheduler)
            .build()
            .unwrap();
        let running = occupy_the_worker(&pool).await;
        let queued = pool.try_submit(async { "queued" }).unwrap();
        (pool, running, queued)
    })
}

#[test]
fn tasks_left_by_a_runtime_that_went_away_finish_or_say_why() {
    let first = runtime();
    let (pool, running, queued) = running_and_queued(&first, Scheduler::SharedQueue);
    drop(first);
    let second = runtime();
    let err = no_hang(&second, "a running task's handle", running).unwrap_err();
    assert_eq!(err, TaskError::Aborted, "its worker was dropped with the runtime");
    // With no submit since: awaiting the handle restarts the worker on this runtime.
    assert_eq!(no_hang(&second, "a queued task's handle", queued).unwrap(), "queued");
    let next = second.block_on(async { pool.try_submit(async { "next" }) }).unwrap();
    assert_eq!(no_hang(&second, "the next task's handle", next).unwrap(), "next");
}

/// Two pools stranded at once: a handle of one moves its own pool to the runtime awaiting it, and
/// leaves the other for that pool's own handles (moved along, it would sit on a runtime nobody
/// drives while its handle waits on another).
#[test]
fn a_handle_rescues_its_own_pool_and_no_other() {
    let first = runtime();
    // Pool A's queued task finishes only once told to, after the second runtime stopped running:
    // if B's handle had moved A there, A's worker would wait on a runtime nobody drives.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (_pool_a, _running_a, queued_a) = first.block_on(async {
        let pool = WorkerPool::builder().workers(1).queue_capacity(4).build().unwrap();
        let running = occupy_the_worker(&pool).await;
        let queued = pool
            .try_submit(async move {
                let _ = go_rx.await;
                "queued"
            })
            .unwrap();
        (pool, running, queued)
    });
    let (_pool_b, _running_b, queued_b) = running_and_queued(&first, Scheduler::SharedQueue);
    drop(first);
    let second = runtime();
    assert_eq!(no_hang(&second, "pool B's queued handle", queued_b).unwrap(), "queued");
    go_tx.send(()).unwrap();
    let third = runtime();
    assert_eq!(no_hang(&third, "pool A's queued handle", queued_a).unwrap(), "queued");
}

/// A handle already awaited on another runtime when the pool's runtime goes, with no runtime in
/// reserve and no submit after: it is woken, and moves the workers to its own runtime.
#[test]
fn a_handle_awaited_when_the_pools_runtime_shuts_down_still_resolves() {
    for scheduler in [Scheduler::SharedQueue, Scheduler::per_worker(Balance::RoundRobin)] {
        let first = runtime();
        let (pool, running, queued) = running_and_queued(&first, scheduler);
        let second = runtime();
        let mut queued = Box::pin(queued);
        second.block_on(async { assert!(futures::poll!(&mut queued).is_pending()) });
        drop(first);
        assert_eq!(no_hang(&second, "a queued task's handle", queued).unwrap(), "queued");
        assert_eq!(no_hang(&second, "a running task's handle", running), Err(TaskError::Aborted));
        no_hang(&second, "shutdown", pool.shutdown());
    }
}

/// A submit waiting for room on another runtime when the pool's runtime goes, whose runtime was
/// pushed out of reserve by later waiters on the pool's own runtime (gone too): it is woken and
/// moves the workers itself.
#[test]
fn a_waiting_submit_moves_the_pool_when_every_runtime_in_reserve_is_gone() {
    let first = runtime();
    let (pool, queued) = first.block_on(async {
        let pool = WorkerPool::builder().workers(1).queue_capacity(1).build().unwrap();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        pool.try_execute(async move {
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        })
        .unwrap();
        started_rx.await.unwrap();
        let queued = pool.try_submit(async { "queued" }).unwrap();
        (pool, queued)
    });
    let second = runtime();
    let mut waiting = Box::pin(pool.submit(async { "waited" }));
    second.block_on(async { assert!(futures::poll!(&mut waiting).is_pending()) });
    // More submits wait on the first runtime after it, each leaving that runtime in reserve.
    let mut on_first: Vec<_> =
        (0..8).map(|_| Box::pin(pool.submit(async { "on first" }))).collect();
    first.block_on(async {
        for submit in &mut on_first {
            assert!(futures::poll!(submit).is_pending());
        }
    });
    drop(first);
    let handle = no_hang(&second, "a waiting submit", waiting).expect("room made by a new worker");
    assert_eq!(no_hang(&second, "the queued task", queued).unwrap(), "queued");
    assert_eq!(no_hang(&second, "the waiting task", handle).unwrap(), "waited");
    drop(on_first);
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
        let running = occupy_the_worker(&pool).await;
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

#[test]
fn dropping_a_runtime_that_a_waiting_submit_once_stood_by_on_does_not_hang() {
    // A submit that waited for room on the pool's own runtime left that runtime in reserve:
    // when it shuts down, the pool "moves" to a runtime that is going too. Starting workers
    // there drops them at once; the shutdown must still end.
    let first = runtime();
    let pool = first.block_on(async {
        let pool = WorkerPool::builder().workers(1).queue_capacity(1).build().unwrap();
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let blocker = pool.try_submit(async move { gate.await.ok() }).unwrap();
        tokio::task::yield_now().await;
        let queued = pool.try_submit(async {}).unwrap();
        let mut waiting = Box::pin(pool.submit(async {}));
        assert!(futures::poll!(&mut waiting).is_pending(), "the queue is full: it waits");
        release.send(()).unwrap();
        let waited = waiting.await.unwrap();
        blocker.await.unwrap();
        queued.await.unwrap();
        waited.await.unwrap();
        // A task still running when the runtime goes.
        let _running = pool.try_submit(std::future::pending::<()>()).unwrap();
        tokio::task::yield_now().await;
        pool
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(first);
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("dropping the runtime hung restarting the pool's workers on it");
    // From another runtime the pool works again.
    let second = runtime();
    let handle = second.block_on(async { pool.try_submit(async { 9 }) }).unwrap();
    assert_eq!(no_hang(&second, "the task's handle", handle).unwrap(), 9);
}

#[test]
fn a_per_worker_pool_moved_while_its_runtime_shuts_down_keeps_a_worker_on_every_lane() {
    let first = runtime();
    let second = runtime();
    let pool = first.block_on(async {
        WorkerPool::builder()
            .workers(4)
            .queue_capacity(4)
            .scheduler(Scheduler::per_worker(Balance::RoundRobin))
            .build()
            .unwrap()
    });
    // Every worker busy and every lane's queue full, on the first runtime.
    let (gates, _running) = first.block_on(async {
        let mut gates = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..4 {
            let (release, gate) = tokio::sync::oneshot::channel::<()>();
            gates.push(release);
            handles.push(pool.try_submit(async move { gate.await.ok() }).unwrap());
        }
        tokio::task::yield_now().await;
        while pool.try_submit(async { None::<()> }).is_ok() {}
        (gates, handles)
    });
    // A submit on the second runtime waits for room, leaving that runtime in reserve.
    let mut waiting = Box::pin(pool.submit(async { Some(()) }));
    second.block_on(async { assert!(futures::poll!(&mut waiting).is_pending()) });
    // The first runtime shuts down: the pool moves to the second at once, and each worker it
    // drops must be replaced on its own lane.
    drop(first);
    drop(gates);
    let waited = no_hang(&second, "the waiting submit", waiting).unwrap();
    assert_eq!(no_hang(&second, "the waiting task", waited).unwrap(), Some(()));
    // Round-robin puts these on every lane in turn: each lane needs its worker.
    let outputs = no_hang(&second, "tasks on every lane", async {
        let mut handles = Vec::new();
        for n in 0..8 {
            handles.push(pool.submit(async move { n }).await.unwrap());
        }
        let mut outputs = Vec::new();
        for handle in handles {
            outputs.push(handle.await.unwrap());
        }
        outputs
    });
    assert_eq!(outputs, (0..8).collect::<Vec<_>>());
}
