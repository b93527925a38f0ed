//! What one user leaves in a PostgreSQL session (settings, the role, `LISTEN`s, advisory locks,
//! temporary tables, prepared statements, cursors) never reaches the next user, on a real,
//! throwaway server; a connection nobody changed is handed out without a round trip; and each
//! `SessionReset` policy does what it says.
//!
//! Every pool here has one connection, so the next user gets the same session (the tests check
//! its backend pid), and checks of idle connections off, so what the pool sends at checkout is
//! only what the manager asks for.

#![cfg(feature = "postgres")]
#![allow(clippy::disallowed_types)]

mod harness;

use std::time::Duration;

use harness::postgres::{PgServer, state_change, wait_until};
use millpond::pool::Pool;
use millpond::postgres::{PgConnection, PgManager, PgPool, SessionReset};

fn pool(server: &PgServer, name: &str, reset: SessionReset) -> PgPool {
    Pool::builder(PgManager::new(server.config(name)).session_reset(reset))
        .max_size(1)
        .check_on_get(false)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .expect("a valid pool")
}

/// One kind of session state: what a user runs to leave it, and a query that shows it.
struct Leftover {
    what: &'static str,
    leave: &'static str,
    /// The protocol cannot show it: the user marks the connection.
    marked: bool,
    probe: &'static str,
}

const LEFTOVERS: &[Leftover] = &[
    Leftover {
        what: "search_path",
        leave: "SET search_path TO tenant_a, public",
        marked: false,
        probe: "SHOW search_path",
    },
    Leftover {
        what: "role",
        leave: "SET ROLE tenant",
        marked: false,
        probe: "SELECT current_user::text",
    },
    Leftover {
        what: "session authorization",
        leave: "SET SESSION AUTHORIZATION tenant",
        marked: false,
        probe: "SELECT session_user::text",
    },
    Leftover {
        what: "time zone",
        leave: "SET TIME ZONE 'Asia/Tokyo'",
        marked: false,
        probe: "SHOW TimeZone",
    },
    Leftover {
        what: "time zone through set_config (seen as a ParameterStatus)",
        leave: "SELECT set_config('TimeZone', 'America/Lima', false)",
        marked: false,
        probe: "SHOW TimeZone",
    },
    Leftover {
        what: "statement_timeout",
        leave: "SET statement_timeout = '1min'",
        marked: false,
        probe: "SHOW statement_timeout",
    },
    Leftover {
        what: "LISTEN",
        leave: "LISTEN tenant_events",
        marked: false,
        probe: "SELECT count(*)::text FROM pg_listening_channels()",
    },
    Leftover {
        what: "advisory lock",
        leave: "SELECT pg_advisory_lock(42)",
        marked: true,
        probe: "SELECT count(*)::text FROM pg_locks \
                WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    },
    Leftover {
        what: "temporary table",
        leave: "CREATE TEMP TABLE scratch (n int)",
        marked: false,
        probe: "SELECT coalesce(to_regclass('scratch')::text, 'none')",
    },
    Leftover {
        what: "temporary table made by CREATE ... AS",
        leave: "CREATE TEMP TABLE copied AS SELECT 1 AS n",
        marked: true,
        probe: "SELECT coalesce(to_regclass('copied')::text, 'none')",
    },
    Leftover {
        what: "prepared statement",
        leave: "PREPARE lookup AS SELECT 1",
        marked: false,
        probe: "SELECT count(*)::text FROM pg_prepared_statements WHERE from_sql",
    },
    Leftover {
        what: "cursor WITH HOLD",
        leave: "DECLARE held CURSOR WITH HOLD FOR SELECT generate_series(1, 10)",
        marked: false,
        probe: "SELECT count(*)::text FROM pg_cursors",
    },
];

async fn probe(conn: &tokio_postgres::Client, query: &str) -> String {
    conn.query_one(query, &[]).await.unwrap_or_else(|err| panic!("{query}: {err}")).get(0)
}

async fn backend_pid(conn: &PgConnection) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[]).await.expect("pg_backend_pid").get(0)
}

/// A role to switch to, and what each probe shows on a fresh session.
async fn prepare_server(server: &PgServer) -> Vec<String> {
    let admin = server.admin().await;
    admin.batch_execute("CREATE ROLE tenant").await.expect("create the role");
    let mut fresh = Vec::new();
    for leftover in LEFTOVERS {
        fresh.push(probe(&admin, leftover.probe).await);
    }
    fresh
}

/// User A leaves `leftover` and returns the connection; user B gets the same session. Returns
/// what B's probe shows.
async fn leave_then_probe(pool: &PgPool, leftover: &Leftover, mark: bool, fresh: &str) -> String {
    let pid = {
        let conn = pool.get().await.unwrap();
        conn.batch_execute(leftover.leave)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", leftover.leave));
        if mark {
            conn.mark_dirty();
        }
        assert_ne!(
            probe(&conn, leftover.probe).await,
            fresh,
            "{}: the state is set",
            leftover.what
        );
        backend_pid(&conn).await
    };
    let conn = pool.get().await.unwrap();
    assert_eq!(backend_pid(&conn).await, pid, "{}: the same session serves again", leftover.what);
    probe(&conn, leftover.probe).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_session_state_is_reset_before_the_next_user() {
    let Some(server) = PgServer::start() else { return };
    let fresh = prepare_server(&server).await;
    let pool = pool(&server, "precise", SessionReset::default());

    for (leftover, fresh) in LEFTOVERS.iter().zip(&fresh) {
        let seen = leave_then_probe(&pool, leftover, leftover.marked, fresh).await;
        assert_eq!(&seen, fresh, "{}: the next user sees a fresh session", leftover.what);
        assert!(!pool.get().await.unwrap().is_dirty(), "{}", leftover.what);
    }
    assert_eq!(pool.metrics().created, 1, "reset, never reconnected: {:?}", pool.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reset_every_kind_of_session_state_reaches_the_next_user() {
    let Some(server) = PgServer::start() else { return };
    let fresh = prepare_server(&server).await;

    // A pool per kind: nothing cleans up between them.
    for (index, (leftover, fresh)) in LEFTOVERS.iter().zip(&fresh).enumerate() {
        let pool = pool(&server, &format!("off-{index}"), SessionReset::Off);
        let seen = leave_then_probe(&pool, leftover, leftover.marked, fresh).await;
        assert_ne!(&seen, fresh, "{}: `Off` leaves the state to the next user", leftover.what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_resets_every_used_session_marked_or_not() {
    let Some(server) = PgServer::start() else { return };
    let fresh = prepare_server(&server).await;
    let admin = server.admin().await;
    let pool = pool(&server, "discard-all", SessionReset::DiscardAll);

    for (leftover, fresh) in LEFTOVERS.iter().zip(&fresh) {
        let seen = leave_then_probe(&pool, leftover, false, fresh).await;
        assert_eq!(&seen, fresh, "{}: the next user sees a fresh session", leftover.what);
    }

    // A session used only for what leaves nothing behind is discarded too, and its statement
    // cache starts over.
    let pid = {
        let conn = pool.get().await.unwrap();
        conn.prepare_cached("SELECT $1::int").await.unwrap();
        conn.batch_execute("SELECT 'clean'").await.unwrap();
        backend_pid(&conn).await
    };
    let conn = pool.get().await.unwrap();
    assert_eq!(last_query(&admin, pid).await, "DISCARD ALL");
    let statement = conn.prepare_cached("SELECT $1::int").await.unwrap();
    let row = conn.query_one(&statement, &[&7_i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7, "the cached statement was prepared again");
    assert_eq!(pool.metrics().created, 1, "{:?}", pool.metrics());
}

/// The last statement the server received on the session `pid`.
async fn last_query(admin: &tokio_postgres::Client, pid: i32) -> String {
    admin
        .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .expect("pg_stat_activity")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_skips_a_session_nobody_used_so_try_get_has_it_once_reset() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    let pool = pool(&server, "discard-unused", SessionReset::DiscardAll);

    // A fresh connection taken and given back unused: its next checkout sends nothing.
    drop(pool.get().await.unwrap());
    let conn = pool.get().await.unwrap();
    let session = admin
        .query_one(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = 'discard-unused'",
            &[],
        )
        .await
        .expect("pg_stat_activity");
    let (pid, query): (i32, String) = (session.get(0), session.get(1));
    assert_eq!(query, "", "no request since the startup");

    // Used, then given back: `try_get` cannot await the reset, so it leaves it to a check in the
    // background, and has the session once that is done.
    conn.batch_execute("SELECT 'used'").await.unwrap();
    drop(conn);
    assert!(pool.try_get().is_err(), "a used session is never handed out unreset");
    wait_until("the reset session is back", Duration::from_secs(10), || async {
        pool.status().idle == 1
    })
    .await;
    let conn = pool.try_get().expect("the reset session is ready");
    assert_eq!(last_query(&admin, pid).await, "DISCARD ALL");
    let reset_at = state_change(&admin, pid).await;

    // Given back unused since its reset: `try_get` has it at once, and nothing is sent.
    drop(conn);
    let conn = pool.try_get().expect("an unused session needs no reset");
    assert_eq!(state_change(&admin, pid).await, reset_at, "no request was sent");
    assert_eq!(backend_pid(&conn).await, pid);
    assert_eq!(pool.metrics().created, 1, "{:?}", pool.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_connection_is_handed_out_without_a_round_trip() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    let pool = pool(&server, "clean", SessionReset::default());

    // Queries, writes, DDL that leaves nothing in the session, and a committed transaction.
    let pid = {
        let conn = pool.get().await.unwrap();
        conn.batch_execute("CREATE TABLE IF NOT EXISTS t (n int)").await.unwrap();
        assert!(conn.is_dirty(), "a CREATE may make a temporary table: reset to be safe");
        backend_pid(&conn).await
    };
    {
        let mut conn = pool.get().await.unwrap();
        assert!(!conn.is_dirty());
        let tx = conn.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES ($1)", &[&1_i32]).await.unwrap();
        tx.commit().await.unwrap();
        conn.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
        conn.batch_execute("SHOW TimeZone; SELECT 'the last query of user A'").await.unwrap();
        assert!(!conn.is_dirty());
    }
    let _conn = pool.get().await.unwrap();
    assert_eq!(
        last_query(&admin, pid).await,
        "SHOW TimeZone; SELECT 'the last query of user A'",
        "nothing was sent at checkout"
    );
    assert_eq!(pool.metrics().created, 1, "{:?}", pool.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dirty_connection_is_reset_in_one_round_trip_with_its_rollback() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    let pool = pool(&server, "dirty", SessionReset::default());

    let pid = {
        let conn = pool.get().await.unwrap();
        conn.batch_execute("SET TIME ZONE 'Asia/Tokyo'").await.unwrap();
        backend_pid(&conn).await
    };
    let conn = pool.get().await.unwrap();
    assert!(last_query(&admin, pid).await.starts_with("CLOSE ALL; SET SESSION AUTHORIZATION"));
    drop(conn);

    // Left inside a transaction too: the rollback and the reset go as one query.
    {
        let conn = pool.get().await.unwrap();
        conn.batch_execute("BEGIN; SET LOCAL statement_timeout = '1min'").await.unwrap();
    }
    let conn = pool.get().await.unwrap();
    assert!(last_query(&admin, pid).await.starts_with("ROLLBACK; CLOSE ALL;"));
    assert!(!conn.is_dirty());
    assert_eq!(conn.transaction_status(), millpond::postgres::TransactionStatus::Idle);
    assert_eq!(pool.metrics().created, 1, "{:?}", pool.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_reset_runs_only_when_the_session_is_dirty() {
    let Some(server) = PgServer::start() else { return };
    let admin = server.admin().await;
    let pool = pool(&server, "custom", SessionReset::Custom("RESET statement_timeout".into()));

    let pid = {
        let conn = pool.get().await.unwrap();
        conn.batch_execute("SET statement_timeout = '1min'").await.unwrap();
        backend_pid(&conn).await
    };
    let conn = pool.get().await.unwrap();
    assert_eq!(last_query(&admin, pid).await, "RESET statement_timeout");
    assert_eq!(probe(&conn, "SHOW statement_timeout").await, "0");
    drop(conn);
    let _conn = pool.get().await.unwrap();
    assert_eq!(last_query(&admin, pid).await, "SHOW statement_timeout", "clean: no reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statement_cache_survives_a_precise_reset() {
    let Some(server) = PgServer::start() else { return };
    let pool = pool(&server, "statements", SessionReset::default());
    let admin = server.admin().await;
    admin
        .batch_execute("CREATE TYPE mood AS ENUM ('calm'); CREATE TYPE hue AS ENUM ('red')")
        .await
        .unwrap();

    {
        let conn = pool.get().await.unwrap();
        // tokio-postgres prepares its own statement to look up a custom type, and keeps it.
        conn.query_one("SELECT 'calm'::mood", &[]).await.unwrap();
        conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
        conn.batch_execute("SET TIME ZONE 'Asia/Tokyo'; PREPARE mine AS SELECT 2").await.unwrap();
    }
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.cached_statements(), 1);
    let statement = conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
    let row = conn.query_one(&statement, &[&41_i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42, "the cached statement still exists on the server");
    // So does tokio-postgres's (a `DISCARD ALL` would make this fail: "prepared statement ...
    // does not exist").
    conn.query_one("SELECT 'red'::hue", &[]).await.unwrap();
    assert_eq!(
        probe(&conn, "SELECT count(*)::text FROM pg_prepared_statements WHERE from_sql").await,
        "0",
        "the user's own PREPARE is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_discard_all_empties_the_statement_cache() {
    let Some(server) = PgServer::start() else { return };
    let pool = pool(&server, "user-discard", SessionReset::Off);

    let conn = pool.get().await.unwrap();
    conn.prepare_cached("SELECT $1::int * 2").await.unwrap();
    conn.batch_execute("DISCARD ALL").await.unwrap();
    let statement = conn.prepare_cached("SELECT $1::int * 2").await.unwrap();
    let row = conn.query_one(&statement, &[&21_i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42, "prepared again, not taken from a stale cache");
}
