//! What one user leaves in a Redis connection (another database selected, a `MULTI` without
//! `EXEC`, `WATCH`ed keys, client-side caching, another user authenticated, RESP3, a client
//! name, a subscription, `MONITOR`, `CLIENT REPLY OFF`) never reaches the next user, on a real,
//! throwaway server; a connection nobody changed goes out without a single command; and shared
//! access refuses the commands that would change the session for every borrower.
//!
//! Every pool here has one connection, so the next user gets the same connection when it was
//! reset (the tests check its client id), and checks of idle connections off, so what the pool
//! sends at checkout is only what the manager asks for.

#![cfg(feature = "redis")]
#![allow(clippy::disallowed_types)]

mod harness;

use std::time::Duration;

use harness::redis::{RedisServer, calls, calls_but_info, client_field};
use millpond::pool::Pool;
use millpond::redis::{Error, RedisManager, RedisPool};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Value};

const DB: i64 = 2;

fn pool(manager: RedisManager) -> RedisPool {
    Pool::builder(manager.db(DB).response_timeout(Some(Duration::from_secs(2))))
        .max_size(1)
        .check_on_get(false)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .expect("a valid pool")
}

/// The pooled connection's `CLIENT INFO` line and client id, asked through the pool.
async fn client_info(pool: &RedisPool) -> (String, String) {
    let conn = pool.get().await.expect("a connection");
    let info: String = conn.query(redis::cmd("CLIENT").arg("INFO")).await.expect("CLIENT INFO");
    let id = client_field(&info, "id").to_owned();
    (info, id)
}

/// What a connection the pool hands out looks like: the configured database, no transaction,
/// no tracking, no subscription, the default user, RESP2, no name.
fn assert_pristine(info: &str, after: &str) {
    assert_eq!(client_field(info, "db"), DB.to_string(), "database after {after}: {info}");
    assert_eq!(client_field(info, "multi"), "-1", "MULTI after {after}: {info}");
    assert!(!client_field(info, "flags").contains('t'), "tracking after {after}: {info}");
    assert_eq!(client_field(info, "sub"), "0", "subscriptions after {after}: {info}");
    assert_eq!(client_field(info, "psub"), "0", "pattern subscriptions after {after}: {info}");
    assert_eq!(client_field(info, "user"), "default", "user after {after}: {info}");
    assert_eq!(client_field(info, "resp"), "2", "protocol after {after}: {info}");
    assert_eq!(client_field(info, "name"), "", "client name after {after}: {info}");
}

/// One way to leave a connection dirty, sent through exclusive access.
async fn leave(conn: &mut millpond::redis::RedisConnection, what: &str) {
    let commands: Vec<redis::Cmd> = match what {
        "SELECT" => vec![redis::cmd("SELECT").arg(5).clone()],
        "MULTI" => vec![redis::cmd("MULTI"), redis::cmd("SET").arg("queued").arg(1).clone()],
        "CLIENT TRACKING" => vec![redis::cmd("CLIENT").arg("TRACKING").arg("ON").clone()],
        "AUTH" => vec![redis::cmd("AUTH").arg("other").arg("other-pw").clone()],
        "HELLO 3" => vec![redis::cmd("HELLO").arg(3).clone()],
        "CLIENT SETNAME" => vec![redis::cmd("CLIENT").arg("SETNAME").arg("left-behind").clone()],
        _ => unreachable!("{what}"),
    };
    for cmd in commands {
        let _: Value = cmd.query_async(conn).await.unwrap_or_else(|err| panic!("{what}: {err}"));
    }
}

#[tokio::test]
async fn session_state_is_reset_before_the_next_user_in_one_round_trip() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "other", "on", ">other-pw", "~*", "&*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let pool = pool(server.manager());
    let (info, id) = client_info(&pool).await;
    assert_pristine(&info, "connecting");

    for what in ["SELECT", "MULTI", "CLIENT TRACKING", "AUTH", "HELLO 3", "CLIENT SETNAME"] {
        let resets = calls(&mut admin, "reset").await;
        {
            let mut conn = pool.get().await.unwrap();
            leave(&mut conn, what).await;
            assert!(conn.is_dirty(), "{what} marks the connection");
        }
        let (info, same_id) = client_info(&pool).await;
        assert_pristine(&info, what);
        assert_eq!(same_id, id, "{what}: the connection was reset, not replaced");
        assert_eq!(calls(&mut admin, "reset").await, resets + 1, "{what}: one RESET");
    }
}

#[tokio::test]
async fn watched_keys_do_not_abort_the_next_users_transaction() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    let pool = pool(server.manager());
    {
        let mut conn = pool.get().await.unwrap();
        let _: () = redis::cmd("WATCH").arg("balance").query_async(&mut *conn).await.unwrap();
    }
    // Had the WATCH survived, this write would abort the next user's transaction.
    let _: () = redis::cmd("SELECT").arg(DB).query_async(&mut admin).await.unwrap();
    let _: () = admin.set("balance", 10).await.unwrap();

    let mut conn = pool.get().await.unwrap();
    let (count,): (i64,) =
        redis::pipe().atomic().incr("count", 1).query_async(&mut *conn).await.unwrap();
    assert_eq!(count, 1, "EXEC ran: nothing was WATCHed any more");
}

#[tokio::test]
async fn a_password_server_is_authenticated_again_after_the_reset() {
    let Some(server) = RedisServer::start_with(&["--requirepass", "s3cret"]) else { return };
    let mut admin = server.admin_with(Some("s3cret")).await;
    let pool = pool(server.manager().password("s3cret"));
    let (_, id) = client_info(&pool).await;
    {
        let mut conn = pool.get().await.unwrap();
        let _: () = redis::cmd("SELECT").arg(7).query_async(&mut *conn).await.unwrap();
    }
    let (info, same_id) = client_info(&pool).await;
    assert_eq!(same_id, id);
    assert_eq!(client_field(&info, "db"), DB.to_string());
    assert_eq!(calls(&mut admin, "reset").await, 1);
    let conn = pool.get().await.unwrap();
    let _: () =
        conn.query(redis::cmd("SET").arg("after-reset").arg(1)).await.expect("authenticated");
}

#[tokio::test]
async fn a_clean_checkout_sends_nothing() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    let pool = pool(server.manager());
    {
        let mut conn = pool.get().await.unwrap();
        let _: () = conn.set("k", "v").await.unwrap();
    }
    let before = calls_but_info(&mut admin).await;
    // (The harness's own readiness probe was a PING.)
    let pings = calls(&mut admin, "ping").await;
    for _ in 0..20 {
        let mut conn = pool.get().await.unwrap();
        assert!(!conn.is_dirty());
        let _: String = conn.get("k").await.unwrap();
        let _: String = conn.query(redis::cmd("GET").arg("k")).await.unwrap();
    }
    let after = calls_but_info(&mut admin).await;
    assert_eq!(after - before, 40, "the users' 40 GETs and not one command more");
    assert_eq!(calls(&mut admin, "reset").await, 0);
    assert_eq!(calls(&mut admin, "ping").await, pings);
}

#[tokio::test]
async fn raw_access_marks_the_session_dirty() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    let pool = pool(server.manager());
    {
        let mut conn = pool.get().await.unwrap();
        let raw: &mut MultiplexedConnection = &mut conn;
        let _: () = redis::cmd("SELECT").arg(9).query_async(raw).await.unwrap();
        assert!(conn.is_dirty(), "the pool cannot see what went through the raw connection");
    }
    let (info, _) = client_info(&pool).await;
    assert_pristine(&info, "a raw SELECT");
    assert_eq!(calls(&mut admin, "reset").await, 1);

    // A subscription through the raw connection, and messages for it: the next user gets a
    // connection that is subscribed to nothing and whose replies pair with its commands.
    {
        let mut conn = pool.get().await.unwrap();
        let raw: &mut MultiplexedConnection = &mut conn;
        let _: Value = redis::cmd("SUBSCRIBE").arg("raw-news").query_async(raw).await.unwrap();
    }
    for _ in 0..3 {
        let _: i64 = admin.publish("raw-news", "hello").await.unwrap();
    }
    let (info, _) = client_info(&pool).await;
    assert_pristine(&info, "a raw SUBSCRIBE");
    let conn = pool.get().await.unwrap();
    let _: () = conn.query(redis::cmd("SET").arg("after").arg("raw")).await.unwrap();
    let after: String = conn.query(redis::cmd("GET").arg("after")).await.unwrap();
    assert_eq!(after, "raw");
}

/// Subscriptions, `MONITOR` and `CLIENT REPLY OFF` change how many replies the server sends:
/// the connection is closed and the next user gets a new one.
#[tokio::test]
async fn commands_that_break_reply_pairing_close_the_connection() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    let pool = pool(server.manager().response_timeout(Some(Duration::from_millis(300))));
    let (_, mut id) = client_info(&pool).await;

    for what in ["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "CLIENT REPLY OFF"] {
        {
            let mut conn = pool.get().await.unwrap();
            let cmd = match what {
                "SUBSCRIBE" => redis::cmd("SUBSCRIBE").arg("news").clone(),
                "PSUBSCRIBE" => redis::cmd("PSUBSCRIBE").arg("news.*").clone(),
                "SSUBSCRIBE" => redis::cmd("SSUBSCRIBE").arg("shard-news").clone(),
                "MONITOR" => redis::cmd("MONITOR"),
                _ => redis::cmd("CLIENT").arg("REPLY").arg("OFF").clone(),
            };
            // `CLIENT REPLY OFF` gets no reply at all: it times out.
            let _ = cmd.query_async::<Value>(&mut *conn).await;
            assert!(conn.is_broken() || conn.in_flight() > 0, "{what} dooms the connection");
        }
        // Something for a subscription or MONITOR to deliver, had the connection survived.
        let _: i64 = admin.publish("news", "hello").await.unwrap();
        let _: i64 = admin.publish("news.today", "hello").await.unwrap();
        let (info, new_id) = client_info(&pool).await;
        assert_ne!(new_id, id, "{what}: the connection was replaced");
        assert_pristine(&info, what);
        let conn = pool.get().await.unwrap();
        let _: () = conn.query(redis::cmd("SET").arg("x").arg(what)).await.unwrap();
        let x: String = conn.query(redis::cmd("GET").arg("x")).await.unwrap();
        assert_eq!(x, what, "{what}: replies pair with commands");
        id = new_id;
    }
    assert_eq!(calls(&mut admin, "reset").await, 0, "closed, not reset");
}

#[tokio::test]
async fn shared_access_refuses_session_commands() {
    let Some(server) = RedisServer::start() else { return };
    let pool = pool(server.manager());
    let shared = pool.multiplexed(4).unwrap();
    let conn = shared.get().await.unwrap();
    for cmd in [
        redis::cmd("SELECT").arg(3).clone(),
        redis::cmd("MULTI"),
        redis::cmd("WATCH").arg("k").clone(),
        redis::cmd("SUBSCRIBE").arg("c").clone(),
        redis::cmd("CLIENT").arg("TRACKING").arg("ON").clone(),
    ] {
        let err = conn.query::<Value>(&cmd).await.unwrap_err();
        assert!(matches!(err, Error::SessionCommand(_)), "{err}");
    }
    let err = conn
        .pipeline::<Value>(redis::pipe().cmd("GET").arg("k").cmd("select").arg(1))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::SessionCommand(name) if name == "SELECT"), "{err}");
    assert!(!conn.is_dirty(), "nothing was sent");
    // An atomic pipeline sends its MULTI and EXEC in one piece: fine to share.
    let (n,): (i64,) = conn.pipeline(redis::pipe().atomic().incr("n", 1)).await.unwrap();
    assert_eq!(n, 1);
    assert!(!conn.is_dirty());
}

#[tokio::test]
async fn an_acl_user_and_resp3_are_restored_after_the_reset() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let url = format!("redis://app:app-pw@127.0.0.1:{}/?protocol=resp3", server.port());
    let pool = pool(RedisManager::new(url).unwrap());
    let (info, id) = client_info(&pool).await;
    assert_eq!((client_field(&info, "user"), client_field(&info, "resp")), ("app", "3"));
    {
        let mut conn = pool.get().await.unwrap();
        let _: () = redis::cmd("SELECT").arg(6).query_async(&mut *conn).await.unwrap();
        let _: Value = redis::cmd("HELLO").arg(2).query_async(&mut *conn).await.unwrap();
    }
    let (info, same_id) = client_info(&pool).await;
    assert_eq!(same_id, id, "reset, not replaced");
    assert_eq!(client_field(&info, "user"), "app", "authenticated again: {info}");
    assert_eq!(client_field(&info, "resp"), "3", "RESP3 again: {info}");
    assert_eq!(client_field(&info, "db"), DB.to_string(), "{info}");
    assert_eq!(calls(&mut admin, "reset").await, 1);
}

#[tokio::test]
async fn an_idle_connection_past_the_check_window_is_pinged_once() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    let pool: RedisPool =
        Pool::builder(server.manager()).max_size(1).check_window(Duration::ZERO).build().unwrap();
    drop(pool.get().await.unwrap());
    let pings = calls(&mut admin, "ping").await;
    for _ in 0..5 {
        drop(pool.get().await.unwrap());
    }
    assert_eq!(calls(&mut admin, "ping").await, pings + 5, "one PING per checkout");
    assert_eq!(calls(&mut admin, "reset").await, 0, "and no reset of a clean session");
}

/// `WATCH`, `MULTI`, ..., `EXEC`, Redis's optimistic transaction, ends what it began on the
/// server: the connection goes out again without a reset.
#[tokio::test]
async fn a_completed_optimistic_transaction_costs_no_reset() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.admin().await;
    let pool = pool(server.manager());
    for round in 0..3 {
        let mut conn = pool.get().await.unwrap();
        let _: () = redis::cmd("WATCH").arg("stock").query_async(&mut *conn).await.unwrap();
        let stock: Option<i64> = conn.get("stock").await.unwrap();
        if round % 2 == 0 {
            // As the redis crate writes it: an atomic pipeline.
            let _: (i64,) = redis::pipe()
                .atomic()
                .set("stock", stock.unwrap_or(0) + 1)
                .ignore()
                .incr("sold", 1)
                .query_async(&mut *conn)
                .await
                .unwrap();
        } else {
            // By hand.
            let _: () = redis::cmd("MULTI").query_async(&mut *conn).await.unwrap();
            let _: () = conn.set("stock", stock.unwrap_or(0) + 1).await.unwrap();
            let _: Value = redis::cmd("EXEC").query_async(&mut *conn).await.unwrap();
        }
        assert!(!conn.is_dirty(), "round {round}: EXEC ended the transaction and the watch");
    }
    {
        let mut conn = pool.get().await.unwrap();
        let _: () = redis::cmd("WATCH").arg("stock").query_async(&mut *conn).await.unwrap();
        let _: () = redis::cmd("UNWATCH").query_async(&mut *conn).await.unwrap();
        assert!(!conn.is_dirty(), "UNWATCH ended the watch");
        let _: () = redis::cmd("WATCH").arg("stock").query_async(&mut *conn).await.unwrap();
        let refused = redis::cmd("EXEC").query_async::<Value>(&mut *conn).await;
        assert!(refused.is_err(), "EXEC without MULTI");
        assert!(conn.is_dirty(), "the server kept the watch, so does the pool");
    }
    let (info, _) = client_info(&pool).await;
    assert_pristine(&info, "WATCH and a refused EXEC");
    assert_eq!(calls(&mut admin, "reset").await, 1, "only the last connection was reset");
    let sold: i64 = {
        let _: () = redis::cmd("SELECT").arg(DB).query_async(&mut admin).await.unwrap();
        admin.get("sold").await.unwrap()
    };
    assert_eq!(sold, 2);
}
