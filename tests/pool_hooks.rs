//! Manager hooks that panic where the pool does not expect it, and settings at their extremes:
//! the pool contains the damage, keeps its accounting exact and keeps its background work alive.
#![allow(clippy::disallowed_types)]

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use millpond::pool::{CloseReason, CreateError, Error, Manager, Pool};
use support::{Behavior, Conn, TestError, TestManager, assert_settled, eventually};

/// A manager whose `create` panics before it even returns its future.
struct EagerPanic {
    calls: Arc<AtomicUsize>,
    panic: bool,
}

impl Manager for EagerPanic {
    type Resource = u32;
    type Error = TestError;

    fn create(&self) -> impl Future<Output = Result<u32, TestError>> + Send {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.panic {
            panic!("create panicked before returning its future");
        }
        async { Ok(7) }
    }
}

#[tokio::test(start_paused = true)]
async fn a_create_that_panics_eagerly_is_a_failed_creation_not_a_hot_loop() {
    let calls = Arc::new(AtomicUsize::new(0));
    let pool = Pool::builder(EagerPanic { calls: Arc::clone(&calls), panic: true })
        .max_size(1)
        .breaker(3, Duration::from_secs(60))
        .build()
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(matches!(err.last_create_error(), Some(CreateError::Panicked)));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "retried with backoff until the breaker opened");
    assert_eq!(pool.status().size, 0);
}

/// Wraps the test manager with an `on_close` that panics.
struct PanickyClose(TestManager);

impl Manager for PanickyClose {
    type Resource = Conn;
    type Error = TestError;

    async fn create(&self) -> Result<Conn, TestError> {
        self.0.create().await
    }

    fn on_close(&self, conn: Conn, _reason: CloseReason) {
        drop(conn);
        panic!("on_close panicked on purpose");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_on_close_does_not_stop_a_close_half_way() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(PanickyClose(manager)).max_size(3).build().unwrap();
    let conns = futures::future::try_join_all((0..3).map(|_| pool.get())).await.unwrap();
    drop(conns);
    drop(pool);
    assert_eq!(probe.alive(), 0, "every idle resource was closed");
    eventually("the pool's tasks end and free it", Duration::from_secs(5), || {
        Arc::strong_count(&probe) == 1
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_keepalive_check_does_not_kill_maintenance() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(4)
        .min_idle(2)
        .keepalive(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    eventually("min_idle is ready", Duration::from_secs(5), || pool.status().idle == 2).await;
    probe.set_check(Behavior::Panic);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(probe.closed_count(CloseReason::Broken), 2);
    probe.set_check(Behavior::Succeed);
    eventually("min_idle is refilled", Duration::from_secs(5), || pool.status().idle == 2).await;
    // Maintenance is still alive: later ticks keep checking.
    let checks = probe.check_calls();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(probe.check_calls() >= checks + 2, "keepalive still runs");
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_check_in_get_closes_the_resource_and_moves_on() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(1).check_window(Duration::ZERO).build().unwrap();
    drop(pool.get().await.unwrap());
    probe.set_check(Behavior::Panic);
    let conn = pool.get().await.expect("the caller gets a fresh resource, not the panic");
    assert_eq!(conn.id, 1);
    assert_eq!(probe.closed_reasons(), vec![CloseReason::Broken]);
}

#[tokio::test(start_paused = true)]
async fn extreme_durations_mean_never_and_do_not_panic() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(2)
        .min_idle(1)
        .acquire_timeout(Duration::MAX)
        .create_timeout(Duration::MAX)
        .check_timeout(Duration::MAX)
        .check_window(Duration::ZERO)
        .idle_timeout(Some(Duration::MAX))
        .max_lifetime(Some(Duration::MAX))
        .keepalive(Some(Duration::MAX))
        .leak_threshold(Some(Duration::MAX))
        .backoff(Duration::from_millis(1), Duration::MAX)
        .breaker(1, Duration::MAX)
        .build()
        .unwrap();
    eventually("min_idle is ready", Duration::from_secs(5), || pool.status().idle == 1).await;
    for _ in 0..3 {
        // Two idle, above min_idle: the idle timeout (never) is what keeps them.
        let both = (pool.get().await.unwrap(), pool.get().await.unwrap());
        drop(both);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(pool.status().idle, 2);
    }
    probe.set_create(Behavior::Fail);
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop(b.take());
    // The creation fails and trips the breaker, but `a` will come back, so the caller waits for
    // it (here until its own timeout) rather than failing at once.
    let started = tokio::time::Instant::now();
    let c = pool.get_timeout(Duration::from_secs(1)).await;
    assert!(matches!(c, Err(Error::Timeout { .. })), "{c:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(c.unwrap_err().last_create_error().is_some());
    drop(a);
    pool.drain(Duration::MAX).await.unwrap();
    assert_eq!(probe.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn try_get_finds_resources_returned_on_other_threads() {
    // Each resource comes back on a fresh thread. Fresh threads take consecutive shard hints, so
    // these nine fill every shard of the thread cache (8 on this machine's 2 cores; most shards
    // belong to other threads than this one) and overflow into the shared idle set. `try_get`
    // on this thread must find all of them.
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(9).build().unwrap();
    let conns = futures::future::try_join_all((0..9).map(|_| pool.get())).await.unwrap();
    for conn in conns {
        std::thread::spawn(move || drop(conn)).join().unwrap();
    }
    let mut ids: Vec<_> = (0..9).map(|_| pool.try_get().unwrap().take().id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..9).collect::<Vec<_>>());
}

/// A resource its user can leave dirty, and a manager that flags dirty ones for `check`, which
/// cleans them: the shape of a database connection left inside a transaction.
struct Cleaning {
    checks: Arc<AtomicUsize>,
}

struct Slate {
    dirty: bool,
}

impl Manager for Cleaning {
    type Resource = Slate;
    type Error = TestError;

    async fn create(&self) -> Result<Slate, TestError> {
        Ok(Slate { dirty: false })
    }

    async fn check(&self, slate: &mut Slate) -> Result<(), TestError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        slate.dirty = false;
        Ok(())
    }

    fn needs_check(&self, slate: &Slate) -> bool {
        slate.dirty
    }
}

#[tokio::test(start_paused = true)]
async fn a_resource_the_manager_flags_is_checked_on_every_path_even_with_checks_off() {
    let checks = Arc::new(AtomicUsize::new(0));
    let pool = Pool::builder(Cleaning { checks: Arc::clone(&checks) })
        .max_size(1)
        .check_on_get(false)
        .build()
        .unwrap();

    // Returned dirty, taken again at once: the check window and `check_on_get(false)` would skip
    // the check; the flag does not.
    pool.get().await.unwrap().dirty = true;
    let slate = pool.get().await.unwrap();
    assert!(!slate.dirty);
    assert_eq!(checks.load(Ordering::SeqCst), 1);
    drop(slate);

    // Handed straight from a returning caller to a queued one.
    let mut held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|slate| slate.dirty) }
    });
    eventually("the second caller queues", Duration::from_secs(5), || pool.status().waiters == 1)
        .await;
    held.dirty = true;
    drop(held);
    assert!(!waiter.await.unwrap().unwrap(), "the waiter got it cleaned");
    assert_eq!(checks.load(Ordering::SeqCst), 2);
    assert_eq!(pool.metrics().created, 1, "cleaned, not replaced");

    // A clean resource costs no check with checks off, however long it sat idle.
    tokio::time::advance(Duration::from_secs(3600)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(checks.load(Ordering::SeqCst), 2);
}
