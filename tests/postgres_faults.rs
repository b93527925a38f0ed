//! The PostgreSQL pool while its server fails: restarted under load, down, and frozen. Nothing
//! waits past its timeout, the real cause reaches the caller, and the pool heals by itself.
//!
//! Each test prints what it measured (`cargo test --features postgres --test postgres_faults --
//! --nocapture`); the figures are in `docs/benchmarks.md`.

#![cfg(feature = "postgres")]
#![allow(clippy::disallowed_types)]

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::outage::Record;
use harness::postgres::{PgServer, wait_until};
use millpond::pool::{Error, Pool};
use millpond::postgres::{PgManager, PgPool};
use tokio::time::Instant;

/// Whether any error in `err`'s source chain mentions `needle`.
fn chain_mentions(err: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.to_string().to_lowercase().contains(needle) {
            return true;
        }
        next = err.source();
    }
    false
}

/// Runs a blocking server command (`pg_ctl`) off the runtime's workers.
async fn blocking(server: &Arc<PgServer>, action: fn(&PgServer)) {
    let server = Arc::clone(server);
    tokio::task::spawn_blocking(move || action(&server)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_load_heals_without_help_and_nothing_hangs() {
    let Some(server) = PgServer::start() else { return };
    let server = Arc::new(server);
    let acquire_timeout = Duration::from_secs(2);
    let pool: PgPool = Pool::builder(PgManager::new(server.config("restart")))
        .max_size(16)
        .acquire_timeout(acquire_timeout)
        .create_timeout(Duration::from_secs(2))
        .check_timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .breaker(5, Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let back_up = Arc::new(AtomicBool::new(false));
    let records: Arc<Vec<Record>> = Arc::new((0..64).map(|_| Record::default()).collect());

    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let (pool, stop, back_up, records) =
                (pool.clone(), stop.clone(), back_up.clone(), records.clone());
            tokio::spawn(async move {
                let record = &records[task];
                while !stop.load(Ordering::SeqCst) {
                    let attempt_began = Instant::now();
                    let attempt = async {
                        let conn = pool.get().await;
                        // Scheduling slack on a loaded machine, not part of the promise.
                        let slack = Duration::from_secs(1);
                        assert!(
                            attempt_began.elapsed() < acquire_timeout + slack,
                            "a get() outlived its timeout: {:?}",
                            attempt_began.elapsed()
                        );
                        let conn = conn.map_err(|err| err.to_string())?;
                        let statement =
                            conn.prepare_cached("SELECT 1").await.map_err(|e| e.to_string())?;
                        conn.query_one(&statement, &[]).await.map_err(|e| e.to_string())
                    };
                    // The pool's own timeouts must end every attempt; this only catches a hang.
                    let outcome = tokio::time::timeout(Duration::from_secs(10), attempt)
                        .await
                        .unwrap_or_else(|_| panic!("an attempt hung for 10 s"));
                    assert!(attempt_began.elapsed() < Duration::from_secs(5));
                    match outcome {
                        Ok(_) => {
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
    blocking(&server, |server| server.stop("fast")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocking(&server, PgServer::start_again).await;
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

    let first_back = records.iter().map(Record::back_at).min().unwrap();
    let last_back = records.iter().map(Record::back_at).max().unwrap();
    let failed: u64 = records.iter().map(Record::failed_count).sum();
    let ok: u64 = records.iter().map(Record::served_count).sum();
    let metrics = pool.metrics();
    println!(
        "restart under load: server down at {down_at:?} for {:?}; first query served {} ms and \
         every task served {} ms after the server was back; {failed} failed attempts, {ok} \
         queries; {} connections replaced ({} closed as broken)",
        up_at - down_at,
        first_back.saturating_sub(up_at).as_millis(),
        last_back.saturating_sub(up_at).as_millis(),
        metrics.created - created_before,
        metrics.closed.broken,
    );
    assert!(
        last_back.saturating_sub(up_at) < Duration::from_secs(5),
        "every task is served again within a few seconds of the server's return"
    );
    assert!(metrics.created > created_before, "dead connections were replaced");
    assert!(failed > 0, "the restart was seen: in-flight queries failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_server_fails_fast_with_the_real_cause_and_recovers() {
    let Some(server) = PgServer::start() else { return };
    let server = Arc::new(server);
    let acquire_timeout = Duration::from_secs(10);
    let cooldown = Duration::from_secs(1);
    let pool: PgPool = Pool::builder(PgManager::new(server.config("down")))
        .max_size(4)
        .acquire_timeout(acquire_timeout)
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .breaker(3, cooldown)
        .build()
        .unwrap();
    drop(pool.get().await.expect("the server is up"));
    pool.retain(|_, _| false);

    blocking(&server, |server| server.stop("immediate")).await;
    // Until the breaker opens, a get() waits while creations fail; once it is open, get() fails
    // at once with the backend's own error.
    let opened = Instant::now();
    let err = loop {
        match pool.get().await {
            Err(err @ Error::Unavailable(_)) => break err,
            Err(Error::Timeout { .. }) => {}
            other => panic!("expected the breaker to open, got {other:?}"),
        }
        assert!(opened.elapsed() < Duration::from_secs(60), "the breaker never opened");
    };
    let open_after = opened.elapsed();
    // Three refused connects and two backoffs of at most 100 ms, with room for a loaded machine.
    assert!(open_after < Duration::from_secs(2), "the breaker opened after {open_after:?}");
    assert!(chain_mentions(&err, "connection refused"), "the real cause reaches the caller: {err}");
    let fast = Instant::now();
    let again = pool.get().await;
    let fail_fast = fast.elapsed();
    assert!(matches!(again, Err(Error::Unavailable(_))));
    assert!(fail_fast < Duration::from_millis(50), "an open breaker fails get() at once");
    println!(
        "server down: breaker open after {open_after:?}; a get() then failed in {fail_fast:?}: \
         {err}"
    );

    blocking(&server, PgServer::start_again).await;
    let back = Instant::now();
    wait_until("the pool serves again", Duration::from_secs(20), || async {
        pool.get().await.is_ok()
    })
    .await;
    let serving_after = back.elapsed();
    println!("server down: serving again {serving_after:?} after the server's return");
    // At most the rest of the cooldown, then one connect.
    assert!(serving_after < cooldown + Duration::from_secs(1), "{serving_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_trips_check_and_create_timeouts_and_nothing_waits_forever() {
    let Some(server) = PgServer::start() else { return };
    let server = Arc::new(server);
    let acquire_timeout = Duration::from_secs(3);
    let pool: PgPool = Pool::builder(PgManager::new(server.config("frozen")))
        .max_size(2)
        .check_window(Duration::ZERO)
        .check_timeout(Duration::from_millis(300))
        .create_timeout(Duration::from_millis(500))
        .acquire_timeout(acquire_timeout)
        .build()
        .unwrap();
    drop(pool.get().await.expect("the server is up"));

    server.freeze();
    let began = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(15), pool.get())
        .await
        .expect("get() ends by its own timeouts on a frozen server");
    let took = began.elapsed();
    let err = outcome.expect_err("a frozen server serves nobody");
    let metrics = pool.metrics();
    println!(
        "frozen server: get() failed after {took:?} with \"{err}\"; {} checks timed out, {} \
         creations failed",
        metrics.closed.broken, metrics.create_failures
    );
    assert!(err.is_timeout(), "{err}");
    assert!(
        took >= acquire_timeout && took < acquire_timeout + Duration::from_secs(1),
        "get() ends at its acquire timeout, not before and not long after: {took:?}"
    );
    assert_eq!(metrics.closed.broken, 1, "the idle connection's check timed out and closed it");
    assert!(metrics.create_failures >= 1, "creations timed out");
    assert!(
        matches!(err.last_create_error(), Some(millpond::pool::CreateError::TimedOut(_))),
        "the create timeout is the cause: {err:?}"
    );

    server.thaw();
    wait_until("the pool serves again", Duration::from_secs(20), || async {
        pool.get().await.is_ok()
    })
    .await;
}
