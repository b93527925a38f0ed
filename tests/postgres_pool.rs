//! The PostgreSQL manager against a real, throwaway server: reuse, prepared statements, what the
//! next user gets after a dropped query or an abandoned transaction, and `max_size` / `min_idle`
//! as the server counts sessions.

#![cfg(feature = "postgres")]
#![allow(clippy::disallowed_types)]

mod harness;

use std::pin::pin;
use std::time::Duration;

use harness::postgres::{PgServer, state_change, wait_until};
use millpond::pool::Pool;
use millpond::postgres::{PgManager, PgPool, TransactionStatus};

fn pool(server: &PgServer, name: &str, max_size: usize) -> PgPool {
    Pool::builder(PgManager::new(server.config(name)))
        .max_size(max_size)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .expect("a valid pool")
}

/// Sessions the server has open for `application_name`.
async fn sessions(admin: &tokio_postgres::Client, application_name: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

async fn backend_pid(conn: &tokio_postgres::Client) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[]).await.expect("pg_backend_pid").get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_and_statements_prepared_once() {
    let Some(server) = PgServer::start() else { return };
    let pool = pool(&server, "reuse", 2);

    let first_pid = {
        let conn = pool.get().await.unwrap();
        let statement = conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
        let again = conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
        assert_eq!(statement.columns().len(), again.columns().len());
        assert_eq!(conn.cached_statements(), 1);
        let prepared: i64 = conn
            .query_one("SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql", &[])
            .await
            .unwrap()
            .get(0);
        // The cached statement, and the one this count runs as.
        assert_eq!(prepared, 2, "the second prepare came from the cache, not the server");
        let row = conn.query_one(&statement, &[&41_i32]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
        backend_pid(&conn).await
    };
    for _ in 0..5 {
        let conn = pool.get().await.unwrap();
        assert_eq!(backend_pid(&conn).await, first_pid, "the same session serves again");
        assert_eq!(conn.cached_statements(), 1, "its statement cache survives the return");
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    }
    let metrics = pool.metrics();
    assert_eq!(metrics.created, 1);
}

/// The session's pid, asked with a simple query: unlike `backend_pid`, it leaves no statement
/// for tokio-postgres to close after it returns, so the session is quiet once it has answered.
async fn quiet_backend_pid(conn: &tokio_postgres::Client) -> i32 {
    let messages = conn.simple_query("SELECT pg_backend_pid()").await.expect("pg_backend_pid");
    messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .and_then(|pid| pid.parse().ok())
        .expect("a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_connection_costs_no_round_trip_within_the_window_and_one_past_it() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    // A window no stall of a loaded machine comes near, so the leg inside it does not depend on
    // the machine's speed. The 500 ms default itself is checked on a paused clock
    // (`pool_timeouts.rs`, `recently_used_resources_skip_the_check`).
    let long_window = Pool::builder(PgManager::new(server.config("window-long")))
        .max_size(1)
        .check_window(Duration::from_secs(3600))
        .build()
        .unwrap();
    let checked = pool(&server, "window-default", 1);
    let unchecked = Pool::builder(PgManager::new(server.config("window-off")))
        .max_size(1)
        .check_on_get(false)
        .build()
        .unwrap();

    // The last request each session served, read while it is still checked out.
    let mut sessions = Vec::new();
    for pool in [&long_window, &checked, &unchecked] {
        let conn = pool.get().await.unwrap();
        let pid = quiet_backend_pid(&conn).await;
        sessions.push((pid, state_change(&admin, pid).await));
    }
    let [(long_pid, long_before), (checked_pid, checked_before), (unchecked_pid, unchecked_before)] =
        sessions[..]
    else {
        unreachable!()
    };

    // Given back inside the check window: out as is.
    drop(long_window.get().await.unwrap());
    assert_eq!(state_change(&admin, long_pid).await, long_before, "no request was sent");

    // Idle past the default window (500 ms): pinged once (an empty query); with
    // `check_on_get(false)`, not. Sleeping longer than asked only puts it further past.
    tokio::time::sleep(Duration::from_millis(600)).await;
    drop(checked.get().await.unwrap());
    drop(unchecked.get().await.unwrap());
    assert!(state_change(&admin, checked_pid).await > checked_before, "the documented ping");
    assert_eq!(
        state_change(&admin, unchecked_pid).await,
        unchecked_before,
        "no request with checks off"
    );
    let created = [&long_window, &checked, &unchecked].map(|pool| pool.metrics().created);
    assert_eq!(created, [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_while_idle_is_replaced_at_checkout() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    // No check of idle connections: only the manager's verdict on a closed one can save the
    // caller.
    let pool = Pool::builder(PgManager::new(server.config("killed")))
        .max_size(1)
        .check_on_get(false)
        .build()
        .unwrap();
    let kill = |pid: i32| {
        let admin = &admin;
        async move {
            let killed: bool = admin
                .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .expect("pg_terminate_backend")
                .get(0);
            assert!(killed, "session {pid} was there to kill");
        }
    };

    // Killed while checked out: dropped when it comes back.
    let conn = pool.get().await.unwrap();
    kill(backend_pid(&conn).await).await;
    wait_until("the client sees its session end", Duration::from_secs(10), || async {
        conn.is_closed()
    })
    .await;
    drop(conn);
    assert_eq!(pool.status().size, 0, "not put back");

    // Killed while idle in the pool: dropped at checkout, and the caller gets a new session.
    let pid = backend_pid(&pool.get().await.unwrap()).await;
    kill(pid).await;
    wait_until("the idle connection sees its session end", Duration::from_secs(10), || async {
        let mut closed = false;
        pool.retain(|conn, _| {
            closed |= conn.is_closed();
            true
        });
        closed
    })
    .await;
    let conn = pool.get().await.expect("the caller sees no error");
    assert_ne!(backend_pid(&conn).await, pid);
    drop(conn);
    let metrics = pool.metrics();
    assert_eq!((metrics.created, metrics.closed.broken), (3, 2), "{metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_transaction_is_rolled_back_before_the_next_user() {
    let Some(server) = PgServer::start() else { return };
    let pool = pool(&server, "abandoned-tx", 1);
    pool.get().await.unwrap().batch_execute("CREATE TABLE t (n int)").await.unwrap();

    // A typed transaction dropped without commit, on the error path of the user's code.
    {
        let mut conn = pool.get().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
        drop(tx);
    }
    // A plain BEGIN, left open.
    {
        let conn = pool.get().await.unwrap();
        conn.batch_execute("BEGIN; INSERT INTO t VALUES (2)").await.unwrap();
        assert_eq!(conn.transaction_status(), TransactionStatus::InTransaction);
    }
    // A failed transaction: every statement after the error fails until a rollback.
    {
        let conn = pool.get().await.unwrap();
        conn.batch_execute("BEGIN; INSERT INTO t VALUES (3)").await.unwrap();
        assert!(conn.batch_execute("SELECT 1/0").await.is_err());
        // The error reaches the caller before the server's ReadyForQuery may have.
        wait_until("the failed request completes", Duration::from_secs(10), || async {
            !conn.is_busy()
        })
        .await;
        assert_eq!(conn.transaction_status(), TransactionStatus::Failed);
    }

    let conn = pool.get().await.unwrap();
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    let pid = backend_pid(&conn).await;
    let state: String = server
        .admin()
        .await
        .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "idle", "the next user starts outside any transaction");
    let rows: i64 = conn.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0, "none of the abandoned inserts was committed");
    drop(conn);
    let metrics = pool.metrics();
    assert_eq!(metrics.created, 1, "rolled back, not reconnected: {metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_dropped_mid_way_never_reaches_the_next_user() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    let pool = pool(&server, "dropped-query", 1);

    let abandoned_pid = {
        let conn = pool.get().await.unwrap();
        let pid = backend_pid(&conn).await;
        let sleeping = conn.batch_execute("SELECT pg_sleep(60)");
        // Give up on the query once the server is running it.
        tokio::select! {
            _ = sleeping => panic!("the sleep finished"),
            () = wait_until("the sleep runs", Duration::from_secs(10), || async {
                admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                        &[&pid],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                    == 1
            }) => {}
        }
        assert!(conn.is_busy());
        pid
    };

    // The next user gets another session, not one stuck behind a 60 s sleep. Its checkout costs
    // the 20 ms grace and one connect; the timeout only tells that from the sleep, with room for
    // a loaded machine.
    let next_user = async {
        let conn = pool.get().await.unwrap();
        assert!(!conn.is_busy());
        backend_pid(&conn).await
    };
    let pid = tokio::time::timeout(Duration::from_secs(20), next_user)
        .await
        .expect("the next user does not wait for the abandoned query");
    assert_ne!(pid, abandoned_pid);

    // And the server was told to stop the query nobody waits for.
    wait_until("the abandoned session is gone", Duration::from_secs(20), || async {
        admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&abandoned_pid])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
    })
    .await;
    assert_eq!(pool.metrics().closed.broken, 1, "{:?}", pool.metrics());
}

// On one thread the connection task runs only when the test yields: the single poll below always
// leaves the prepare in flight, and the yield after it lets the task write it to the server.
#[tokio::test(flavor = "current_thread")]
async fn a_prepare_dropped_mid_way_is_never_handed_out_busy() {
    let Some(server) = PgServer::start() else { return };
    let pool = pool(&server, "dropped-prepare", 1);
    let pid = {
        let conn = pool.get().await.unwrap();
        let pid = backend_pid(&conn).await;
        let mut prepare = pin!(conn.prepare_cached("SELECT $1::int + 1"));
        assert!(futures::poll!(prepare.as_mut()).is_pending(), "the Parse is on its way");
        tokio::task::yield_now().await;
        pid
    };
    // The Parse is work. If its answer comes within the 20 ms grace the checkout waits, the
    // session goes on serving; if not (a loaded server), it is closed and replaced. Either way
    // the next user is served, by a connection with nothing in flight.
    let conn = tokio::time::timeout(Duration::from_secs(20), pool.get())
        .await
        .expect("the next user is served")
        .unwrap();
    assert!(!conn.is_busy());
    assert_eq!(conn.cached_statements(), 0, "nothing was cached");
    let kept = backend_pid(&conn).await == pid;
    let statement = conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
    assert_eq!(conn.query_one(&statement, &[&41_i32]).await.unwrap().get::<_, i32>(0), 42);
    drop(conn);
    let metrics = pool.metrics();
    let expected = if kept { (1, 0) } else { (2, 1) };
    assert_eq!((metrics.created, metrics.closed.broken), expected, "kept: {kept}, {metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_dropped_while_it_waits_on_a_lock_is_closed_and_cancelled() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    let pool = pool(&server, "locked-prepare", 1);
    admin.batch_execute("CREATE TABLE locked (n int)").await.unwrap();
    let locker = server.admin().await;
    locker.batch_execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let abandoned_pid = {
        let conn = pool.get().await.unwrap();
        let pid = backend_pid(&conn).await;
        // Parsing takes the table's lock, so the Parse waits behind the open LOCK TABLE.
        let prepare = conn.prepare_cached("SELECT n FROM locked");
        tokio::select! {
            _ = prepare => panic!("the prepare got past the lock"),
            () = wait_until("the prepare waits on the lock", Duration::from_secs(10), || async {
                admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE pid = $1 AND wait_event_type = 'Lock'",
                        &[&pid],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                    == 1
            }) => {}
        }
        assert!(conn.is_busy(), "a Parse is work");
        pid
    };

    // The next user gets another session, not one stuck behind the lock.
    let conn = tokio::time::timeout(Duration::from_secs(20), pool.get())
        .await
        .expect("the next user does not wait for the lock")
        .unwrap();
    assert!(!conn.is_busy());
    assert_ne!(backend_pid(&conn).await, abandoned_pid);
    // The lock is still held, so only the cancel sent to the server ends the abandoned session.
    wait_until("the abandoned session is gone", Duration::from_secs(20), || async {
        admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&abandoned_pid])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
    })
    .await;
    drop(conn);
    locker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(pool.metrics().closed.broken, 1, "{:?}", pool.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_query_that_starts_with_rollback_is_not_taken_for_housekeeping() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    let pool = pool(&server, "rollback-prefix", 1);

    let (abandoned_pid, was_busy) = {
        let conn = pool.get().await.unwrap();
        let pid = backend_pid(&conn).await;
        let sleeping = conn.batch_execute("ROLLBACK; SELECT pg_sleep(60)");
        tokio::select! {
            _ = sleeping => panic!("the sleep finished"),
            () = wait_until("the sleep runs", Duration::from_secs(10), || async {
                admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE pid = $1 AND state = 'active' AND query LIKE 'ROLLBACK;%'",
                        &[&pid],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                    == 1
            }) => {}
        }
        (pid, conn.is_busy())
    };

    // The next user is not queued behind the sleep on the same session: it gets a fresh one.
    let conn = pool.get().await.unwrap();
    assert!(!conn.is_busy());
    assert_ne!(backend_pid(&conn).await, abandoned_pid);
    assert!(was_busy, "a query that merely starts with ROLLBACK is the user's work");
    let one: i32 = conn.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(conn);
    assert_eq!(pool.metrics().closed.broken, 1, "{:?}", pool.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_size_holds_and_min_idle_is_kept_as_the_server_counts() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    let pool = Pool::builder(PgManager::new(server.config("bounds")))
        .max_size(5)
        .min_idle(3)
        .build()
        .unwrap();

    wait_until("min_idle sessions are open", Duration::from_secs(20), || async {
        sessions(&admin, "bounds").await == 3
    })
    .await;

    let mut peak = 0;
    let load: Vec<_> = (0..32)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let conn = pool.get().await.unwrap();
                    conn.batch_execute("SELECT pg_sleep(0.002)").await.unwrap();
                }
            })
        })
        .collect();
    let mut finished = false;
    while !finished {
        peak = peak.max(sessions(&admin, "bounds").await);
        finished = load.iter().all(tokio::task::JoinHandle::is_finished);
    }
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(peak, 5, "the server never saw more than max_size sessions, and saw all of them");
    assert_eq!(sessions(&admin, "bounds").await, 5);
    assert_eq!(pool.status().size, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiplexed_view_pipelines_many_tasks_over_few_sessions() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    let pool = pool(&server, "multiplexed", 2);
    let view = pool.multiplexed(16).unwrap();

    let tasks: Vec<_> = (0..32_i32)
        .map(|task| {
            let view = view.clone();
            tokio::spawn(async move {
                for round in 0..20_i32 {
                    let conn = view.get().await.unwrap();
                    let statement =
                        conn.prepare_cached("SELECT $1::int * 1000 + $2::int").await.unwrap();
                    let row = conn.query_one(&statement, &[&task, &round]).await.unwrap();
                    assert_eq!(
                        row.get::<_, i32>(0),
                        task * 1000 + round,
                        "each task gets its own answer"
                    );
                }
            })
        })
        .collect();
    let mut peak = 0;
    while !tasks.iter().all(tokio::task::JoinHandle::is_finished) {
        peak = peak.max(sessions(&admin, "multiplexed").await);
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(peak <= 2, "32 tasks shared at most max_size sessions, saw {peak}");
    assert!(view.borrowers().is_empty());
    assert_eq!(pool.status().in_use, 0, "every connection went back to the pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_the_multiplexed_view_never_lands_in_a_transaction_left_open() {
    let Some(server) = PgServer::start() else { return };
    let pool = pool(&server, "multiplexed-tx", 2);
    pool.get().await.unwrap().batch_execute("CREATE TABLE t (n int)").await.unwrap();

    // One user leaves a transaction open with a write in it.
    pool.get().await.unwrap().batch_execute("BEGIN; INSERT INTO t VALUES (1)").await.unwrap();

    // A borrower of the multiplexed view writes with a plain statement. The view spreads onto
    // idle connections with `try_get`: the connection left inside the transaction must be
    // rolled back before anyone borrows it, or this insert joins the abandoned transaction.
    let shared = pool.multiplexed(4).unwrap();
    {
        let conn = shared.get().await.unwrap();
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
        conn.batch_execute("INSERT INTO t VALUES (2)").await.unwrap();
    }

    // Whatever connection the next exclusive user gets, the borrower's row is committed and the
    // abandoned one is not.
    let conn = pool.get().await.unwrap();
    let rows: Vec<i32> = conn
        .query("SELECT n FROM t ORDER BY n", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(rows, [2], "the borrower's write survives, the abandoned one does not");
}
