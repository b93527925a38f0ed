//! What pool and cluster errors print, over a mock backend that refuses connections: the real
//! cause in `{}`, and each message once when a chain printer (anyhow's `{:#}`, eyre, `tracing`
//! error fields) walks `source()`.
#![allow(clippy::disallowed_types)]

mod support;

use std::error::Error as _;
use std::time::Duration;

use millpond::cluster::{Backend, Cluster};
use millpond::pool::{Error, Pool};
use support::errors::{assert_says_everything_once, chain};
use support::{Behavior, TestManager};

#[tokio::test(start_paused = true)]
async fn an_open_circuit_names_the_cause_once() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let pool = Pool::builder(manager)
        .max_size(2)
        .breaker(1, Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "backend unavailable (circuit open): creating a resource failed: connection refused"
    );
    assert_says_everything_once(&chain(&err));
    assert_eq!(chain(&err), err.to_string(), "a chain printer adds nothing to `{{}}`");

    // The parts inside say only their own piece, and hand on the rest.
    let create = err.last_create_error().unwrap();
    assert_eq!(create.to_string(), "creating a resource failed");
    assert_eq!(chain(create), "creating a resource failed: connection refused");
    assert_eq!(err.manager_error().unwrap().0, "connection refused");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_while_creations_fail_names_the_cause_once() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let pool = Pool::builder(manager)
        .max_size(2)
        .disable_breaker()
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "timed out waiting for a resource to be created; last error: creating a resource failed: \
         connection refused"
    );
    assert_says_everything_once(&chain(&err));
    assert!(err.source().is_none(), "the message already says the cause");
}

#[tokio::test(start_paused = true)]
async fn a_cluster_names_the_backend_and_its_cause_once() {
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let pool = Pool::builder(manager).max_size(2).acquire_timeout(Duration::from_secs(30));
    let cluster = Cluster::builder()
        .backend(Backend::primary("a", pool))
        .probe_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    for _ in 0..2 {
        // The first call fails on the backend; the second finds it out of rotation.
        let err = cluster.get_primary().await.unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("backend `a`") && shown.contains("connection refused"), "{shown}");
        assert_says_everything_once(&chain(&err));
        assert!(err.backend_error().is_some(), "the cause is kept, typed");
    }
}
