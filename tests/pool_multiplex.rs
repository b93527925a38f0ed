//! A multiplexed view of a pool: each resource lent to several borrowers at once, spread before
//! shared, bounded per resource, returned when its last borrower leaves, and nothing leaked by
//! a cancelled or failed borrow.
#![allow(clippy::disallowed_types)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use millpond::pool::{Error, Pool};
use support::{Behavior, TestManager, assert_settled, eventually};

#[tokio::test(start_paused = true)]
async fn borrowers_are_spread_over_idle_resources_before_they_share() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(3).min_idle(3).build().unwrap();
    eventually("min_idle is ready", Duration::from_secs(5), || pool.status().idle == 3).await;
    let view = pool.multiplexed(4).unwrap();

    let borrowed: Vec<_> = futures::future::try_join_all((0..3).map(|_| view.get())).await.unwrap();
    let ids: HashSet<usize> = borrowed.iter().map(|conn| conn.id).collect();
    assert_eq!(ids.len(), 3, "three borrowers, three resources");
    assert_eq!(view.borrowers(), [1, 1, 1]);

    let more: Vec<_> = futures::future::try_join_all((0..3).map(|_| view.get())).await.unwrap();
    assert_eq!(view.borrowers(), [2, 2, 2], "then shared evenly");
    drop((borrowed, more));
    assert!(view.borrowers().is_empty());
    assert_eq!(pool.status().idle, 3, "every resource went back with its last borrower");
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn a_busy_view_checks_out_one_more_in_the_background_while_it_shares() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Delay(Duration::from_millis(100)));
    let pool = Pool::builder(manager).max_size(2).build().unwrap();
    let view = pool.multiplexed(4).unwrap();

    let first = view.get().await.unwrap();
    // Nothing idle and the pool has room: the second borrower shares at once instead of waiting
    // 100 ms for a creation, and a second resource is made for whoever comes next.
    let second = tokio::time::timeout(Duration::from_millis(1), view.get()).await.unwrap().unwrap();
    assert_eq!(first.id, second.id);
    eventually("the background checkout lands", Duration::from_secs(1), || {
        view.borrowers().len() == 2
    })
    .await;
    let third = view.get().await.unwrap();
    assert_ne!(third.id, first.id, "the new resource serves the next borrower");
    drop((first, second, third));
    assert_settled(&pool, &probe);
}

#[tokio::test(start_paused = true)]
async fn borrowers_beyond_the_bound_queue_in_order_and_a_cancelled_one_leaves_nothing_behind() {
    let (manager, probe) = TestManager::new();
    let pool =
        Pool::builder(manager).max_size(2).acquire_timeout(Duration::from_secs(1)).build().unwrap();
    let view = pool.multiplexed(3).unwrap();
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(view.get().await.unwrap());
    }
    assert_eq!(view.borrowers(), [3, 3]);

    // The seventh waits; cancelled, it gives up its place.
    assert!(tokio::time::timeout(Duration::from_millis(100), view.get()).await.is_err());
    // Timed out by the pool's acquire timeout, it fails with a timeout.
    let err = view.get().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");

    // A leaving borrower lets the next in.
    let waiting = tokio::spawn({
        let view = view.clone();
        async move { view.get().await.map(|conn| conn.id) }
    });
    tokio::task::yield_now().await;
    let leaving = held.pop().unwrap().id;
    assert_eq!(waiting.await.unwrap().unwrap(), leaving);

    // Several wait: they get in in the order they came, one per leaving borrower.
    held.push(view.get().await.unwrap());
    let (got_in, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    for name in ["A", "B", "C"] {
        let view = view.clone();
        let got_in = got_in.clone();
        tokio::spawn(async move {
            let conn = view.get().await.unwrap();
            got_in.send((name, conn)).unwrap();
        });
        // Queued before the next one comes.
        tokio::task::yield_now().await;
    }
    let mut order = Vec::new();
    for _ in 0..3 {
        drop(held.pop());
        let (name, conn) = arrivals.recv().await.unwrap();
        order.push(name);
        held.push(conn);
    }
    assert_eq!(order, ["A", "B", "C"], "first come, first served");

    drop(held);
    eventually("all borrowers left", Duration::from_secs(1), || view.borrowers().is_empty()).await;
    for _ in 0..6 {
        borrow_at_once(&view).await;
    }
    assert_settled(&pool, &probe);
    assert_eq!(pool.status().in_use, 0);
}

async fn borrow_at_once(view: &millpond::pool::Multiplexed<TestManager>) {
    let conn = tokio::time::timeout(Duration::from_millis(1), view.get()).await;
    assert!(conn.unwrap().is_ok(), "no permit or slot leaked");
}

#[tokio::test(start_paused = true)]
async fn pool_failures_reach_the_borrower_and_the_bound_is_checked() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let pool =
        Pool::builder(manager).max_size(2).acquire_timeout(Duration::from_secs(2)).build().unwrap();
    let view = pool.multiplexed(2).unwrap();
    let err = view.get().await.unwrap_err();
    assert!(err.last_create_error().is_some(), "the creation failure is the cause: {err}");

    pool.close();
    assert!(matches!(view.get().await, Err(Error::Closed)));

    let err = pool.multiplexed(0).unwrap_err();
    assert!(err.to_string().contains("per_resource"), "{err}");
}
