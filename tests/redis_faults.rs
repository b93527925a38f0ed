//! The Redis pool while its server fails: killed and restarted under load, and frozen
//! (SIGSTOP). Nothing waits past its timeout, the errors are typed, and the pool heals by
//! itself.
//!
//! Each test prints what it measured (`cargo test --features redis --test redis_faults --
//! --nocapture`).

#![cfg(feature = "redis")]
#![allow(clippy::disallowed_types)]

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::outage::Record;
use harness::redis::{RedisServer, wait_until};
use millpond::pool::{CreateError, Pool};
use millpond::redis::{Error, RedisPool};
use tokio::time::Instant;

/// Runs a blocking server command (kill, start) off the runtime's workers.
async fn blocking(server: &Arc<RedisServer>, action: fn(&RedisServer)) {
    let server = Arc::clone(server);
    tokio::task::spawn_blocking(move || action(&server)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_load_heals_without_help_and_nothing_hangs() {
    let Some(server) = RedisServer::start() else { return };
    let server = Arc::new(server);
    let acquire_timeout = Duration::from_secs(2);
    let response_timeout = Duration::from_millis(500);
    let pool: RedisPool = Pool::builder(server.manager().response_timeout(Some(response_timeout)))
        .max_size(8)
        .acquire_timeout(acquire_timeout)
        .create_timeout(Duration::from_secs(1))
        .check_timeout(Duration::from_millis(500))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .breaker(5, Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let back_up = Arc::new(AtomicBool::new(false));
    let records: Arc<Vec<Record>> = Arc::new((0..32).map(|_| Record::default()).collect());

    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let (pool, stop, back_up, records) =
                (pool.clone(), stop.clone(), back_up.clone(), records.clone());
            tokio::spawn(async move {
                let record = &records[task];
                let key = format!("key-{task}");
                while !stop.load(Ordering::SeqCst) {
                    let began = Instant::now();
                    let attempt = async {
                        let conn = pool.get().await.map_err(|err| err.to_string())?;
                        let _: () = conn
                            .query(redis::cmd("SET").arg(&key).arg(task))
                            .await
                            .map_err(|err| err.to_string())?;
                        conn.query::<usize>(redis::cmd("GET").arg(&key))
                            .await
                            .map_err(|err| err.to_string())
                    };
                    // The pool's own timeouts must end every attempt; this only catches a hang.
                    let outcome = tokio::time::timeout(Duration::from_secs(10), attempt)
                        .await
                        .unwrap_or_else(|_| panic!("an attempt hung for 10 s"));
                    let bound = acquire_timeout + 2 * response_timeout + Duration::from_secs(1);
                    assert!(began.elapsed() < bound, "an attempt took {:?}", began.elapsed());
                    match outcome {
                        Ok(value) => {
                            assert_eq!(value, task, "each task reads its own reply");
                            record.served(&back_up, started);
                        }
                        Err(_) => record.failed().await,
                    }
                }
            })
        })
        .collect();

    wait_until("every task has been served", Duration::from_secs(20), || async {
        records.iter().all(Record::was_served)
    })
    .await;
    let created_before = pool.metrics().created;

    let down_at = started.elapsed();
    blocking(&server, RedisServer::kill).await;
    // The outage: long enough for every task to hit it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocking(&server, RedisServer::start_again).await;
    let up_at = started.elapsed();
    back_up.store(true, Ordering::SeqCst);

    wait_until("every task is served again", Duration::from_secs(20), || async {
        records.iter().all(Record::is_back)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }

    let last_back = records.iter().map(Record::back_at).max().unwrap();
    let failed: u64 = records.iter().map(Record::failed_count).sum();
    let ok: u64 = records.iter().map(Record::served_count).sum();
    let metrics = pool.metrics();
    println!(
        "restart under load: server down at {down_at:?} for {:?}; every task served {} ms after \
         the server was back; {failed} failed attempts, {ok} successes; {} connections replaced",
        up_at - down_at,
        last_back.saturating_sub(up_at).as_millis(),
        metrics.created - created_before,
    );
    assert!(
        last_back.saturating_sub(up_at) < Duration::from_secs(5),
        "every task is served again within 5 s"
    );
    assert!(metrics.created > created_before, "dead connections were replaced");
    assert!(failed > 0, "the restart was seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_times_out_with_a_typed_error_and_recovers() {
    let Some(server) = RedisServer::start() else { return };
    let response_timeout = Duration::from_millis(300);
    let pool: RedisPool = Pool::builder(server.manager().response_timeout(Some(response_timeout)))
        .max_size(2)
        .check_timeout(Duration::from_millis(300))
        .create_timeout(Duration::from_millis(500))
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let conn = pool.get().await.unwrap();
    let _: () = conn.query(redis::cmd("SET").arg("k").arg("v")).await.unwrap();

    server.freeze();
    let began = Instant::now();
    let err = conn.query::<String>(redis::cmd("GET").arg("k")).await.unwrap_err();
    let took = began.elapsed();
    println!("frozen server: a GET failed after {took:?} with \"{err}\"");
    assert!(matches!(err, Error::Timeout(limit) if limit == response_timeout), "{err}");
    assert!(took >= response_timeout && took < response_timeout + Duration::from_secs(1));
    drop(conn);
    assert_eq!(pool.metrics().closed.broken, 1, "the connection waiting on a reply is closed");

    // Every further attempt ends by a timeout too: a command on a connection, a check, or a
    // creation against the frozen server.
    for _ in 0..3 {
        let began = Instant::now();
        let attempt = async {
            match pool.get().await {
                Ok(conn) => match conn.query::<String>(redis::cmd("GET").arg("k")).await {
                    Err(err) => assert!(err.is_timeout(), "{err}"),
                    Ok(value) => panic!("a frozen server answered {value}"),
                },
                // Waiting past the acquire timeout, or refused at once by the open breaker:
                // either way the cause is a timed out creation, typed.
                Err(err) => assert!(
                    err.is_timeout()
                        || matches!(err.last_create_error(), Some(CreateError::TimedOut(_))),
                    "{err}"
                ),
            }
        };
        tokio::time::timeout(Duration::from_secs(10), attempt).await.expect("no hang");
        assert!(began.elapsed() < Duration::from_secs(3), "{:?}", began.elapsed());
    }

    server.thaw();
    wait_until("the pool serves again", Duration::from_secs(20), || async {
        match pool.get().await {
            Ok(conn) => conn.query::<String>(redis::cmd("GET").arg("k")).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    for _ in 0..20 {
        let conn = pool.get().await.expect("served after the thaw");
        let value: String = conn.query(redis::cmd("GET").arg("k")).await.unwrap();
        assert_eq!(value, "v");
    }
}
