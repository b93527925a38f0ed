//! The failure matrix: a manager whose `create` and `check` succeed, fail, hang or panic, with
//! `get()` cancelled after each number of polls (or run to completion). After every case the
//! pool's counts must match the resources that exist, nothing may stay queued or creating, and
//! closing the pool must close every resource: no slot, waiter or resource leaks.

mod support;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use millpond::pool::Pool;
use support::{Behavior, TestManager, assert_settled};

const BEHAVIORS: [Behavior; 4] =
    [Behavior::Succeed, Behavior::Fail, Behavior::Hang, Behavior::Panic];

/// How far the `get()` gets before it is dropped.
#[derive(Debug, Clone, Copy)]
enum Cancel {
    AfterPolls(usize),
    Never,
}

const CANCELS: [Cancel; 6] = [
    Cancel::AfterPolls(0),
    Cancel::AfterPolls(1),
    Cancel::AfterPolls(2),
    Cancel::AfterPolls(3),
    Cancel::AfterPolls(5),
    Cancel::Never,
];

/// Polls `get` up to the cancel point, advancing the paused clock between polls so that
/// creations, checks and timeouts make progress. A panic from a hook surfaces as `Err`.
async fn drive<F: Future>(get: F, cancel: Cancel) -> Option<std::thread::Result<F::Output>> {
    let mut get = pin!(AssertUnwindSafe(get).catch_unwind());
    let polls = match cancel {
        Cancel::AfterPolls(polls) => polls,
        Cancel::Never => usize::MAX,
    };
    for _ in 0..polls {
        if let Poll::Ready(outcome) = futures::poll!(get.as_mut()) {
            return Some(outcome);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

async fn run_case(create: Behavior, check: Behavior, cancel: Cancel) {
    let case = format!("create {create:?}, check {check:?}, cancel {cancel:?}");
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(3))
        .create_timeout(Duration::from_secs(1))
        .check_timeout(Duration::from_secs(1))
        .check_window(Duration::ZERO)
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .breaker(3, Duration::from_secs(1))
        .build()
        .unwrap();
    // One idle resource, so `get()` runs `check` before it needs `create`.
    drop(pool.get().await.unwrap());
    probe.set_create(create);
    probe.set_check(check);

    // Two callers, so a creation and a hand-off between them are in play too.
    let first = drive(pool.get(), cancel).await;
    let second = drive(pool.get(), cancel).await;
    for outcome in [first, second].into_iter().flatten() {
        if let Ok(Ok(conn)) = outcome {
            drop(conn);
        }
    }

    // Let creations, retries and the breaker run their course.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let status = pool.status();
    assert_eq!(status.waiters, 0, "{case}: {status:?}");
    assert_eq!(status.creating, 0, "{case}: {status:?}");
    assert_eq!(status.in_use, 0, "{case}: {status:?}");
    assert_settled(&pool, &probe);

    pool.drain(Duration::from_secs(5)).await.unwrap_or_else(|err| panic!("{case}: {err}"));
    assert_eq!(probe.alive(), 0, "{case}: every resource was closed");
}

#[tokio::test(start_paused = true)]
async fn no_hook_outcome_or_cancellation_point_leaks_anything() {
    for create in BEHAVIORS {
        for check in BEHAVIORS {
            for cancel in CANCELS {
                run_case(create, check, cancel).await;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_get_does_not_cancel_its_creation() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Delay(Duration::from_millis(100)));
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let mut get = Box::pin(pool.get());
    assert!(futures::poll!(get.as_mut()).is_pending());
    drop(get);
    assert_eq!(pool.status().creating, 1, "the creation goes on without its caller");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = pool.status();
    assert_eq!((status.size, status.idle, status.creating), (1, 1, 0));
    assert_eq!(pool.metrics().gets_cancelled, 1);
    assert_eq!(probe.create_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_resource_handed_to_a_cancelled_waiter_goes_to_the_next_one() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let mut first = Box::pin(pool.get());
    assert!(futures::poll!(first.as_mut()).is_pending());
    let second = support::spawn_get(&pool);
    support::eventually("both callers are queued", Duration::from_secs(1), || {
        pool.status().waiters == 2
    })
    .await;
    drop(held); // handed to `first`, which is never polled again
    drop(first); // ... and gives it up
    assert_eq!(second.await.unwrap().unwrap(), 0);
    assert_settled(&pool, &probe);
}
