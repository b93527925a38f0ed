//! What a user sees when PostgreSQL refuses a connection, on a real server: the server's
//! severity, SQLSTATE and message in `{}` of the pool's and the cluster's errors, and each
//! message once when a chain printer (anyhow's `{:#}`, eyre, `tracing` error fields) walks
//! `source()`.

#![cfg(feature = "postgres")]
#![allow(clippy::disallowed_types)]

mod harness;
mod support;

use std::time::Duration;

use harness::postgres::PgServer;
use millpond::cluster::{Backend, Cluster};
use millpond::pool::Pool;
use millpond::postgres::PgManager;
use support::errors::{assert_says_everything_once, chain};

fn pool(config: tokio_postgres::Config) -> millpond::pool::Builder<PgManager> {
    Pool::builder(PgManager::new(config)).max_size(2).acquire_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn a_refused_connection_shows_the_servers_reason_once() {
    let Some(server) = PgServer::start() else { return };
    let cases = [
        ("dbname", "no_such_database", "3D000", "database \"no_such_database\" does not exist"),
        ("user", "no_such_role", "28000", "role \"no_such_role\" does not exist"),
    ];
    for (setting, value, code, message) in cases {
        let mut config = server.config("errors");
        match setting {
            "dbname" => config.dbname(value),
            _ => config.user(value),
        };
        let err = pool(config).build().unwrap().get().await.unwrap_err();
        let shown = err.to_string();
        println!("{{}}: {shown}\nchain: {}", chain(&err));
        assert!(shown.contains(&format!("FATAL {code}: {message}")), "{shown}");
        assert_says_everything_once(&chain(&err));

        let db = err.manager_error().and_then(|err| err.db_error()).expect("the server's error");
        assert_eq!(db.code().code(), code);
        let manager_error = err.manager_error().unwrap();
        assert_eq!(manager_error.to_string(), format!("FATAL {code}: {message}"));
        assert_says_everything_once(&chain(err.last_create_error().unwrap()));
    }
}

#[tokio::test]
async fn a_cluster_shows_the_servers_reason_once() {
    let Some(server) = PgServer::start() else { return };
    let mut config = server.config("errors");
    config.dbname("no_such_database");
    let cluster = Cluster::builder()
        .backend(Backend::primary("pg", pool(config)))
        .probe_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let err = cluster.get_primary().await.unwrap_err();
    let shown = err.to_string();
    println!("{{}}: {shown}\nchain: {}", chain(&err));
    assert!(shown.contains("backend `pg`"), "{shown}");
    assert!(shown.contains("FATAL 3D000: database \"no_such_database\" does not exist"), "{shown}");
    assert_says_everything_once(&chain(&err));
}
