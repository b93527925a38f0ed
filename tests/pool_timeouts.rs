//! Every timeout of `get()`: it fires, names its phase, carries the real cause, and leaks nothing.
//! All on tokio's paused clock, so the tests take no real time.

mod support;

use std::error::Error as _;
use std::time::Duration;

use millpond::pool::{CloseReason, CreateError, Error, Pool, TimeoutPhase};
use support::{Behavior, TestManager, assert_settled, eventually};

#[tokio::test(start_paused = true)]
async fn a_full_pool_times_out_in_the_wait_phase() {
    let (manager, probe) = TestManager::new();
    let pool =
        Pool::builder(manager).max_size(1).acquire_timeout(Duration::from_secs(2)).build().unwrap();
    let held = pool.get().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Wait));
    assert!(err.last_create_error().is_none());
    assert!(err.to_string().contains("returned"), "{err}");
    let status = pool.status();
    assert_eq!((status.waiters, status.in_use), (0, 1), "the timed-out caller left the queue");
    assert_eq!(pool.metrics().gets_timed_out, 1);
    drop(held);
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn failing_creations_time_out_in_the_create_phase_with_the_real_cause() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let pool = Pool::builder(manager)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(1))
        .disable_breaker()
        .build()
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Create));
    let cause = err.last_create_error().expect("the create error is kept");
    assert_eq!(cause.to_string(), "creating a resource failed");
    let root = cause.source().expect("the manager's own error is the root");
    assert_eq!(root.to_string(), "connection refused");
    assert_eq!(err.manager_error().unwrap().0, "connection refused");
    assert_eq!(
        err.to_string(),
        "timed out waiting for a resource to be created; last error: creating a resource failed: \
         connection refused"
    );
    assert!(probe.create_calls() > 1, "creation was retried with backoff");
    eventually("the retries stop", Duration::from_secs(30), || pool.status().creating == 0).await;
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_create_hits_the_create_timeout() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Hang);
    let pool = Pool::builder(manager)
        .max_size(1)
        .create_timeout(Duration::from_millis(300))
        .acquire_timeout(Duration::from_secs(1))
        .disable_breaker()
        .build()
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Create));
    assert!(
        matches!(err.last_create_error(), Some(CreateError::TimedOut(after)) if *after == Duration::from_millis(300)),
        "{err:?}"
    );
    eventually("the retries stop", Duration::from_secs(30), || pool.status().creating == 0).await;
    assert_eq!(pool.metrics().create_failures as usize, probe.create_calls());
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_closes_the_resource_and_get_moves_on() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(1)
        .check_window(Duration::ZERO)
        .check_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    probe.set_check(Behavior::Hang);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 1, "the hung resource was replaced");
    assert_eq!(probe.closed_reasons(), vec![CloseReason::Broken]);
    assert_eq!(probe.check_calls(), 1, "a brand-new resource is not checked");
    drop(conn);
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn a_check_outlasting_the_acquire_deadline_times_out_in_the_check_phase() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(1)
        .check_window(Duration::ZERO)
        .check_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    probe.set_check(Behavior::Hang);
    let err = pool.get().await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Check));
    assert_eq!(probe.closed_reasons(), vec![CloseReason::Broken], "the half-checked one is closed");
    assert_settled(&pool, &probe);
    assert_eq!(pool.status().size, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_check_closes_the_resource_and_get_moves_on() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(2).check_window(Duration::ZERO).build().unwrap();
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop((a, b));
    probe.set_check(Behavior::Fail);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 2, "both idle resources failed their check and were replaced");
    assert_eq!(probe.closed_count(CloseReason::Broken), 2);
}

#[tokio::test(start_paused = true)]
async fn recently_used_resources_skip_the_check() {
    let (manager, probe) = TestManager::new();
    let pool =
        Pool::builder(manager).max_size(1).check_window(Duration::from_secs(1)).build().unwrap();
    drop(pool.get().await.unwrap());
    drop(pool.get().await.unwrap());
    assert_eq!(probe.check_calls(), 0);
    tokio::time::advance(Duration::from_secs(2)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(probe.check_calls(), 1, "idle past the window: checked");

    // The default window is 500 ms.
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    drop(pool.get().await.unwrap());
    tokio::time::advance(Duration::from_millis(499)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(probe.check_calls(), 0, "used 499 ms ago: not checked");
    tokio::time::advance(Duration::from_millis(500)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(probe.check_calls(), 1, "idle 500 ms: checked");
}

#[tokio::test(start_paused = true)]
async fn a_shorter_get_timeout_fires_before_earlier_waiters() {
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let patient = support::spawn_get(&pool);
    eventually("the first caller is queued", Duration::from_secs(1), || pool.status().waiters == 1)
        .await;
    let started = tokio::time::Instant::now();
    let err = pool.get_timeout(Duration::from_millis(500)).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert!(err.is_timeout());
    drop(held);
    assert_eq!(patient.await.unwrap().unwrap(), 0, "the patient caller is still served");
}

#[tokio::test(start_paused = true)]
async fn a_zero_timeout_still_takes_an_idle_resource() {
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    drop(pool.get().await.unwrap());
    assert!(pool.get_timeout(Duration::ZERO).await.is_ok());
    let held = pool.get().await.unwrap();
    let err = pool.get_timeout(Duration::ZERO).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { phase: TimeoutPhase::Wait, .. }), "{err:?}");
    drop(held);
}
