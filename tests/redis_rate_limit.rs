//! The Redis-backed GCRA limiter on a real server: several limiters, standing for several
//! instances of a service, share one limit; idle keys expire; the local short-circuit saves
//! round trips; a killed or frozen server gets the failure policy the user chose.
//!
//! Each test prints what it measured (`cargo test --features redis --test redis_rate_limit --
//! --nocapture`).

#![cfg(feature = "redis")]
#![allow(clippy::disallowed_types)]

mod harness;

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use harness::redis::{RedisServer, calls, wait_until};
use millpond::exec::{SubmitError, WorkerPool};
use millpond::pool::Pool;
use millpond::redis::RedisPool;
use millpond::redis::rate_limit::{
    Connections, Decision, Error, FailurePolicy, RateLimiter, RateLimiterBuilder, Unavailable,
};
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

/// A pool of its own, as a separate process would have, with short timeouts.
fn pool(server: &RedisServer) -> RedisPool {
    Pool::builder(server.manager().response_timeout(Some(Duration::from_secs(5))))
        .max_size(4)
        .acquire_timeout(Duration::from_secs(2))
        .create_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn limiter(connections: impl Into<Connections>) -> RateLimiterBuilder {
    RateLimiter::builder(connections).prefix("test:rate:")
}

/// The server's clock, in microseconds.
async fn server_time(admin: &mut MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(admin).await.unwrap();
    secs * 1_000_000 + micros
}

/// `EVALSHA` and `EVAL` calls the server has run.
async fn scripts_run(admin: &mut MultiplexedConnection) -> u64 {
    calls(admin, "evalsha").await + calls(admin, "eval").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_server_never_admit_more_than_the_shared_limit() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    // 50 a second (an interval of 20 ms) with a burst of 10, per key.
    let (count, period, burst) = (50_u64, Duration::from_secs(1), 10_u32);
    let interval_us = 20_000_u64;
    let keys = ["alice", "bob", "carol"];
    // Four instances, each with its own connections: two take exclusive checkouts, two share
    // pipelined connections through a multiplexed view.
    let instances: Vec<RateLimiter> = (0..4)
        .map(|instance| {
            let pool = pool(&server);
            let connections: Connections =
                if instance % 2 == 0 { pool.into() } else { pool.multiplexed(4).unwrap().into() };
            limiter(connections).rate(count, period).burst(burst).build().unwrap()
        })
        .collect();
    let admitted: Arc<Vec<AtomicU64>> = Arc::new(keys.iter().map(|_| AtomicU64::new(0)).collect());

    let began = server_time(&mut admin).await;
    let run_for = Duration::from_millis(1500);
    let until = Instant::now() + run_for;
    let tasks: Vec<_> = instances
        .iter()
        .flat_map(|instance| (0..6).map(move |task| (instance.clone(), task)))
        .map(|(limiter, task)| {
            let admitted = Arc::clone(&admitted);
            tokio::spawn(async move {
                let mut i = task;
                while Instant::now() < until {
                    let key = i % keys.len();
                    i += 1;
                    match limiter.check(keys[key]).await.unwrap() {
                        Decision::Allowed { .. } => {
                            admitted[key].fetch_add(1, Ordering::Relaxed);
                        }
                        Decision::Refused { retry_after, .. } => {
                            tokio::time::sleep(retry_after.min(Duration::from_millis(5))).await;
                        }
                        other => panic!("the server is up, yet {other:?}"),
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let ended = server_time(&mut admin).await;

    // Every admission happened on the server between `began` and `ended`: at most the burst
    // plus one per interval, plus one for where the window's edges fall.
    let elapsed_us = ended - began;
    let bound = u64::from(burst) + elapsed_us / interval_us + 1;
    let alone: u64 = instances.len() as u64 * bound;
    for (key, count) in keys.iter().zip(admitted.iter()) {
        let count = count.load(Ordering::Relaxed);
        println!(
            "{key}: {count} admitted in {:?} of server time; the shared bound is {bound}, \
             four unshared limiters could admit up to {alone}",
            Duration::from_micros(elapsed_us),
        );
        assert!(count <= bound, "{key}: {count} admitted, above the shared bound {bound}");
        assert!(count >= u64::from(burst), "{key}: at least the burst goes through");
    }
    let stats: Vec<_> = instances.iter().map(RateLimiter::stats).collect();
    let allowed: u64 = stats.iter().map(|stats| stats.allowed).sum();
    let total: u64 = admitted.iter().map(|count| count.load(Ordering::Relaxed)).sum();
    assert_eq!(allowed, total, "the statistics count what the callers saw");
    assert!(stats.iter().all(|stats| stats.allowed_unchecked == 0));
    println!(
        "round trips {:?}, refused locally {:?}",
        stats.iter().map(|stats| stats.round_trips).collect::<Vec<_>>(),
        stats.iter().map(|stats| stats.refused_locally).collect::<Vec<_>>(),
    );
}

#[tokio::test]
async fn a_key_expires_once_it_holds_no_state() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    // One admission every 100 ms.
    let limiter = limiter(pool(&server)).rate(10, Duration::from_secs(1)).burst(5).build().unwrap();
    let key = limiter.redis_key("dave");

    let peek = limiter.check_n("dave", 0).await.unwrap();
    assert!(matches!(peek, Decision::Allowed { remaining: 5 }), "{peek:?}");
    let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut admin).await.unwrap();
    assert!(!exists, "asking how many remain writes nothing");

    for expected in [4, 3, 2] {
        let decision = limiter.check("dave").await.unwrap();
        assert!(matches!(decision, Decision::Allowed { remaining } if remaining == expected));
    }
    // Three admissions at once put the key's TAT about 300 ms ahead: it lives that long.
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut admin).await.unwrap();
    println!("after three admissions at 10/s the key lives {pttl} ms");
    assert!(pttl > 0 && pttl <= 301, "PTTL {pttl}");

    wait_until("the idle key is gone", Duration::from_secs(10), || {
        let mut admin = admin.clone();
        let key = key.clone();
        async move {
            let exists: bool =
                redis::cmd("EXISTS").arg(&key).query_async(&mut admin).await.unwrap();
            !exists
        }
    })
    .await;
    // Gone, it reads as a fresh key: the whole burst.
    let decision = limiter.check_n("dave", 5).await.unwrap();
    assert!(matches!(decision, Decision::Allowed { remaining: 0 }), "{decision:?}");
}

#[tokio::test]
async fn the_short_circuit_refuses_known_keys_without_a_round_trip() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    // One admission a minute: once refused, the key stays refused for the whole test.
    let slow = limiter(pool(&server)).rate(1, Duration::from_secs(60)).burst(1).build().unwrap();

    assert!(matches!(slow.check("erin").await.unwrap(), Decision::Allowed { remaining: 0 }));
    let refused = slow.check("erin").await.unwrap();
    assert!(matches!(refused, Decision::Refused { local: false, .. }), "{refused:?}");
    let retry_after = refused.retry_after().unwrap();
    assert!(retry_after > Duration::from_secs(50) && retry_after <= Duration::from_secs(60));
    let before = scripts_run(&mut admin).await;

    for _ in 0..100 {
        let decision = slow.check("erin").await.unwrap();
        assert!(
            matches!(decision, Decision::Refused { local: true, retry_after } if retry_after <= Duration::from_secs(60)),
            "{decision:?}"
        );
    }
    assert!(matches!(slow.check_local("erin", 1), Some(Decision::Refused { local: true, .. })));
    assert!(slow.check_local("frank", 1).is_none(), "an unknown key needs the server");
    let after = scripts_run(&mut admin).await;
    let stats = slow.stats();
    println!("101 refusals of a known key cost {} scripts on the server", after - before);
    assert_eq!(after, before, "no script ran for a key known to be refused");
    // A fresh server: the first EVALSHA met NOSCRIPT and EVAL followed, then one EVALSHA.
    assert_eq!(stats.round_trips, 3);
    assert_eq!(stats.refused_locally, 101);
    assert_eq!(stats.remembered, 1);

    // Another instance does not know yet: its first refusal costs a round trip, and it too
    // remembers.
    let other = limiter(pool(&server)).rate(1, Duration::from_secs(60)).burst(1).build().unwrap();
    let decision = other.check("erin").await.unwrap();
    assert!(matches!(decision, Decision::Refused { local: false, .. }), "{decision:?}");
    let decision = other.check("erin").await.unwrap();
    assert!(matches!(decision, Decision::Refused { local: true, .. }), "{decision:?}");

    // A local refusal lasts only until its deadline: a fast key is admitted again.
    let fast = limiter(pool(&server)).rate(10, Duration::from_secs(1)).burst(1).build().unwrap();
    assert!(fast.check("grace").await.unwrap().is_allowed());
    assert!(!fast.check("grace").await.unwrap().is_allowed());
    wait_until("the fast key is admitted again", Duration::from_secs(10), || async {
        fast.check("grace").await.unwrap().is_allowed()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_gets_the_chosen_policy_and_the_limiter_recovers() {
    let Some(server) = RedisServer::start() else { return };
    let server = Arc::new(server);
    let build = |policy| {
        limiter(pool(&server))
            .rate(1, Duration::from_secs(60))
            .burst(1)
            .on_unavailable(policy)
            // Longer than the pool's acquire timeout: the cause is the pool's or the command's.
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let open = build(FailurePolicy::Open);
    let closed = build(FailurePolicy::Closed);
    assert!(open.check("heidi").await.unwrap().is_allowed());
    assert!(!closed.check("heidi").await.unwrap().is_allowed(), "they share the key");

    let killed = Arc::clone(&server);
    tokio::task::spawn_blocking(move || killed.kill()).await.unwrap();

    // Twice each: once on the connection the pool holds (it breaks), once on a new one (it is
    // refused).
    for _ in 0..2 {
        match open.check("ivan").await.unwrap() {
            Decision::AllowedUnchecked(cause) => println!("fail open: admitted, because {cause}"),
            other => panic!("fail open with the server down gave {other:?}"),
        }
        match closed.check("ivan").await {
            Err(Error::Unavailable(cause)) => {
                assert!(
                    matches!(cause, Unavailable::Checkout(_) | Unavailable::Command(_)),
                    "{cause:?}"
                );
                println!("fail closed: refused, because {cause}");
            }
            other => panic!("fail closed with the server down gave {other:?}"),
        }
    }
    // A key known to be refused needs no server.
    let decision = closed.check("heidi").await.unwrap();
    assert!(matches!(decision, Decision::Refused { local: true, .. }), "{decision:?}");
    assert_eq!(open.stats().allowed_unchecked, 2);
    assert_eq!(closed.stats().refused_unavailable, 2);

    let restarted = Arc::clone(&server);
    tokio::task::spawn_blocking(move || restarted.start_again()).await.unwrap();
    // The restarted server has lost its script cache: the limiter falls back to EVAL.
    wait_until("the limiter asks the server again", Duration::from_secs(20), || async {
        matches!(closed.check("judy").await, Ok(Decision::Allowed { .. }))
    })
    .await;
    let mut admin = server.admin().await;
    assert!(calls(&mut admin, "eval").await >= 1, "EVAL loaded the script again");
    let decision = open.check("judy").await.unwrap();
    assert!(matches!(decision, Decision::Refused { local: false, .. }), "{decision:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_hits_the_check_timeout_and_gets_the_chosen_policy() {
    let Some(server) = RedisServer::start() else { return };
    let timeout = Duration::from_millis(200);
    // The pool would wait seconds; the check's own timeout ends it first.
    let build = |policy| {
        limiter(pool(&server))
            .rate(100, Duration::from_secs(1))
            .on_unavailable(policy)
            .timeout(timeout)
            .build()
            .unwrap()
    };
    let open = build(FailurePolicy::Open);
    let closed = build(FailurePolicy::Closed);
    assert!(open.check("mallory").await.unwrap().is_allowed());
    assert!(closed.check("mallory").await.unwrap().is_allowed());

    server.freeze();
    let began = Instant::now();
    let decision = tokio::time::timeout(Duration::from_secs(10), open.check("mallory"))
        .await
        .expect("the check's timeout ends it")
        .unwrap();
    match decision {
        Decision::AllowedUnchecked(Unavailable::Timeout(after)) => assert_eq!(after, timeout),
        other => panic!("fail open with the server frozen gave {other:?}"),
    }
    let err = tokio::time::timeout(Duration::from_secs(10), closed.check("mallory"))
        .await
        .expect("the check's timeout ends it")
        .unwrap_err();
    assert!(matches!(&err, Error::Unavailable(Unavailable::Timeout(after)) if *after == timeout));
    assert!(err.unavailable().is_some_and(Unavailable::is_timeout));
    println!("frozen server: both checks ended by their timeout in {:?}: {err}", began.elapsed());

    server.thaw();
    wait_until("the limiter asks the server again", Duration::from_secs(20), || async {
        matches!(closed.check("mallory").await, Ok(Decision::Allowed { .. }))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_pools_in_two_instances_share_a_per_key_limit() {
    let Some(server) = RedisServer::start() else { return };
    let build = |policy| {
        let limiter = limiter(pool(&server))
            .rate(1, Duration::from_secs(60))
            .burst(2)
            .on_unavailable(policy)
            .build()
            .unwrap();
        let workers = WorkerPool::builder()
            .workers(1)
            .shared_rate_limit_per_key(limiter.clone())
            .build()
            .unwrap();
        (limiter, workers)
    };
    let (first_limiter, first) = build(FailurePolicy::Closed);
    let (_, second) = build(FailurePolicy::Closed);

    // Two admissions of user 7 between both instances, then the third is refused and comes
    // back; user 8 has its own limit.
    first.submit_keyed(7, async { 1 }).await.unwrap().await.unwrap();
    second.submit_keyed(7, async { 2 }).await.unwrap().await.unwrap();
    let refused = second.submit_keyed(7, async { 3 }).await.unwrap_err();
    assert!(refused.is_rate_limited(), "{refused}");
    assert!(matches!(refused, SubmitError::RateLimited(_)), "over the limit: {refused:?}");
    assert!(refused.limiter_unavailable().is_none() && refused.source().is_none());
    assert_eq!(refused.into_inner().await, 3, "the refused task comes back untouched");
    let refused = first.submit_keyed(7, async { 4 }).await.unwrap_err();
    assert!(refused.is_rate_limited(), "{refused}");
    assert_eq!(first_limiter.stats().refused, 1, "the other instance's admissions counted");
    assert_eq!(first.submit_keyed(8, async { 5 }).await.unwrap().await.unwrap(), 5);
    // Submits without a key do not consult it.
    assert_eq!(first.submit(async { 6 }).await.unwrap().await.unwrap(), 6);

    // Redis gone: the pool follows the limiter's policy.
    let (_, open) = build(FailurePolicy::Open);
    server.kill();
    let refused = first.submit_keyed(9, async { 7 }).await.unwrap_err();
    assert!(refused.is_rate_limited(), "fail closed: {refused}");
    let cause = refused.source().expect("the limiter's cause is the source");
    let unavailable = cause.downcast_ref::<Unavailable>().expect("an Unavailable");
    println!("fail closed in the worker pool: {refused}: {unavailable}");
    let SubmitError::RateLimiterUnavailable(task, cause) = refused else {
        panic!("fail closed should say the limiter was unavailable");
    };
    assert!(!cause.to_string().is_empty());
    assert_eq!(task.await, 7, "the refused task comes back untouched");
    assert_eq!(first_limiter.stats().refused_unavailable, 1);
    assert_eq!(open.submit_keyed(9, async { 8 }).await.unwrap().await.unwrap(), 8, "fail open");
}

#[tokio::test]
async fn a_script_error_gets_the_chosen_policy() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    let build = |policy| limiter(pool(&server)).on_unavailable(policy).build().unwrap();
    let open = build(FailurePolicy::Open);
    let closed = build(FailurePolicy::Closed);
    // Someone else's hash where the limiter keeps its TAT: the script's GET fails.
    let key = closed.redis_key("oscar");
    let _: () = redis::cmd("HSET").arg(&key).arg("f").arg(1).query_async(&mut admin).await.unwrap();

    match closed.check("oscar").await {
        Err(Error::Unavailable(Unavailable::Command(err))) => {
            println!("fail closed on a script error: {err}");
            assert!(err.to_string().contains("WRONGTYPE"), "{err}");
        }
        other => panic!("fail closed on a script error gave {other:?}"),
    }
    let decision = open.check("oscar").await.unwrap();
    assert!(
        matches!(decision, Decision::AllowedUnchecked(Unavailable::Command(_))),
        "{decision:?}"
    );
    // Other keys are unaffected.
    assert!(matches!(closed.check("peggy").await, Ok(Decision::Allowed { .. })));
}
