//! The Redis pool on a real, throwaway server: commands through exclusive and shared
//! checkouts, the configured database and credentials, blocking commands under a short
//! response timeout, per-checkout and per-command timeouts, and a command future dropped
//! mid-`BLPOP` or timed out, which must not reach the next user.

#![cfg(feature = "redis")]
#![allow(clippy::disallowed_types)]

mod harness;

use std::time::Duration;

use harness::redis::{RedisServer, client_field, info, wait_until};
use millpond::pool::Pool;
use millpond::redis::{Error, RedisManager, RedisPool};
use redis::AsyncCommands;
use tokio::time::Instant;

const HALF_SECOND: Duration = Duration::from_millis(500);

fn pool(manager: RedisManager, max_size: usize) -> RedisPool {
    Pool::builder(manager.response_timeout(Some(HALF_SECOND)))
        .max_size(max_size)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .expect("a valid pool")
}

#[tokio::test]
async fn get_and_set_through_the_pool() {
    let Some(server) = RedisServer::start() else { return };
    let pool = pool(server.manager(), 4);
    let mut conn = pool.get().await.unwrap();
    let _: () = conn.set("greeting", "hello").await.unwrap();
    let greeting: String = conn.get("greeting").await.unwrap();
    assert_eq!(greeting, "hello");
    let again: String = conn.query(redis::cmd("GET").arg("greeting")).await.unwrap();
    assert_eq!(again, "hello");
    let (a, b): (i64, i64) = conn.pipeline(redis::pipe().incr("a", 1).incr("b", 2)).await.unwrap();
    assert_eq!((a, b), (1, 2));
    let err = conn.query::<i64>(redis::cmd("INCR").arg("greeting")).await.unwrap_err();
    assert!(err.redis_error().is_some(), "the server's refusal, typed: {err}");
    assert!(!conn.is_broken(), "a refused command leaves the connection usable");
    drop(conn);
    assert_eq!(pool.status().idle, 1);
}

#[tokio::test]
async fn the_configured_database_and_password_are_used() {
    let Some(server) = RedisServer::start_with(&["--requirepass", "pw"]) else { return };
    let pool = pool(server.manager().db(4).password("pw"), 2);
    let conn = pool.get().await.unwrap();
    let _: () = conn.query(redis::cmd("SET").arg("where").arg("db4")).await.unwrap();
    let info: String = conn.query(redis::cmd("CLIENT").arg("INFO")).await.unwrap();
    assert_eq!(client_field(&info, "db"), "4");
    let mut admin = server.admin_with(Some("pw")).await;
    let _: () = redis::cmd("SELECT").arg(4).query_async(&mut admin).await.unwrap();
    let stored: String = admin.get("where").await.unwrap();
    assert_eq!(stored, "db4");

    let wrong = pool_with_retries_off(server.manager().password("nope"));
    let err = wrong.get().await.unwrap_err();
    let cause = err.manager_error().expect("the server's refusal reaches the caller");
    assert!(cause.to_string().to_lowercase().contains("pass"), "{cause}");
}

fn pool_with_retries_off(manager: RedisManager) -> RedisPool {
    Pool::builder(manager)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(2))
        .breaker(1, Duration::from_secs(60))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_shared_view_pipelines_many_tasks_on_few_connections() {
    let Some(server) = RedisServer::start() else { return };
    let pool = pool(server.manager(), 2);
    let shared = pool.multiplexed(16).unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    let conn = shared.get().await.unwrap();
                    let _: i64 = conn.query(redis::cmd("INCR").arg("hits")).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let conn = pool.get().await.unwrap();
    let hits: i64 = conn.query(redis::cmd("GET").arg("hits")).await.unwrap();
    assert_eq!(hits, 32 * 50);
    assert!(pool.status().size <= 2);
}

#[tokio::test]
async fn blocking_commands_wait_their_own_time_past_the_response_timeout() {
    let Some(server) = RedisServer::start() else { return };
    let pool = pool(server.manager(), 2);
    let conn = pool.get().await.unwrap();

    let began = Instant::now();
    let popped: Option<(String, String)> =
        conn.query(redis::cmd("BLPOP").arg("empty").arg(2)).await.expect("BLPOP for 2 s");
    assert_eq!(popped, None);
    assert!(began.elapsed() >= Duration::from_secs(2), "it blocked its 2 s");

    // The same through exclusive access and the redis crate's own command methods.
    let mut exclusive = pool.get().await.unwrap();
    let began = Instant::now();
    let popped: Option<(String, String)> = exclusive.blpop("empty", 1.0).await.expect("BLPOP 1 s");
    assert_eq!(popped, None);
    assert!(began.elapsed() >= Duration::from_secs(1));
    drop(exclusive);

    let began = Instant::now();
    let read: Option<redis::Value> = conn
        .query(redis::cmd("XREAD").arg("BLOCK").arg(1200).arg("STREAMS").arg("s").arg("$"))
        .await
        .expect("XREAD BLOCK 1200");
    assert_eq!(read, None);
    assert!(began.elapsed() >= Duration::from_millis(1200));

    // A non-blocking command still gets the 500 ms: DEBUG SLEEP holds the server for 1 s.
    let err = conn.query::<()>(redis::cmd("DEBUG").arg("SLEEP").arg(1)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(limit) if limit == HALF_SECOND), "{err}");
    assert!(err.is_timeout());
}

#[tokio::test]
async fn a_command_or_a_checkout_can_have_its_own_timeout() {
    let Some(server) = RedisServer::start() else { return };
    let pool = pool(server.manager(), 1);
    let mut admin = server.admin().await;

    // One command without a timeout: `BLPOP key 0` waits until the element comes.
    let conn = pool.get().await.unwrap();
    let push = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let _: i64 = admin.rpush("jobs", "job-1").await.unwrap();
    });
    let popped: (String, String) =
        conn.query_timeout(redis::cmd("BLPOP").arg("jobs").arg(0), None).await.unwrap();
    assert_eq!(popped.1, "job-1");
    push.await.unwrap();
    // One command with a longer timeout than the checkout's.
    let _: () = conn
        .query_timeout(redis::cmd("DEBUG").arg("SLEEP").arg(0.7), Some(Duration::from_secs(5)))
        .await
        .unwrap();
    drop(conn);

    // A checkout with a longer timeout, for itself only.
    let mut conn = pool.get().await.unwrap();
    conn.set_response_timeout(Some(Duration::from_secs(5)));
    let _: () = conn.query(redis::cmd("DEBUG").arg("SLEEP").arg(0.7)).await.unwrap();
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.response_timeout(), Some(HALF_SECOND), "the next checkout starts afresh");
}

/// A `BLPOP` abandoned mid-wait stays blocked on the server: had the pool handed its connection
/// on, the element pushed next would be popped for no one, and the next user's commands would
/// queue behind it. The connection is closed instead.
#[tokio::test]
async fn a_dropped_blpop_does_not_reach_the_next_user() {
    let Some(server) = RedisServer::start() else { return };
    let pool = pool(server.manager(), 1);
    let mut admin = server.admin().await;

    let conn = pool.get().await.unwrap();
    let first: String = conn.query(redis::cmd("CLIENT").arg("INFO")).await.unwrap();
    let first_id = client_field(&first, "id").to_owned();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(200),
        conn.query::<Option<(String, String)>>(redis::cmd("BLPOP").arg("jobs").arg(0)),
    )
    .await;
    assert!(abandoned.is_err(), "BLPOP 0 was still waiting");
    assert_eq!(conn.in_flight(), 1);
    drop(conn);

    // The server notices the closed connection on its own schedule; wait until it has, so the
    // push below could only be popped by a connection still open.
    wait_until("the abandoned connection is gone", Duration::from_secs(5), || {
        let mut admin = admin.clone();
        async move { info(&mut admin, "clients").await.contains("blocked_clients:0") }
    })
    .await;
    let _: i64 = admin.rpush("jobs", "job-1").await.unwrap();

    let conn = pool.get().await.unwrap();
    let next: String = conn.query(redis::cmd("CLIENT").arg("INFO")).await.unwrap();
    assert_ne!(client_field(&next, "id"), first_id, "a new connection");
    let len: i64 = conn.query(redis::cmd("LLEN").arg("jobs")).await.unwrap();
    assert_eq!(len, 1, "no one popped the job");
    let popped: Option<(String, String)> =
        conn.query(redis::cmd("BLPOP").arg("jobs").arg(1)).await.unwrap();
    assert_eq!(popped, Some(("jobs".to_owned(), "job-1".to_owned())));
    let list: String = conn.query(redis::cmd("CLIENT").arg("LIST")).await.unwrap();
    assert!(!list.contains(&format!("id={first_id} ")), "the old connection is closed");
}

/// A command that timed out may still be running on the server (here `DEBUG SLEEP`): the next
/// user gets another connection, rather than waiting behind it or reading its late reply.
#[tokio::test]
async fn a_timed_out_command_does_not_hold_up_the_next_user() {
    let Some(server) = RedisServer::start() else { return };
    let pool = pool(server.manager(), 1);
    let conn = pool.get().await.unwrap();
    let _: () = conn.query(redis::cmd("SET").arg("k").arg("right")).await.unwrap();
    // `DEBUG SLEEP` answers `OK` after 1 s, long after the 500 ms timeout.
    let err = conn.query::<String>(redis::cmd("DEBUG").arg("SLEEP").arg(1)).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(conn.in_flight() > 0);
    drop(conn);
    let conn = pool.get().await.unwrap();
    let value: String = conn.query(redis::cmd("GET").arg("k")).await.expect("served at once");
    assert_eq!(value, "right");
}
