//! How the pool creates: bounded and elided under a spike, retried with backoff, and cut off by
//! the circuit breaker while the backend is down. On a paused clock.

mod support;

use std::error::Error as _;
use std::time::Duration;

use std::sync::Arc;

use millpond::pool::{CreateError, Error, Pool, Pooled};
use support::{Behavior, Probe, TestManager, assert_settled, eventually};

#[tokio::test(start_paused = true)]
async fn a_spike_is_served_by_returning_resources_not_fifty_new_ones() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(64).min_idle(5).build().unwrap();
    eventually("min_idle is ready", Duration::from_secs(5), || pool.status().idle == 5).await;
    probe.set_create(Behavior::Delay(Duration::from_millis(150)));

    let spike: Vec<_> = (0..50)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let conn = pool.get().await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(conn);
            })
        })
        .collect();
    for request in spike {
        request.await.unwrap();
    }
    eventually("creations settle", Duration::from_secs(5), || pool.status().creating == 0).await;
    let size = pool.status().size;
    eprintln!("spike of 50 at 5 idle, 150 ms creates: ended with {size} resources");
    assert!((5..=10).contains(&size), "the spike ended with {size} resources");
    assert!(probe.max_creates_in_flight() <= 2, "creations are bounded");
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn concurrent_creations_are_bounded() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Delay(Duration::from_millis(100)));
    let pool = Pool::builder(manager).max_size(10).max_concurrent_creates(3).build().unwrap();
    let conns = futures::future::try_join_all((0..10).map(|_| pool.get())).await.unwrap();
    assert_eq!(conns.len(), 10);
    assert_eq!(probe.max_creates_in_flight(), 3);
    assert_eq!(probe.create_calls(), 10);
}

#[tokio::test(start_paused = true)]
async fn failed_creations_are_retried_with_growing_backoff() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let pool = Pool::builder(manager)
        .max_size(1)
        .backoff(Duration::from_millis(100), Duration::from_secs(10))
        .disable_breaker()
        .build()
        .unwrap();
    let waiter = support::spawn_get(&pool);
    eventually("four attempts", Duration::from_secs(10), || probe.create_calls() >= 4).await;
    probe.set_create(Behavior::Succeed);
    assert_eq!(waiter.await.unwrap().unwrap(), 0, "the caller is served once the backend is back");
    let times = probe.create_times();
    let gaps: Vec<_> = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
    for (retry, gap) in gaps.iter().enumerate().take(3) {
        let step = Duration::from_millis(100) * 2u32.pow(retry as u32);
        assert!(*gap >= step / 2 && *gap <= step, "retry {retry}: waited {gap:?}, step {step:?}");
    }
    assert_eq!(pool.metrics().create_failures, 4);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_fails_fast_with_the_real_cause_then_closes_on_recovery() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let pool = Pool::builder(manager)
        .max_size(4)
        .acquire_timeout(Duration::from_secs(30))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .breaker(3, Duration::from_secs(5))
        .build()
        .unwrap();

    // The first caller waits only while the breaker counts failures, not its full 30 s.
    let started = tokio::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "failed after {:?}", started.elapsed());
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert_eq!(
        err.last_create_error().unwrap().source().unwrap().to_string(),
        "connection refused"
    );
    assert_eq!(probe.create_calls(), 3);

    // While open, callers fail at once and the backend is left alone.
    let started = tokio::time::Instant::now();
    assert!(matches!(pool.get().await, Err(Error::Unavailable(_))));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(probe.create_calls(), 3);
    assert!(pool.metrics().gets_unavailable >= 2);

    // After the cool-down one probe goes out; the backend is still down, so it opens again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(matches!(pool.get().await, Err(Error::Unavailable(_))));
    assert_eq!(probe.create_calls(), 4, "exactly one probe");

    // The backend recovers: the next probe succeeds and closes the breaker.
    probe.set_create(Behavior::Succeed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let conn = pool.get().await.unwrap();
    assert_eq!(probe.create_calls(), 5);
    let more = futures::future::try_join_all((0..3).map(|_| pool.get())).await.unwrap();
    assert_eq!(more.len(), 3, "closed again: creations flow");
    drop((conn, more));
    assert_settled(&pool, &probe);
}

/// A pool of two with one resource held, creations failing, and a caller whose creation just
/// tripped the breaker, kept in line because the held resource could still serve it.
struct KeptCaller {
    pool: Pool<TestManager>,
    probe: Arc<Probe>,
    held: Pooled<TestManager>,
    waiter: tokio::task::JoinHandle<Result<usize, Error<support::TestError>>>,
}

async fn kept_caller() -> KeptCaller {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(30))
        .backoff(Duration::from_millis(10), Duration::from_millis(10))
        .breaker(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    probe.set_create(Behavior::Fail);
    let waiter = support::spawn_get(&pool);
    eventually("the breaker opened", Duration::from_secs(1), || probe.create_calls() == 2).await;
    assert_eq!(pool.status().waiters, 1, "kept: the held resource could serve it");
    KeptCaller { pool, probe, held, waiter }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_still_serves_callers_that_a_return_can_serve() {
    // This caller's creation fails and trips the breaker, but one resource is out and will come
    // back: the caller keeps its place instead of failing.
    let KeptCaller { pool, probe, held, waiter } = kept_caller().await;

    // A second caller could only be served by a creation: it fails at once.
    assert!(matches!(pool.get().await, Err(Error::Unavailable(_))));

    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), 0, "served by the returned resource");
    assert!(pool.get().await.is_ok(), "an idle resource needs no creation");
    assert_eq!(probe.create_calls(), 2, "no creation while open");
}

#[tokio::test(start_paused = true)]
async fn a_caller_kept_for_a_return_fails_once_that_return_cannot_come() {
    let KeptCaller { pool: _pool, held, waiter, .. } = kept_caller().await;

    // The held resource leaves the pool for good: nothing can serve the waiter any more.
    let started = tokio::time::Instant::now();
    drop(held.take());
    let outcome = waiter.await.unwrap();
    assert!(matches!(outcome, Err(Error::Unavailable(_))), "{outcome:?}");
    assert_eq!(started.elapsed(), Duration::ZERO, "told at once, not at its timeout");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_create_counts_as_a_failure_and_frees_its_slot() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Panic);
    let pool = Pool::builder(manager)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(1))
        .breaker(2, Duration::from_secs(1))
        .build()
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err.last_create_error(), Some(CreateError::Panicked)), "{err:?}");
    assert_eq!(pool.status().size, 0);
    probe.set_create(Behavior::Succeed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(pool.get().await.is_ok());
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn closing_during_a_creation_closes_its_resource() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Delay(Duration::from_millis(100)));
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let waiter = support::spawn_get(&pool);
    eventually("a creation runs", Duration::from_secs(1), || pool.status().creating == 1).await;
    pool.close();
    assert!(matches!(waiter.await.unwrap(), Err(Error::Closed)));
    pool.drain(Duration::from_secs(1)).await.unwrap();
    assert_eq!(probe.created(), 1);
    assert_eq!(probe.alive(), 0, "the late resource was closed, not kept");
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_opens_the_breaker_before_a_long_run_of_failures_would() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let pool = Pool::builder(manager)
        .max_size(4)
        .acquire_timeout(Duration::from_secs(30))
        .backoff(Duration::from_millis(10), Duration::from_millis(10))
        .breaker(100, Duration::from_secs(5))
        .breaker_failure_rate(0.5, 4, Duration::from_secs(10))
        .build()
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert_eq!(probe.create_calls(), 4, "opened at the window's minimum, not after 100 in a row");
    let started = tokio::time::Instant::now();
    assert!(matches!(pool.get().await, Err(Error::Unavailable(_))));
    assert_eq!(started.elapsed(), Duration::ZERO, "open: fails at once");
}

#[tokio::test(start_paused = true)]
async fn slow_creations_open_the_breaker_and_say_so() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Delay(Duration::from_millis(500)));
    let pool = Pool::builder(manager)
        .max_size(8)
        .acquire_timeout(Duration::from_secs(30))
        .breaker_failure_rate(1.0, 3, Duration::from_secs(60))
        .breaker_slow_creations(Duration::from_millis(200), 0.5)
        .build()
        .unwrap();
    // Three slow but successful creations: the third trips the slow-call rate. The resources
    // are taken out of the pool, so only a creation could serve the next caller.
    let held: Vec<_> = futures::future::try_join_all((0..3).map(|_| pool.get())).await.unwrap();
    let held: Vec<_> = held.into_iter().map(Pooled::take).collect();
    assert_eq!(probe.created(), 3);
    let err = pool.get().await.unwrap_err();
    let Error::Unavailable(cause) = &err else { panic!("{err:?}") };
    assert!(
        matches!(**cause, CreateError::TooSlow(threshold) if threshold == Duration::from_millis(200))
    );
    assert!(err.to_string().contains("too slow"), "{err}");
    assert_eq!(probe.create_calls(), 3, "no creation while open");
    drop(held);
}

#[test]
fn bad_breaker_rates_are_refused_naming_the_field() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = runtime.enter();
    let field =
        |builder: millpond::pool::Builder<TestManager>| builder.build().unwrap_err().field();
    let pool = || Pool::builder(TestManager::new().0);
    assert_eq!(
        field(pool().breaker_failure_rate(1.5, 10, Duration::from_secs(1))),
        Some("breaker_failure_rate")
    );
    assert_eq!(
        field(pool().breaker_failure_rate(0.5, 0, Duration::from_secs(1))),
        Some("breaker_failure_rate")
    );
    assert_eq!(
        field(pool().breaker_slow_creations(Duration::ZERO, 0.5)),
        Some("breaker_slow_creations")
    );
}
