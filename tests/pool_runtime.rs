//! A pool that outlives the runtime it was built on, as a `static` pool shared by
//! `#[tokio::test]`s does: its background work (creations, waiter deadlines, maintenance) moves
//! to the runtime of the next caller, and no call hangs.
//!
//! Each test builds the pool on one runtime, drops that runtime, and uses the pool from another.
//! A generous `tokio::time::timeout` around each call only detects a hang (on the paused clock it
//! costs no real time); the assertions are about the outcome.

mod support;

use std::time::Duration;

use millpond::pool::{Pool, Pooled, TimeoutPhase};
use support::TestManager;
use support::runtime::{no_hang, runtime};
use tokio::runtime::Runtime;

/// A pool with up to `max_size` resources, built on a runtime that is gone when this returns.
fn orphaned_pool(max_size: usize) -> Pool<TestManager> {
    let first = runtime();
    let (manager, _probe) = TestManager::new();
    let pool = first.block_on(async {
        Pool::builder(manager)
            .max_size(max_size)
            .acquire_timeout(Duration::from_millis(200))
            .build()
            .unwrap()
    });
    drop(first);
    pool
}

#[test]
fn get_creates_on_the_callers_runtime_when_the_pools_runtime_is_gone() {
    let pool = orphaned_pool(2);
    let second = runtime();
    let conn = no_hang(&second, "get", pool.get()).expect("created on the caller's runtime");
    drop(conn);
    // The pool follows its callers from runtime to runtime, as across `#[tokio::test]`s.
    drop(second);
    let third = runtime();
    let idle = no_hang(&third, "get", pool.get()).expect("the idle resource");
    let fresh = no_hang(&third, "get", pool.get()).expect("created on the third runtime");
    assert_ne!(idle.id, fresh.id);
}

#[test]
fn a_queued_get_times_out_at_its_deadline_when_the_pools_runtime_is_gone() {
    let first = runtime();
    let (pool, held) = one_held(&first);
    drop(first);
    let second = runtime();
    let err = no_hang(&second, "get", pool.get()).expect_err("the only resource is held");
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Wait), "{err}");
    let err = no_hang(&second, "get_timeout", pool.get_timeout(Duration::from_millis(50)))
        .expect_err("the only resource is held");
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Wait), "{err}");
    drop(held);
    no_hang(&second, "get", pool.get()).expect("the returned resource");
}

#[test]
fn try_get_and_drain_answer_when_the_pools_runtime_is_gone() {
    let pool = orphaned_pool(1);
    let second = runtime();
    assert!(pool.try_get().is_err(), "nothing idle yet, and try_get never waits");
    let conn = no_hang(&second, "get", pool.get()).unwrap();
    drop(conn);
    let conn = pool.try_get().expect("the idle resource");
    drop(conn);
    no_hang(&second, "drain", pool.drain(Duration::from_secs(1))).expect("nothing is out");
}

#[test]
fn the_multiplexed_view_lends_when_the_pools_runtime_is_gone() {
    let pool = orphaned_pool(1);
    let second = runtime();
    let view = pool.multiplexed(2).unwrap();
    let first = no_hang(&second, "multiplexed get", view.get()).expect("created on this runtime");
    let shared = no_hang(&second, "multiplexed get", view.get()).expect("lent a second time");
    drop((first, shared));
}

/// A caller on one runtime waits on work that the pool's runtime was doing when that runtime
/// shut down (as a `#[tokio::test]` does on a `static` pool whose builder's test just ended):
/// the work moves to the waiting caller's runtime at once.
#[test]
fn a_caller_waiting_when_the_pools_runtime_shuts_down_is_still_served() {
    let first = runtime();
    let (manager, _probe) = TestManager::new();
    let pool = first.block_on(async {
        Pool::builder(manager).max_size(1).acquire_timeout(Duration::from_secs(5)).build().unwrap()
    });
    let second = runtime();
    let mut get = Box::pin(pool.get());
    // Queued, with its creation spawned on the first runtime, which never runs it.
    second.block_on(async { assert!(futures::poll!(&mut get).is_pending()) });
    drop(first);
    no_hang(&second, "a queued get", get).expect("created on the waiting caller's runtime");
}

/// A pool of one resource with a 200 ms acquire timeout, built on `runtime`, and its resource
/// checked out.
fn one_held(runtime: &Runtime) -> (Pool<TestManager>, Pooled<TestManager>) {
    let (manager, _probe) = TestManager::new();
    runtime.block_on(async {
        let pool = Pool::builder(manager)
            .max_size(1)
            .acquire_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let held = pool.get().await.unwrap();
        (pool, held)
    })
}

#[test]
fn a_deadline_queued_when_the_pools_runtime_shuts_down_is_still_kept() {
    let first = runtime();
    let (pool, held) = one_held(&first);
    let second = runtime();
    let mut get = Box::pin(pool.get());
    // Queued behind the deadline the first caller armed, which the pool still holds.
    second.block_on(async { assert!(futures::poll!(&mut get).is_pending()) });
    // The expiry task that holds the queued caller's deadline dies with the first runtime.
    drop(first);
    let err = no_hang(&second, "a queued get", get).expect_err("the only resource is held");
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Wait), "{err}");
    drop(held);
}

/// A caller that queues behind a deadline the pool already has armed, with no creation to wait
/// on, leaves no runtime in reserve: when the pool's runtime goes, nothing would enforce its
/// deadline or hand it what comes back unless it is woken to move the pool itself.
#[test]
fn a_get_queued_behind_an_armed_deadline_is_kept_when_the_pools_runtime_shuts_down() {
    let first = runtime();
    let (pool, held) = one_held(&first);
    let second = runtime();
    // Both queue on the second runtime, behind the first caller's deadline (still armed): they
    // arm nothing and leave no runtime in reserve.
    let mut early = Box::pin(pool.get());
    let mut late = Box::pin(pool.get_timeout(Duration::from_secs(10)));
    second.block_on(async {
        assert!(futures::poll!(&mut early).is_pending());
        assert!(futures::poll!(&mut late).is_pending());
    });
    drop(first);
    // Woken, they move the pool to the second runtime: the early deadline is kept, and the
    // resource given back there reaches the later caller.
    let err = no_hang(&second, "the early get", early).expect_err("the only resource is held");
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Wait), "{err}");
    second.block_on(async { drop(held) });
    no_hang(&second, "the late get", late).expect("the returned resource");
}
