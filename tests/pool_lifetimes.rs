//! Idle timeout, maximum lifetime with jitter, keepalive and `min_idle` upkeep, on a paused clock.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use millpond::pool::{CloseReason, Pool};
use support::{Behavior, TestManager, assert_settled, eventually};

#[tokio::test(start_paused = true)]
async fn min_idle_is_created_ahead_of_demand() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(8).min_idle(3).build().unwrap();
    eventually("min_idle is ready", Duration::from_secs(5), || pool.status().idle == 3).await;
    assert_eq!(probe.create_calls(), 3);
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn min_idle_is_refilled_when_resources_leave() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(8).min_idle(2).build().unwrap();
    eventually("min_idle is ready", Duration::from_secs(5), || pool.status().idle == 2).await;
    let taken = pool.get().await.unwrap().take();
    eventually("min_idle is refilled", Duration::from_secs(5), || pool.status().idle == 2).await;
    assert_eq!(probe.created(), 3);
    drop(taken);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_resources_above_min_idle_only() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(6)
        .min_idle(2)
        .idle_timeout(Some(Duration::from_secs(60)))
        .max_lifetime(None)
        .build()
        .unwrap();
    let conns = futures::future::try_join_all((0..6).map(|_| pool.get())).await.unwrap();
    drop(conns);
    assert_eq!(pool.status().idle, 6);
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(pool.status().idle, 6, "nothing is closed before the timeout");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pool.status().idle, 2, "min_idle stays");
    assert_eq!(probe.closed_count(CloseReason::IdleTimeout), 4);
    assert_eq!(pool.metrics().closed.idle_timeout, 4);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(pool.status().idle, 2);
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn resources_in_use_are_never_reaped() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(2)
        .idle_timeout(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(pool.status().in_use, 1);
    assert!(probe.closed_reasons().is_empty());
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn lifetimes_are_jittered_so_a_pool_does_not_recycle_at_once() {
    let (manager, probe) = TestManager::new();
    let lifetime = Duration::from_secs(100);
    let pool = Pool::builder(manager)
        .max_size(20)
        .min_idle(20)
        .max_lifetime(Some(lifetime))
        .lifetime_jitter(0.25)
        .idle_timeout(None)
        .build()
        .unwrap();
    eventually("the pool is full", Duration::from_secs(5), || pool.status().idle == 20).await;
    let created_at = tokio::time::Instant::now();

    // Record how many resources the maintenance task retires in each one-second tick.
    let mut retired_per_second = BTreeMap::new();
    for second in 1..=110u64 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let retired = probe.closed_count(CloseReason::Lifetime);
        retired_per_second.insert(second, retired);
        assert!(pool.status().size >= 15, "second {second}: replacements keep the pool up");
    }
    let total = probe.closed_count(CloseReason::Lifetime);
    assert!(total >= 20, "every original resource reached its lifetime: {total}");
    let mut previous = 0;
    let mut worst_tick = 0;
    for (second, retired) in &retired_per_second {
        let in_tick = retired - previous;
        previous = *retired;
        if *second < 74 {
            assert_eq!(in_tick, 0, "nothing expires before lifetime minus jitter ({second}s)");
        }
        worst_tick = worst_tick.max(in_tick);
    }
    // 20 deadlines spread uniformly over 25 s: a storm would retire them all in one tick.
    assert!(worst_tick <= 8, "at most {worst_tick} retired in one second: a lifetime storm");
    assert!(created_at.elapsed() >= lifetime);
    assert_eq!(pool.status().idle, 20, "min_idle is restored");
}

#[tokio::test(start_paused = true)]
async fn a_resource_past_its_lifetime_is_closed_when_it_comes_back() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(1)
        .max_lifetime(Some(Duration::from_secs(30)))
        .lifetime_jitter(0.0)
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    drop(held);
    assert_eq!(probe.closed_reasons(), vec![CloseReason::Lifetime]);
    assert_eq!(pool.get().await.unwrap().id, 1);
}

#[tokio::test(start_paused = true)]
async fn keepalive_takes_one_resource_at_a_time() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(4)
        .min_idle(2)
        .keepalive(Some(Duration::from_secs(10)))
        .idle_timeout(None)
        .build()
        .unwrap();
    eventually("min_idle is ready", Duration::from_secs(5), || pool.status().idle == 2).await;
    probe.set_check(Behavior::Delay(Duration::from_secs(5)));
    eventually("a keepalive check runs", Duration::from_secs(15), || probe.check_calls() == 1)
        .await;
    let status = pool.status();
    assert_eq!((status.idle, status.in_use), (1, 1), "the other one stays available: {status:?}");
    let conn = pool.get().await.unwrap();
    assert_eq!(probe.created(), 2, "served by the idle one, no creation needed");
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn keepalive_checks_idle_resources_and_replaces_dead_ones() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(4)
        .min_idle(2)
        .keepalive(Some(Duration::from_secs(30)))
        .idle_timeout(None)
        .build()
        .unwrap();
    eventually("min_idle is ready", Duration::from_secs(5), || pool.status().idle == 2).await;
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(probe.check_calls(), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(probe.check_calls(), 2, "both idle resources were kept alive");
    assert!(probe.closed_reasons().is_empty());

    // The backend drops quiet connections: the next keepalive finds them dead.
    probe.set_check(Behavior::Fail);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(probe.closed_count(CloseReason::Broken), 2);
    probe.set_check(Behavior::Succeed);
    eventually("min_idle is refilled", Duration::from_secs(5), || pool.status().idle == 2).await;
    assert_eq!(probe.created(), 4);
    assert_settled(&pool, &probe);
}
