//! The everyday contract: checkout and return, reuse, sizing bounds, fairness, and the small API.
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use millpond::pool::{CloseReason, Error, Pool, Pooled};
use support::{TestManager, assert_settled, eventually};

fn pool(max_size: usize) -> (Pool<TestManager>, Arc<support::Probe>) {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(max_size).build().unwrap();
    (pool, probe)
}

#[tokio::test(start_paused = true)]
async fn a_returned_resource_is_reused() {
    let (pool, probe) = pool(4);
    let first = pool.get().await.unwrap();
    let id = first.id;
    drop(first);
    let again = pool.get().await.unwrap();
    assert_eq!(again.id, id);
    assert_eq!(probe.created(), 1);
    assert_eq!(again.metadata().uses(), 2);
    let metrics = pool.metrics();
    assert_eq!(metrics.created, 1);
    // The first get waited for the creation; checkouts count when they end.
    assert_eq!((metrics.gets_waited, metrics.gets_direct), (1, 0));
    assert_eq!(metrics.hold_time.count(), 1);
    assert_eq!(metrics.wait_time.count(), 1);
    drop(again);
    let metrics = pool.metrics();
    assert_eq!((metrics.gets_waited, metrics.gets_direct), (1, 1));
    assert_eq!(metrics.hold_time.count(), 2);
}

/// A return to the thread cache measures its hold only now and then, but every checkout counts
/// in the hold histogram, and the values in it are measured ones.
#[tokio::test(start_paused = true)]
async fn every_checkout_counts_in_the_hold_histogram_with_a_measured_value() {
    let (pool, _probe) = pool(1);
    for _ in 0..200 {
        let conn = pool.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        drop(conn);
    }
    let metrics = pool.metrics();
    assert_eq!(metrics.gets_direct + metrics.gets_waited, 200);
    assert_eq!(metrics.hold_time.count(), 200);
    // Every hold took 40 ms of the paused clock (the timer rounds up to the next millisecond).
    let mean = metrics.hold_time.mean();
    assert!(mean >= Duration::from_millis(40) && mean <= Duration::from_millis(41), "{mean:?}");
    assert!(metrics.hold_time.max() <= Duration::from_millis(41));
}

/// Checkouts that alternate in step with the sampling period are still measured in both kinds:
/// the period is jittered, so the hold histogram's mean stays near the true one.
#[tokio::test(start_paused = true)]
async fn hold_sampling_does_not_fall_in_step_with_alternating_checkouts() {
    let (pool, _probe) = pool(1);
    for round in 0..2_000 {
        let conn = pool.get().await.unwrap();
        let hold = if round % 2 == 0 { 10 } else { 90 };
        tokio::time::sleep(Duration::from_millis(hold)).await;
        drop(conn);
    }
    let metrics = pool.metrics();
    assert_eq!(metrics.hold_time.count(), 2_000);
    // The true mean is 50 ms; a sampler in step with the alternation would see 10 or 90 ms.
    let mean = metrics.hold_time.mean();
    assert!(
        mean >= Duration::from_millis(30) && mean <= Duration::from_millis(70),
        "mean hold {mean:?}"
    );
}

/// A return that reads no clock is stamped with the thread's latest reading: never later than it
/// happened, and at most about one maintenance tick earlier.
#[tokio::test(start_paused = true)]
async fn a_return_is_stamped_never_late_and_at_most_a_maintenance_tick_early() {
    let (manager, _probe) = TestManager::new();
    let tick = Duration::from_secs(1);
    let pool = Pool::builder(manager)
        .max_size(1)
        .maintenance_interval(tick)
        .check_on_get(false)
        .build()
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    // Enough rounds that most returns are unmeasured ones.
    for round in 0..60 {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let returned = tokio::time::Instant::now();
        drop(conn);
        conn = pool.get().await.unwrap();
        let stamp = conn.metadata().last_used();
        assert!(stamp <= returned, "round {round}: stamped after the return");
        // One tick, plus the millisecond the paused timer may round by.
        assert!(
            returned.duration_since(stamp) <= tick + Duration::from_millis(1),
            "round {round}: stamped {:?} early",
            returned.duration_since(stamp)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn size_never_exceeds_max_size_under_load() {
    let (pool, probe) = pool(3);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    let conn = pool.get().await.unwrap();
                    assert!(pool.status().size <= 3);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    drop(conn);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(probe.created() <= 3);
    assert_settled(&pool, &probe);
    assert_eq!(pool.status().in_use, 0);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served() {
    let (pool, _probe) = pool(1);
    let held = pool.get().await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for caller in 0..5 {
        let handle = pool.clone();
        let order = Arc::clone(&order);
        tasks.push(tokio::spawn(async move {
            let conn = handle.get().await.unwrap();
            order.lock().unwrap().push(caller);
            drop(conn);
        }));
        // Let this caller queue before the next one arrives.
        eventually("the caller is queued", Duration::from_secs(1), || {
            pool.status().waiters == caller + 1
        })
        .await;
    }
    drop(held);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_does_not_overtake_a_queued_caller() {
    let (pool, _probe) = pool(1);
    let held = pool.get().await.unwrap();
    let queued = support::spawn_get(&pool);
    eventually("the caller is queued", Duration::from_secs(1), || pool.status().waiters == 1).await;
    drop(held);
    // The resource went straight to the queued caller: nothing is idle for a newcomer.
    assert!(matches!(pool.try_get(), Err(Error::Exhausted)));
    assert_eq!(queued.await.unwrap().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn try_get_never_waits_or_creates() {
    let (pool, probe) = pool(2);
    assert!(matches!(pool.try_get(), Err(Error::Exhausted)));
    assert_eq!(probe.create_calls(), 0);
    drop(pool.get().await.unwrap());
    let conn = pool.try_get().unwrap();
    assert_eq!(conn.id, 0);
}

#[tokio::test(start_paused = true)]
async fn take_detaches_the_resource_and_frees_its_slot() {
    let (pool, probe) = pool(1);
    let conn = pool.get().await.unwrap().take();
    assert_eq!(pool.status().size, 0);
    let other = pool.get().await.unwrap();
    assert_ne!(other.id, conn.id);
    assert!(probe.closed_reasons().is_empty(), "take() does not close through the manager");
}

#[tokio::test(start_paused = true)]
async fn a_resource_that_is_not_reusable_is_closed_and_replaced() {
    let (pool, probe) = pool(1);
    let mut conn = pool.get().await.unwrap();
    conn.broken = true;
    drop(conn);
    assert_eq!(probe.closed_reasons(), vec![CloseReason::Broken]);
    assert_eq!(pool.status().size, 0);
    let fresh = pool.get().await.unwrap();
    assert_eq!(fresh.id, 1);
    assert_eq!(pool.metrics().closed.broken, 1);
}

#[tokio::test(start_paused = true)]
async fn a_broken_resource_returned_to_a_waiter_is_replaced_for_it() {
    let (pool, probe) = pool(1);
    let mut held = pool.get().await.unwrap();
    let waiter = support::spawn_get(&pool);
    eventually("the caller is queued", Duration::from_secs(1), || pool.status().waiters == 1).await;
    held.broken = true;
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), 1);
    assert_eq!(probe.created(), 2);
}

#[tokio::test(start_paused = true)]
async fn returns_above_max_idle_are_closed() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(4).max_idle(1).build().unwrap();
    let conns: Vec<_> = futures::future::try_join_all((0..3).map(|_| pool.get())).await.unwrap();
    drop(conns);
    assert_eq!(pool.status().idle, 1);
    assert_eq!(probe.closed_count(CloseReason::Excess), 2);
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn retain_evicts_idle_resources() {
    let (pool, probe) = pool(4);
    let conns: Vec<_> = futures::future::try_join_all((0..4).map(|_| pool.get())).await.unwrap();
    drop(conns);
    let evicted = pool.retain(|conn, _meta| conn.id % 2 == 0);
    assert_eq!(evicted, 2);
    assert_eq!(probe.closed_count(CloseReason::Evicted), 2);
    assert_eq!(pool.status().idle, 2);
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn resize_grows_for_waiters_and_shrinks_idle() {
    let (pool, probe) = pool(1);
    let held = pool.get().await.unwrap();
    let waiter = support::spawn_get(&pool);
    eventually("the caller is queued", Duration::from_secs(1), || pool.status().waiters == 1).await;
    pool.resize(2).unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 1, "served by a new resource");
    drop(held);
    assert_eq!(pool.status().idle, 2);
    pool.resize(1).unwrap();
    assert_eq!(pool.status().size, 1);
    assert_eq!(probe.closed_count(CloseReason::Excess), 1);
    assert!(pool.resize(0).unwrap_err().to_string().contains("max_size"));
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn shrinking_closes_in_use_resources_as_they_come_back() {
    let (pool, probe) = pool(2);
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    pool.resize(1).unwrap();
    assert_eq!(pool.status().size, 2, "in-use resources are not taken away");
    drop(a);
    assert_eq!(pool.status().size, 1);
    drop(b);
    assert_eq!(pool.status().idle, 1);
    assert_eq!(probe.closed_count(CloseReason::Excess), 1);
}

#[tokio::test(start_paused = true)]
async fn close_fails_waiters_and_later_gets() {
    let (pool, probe) = pool(1);
    let held = pool.get().await.unwrap();
    let waiter = support::spawn_get(&pool);
    eventually("the caller is queued", Duration::from_secs(1), || pool.status().waiters == 1).await;
    pool.close();
    assert!(matches!(waiter.await.unwrap(), Err(Error::Closed)));
    assert!(matches!(pool.get().await, Err(Error::Closed)));
    assert!(pool.is_closed());
    drop(held);
    assert_eq!(probe.closed_reasons(), vec![CloseReason::PoolClosed]);
    assert_eq!(probe.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_resources_in_use() {
    let (pool, probe) = pool(2);
    let held = pool.get().await.unwrap();
    let returner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(held);
    });
    assert_eq!(pool.drain(Duration::from_secs(1)).await.unwrap_err().remaining, 1);
    pool.drain(Duration::from_secs(5)).await.unwrap();
    returner.await.unwrap();
    assert_eq!(probe.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_closes_the_pool_and_ends_its_task() {
    let (pool, probe) = pool(2);
    let held = pool.get().await.unwrap();
    drop(pool.get().await.unwrap());
    let clone = pool.clone();
    drop(pool);
    assert_eq!(probe.alive(), 2, "a clone keeps the pool open");
    drop(clone);
    assert_eq!(probe.alive(), 1, "the idle resource is closed with the last handle");
    drop(held);
    assert_eq!(probe.alive(), 0);
    // The manager (held by the shared state) is dropped once the background task has ended.
    eventually("the pool's state is freed", Duration::from_secs(5), || {
        Arc::strong_count(&probe) == 1
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn metadata_tracks_use() {
    let (pool, _probe) = pool(1);
    let created = tokio::time::Instant::now();
    drop(pool.get().await.unwrap());
    tokio::time::advance(Duration::from_secs(3)).await;
    let conn = pool.get().await.unwrap();
    let meta = conn.metadata();
    assert_eq!(meta.created_at(), created);
    assert_eq!(meta.uses(), 2);
    assert!(meta.expires_at().is_some());
}

#[test]
fn pooled_is_send_and_static() {
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_static::<Pooled<TestManager>>();
    assert_send_static::<Pool<TestManager>>();
}

#[tokio::test(start_paused = true)]
async fn get_futures_are_send() {
    let (pool, _probe) = pool(1);
    let handle = tokio::spawn(async move { pool.get().await.map(|conn| conn.id) });
    assert_eq!(handle.await.unwrap().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_is_reusable_closes_the_resource() {
    struct Panicky(TestManager);
    impl millpond::pool::Manager for Panicky {
        type Resource = support::Conn;
        type Error = support::TestError;
        async fn create(&self) -> Result<support::Conn, support::TestError> {
            self.0.create().await
        }
        fn is_reusable(&self, _conn: &mut support::Conn) -> bool {
            panic!("is_reusable panicked on purpose")
        }
    }
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(Panicky(manager)).max_size(1).build().unwrap();
    drop(pool.get().await.unwrap());
    assert_eq!(pool.status().size, 0, "the resource was closed, its slot freed");
    assert_eq!(probe.alive(), 0);
    assert_eq!(pool.metrics().closed.broken, 1);
    assert!(pool.get().await.is_ok(), "the pool carries on");
}
