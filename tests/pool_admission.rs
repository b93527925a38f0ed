//! Admission to pools and clusters, on tokio's paused clock: under an adaptive concurrency limit
//! checkouts take room first, report their outcome when they end, back off as the limit falls,
//! and a cluster moves to a backend with room; under a per-key rate limit a key over its limit
//! is refused at once.
#![allow(clippy::disallowed_types)]

mod support;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::noop_waker;
use millpond::cluster::{Backend, Cluster};
use millpond::limit::{AdaptiveLimiter, Aimd, Outcome, Rejected};
use millpond::pool::{Error, Pool};
use support::{Behavior, TestManager};

/// A limiter whose limit starts at `limit` and can only fall (AIMD between 1 and `limit`).
fn limiter(limit: usize) -> AdaptiveLimiter {
    let aimd = Aimd::new().min_limit(1).initial_limit(limit).max_limit(limit);
    AdaptiveLimiter::builder(aimd).fifo().build().unwrap()
}

fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(&noop_waker()))
}

#[tokio::test(start_paused = true)]
async fn checkouts_take_room_under_the_limit_and_report_when_they_end() {
    let (manager, _) = TestManager::new();
    let limiter = limiter(2);
    let pool = Pool::builder(manager).max_size(8).adaptive_limit(limiter.clone()).build().unwrap();
    let first = pool.get().await.unwrap();
    let _second = pool.get().await.unwrap();
    assert_eq!(limiter.status().in_flight, 2);

    // The pool has room for six more, the limit for none: the third waits on the limiter.
    let mut third = pin!(pool.get());
    assert!(poll_once(third.as_mut()).is_pending());
    assert_eq!(pool.status().size, 2, "no connection was made for the waiting caller");
    assert!(matches!(pool.try_get(), Err(Error::Limited(Rejected::QueueFull { limit: 2 }))));

    tokio::time::advance(Duration::from_millis(30)).await;
    drop(first);
    let third = third.await.expect("the room passed on");
    let status = limiter.status();
    assert_eq!((status.in_flight, status.succeeded), (2, 1));
    drop(third);
    assert_eq!(limiter.status().succeeded, 2);
}

#[tokio::test(start_paused = true)]
async fn a_reported_loss_lowers_the_limit_and_later_checkouts_back_off() {
    let (manager, _) = TestManager::new();
    let limiter = limiter(4);
    let pool = Pool::builder(manager).max_size(4).adaptive_limit(limiter.clone()).build().unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(pool.get().await.unwrap());
    }
    // The database timed out a query on one connection: a loss.
    conns[0].report(Outcome::Dropped);
    conns[0].report(Outcome::Success); // a second report is ignored
    assert_eq!(limiter.status().limit, 3);
    // The other queries failed for reasons unrelated to load: no change either way.
    for conn in &mut conns[1..] {
        conn.report(Outcome::Failure);
    }
    conns.clear();
    assert_eq!(limiter.status().limit, 3);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.get().await.unwrap());
    }
    assert!(
        matches!(pool.get_timeout(Duration::from_millis(50)).await, Err(Error::Limited(_))),
        "the fourth checkout waits for room and times out, though the pool has four connections"
    );
    assert_eq!(pool.status().idle, 1);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_failed_checkout_gives_its_room_back_without_a_sample() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let limiter = limiter(2);
    let pool = Pool::builder(manager)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(10))
        .disable_breaker()
        .adaptive_limit(limiter.clone())
        .build()
        .unwrap();
    assert!(pool.get().await.is_err());
    let status = limiter.status();
    assert_eq!((status.in_flight, status.ignored, status.succeeded), (0, 1, 0));
    let taken = {
        probe.set_create(Behavior::Succeed);
        pool.get().await.unwrap().take()
    };
    let _ = taken;
    let status = limiter.status();
    assert_eq!((status.in_flight, status.ignored), (0, 2), "a detached resource is no sample");
}

#[tokio::test(start_paused = true)]
async fn a_cluster_moves_to_a_backend_with_room() {
    let backend = |name: &str, limiter: &AdaptiveLimiter| {
        let (manager, _) = TestManager::new();
        let pool = Pool::builder(manager).max_size(4).adaptive_limit(limiter.clone());
        Backend::replica(name, pool)
    };
    // The busy backend turns callers away at once rather than queueing them.
    let aimd = Aimd::new().min_limit(1).initial_limit(1).max_limit(1);
    let busy = AdaptiveLimiter::builder(aimd).max_queue(0).build().unwrap();
    let spare = limiter(4);
    let cluster = Cluster::builder()
        .backend(backend("busy", &busy))
        .backend(backend("spare", &spare))
        .build()
        .unwrap();
    // Fill the busy backend's limit directly, as its other callers would.
    let _room = busy.try_acquire().unwrap();
    for _ in 0..4 {
        let conn = tokio::time::timeout(Duration::from_secs(2), cluster.get_replica())
            .await
            .expect("not stuck behind the busy backend")
            .unwrap();
        assert_eq!(conn.backend(), "spare");
    }
    assert!(
        busy.status().rejected_queue_full >= 1,
        "the busy backend was tried: {:?}",
        busy.status()
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_over_its_rate_limit_is_refused_at_once_by_pool_and_cluster() {
    let (manager, _) = TestManager::new();
    let pool = Pool::builder(manager).max_size(4).rate_limit_per_key(10.0, 2).build().unwrap();
    let mut held = vec![pool.get_keyed(7).await.unwrap(), pool.get_keyed(7).await.unwrap()];
    let refused = pool.get_keyed(7).await.map(drop).unwrap_err();
    let Error::RateLimited { retry_in } = refused else { panic!("{refused:?}") };
    assert_eq!(retry_in, Duration::from_millis(100));
    assert!(refused.to_string().contains("rate limit"), "{refused}");
    held.push(pool.get_keyed(8).await.expect("another key has its own bucket"));
    held.push(pool.get().await.expect("unkeyed gets are not limited"));
    tokio::time::advance(retry_in).await;
    drop(held);
    pool.get_keyed(7).await.expect("the bucket refilled");

    let (manager, _) = TestManager::new();
    let cluster = Cluster::builder()
        .backend(Backend::replica("only", Pool::builder(manager).max_size(4)))
        .rate_limit_per_key(1.0, 1)
        .build()
        .unwrap();
    drop(cluster.get_keyed(1).await.unwrap());
    let refused = cluster.get_keyed(1).await.map(drop).unwrap_err();
    assert!(matches!(refused, millpond::cluster::Error::RateLimited { .. }), "{refused}");
    cluster.get_keyed(2).await.unwrap();
    let err = Pool::builder(TestManager::new().0).rate_limit_per_key(0.0, 1).build().unwrap_err();
    assert_eq!(err.field(), Some("rate_limit_per_key"));
}
